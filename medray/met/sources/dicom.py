"""Anatomy and modality nodes from the DICOM context groups that pydicom ships.

Anatomy comes from CID 4 (Anatomic Region) and CID 4031 (Common Anatomic Region),
modality from CID 29 (Acquisition Modality) and CID 33 (Modality). Each coded concept
becomes one node keyed by scheme and code (`SCT:39607008`, `DCM:CT`), however many of
the CIDs list it. pydicom often knows one code under several keywords and meanings
(SCT 816094009 is `Chest` in CID 4031 and `Thorax` in CID 4; SCT 64033007 is
`Endo-renal` in CID 4 and `Kidney` elsewhere): the name is the CID 4031 meaning, else
the CID meaning, else (for transducer-approach meanings like `Endo-renal`) the plain
meaning, and the other meanings become synonyms where they are plain nouns.

Above the concepts the project writes the groups (`MEDRAY:anatomy/<slug>`,
`MEDRAY:modality/<slug>`) and the part-of nesting between concepts; the tables and the
chest-radiology structures the CIDs lack live in `dicom_anatomy_groups.py` and
`dicom_modality_groups.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from medray.errors import MedrayError
from medray.met.normalize import normalize_term
from medray.met.sources import dicom_anatomy_groups as A
from medray.met.sources import dicom_modality_groups as M
from medray.met.sources.base import SourceNode, register_source

ANATOMY_CIDS = (4031, 4)  # name preference order: CID 4031 has the plain organ names
MODALITY_CIDS = (29, 33)
SOURCE = "dicom"
GROUP_SOURCE = "medray"

# Naming tables of both axes, applied to every concept whatever its axis (keys do not overlap).
_EXTRA_SYNONYMS = {**A.EXTRA_SYNONYMS, **M.EXTRA_SYNONYMS}
_KEYWORD_SYNONYM_SKIP = A.KEYWORD_SYNONYM_SKIP | M.KEYWORD_SYNONYM_SKIP

_APPROACH = re.compile(r"^(endo|intra)[- ]?", re.I)  # Endo-renal, Intra-pelvic: how, not what
_ADJECTIVE = re.compile(r"(al|ic|ar|ary|ous|eal)$")  # last word of a `... structure` form
_ADJECTIVE_WORD = re.compile(r"(al|ic|ac|ar|ary|ous|eal|ian|ine|ile)$")  # a one-word synonym
_SHORT_CAPS = re.compile(r"^[A-Z]{2,3}$")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z0-9])|(?<=[A-Z0-9])(?=[A-Z][a-z])")


@dataclass
class _Concept:
    key: str
    axis: str
    code: str  # the code value: 39607008, CT
    name: str
    keywords: list[str]  # every pydicom keyword of the code, those of the CIDs first
    synonyms: list[str] = field(default_factory=list)
    xrefs: list[str] = field(default_factory=list)
    group: str = ""
    parent: str | None = None  # key of a concept; None = directly under the group
    source: str = SOURCE


# ---- reading pydicom ---------------------------------------------------------------
def _pydicom_tables() -> tuple[dict, dict]:
    """(CID -> {scheme: [keyword]}, scheme -> {keyword: {code: (meaning, [cid])}})."""
    try:
        import pydicom
        from pydicom.sr import codedict
    except ImportError as exc:
        raise MedrayError(f"the dicom source needs pydicom>=3 (pip install 'pydicom>=3'): {exc}") from exc
    cids = getattr(codedict, "CID_CONCEPTS", None)
    concepts = getattr(codedict, "CONCEPTS", None)
    if not isinstance(cids, dict) or not isinstance(concepts, dict):
        raise MedrayError(
            f"pydicom {pydicom.__version__} has no CID tables in pydicom.sr.codedict "
            "(CID_CONCEPTS, CONCEPTS): the dicom source needs pydicom>=3"
        )
    missing = [str(c) for c in (*ANATOMY_CIDS, *MODALITY_CIDS) if not cids.get(c)]
    if missing:
        raise MedrayError(
            f"pydicom {pydicom.__version__} lacks DICOM CID {', '.join(missing)}: "
            "the dicom source needs pydicom>=3"
        )
    return cids, concepts


def _cid_members(cids: dict, concepts: dict, cid: int) -> Iterator[tuple[str, str, str, str]]:
    """(scheme, code, keyword, meaning) of every concept CID `cid` lists."""
    for scheme, keywords in cids[cid].items():
        for kw in keywords:
            entries = concepts.get(scheme, {}).get(kw)
            if not entries:
                raise MedrayError(f"pydicom CID {cid} lists {scheme} keyword {kw!r} that its concept table lacks")
            # One keyword can carry several codes; CID membership picks (as pydicom does).
            picked = [(c, v) for c, v in entries.items() if cid in v[1]] or list(entries.items())
            for code, (meaning, _cids) in picked:
                yield scheme, code, kw, meaning


def _other_meanings(concepts: dict, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(scheme, code) -> every (keyword, meaning) pydicom has for it, in any CID or none."""
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for scheme in {s for s, _ in wanted}:
        for kw, entries in concepts.get(scheme, {}).items():
            for code, (meaning, _cids) in entries.items():
                if (scheme, code) in wanted:
                    out.setdefault((scheme, code), []).append((kw, meaning))
    return out


