"""The `dicom` tree source: anatomy and modality nodes from pydicom's CIDs 4, 4031, 29, 33."""

from __future__ import annotations

import re
from collections import Counter

import pytest

pytest.importorskip("pydicom.sr.codedict")

from medray.errors import MedrayError  # noqa: E402
from medray.met.normalize import normalize_term  # noqa: E402
from medray.met.sources import dicom as dicom_mod  # noqa: E402
from medray.met.sources import dicom_anatomy_groups as A  # noqa: E402
from medray.met.sources import dicom_modality_groups as M  # noqa: E402
from medray.met.sources.base import SOURCES  # noqa: E402
from medray.met.sources.dicom import dicom_nodes  # noqa: E402


@pytest.fixture(scope="module")
def nodes():
    return list(dicom_nodes())


@pytest.fixture(scope="module")
def by_key(nodes):
    return {n.key: n for n in nodes}


def _ancestors(by_key, key):
    out, cur = [], by_key[key].parent
    while cur is not None:
        out.append(cur)
        cur = by_key[cur].parent
    return out


def _depth(by_key, key):
    """1 = a group directly under the axis."""
    return len(_ancestors(by_key, key)) + 1


def _cid_codes(cid):
    cids, concepts = dicom_mod._pydicom_tables()
    return {f"{s}:{c}" for s, c, _kw, _m in dicom_mod._cid_members(cids, concepts, cid)}


def test_registered():
    assert SOURCES["dicom"] is dicom_nodes


def test_counts(nodes, by_key):
    per_axis = Counter(n.axis for n in nodes)
    print(f"\ndicom source: {len(nodes)} nodes, per axis {dict(per_axis)}")
    for n in nodes:
        if n.parent is None:
            below = sum(1 for m in nodes if n.key in _ancestors(by_key, m.key))
            print(f"  {n.axis:8s} {n.name:50s} {below:4d}")
    depth = Counter((n.axis, _depth(by_key, n.key)) for n in nodes)
    print("  levels below axis:", dict(sorted(depth.items())))
    assert set(per_axis) == {"anatomy", "modality"}
    # CID 4 has 343 concepts, CID 4031 114 (all but one in CID 4 too), CID 29/33 51/74.
    assert per_axis["anatomy"] >= 300
    assert per_axis["modality"] >= 80


def test_every_cid_concept_once(nodes):
    coded = Counter(n.key for n in nodes if not n.key.startswith("MEDRAY:"))
    assert max(coded.values()) == 1
    anatomy = {n.key for n in nodes if n.axis == "anatomy"}
    modality = {n.key for n in nodes if n.axis == "modality"}
    assert _cid_codes(4) | _cid_codes(4031) <= anatomy
    assert _cid_codes(29) | _cid_codes(33) <= modality
    assert len([k for k in coded if k.startswith("SCT:")]) == len(_cid_codes(4) | _cid_codes(4031))


def test_ct_and_mr(by_key):
    ct, mr = by_key["DCM:CT"], by_key["DCM:MR"]
    assert (ct.axis, ct.name, ct.codes, ct.source) == ("modality", "Computed Tomography", ["DCM:CT"], "dicom")
    assert (mr.axis, mr.name, mr.codes) == ("modality", "Magnetic Resonance", ["DCM:MR"])
    assert ct.parent == "MEDRAY:modality/computed-tomography"
    assert mr.parent == "MEDRAY:modality/magnetic-resonance"
    assert by_key[ct.parent].name == "Computed tomography modalities"
    assert by_key[mr.parent].parent is None
    assert "CT" in ct.synonyms and "MRI" in mr.synonyms
    assert "MR" not in mr.synonyms  # "Mr" (the title) would match it
    assert by_key["DCM:CTPROTOCOL"].parent == "DCM:CT"


