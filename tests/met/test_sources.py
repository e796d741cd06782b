"""Tree sources on their real data: ICD-10-CM, HPO, the Disease Ontology, the radiology lexicon."""

from __future__ import annotations

import re

import pytest

from medray.errors import SourceError
from medray.met.obo import read_obo
from medray.met.sources import SOURCES
from medray.met.sources.disease_ontology import disease_ontology_nodes
from medray.met.sources.icd10cm import icd10cm_nodes, term_variants
from medray.met.sources.obo_sources import hpo_nodes, symptom_ontology_nodes
from medray.met.sources.ontology_files import normalize_xref, packaged_hpo_obo
from medray.met.sources.radiology_lexicon import (
    GROUP_KEY,
    OBSERVATIONS,
    radiology_lexicon_nodes,
)


def assert_parents_first(nodes) -> None:
    seen: set[str] = set()
    for n in nodes:
        assert n.key not in seen, f"duplicate key {n.key}"
        assert n.parent is None or n.parent in seen, f"{n.key} yielded before its parent {n.parent}"
        seen.add(n.key)


def test_registry_names():
    assert {
        "icd10cm",
        "disease_ontology",
        "hpo",
        "symptom_ontology",
        "radiology_lexicon",
        "dicom",
    } <= set(SOURCES)


# ---- ICD-10-CM ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def icd():
    nodes = list(icd10cm_nodes())
    return nodes, {n.key: n for n in nodes}


def test_icd_size_and_order(icd):
    nodes, _ = icd
    assert 98_000 <= len(nodes) <= 99_500  # FY2026: 98,505 codes
    assert_parents_first(nodes)
    assert all(n.axis == "disease" and n.source == "icd10cm" for n in nodes)
    chapters = [n for n in nodes if n.parent is None]
    assert len(chapters) == 22
    assert all(re.fullmatch(r"ICD10CM:CH\d\d", n.key) for n in chapters)


def test_icd_j90(icd):
    _, by_key = icd
    j90 = by_key["ICD10CM:J90"]
    assert j90.name == "Pleural effusion, not elsewhere classified"
    assert j90.parent == "ICD10CM:J90-J94"
    assert by_key["ICD10CM:J90-J94"].parent == "ICD10CM:CH10"
    assert by_key["ICD10CM:J90-J94"].name == "Other diseases of the pleura"
    assert by_key["ICD10CM:CH10"].parent is None
    assert by_key["ICD10CM:CH10"].name == "Diseases of the respiratory system"
    assert by_key["ICD10CM:CH10"].codes == ["ICD10CM:CH10", "ICD10CM:J00-J99"]
    # inclusion terms, and the short form without "not elsewhere classified"
    for syn in (
        "Encysted pleurisy",
        "Pleural effusion NOS",
        "Pleural effusion",
        "Pleurisy with effusion",
    ):
        assert syn in j90.synonyms
    assert j90.codes == ["ICD10CM:J90"]


def test_icd_subcategories_hang_under_categories(icd):
    _, by_key = icd
    assert by_key["ICD10CM:J91.8"].parent == "ICD10CM:J91"
    assert by_key["ICD10CM:J91"].parent == "ICD10CM:J90-J94"
    assert by_key["ICD10CM:E88.9"].parent == "ICD10CM:E88"
    assert by_key["ICD10CM:E88.9"].name == "Metabolic disorder, unspecified"
    assert "Metabolic disorder" in by_key["ICD10CM:E88.9"].synonyms


def test_icd_one_category_block(icd):
    nodes, by_key = icd
    block, category = by_key["ICD10CM:B10-B10"], by_key["ICD10CM:B10"]
    assert block.parent == "ICD10CM:CH01"
    assert category.parent == "ICD10CM:B10-B10"
    assert block.name == category.name == "Other human herpesviruses"
    assert block.codes == ["ICD10CM:B10-B10"] and category.codes == ["ICD10CM:B10"]
    keys = [n.key for n in nodes]
    assert keys.index("ICD10CM:B10-B10") < keys.index("ICD10CM:B10")
    assert by_key["ICD10CM:B10.0"].parent == "ICD10CM:B10"
    # every lone block has its category right under it
    lone = [k for k in by_key if re.fullmatch(r"ICD10CM:(\w{3})-\1", k)]
    assert len(lone) > 10
    for key in lone:
        assert by_key[key[:-4]].parent == key


def test_term_variants():
    assert term_variants("Pleural effusion, not elsewhere classified") == [
        "Pleural effusion, not elsewhere classified",
        "Pleural effusion",
    ]
    assert term_variants("Pleural effusion NOS") == ["Pleural effusion NOS", "Pleural effusion"]
    assert term_variants("Pleurisy with effusion (exudative) (serous)") == [
        "Pleurisy with effusion (exudative) (serous)",
        "Pleurisy with effusion",
    ]
    assert term_variants("Cholera") == ["Cholera"]