# ---- names and synonyms ---------------------------------------------------------------
def _clean(meaning: str) -> str | None:
    """A pydicom meaning as a plain term: `Structure of iliac artery (body structure)`
    -> `Iliac artery`; None for qualified senses (`(disorder)`, `, device`), for
    `... structure` forms that are bare adjectives (`Ovarian structure`)."""
    had_structure = "structure" in meaning.lower()
    term = re.sub(r"\s*\(body structure\)$", "", meaning.strip())
    if re.search(r"[(),/]", term):
        return None
    term = re.sub(r"^(bone )?structure of ", "", term, flags=re.I)
    term = re.sub(r" structure of ", " of ", term, flags=re.I)
    term = re.sub(r" structure$", "", term, flags=re.I).strip()
    if not term or (had_structure and _ADJECTIVE.search(term.split()[-1].lower())):
        return None
    return term[:1].upper() + term[1:]


def _keyword_words(keyword: str) -> str:
    """`HypochondriacRegion` -> `Hypochondriac region` (acronyms kept: `RT Image`)."""
    words = _CAMEL.sub(" ", keyword.lstrip("_")).split()
    words = [w if w.isupper() else w.lower() for w in words]
    return " ".join(words)[:1].upper() + " ".join(words)[1:]


def _derived_synonym_ok(term: str) -> bool:
    """Synonyms read off pydicom (not curated): no approach forms, no bare adjectives,
    no 2-3 letter capitals, nothing generic."""
    norm = normalize_term(term)
    if not norm or _APPROACH.match(norm) or _SHORT_CAPS.match(term) or norm in M.SYNONYM_STOPLIST:
        return False
    return not (" " not in norm and _ADJECTIVE_WORD.search(norm))


def _choose_name(cid_meanings: list[str], others: list[str]) -> str:
    first = cid_meanings[0]
    if not _APPROACH.match(first):
        return first
    plain = sorted(others, key=lambda m: "structure" in m.lower())  # plain meanings first
    for m in plain:
        term = _clean(m)
        if term and not _APPROACH.match(term) and not _ADJECTIVE.search(term.split()[-1].lower()):
            return term
    return first