def test_ambiguous_abbreviations_are_codes_not_synonyms(nodes, by_key):
    unsafe = {"us", "pt", "ot", "sm", "es", "mr", "pa", "dx", "cr", "mg", "hd", "oct", "pos", "doc"}
    for n in nodes:
        assert not unsafe & {normalize_term(s) for s in n.synonyms}, n
    assert by_key["DCM:US"].codes == ["DCM:US"]
    assert by_key["DCM:PT"].codes == ["DCM:PT"]
    assert by_key["DCM:US"].parent == "MEDRAY:modality/ultrasound"
    assert by_key["DCM:PT"].parent == "MEDRAY:modality/nuclear-medicine"
    assert by_key["DCM:MG"].parent == "MEDRAY:modality/radiography"
    assert by_key["DCM:SM"].parent == "MEDRAY:modality/pathology"
    assert by_key["DCM:ES"].parent == "MEDRAY:modality/optical"
    assert by_key["DCM:IVUS"].parent == "DCM:US"


def test_lung_under_thorax(by_key):
    lung = by_key["SCT:39607008"]
    assert (lung.axis, lung.name, lung.codes) == ("anatomy", "Lung", ["SCT:39607008"])
    assert "MEDRAY:anatomy/thorax" in _ancestors(by_key, lung.key)
    assert by_key["MEDRAY:anatomy/thorax"].parent is None
    assert by_key["SCT:86598002"].parent == lung.key  # Apex of lung


def test_same_code_two_keywords_is_one_concept(by_key):
    chest = by_key["SCT:816094009"]  # `Chest` in CID 4031, `Thorax` in CID 4
    assert chest.name == "Chest" and "Thorax" in chest.synonyms
    assert by_key["SCT:64033007"].name == "Kidney"  # `Endo-renal` in CID 4
    assert by_key["SCT:32849002"].name == "Esophagus"  # `Endo-esophageal` in CID 4


def test_parents_first_no_duplicates_no_empty_names(nodes):
    seen: dict[str, str] = {}
    for n in nodes:
        assert n.key not in seen, f"duplicate key {n.key}"
        assert n.name.strip(), n.key
        if n.parent is None:
            assert re.fullmatch(rf"MEDRAY:{n.axis}/[a-z0-9-]+", n.key), n.key
        else:
            assert n.parent in seen, f"{n.key} yielded before its parent {n.parent}"
            assert seen[n.parent] == n.axis
        seen[n.key] = n.axis


def test_group_and_concept_fields(nodes):
    for n in nodes:
        if n.key.startswith("MEDRAY:"):
            assert (n.source, n.codes) == ("medray", []), n
        else:
            assert (n.source, n.codes) == ("dicom", [n.key]), n
            assert n.key.split(":")[0] in {"SCT", "DCM"}


def test_names_unique_and_synonyms_unambiguous(nodes):
    names = Counter(normalize_term(n.name) for n in nodes)
    assert [k for k, v in names.items() if v > 1] == []
    owners = Counter(normalize_term(s) for n in nodes for s in set(n.synonyms))
    for n in nodes:
        for s in n.synonyms:
            norm = normalize_term(s)
            assert norm and norm not in names and owners[norm] == 1, (n.key, s)


def test_depth(nodes, by_key):
    deepest = Counter()
    for n in nodes:
        deepest[n.axis] = max(deepest[n.axis], _depth(by_key, n.key))
    # axis -> group -> concept -> nested concept (anatomy nests much deeper)
    assert deepest["anatomy"] >= 5
    assert deepest["modality"] >= 3
    assert _depth(by_key, "SCT:32672002") >= 5  # group > vessel > artery > aorta > thoracic > descending


def test_most_cid4_regions_are_grouped(by_key):
    cid4 = _cid_codes(4)
    other = [k for k in cid4 if "MEDRAY:anatomy/other" in _ancestors(by_key, k)]
    share = 1 - len(other) / len(cid4)
    print(f"\nCID 4: {len(cid4)} regions, {len(other)} in 'other' ({share:.1%} grouped): "
          f"{sorted(by_key[k].name for k in other)}")
    assert share >= 0.85