# ---- HPO ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hpo_obo():
    return read_obo(packaged_hpo_obo())


@pytest.fixture(scope="module")
def hpo(hpo_obo):
    return list(hpo_nodes())


def test_hpo_root_and_order(hpo, hpo_obo):
    assert hpo[0].key == "HP:0000118"
    assert hpo[0].parent is None
    assert hpo[0].name == "Phenotypic abnormality"
    assert_parents_first(hpo)
    assert all(n.parent is not None for n in hpo[1:])
    live_under_root = set(hpo_obo.descendants("HP:0000118")) - {
        t for t, term in hpo_obo.terms.items() if term.obsolete
    }
    assert {n.key for n in hpo} == live_under_root
    assert 18_000 < len(hpo) < 19_500


def test_hpo_ids_labels_and_is_a_unaltered(hpo, hpo_obo):
    for n in hpo:
        term = hpo_obo.terms[n.key]
        assert n.name == term.name
        assert n.codes[0] == term.id
        assert n.parent is None or n.parent in term.is_a  # one of its own is_a parents
        assert n.axis == "symptom" and n.source == "hpo"


def test_hpo_pleural_effusion(hpo):
    pe = next(n for n in hpo if n.key == "HP:0002202")
    assert pe.name == "Pleural effusion"
    assert "Fluid around lungs" in pe.synonyms
    assert pe.xrefs == ["SCT:60046008", "UMLS:C0032227"]
    assert pe.parent in ("HP:0000969", "HP:0002103")  # one of its two is_a parents


def test_hpo_keeps_the_deepest_parent(hpo):
    # Pleural effusion is_a Edema (HP:0000969, 4 levels under HP:0000118) and
    # Abnormal pleura morphology (HP:0002103, 5 levels): the narrowest branch is the pleura.
    pe = next(n for n in hpo if n.key == "HP:0002202")
    assert pe.parent == "HP:0002103"


def test_hpo_path_option_and_missing_path(tmp_path):
    missing = tmp_path / "hp.obo"
    with pytest.raises(SourceError, match=re.escape(str(missing))):
        list(hpo_nodes(path=str(missing)))


def test_normalize_xref():
    assert normalize_xref("UMLS_CUI:C0032227") == "UMLS:C0032227"
    assert normalize_xref("SNOMEDCT_US:60046008") == "SCT:60046008"
    assert normalize_xref("MSH:D010996") is None
    assert normalize_xref("nocolon") is None


# ---- Symptom Ontology -----------------------------------------------------------------------


def test_symptom_ontology(shared_data):
    nodes = list(symptom_ontology_nodes(path=str(shared_data / "ontology" / "symp.obo")))
    assert_parents_first(nodes)
    assert len(nodes) > 800
    assert all(n.key.startswith("SYMP:") and n.source == "symptom_ontology" for n in nodes)
    assert "SYMP:0000462" not in {n.key for n in nodes}  # the root "symptom" is the axis itself
    assert any(n.key == "SYMP:0000107" for n in nodes)


def test_symptom_ontology_needs_a_path():
    with pytest.raises(SourceError, match="symptom_ontology.path"):
        list(symptom_ontology_nodes())


# ---- Disease Ontology ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def do_nodes(shared_data):
    nodes = list(disease_ontology_nodes(path=str(shared_data / "ontology" / "HumanDO.tsv")))
    return nodes, {n.key: n for n in nodes}


def test_do_nodes_and_icd_xrefs(do_nodes):
    nodes, by_key = do_nodes
    assert 12_000 < len(nodes) < 12_500
    assert_parents_first(nodes)
    assert all(n.key.startswith("DOID:") and n.axis == "disease" for n in nodes)
    dm = by_key["DOID:0014667"]
    assert dm.name == "disease of metabolism"
    assert dm.parent is None  # its parent is the DO root "disease": the axis itself
    assert dm.xrefs == ["ICD10CM:E88.9"]
    with_xrefs = [n for n in nodes if n.xrefs]
    assert len(with_xrefs) > 3_000
    assert all(x.startswith("ICD10CM:") for n in with_xrefs for x in n.xrefs)


def write_do(tmp_path, rows: str, xrefs: str | None = None):
    path = tmp_path / "HumanDO.tsv"
    path.write_text("id\tlabel\tsubClassOf\n" + rows, encoding="utf-8")
    if xrefs is not None:
        (tmp_path / "ICD10inDO.tsv").write_text("id\tlabel\txrefs\n" + xrefs, encoding="utf-8")
    return path