def _collect(cids: dict, concepts: dict, axis: str, cid_list: tuple[int, ...]) -> list[_Concept]:
    members: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (scheme, code) -> [(kw, meaning)]
    for cid in cid_list:
        for scheme, code, kw, meaning in _cid_members(cids, concepts, cid):
            pairs = members.setdefault((scheme, code), [])
            if (kw, meaning) not in pairs:
                pairs.append((kw, meaning))
    others = _other_meanings(concepts, set(members))
    out = []
    for (scheme, code), pairs in members.items():
        key = f"{scheme}:{code}"
        extra = [(k, m) for k, m in others.get((scheme, code), []) if (k, m) not in pairs]
        name = M.PREFERRED_NAMES.get(key) or _choose_name([m for _, m in pairs], [m for _, m in extra])
        if key in M.PREFERRED_NAMES and name not in [m for _, m in pairs + extra]:
            raise MedrayError(f"dicom_modality_groups.PREFERRED_NAMES[{key!r}] is not a pydicom meaning of {key}")
        derived = [m for _, m in pairs] + [t for _, m in extra if (t := _clean(m))]
        derived += [_clean(_keyword_words(k)) for k, _ in pairs if k not in _KEYWORD_SYNONYM_SKIP]
        synonyms = [t for t in derived if t and _derived_synonym_ok(t)]
        if scheme == "DCM" and code in M.SAFE_ABBREVIATIONS:
            synonyms.append(code)
        keywords = [k for k, _ in pairs] + [k for k, _ in extra]
        for kw in keywords:
            synonyms += _EXTRA_SYNONYMS.get(kw, [])
        out.append(_Concept(key, axis, code, name, keywords, synonyms))
    return out


# ---- placing concepts -------------------------------------------------------------
def _index(concepts: list[_Concept]) -> dict[str, _Concept]:
    return {kw: c for c in concepts for kw in c.keywords}


def _rule_group(name: str, rules: list[tuple[str, str]], fallback: str) -> str:
    low = name.lower()
    return next((slug for slug, pattern in rules if re.search(pattern, low)), fallback)


def _place_anatomy(concepts: list[_Concept]) -> None:
    by_kw = _index(concepts)
    for c in concepts:
        explicit = [A.ANATOMY_EXPLICIT[k] for k in c.keywords if k in A.ANATOMY_EXPLICIT]
        c.group = explicit[0] if explicit else _rule_group(c.name, A.ANATOMY_RULES, A.ANATOMY_OTHER)
        parents = [by_kw[A.ANATOMY_NEST[k]] for k in c.keywords if A.ANATOMY_NEST.get(k) in by_kw]
        c.parent = parents[0].key if parents else None
    for c in concepts:
        if c.parent is not None:
            continue
        for slug, pattern, parent_kw in A.ANATOMY_NEST_RULES:
            parent = by_kw.get(parent_kw)
            if (slug == c.group and parent is not None and parent is not c
                    and parent.group == slug and re.search(pattern, c.name.lower())):
                c.parent = parent.key
                break


def _place_modality(concepts: list[_Concept]) -> None:
    by_code = {c.code: c for c in concepts}
    for c in concepts:
        c.group = M.MODALITY_EXPLICIT.get(c.code) or _rule_group(c.name, M.MODALITY_RULES, M.MODALITY_OTHER)
        parent = by_code.get(M.MODALITY_NEST.get(c.code, ""))
        c.parent = parent.key if parent is not None else None


def _add_chest_structures(anatomy: list[_Concept], concepts: dict) -> list[_Concept]:
    """Merge CHEST_STRUCTURES into same-named CID concepts; make the rest MEDRAY nodes."""
    by_name = {normalize_term(c.name): c for c in anatomy}
    by_kw = _index(anatomy)
    sct = _sct_name_index(concepts)
    made: dict[str, _Concept] = {}
    for slug, name, parent, synonyms in A.CHEST_STRUCTURES:
        same = by_name.get(normalize_term(name))
        if same is not None:
            same.synonyms += synonyms
            continue
        if parent is None:
            parent_key = None
        elif parent in made:
            parent_key = made[parent].key
        elif parent in by_kw:
            parent_key = by_kw[parent].key
        else:
            raise MedrayError(f"dicom_anatomy_groups.CHEST_STRUCTURES {slug!r}: parent {parent!r} names no concept")
        code = sct.get(normalize_term(name))
        made[slug] = _Concept(
            f"MEDRAY:anatomy/{slug}", "anatomy", "", name, [], list(synonyms),
            xrefs=[f"SCT:{code}"] if code else [], group="thorax", parent=parent_key, source=GROUP_SOURCE,
        )
    return list(made.values())


