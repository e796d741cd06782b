"""The strict OBO reader: what it keeps from a valid file, and where it says a bad one is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medray.errors import SourceError
from medray.met.obo import read_obo
from medray.met.sources.ontology_files import packaged_hpo_obo

VALID = r"""format-version: 1.2
data-version: tiny/releases/2025-01-16
ontology: tiny
! a comment line

[Term]
id: HP:0000001
name: All

[Term]
id: HP:0000969
name: Edema ! a trailing comment
synonym: "Oedema" EXACT []
is_a: HP:0000001 ! All

[Term]
id: HP:0002202
name: Pleural effusion
alt_id: HP:0009999
def: "The presence of \"excess\" fluid in the pleural cavity." [HPO:probinson]
synonym: "Fluid around lungs" EXACT layperson [ORCID:0000-0001-5208-3432]
synonym: "Water on the \"lung\"" RELATED []
synonym: "Hydrothorax" NARROW []
synonym: "Chest disorder" BROAD []
xref: SNOMEDCT_US:60046008
xref: UMLS:C0032227 "a note"
is_a: HP:0000969 ! Edema
is_a: HP:0000001 {source="x"} ! All

[Term]
id: HP:0000002
name: Old term
is_obsolete: true

[Typedef]
id: part_of
name: part of
"""


def write(tmp_path: Path, text: str, name: str = "test.obo") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def onto(tmp_path):
    return read_obo(write(tmp_path, VALID))


def test_header_and_version(onto):
    assert onto.version == "tiny/releases/2025-01-16"
    assert onto.header["format-version"] == ["1.2"]
    assert onto.header["ontology"] == ["tiny"]


def test_terms_ids_names_and_typedefs_ignored(onto):
    assert list(onto.terms) == ["HP:0000001", "HP:0000969", "HP:0002202", "HP:0000002"]
    assert onto.terms["HP:0000001"].name == "All"
    assert onto.terms["HP:0000969"].name == "Edema"  # ' ! a trailing comment' stripped
    assert "part_of" not in onto.terms


def test_synonyms_keep_their_scope_and_unescape_quotes(onto):
    term = onto.terms["HP:0002202"]
    assert term.synonyms == [
        ("Fluid around lungs", "EXACT"),
        ('Water on the "lung"', "RELATED"),
        ("Hydrothorax", "NARROW"),
        ("Chest disorder", "BROAD"),
    ]
    assert term.definition == 'The presence of "excess" fluid in the pleural cavity.'


def test_is_a_xrefs_alt_ids_and_comments(onto):
    term = onto.terms["HP:0002202"]
    assert term.is_a == ["HP:0000969", "HP:0000001"]
    assert term.xrefs == ["SNOMEDCT_US:60046008", "UMLS:C0032227"]
    assert term.alt_ids == ["HP:0009999"]
    assert onto.terms["HP:0000969"].is_a == ["HP:0000001"]
    assert onto.terms["HP:0000969"].synonyms == [("Oedema", "EXACT")]


def test_stanza_lines_are_recorded(onto):
    assert onto.terms["HP:0000001"].line == 6
    assert onto.terms["HP:0000969"].line == 10


def test_obsolete_and_tree_helpers(onto):
    assert onto.terms["HP:0000002"].obsolete is True
    assert onto.terms["HP:0002202"].obsolete is False
    kids = onto.children_map()
    assert kids["HP:0000001"] == ["HP:0000969", "HP:0002202"]
    assert kids["HP:0000969"] == ["HP:0002202"]
    assert onto.descendants("HP:0000001") == ["HP:0000001", "HP:0000969", "HP:0002202"]


def test_crlf_line_endings(tmp_path):
    onto = read_obo(write(tmp_path, VALID.replace("\n", "\r\n")))
    assert onto.terms["HP:0002202"].synonyms[0] == ("Fluid around lungs", "EXACT")
    assert onto.version == "tiny/releases/2025-01-16"


# ---- malformed files: each error names the file and the line ---------------------------

HEAD = "format-version: 1.2\n\n"  # lines 1-2; the first stanza starts on line 3


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        # a line without ':'
        ("[Term]\nid: HP:1\nname: x\nthis line has no colon\n", 6, "tag: value"),
        # an unterminated synonym
        ('[Term]\nid: HP:1\nsynonym: "Fluid around lungs EXACT []\n', 5, "malformed synonym"),
        # a synonym without a scope
        ('[Term]\nid: HP:1\nname: x\nsynonym: "Fluid" []\n', 6, "malformed synonym"),
        # a synonym that is not quoted
        ("[Term]\nid: HP:1\nsynonym: Fluid EXACT []\n", 5, "malformed synonym"),
        # a stanza with no lines at all (reported at its header)
        ("[Term]\nid: HP:1\n\n[Term]\n\n[Term]\nid: HP:2\n", 6, "no 'id:'"),
        # a stanza whose first tag is not id
        (
            "[Term]\nid: HP:1\n\n[Term]\nname: no id here\nis_a: HP:1\n",
            7,
            "before the stanza's 'id:'",
        ),
        # a duplicate id (reported at the second stanza)
        (
            "[Term]\nid: HP:1\nname: a\n\n[Term]\nid: HP:2\n\n[Term]\nid: HP:1\nname: b\n",
            10,
            "duplicate term id HP:1",
        ),
        # a malformed is_a
        ("[Term]\nid: HP:1\n\n[Term]\nid: HP:2\nname: y\nis_a: not an id\n", 9, "malformed is_a"),
        ("[Term]\nid: HP:2\nis_a: ! only a comment\n", 5, "malformed is_a"),
        # a malformed id, a second id, a bad stanza header
        ("[Term]\nid: HP 0001\n", 4, "malformed term id"),
        ("[Term]\nid: HP:1\nid: HP:2\n", 5, "second 'id:'"),
        ("[Term]\nid: HP:1\n[Term\nid: HP:2\n", 5, "malformed stanza header"),
        # a def that is not quoted
        ("[Term]\nid: HP:1\ndef: unquoted [x]\n", 5, "quoted string"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, body, line, fragment):
    path = write(tmp_path, HEAD + body, name="bad.obo")
    with pytest.raises(SourceError) as info:
        read_obo(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert str(err).startswith(f"{path}:{line}: ")
    assert fragment in str(err)


def test_missing_file(tmp_path):
    missing = tmp_path / "nowhere" / "hp.obo"
    with pytest.raises(SourceError, match=re.escape(str(missing))) as info:
        read_obo(missing)
    assert info.value.line == 0
    assert "not found" in str(info.value)


def test_file_without_terms(tmp_path):
    path = write(tmp_path, "format-version: 1.2\n")
    with pytest.raises(SourceError, match="no \\[Term\\] stanzas") as info:
        read_obo(path)
    assert info.value.path == str(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.obo"
    path.write_bytes("[Term]\nid: HP:1\nname: Ödem\n".encode("latin-1"))
    with pytest.raises(SourceError, match="not UTF-8") as info:
        read_obo(path)
    assert info.value.path == str(path)


# ---- the real hp.obo ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hpo():
    return read_obo(packaged_hpo_obo())


def test_packaged_hp_obo(hpo):
    assert len(hpo.terms) > 19_000
    assert hpo.version == "hp/releases/2025-01-16"
    term = hpo.terms["HP:0002202"]
    assert term.name == "Pleural effusion"
    assert ("Fluid around lungs", "EXACT") in term.synonyms
    assert "HP:0000969" in term.is_a  # Edema
    assert "SNOMEDCT_US:60046008" in term.xrefs
    assert hpo.terms["HP:0000118"].name == "Phenotypic abnormality"
    assert sum(t.obsolete for t in hpo.terms.values()) > 0
    assert all(t.obsolete or t.name for t in hpo.terms.values())


def test_packaged_hp_obo_equals_the_shared_copy(hpo, shared_data):
    shared = read_obo(shared_data / "ontology" / "hp.obo")
    assert shared.version == hpo.version
    assert list(shared.terms) == list(hpo.terms)