def test_modality_mapping_covers_every_current_code():
    codes = {k.split(":", 1)[1] for k in _cid_codes(29) | _cid_codes(33)}
    assert sorted(codes - set(M.MODALITY_EXPLICIT)) == []


def test_tables_name_real_keywords():
    """A typo in a table would silently drop a rule: every keyword must resolve."""
    cids, concepts = dicom_mod._pydicom_tables()
    anatomy = dicom_mod._collect(cids, concepts, "anatomy", dicom_mod.ANATOMY_CIDS)
    modality = dicom_mod._collect(cids, concepts, "modality", dicom_mod.MODALITY_CIDS)
    known = {kw for c in anatomy + modality for kw in c.keywords}
    chest_slugs = {slug for slug, *_ in A.CHEST_STRUCTURES}
    used = set(A.ANATOMY_EXPLICIT) | set(A.ANATOMY_NEST) | set(A.ANATOMY_NEST.values())
    used |= {parent for _, _, parent in A.ANATOMY_NEST_RULES} | set(A.EXTRA_SYNONYMS) | set(M.EXTRA_SYNONYMS)
    used |= {p for _, _, p, _ in A.CHEST_STRUCTURES if p and p not in chest_slugs}
    assert sorted(used - known) == []
    slugs = {s for s, _ in A.ANATOMY_GROUPS}
    assert set(A.ANATOMY_EXPLICIT.values()) | {s for s, _ in A.ANATOMY_RULES} <= slugs
    codes = {c.code for c in modality}
    assert set(M.MODALITY_NEST) | set(M.MODALITY_NEST.values()) <= codes


def test_chest_structures(by_key, nodes):
    by_name = {n.name: n for n in nodes}
    right, left = by_name["Right lung"], by_name["Left lung"]
    assert right.parent == left.parent == "SCT:39607008"
    assert right.key == "MEDRAY:anatomy/right-lung" and right.source == "medray" and right.codes == []
    for lobe in ("Upper lobe of right lung", "Middle lobe of right lung", "Lower lobe of right lung"):
        assert by_name[lobe].parent == right.key
    for lobe in ("Upper lobe of left lung", "Lower lobe of left lung"):
        assert by_name[lobe].parent == left.key
    lingula = by_name["Lingula of left lung"]
    assert lingula.parent == by_name["Upper lobe of left lung"].key and "lingula" in lingula.synonyms
    assert "left lower lobe" in by_name["Lower lobe of left lung"].synonyms
    for name in ("Hilum of lung", "Costophrenic angle", "Pleura", "Diaphragm", "Right hemidiaphragm"):
        assert "MEDRAY:anatomy/thorax" in _ancestors(by_key, by_name[name].key), name
    assert by_name["Pleura"].xrefs == ["SCT:3120008"]  # pydicom knows the SNOMED code
    # present in the CIDs: reused (merged by name), not duplicated
    for name, key in [("Trachea", "SCT:44567001"), ("Mediastinum", "SCT:72410000"), ("Heart", "SCT:80891009"),
                      ("Aorta", "SCT:15825003"), ("Rib", "SCT:113197003"), ("Clavicle", "SCT:51299004"),
                      ("Thoracic spine", "SCT:122495006")]:
        assert by_name[name].key == key
    assert "ribs" in by_key["SCT:113197003"].synonyms
    # no 2-3 letter capitals (RUL, LLL) among anatomy synonyms
    for n in nodes:
        if n.axis == "anatomy":
            assert not [s for s in n.synonyms if re.fullmatch(r"[A-Z]{2,3}", s)], n


def test_missing_cids_fail_clearly(monkeypatch):
    from pydicom.sr import codedict

    monkeypatch.setattr(codedict, "CID_CONCEPTS", {k: v for k, v in codedict.CID_CONCEPTS.items() if k != 4031})
    with pytest.raises(MedrayError, match=r"lacks DICOM CID 4031"):
        list(dicom_nodes())