def test_do_small_file(tmp_path):
    path = write_do(
        tmp_path,
        '"DOID:1"\t"alpha disease"\t"disease"\n"DOID:3"\t"gamma"\t"beta disease"\n'
        '"DOID:2"\t"beta disease"\t"alpha disease"\n',
        '"DOID:2"\t"beta disease"\t"ICD10CM:J90|ICD10CM:J91.8"\n',
    )
    nodes = list(disease_ontology_nodes(path=str(path)))
    assert [(n.key, n.parent) for n in nodes] == [
        ("DOID:1", None),
        ("DOID:2", "DOID:1"),
        ("DOID:3", "DOID:2"),
    ]
    assert nodes[1].xrefs == ["ICD10CM:J90", "ICD10CM:J91.8"]


def test_do_malformed_row_names_file_and_line(tmp_path):
    path = write_do(tmp_path, '"DOID:1"\t"alpha disease"\t"disease"\n"DOID:2"\t"beta disease"\n')
    with pytest.raises(SourceError) as info:
        list(disease_ontology_nodes(path=str(path)))
    assert (info.value.path, info.value.line) == (str(path), 3)
    assert str(info.value).startswith(f"{path}:3: ")
    assert "3 tab-separated fields" in str(info.value)


def test_do_bad_id_and_unknown_parent(tmp_path):
    path = write_do(tmp_path, '"DOID:1"\t"alpha"\t"disease"\n\n"XX:2"\t"beta"\t"alpha"\n')
    with pytest.raises(SourceError) as info:
        list(disease_ontology_nodes(path=str(path)))
    assert info.value.line == 4  # the blank line 3 is skipped but counted
    path = write_do(tmp_path, '"DOID:1"\t"alpha"\t"disease"\n"DOID:2"\t"beta"\t"no such label"\n')
    with pytest.raises(SourceError, match="no such label") as info:
        list(disease_ontology_nodes(path=str(path)))
    assert info.value.line == 3


def test_do_bad_header_and_bad_xref(tmp_path):
    path = tmp_path / "HumanDO.tsv"
    path.write_text("doid\tname\tparent\n", encoding="utf-8")
    with pytest.raises(SourceError) as info:
        list(disease_ontology_nodes(path=str(path)))
    assert (info.value.path, info.value.line) == (str(path), 1)
    path = write_do(
        tmp_path,
        '"DOID:1"\t"alpha"\t"disease"\n',
        '"DOID:1"\t"alpha"\t"ICD10CM:J90"\n"DOID:1"\t"alpha"\t"MESH:D1"\n',
    )
    with pytest.raises(SourceError) as info:
        list(disease_ontology_nodes(path=str(path)))
    assert (info.value.path, info.value.line) == (str(tmp_path / "ICD10inDO.tsv"), 3)


def test_do_missing_files(tmp_path):
    missing = tmp_path / "nope" / "HumanDO.tsv"
    with pytest.raises(SourceError, match=re.escape(str(missing))):
        list(disease_ontology_nodes(path=str(missing)))
    path = write_do(tmp_path, '"DOID:1"\t"alpha"\t"disease"\n')
    missing_xrefs = tmp_path / "xrefs.tsv"
    with pytest.raises(SourceError, match=re.escape(str(missing_xrefs))):
        list(disease_ontology_nodes(path=str(path), icd_xrefs_path=str(missing_xrefs)))
    with pytest.raises(SourceError, match="disease_ontology.path"):
        list(disease_ontology_nodes())


# ---- radiology lexicon -----------------------------------------------------------------------


def test_radiology_lexicon():
    nodes = list(radiology_lexicon_nodes())
    assert len(OBSERVATIONS) == 13
    assert len(nodes) == 14
    assert nodes[0].key == GROUP_KEY and nodes[0].parent is None
    assert_parents_first(nodes)
    for obs, node in zip(OBSERVATIONS, nodes[1:]):
        assert node.key == f"MEDRAY:finding/{obs.slug}"
        assert node.parent == GROUP_KEY and node.axis == "symptom"
        assert obs.surfaces and node.synonyms == list(obs.surfaces)
        assert node.codes == [node.key]
        assert node.xrefs == ([obs.xref] if obs.xref else [])
    xrefs = {o.slug: o.xref for o in OBSERVATIONS}
    assert xrefs["pleural_effusion"] == "HP:0002202"
    assert xrefs["pneumothorax"] == "HP:0002107"
    assert xrefs["cardiomegaly"] == "HP:0001640"
    assert xrefs["support_devices"] is None
    assert all(x is None or re.fullmatch(r"HP:\d{7}", x) for x in xrefs.values())
    assert (
        "heart size normal"
        in next(o for o in OBSERVATIONS if o.slug == "cardiomegaly").absent_forms
    )


def test_radiology_lexicon_xrefs_are_live_hpo_terms(hpo_obo):
    for obs in OBSERVATIONS:
        for code in (obs.xref, *obs.also_codes):
            if code:
                assert code in hpo_obo.terms and not hpo_obo.terms[code].obsolete, code