def _sct_name_index(concepts: dict) -> dict[str, str]:
    """Normalised plain SNOMED meaning -> code, for meanings that name one code only."""
    seen: dict[str, set[str]] = {}
    for entries in concepts.get("SCT", {}).values():
        for code, (meaning, _cids) in entries.items():
            term = _clean(meaning)
            if term:
                seen.setdefault(normalize_term(term), set()).add(code)
    return {k: next(iter(v)) for k, v in seen.items() if len(v) == 1}


def _settle_groups(concepts: list[_Concept]) -> None:
    """A nested concept lives in its root's group; a cycle in the tables is an error."""
    by_key = {c.key: c for c in concepts}
    for c in concepts:
        chain, cur = [c.key], c
        while cur.parent is not None:
            cur = by_key[cur.parent]
            if cur.key in chain:
                raise MedrayError(f"dicom group tables' nesting has a cycle: {' -> '.join([*chain, cur.key])}")
            chain.append(cur.key)
        c.group = cur.group


def _dedupe_synonyms(concepts: list[_Concept]) -> None:
    """Keep a synonym only where it names one concept and no concept's or group's name."""
    names = {normalize_term(c.name) for c in concepts}
    names |= {normalize_term(n) for _, n in (*A.ANATOMY_GROUPS, *M.MODALITY_GROUPS)}
    owners: dict[str, set[str]] = {}
    for c in concepts:
        for s in c.synonyms:
            owners.setdefault(normalize_term(s), set()).add(c.key)
    for c in concepts:
        own, kept, seen = normalize_term(c.name), [], set()
        for s in c.synonyms:
            n = normalize_term(s)
            if n and n != own and n not in seen and n not in names and len(owners[n]) == 1:
                kept.append(s)
                seen.add(n)
        c.synonyms = kept


# ---- emitting -------------------------------------------------------------------------
def _emit(axis: str, groups: list[tuple[str, str]], concepts: list[_Concept]) -> Iterator[SourceNode]:
    children: dict[str | None, list[_Concept]] = {}
    for c in concepts:
        children.setdefault(c.parent, []).append(c)
    for kids in children.values():
        kids.sort(key=lambda c: c.name.casefold())

    def walk(c: _Concept, parent_key: str) -> Iterator[SourceNode]:
        yield SourceNode(
            key=c.key, parent=parent_key, axis=axis, name=c.name, synonyms=list(c.synonyms),
            codes=[] if c.source == GROUP_SOURCE else [c.key], xrefs=list(c.xrefs), source=c.source,
        )
        for kid in children.get(c.key, ()):
            yield from walk(kid, c.key)

    for slug, name in groups:
        tops = [c for c in children.get(None, ()) if c.group == slug]
        if not tops:
            continue
        group_key = f"MEDRAY:{axis}/{slug}"
        yield SourceNode(key=group_key, parent=None, axis=axis, name=name, source=GROUP_SOURCE)
        for c in tops:
            yield from walk(c, group_key)


@register_source("dicom")
def dicom_nodes(**options) -> Iterator[SourceNode]:
    """Anatomy and modality nodes from pydicom's CIDs 4, 4031, 29 and 33 (options unused)."""
    cids, concepts = _pydicom_tables()
    anatomy = _collect(cids, concepts, "anatomy", ANATOMY_CIDS)
    modality = _collect(cids, concepts, "modality", MODALITY_CIDS)
    _place_anatomy(anatomy)
    _place_modality(modality)
    anatomy += _add_chest_structures(anatomy, concepts)
    for axis_concepts in (anatomy, modality):
        _settle_groups(axis_concepts)
    _dedupe_synonyms(anatomy + modality)
    for axis_concepts, groups in ((anatomy, A.ANATOMY_GROUPS), (modality, M.MODALITY_GROUPS)):
        bad = sorted({c.group for c in axis_concepts} - {slug for slug, _ in groups})
        if bad:
            raise MedrayError(f"dicom group tables place concepts in undeclared groups: {', '.join(bad)}")
    yield from _emit("anatomy", A.ANATOMY_GROUPS, anatomy)
    yield from _emit("modality", M.MODALITY_GROUPS, modality)
