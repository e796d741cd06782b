"""A small, strict reader for OBO 1.2 files (HPO, Symptom Ontology).

Only what the tree needs is kept (ids, names, synonyms, definitions, `is_a`,
xrefs, obsolescence), but every line is checked: a malformed file fails with
an error that names the file and the line, instead of silently yielding a
partial ontology.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medray.errors import SourceError

_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"\s+(EXACT|BROAD|NARROW|RELATED)\b(.*)$')
_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"(.*)$')
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:[A-Za-z0-9_.\-]+$")


@dataclass
class OboTerm:
    """One `[Term]` stanza; `line` is where it starts, for error messages."""

    id: str
    line: int
    name: str = ""
    definition: str = ""
    synonyms: list[tuple[str, str]] = field(default_factory=list)  # (text, scope)
    is_a: list[str] = field(default_factory=list)
    xrefs: list[str] = field(default_factory=list)
    alt_ids: list[str] = field(default_factory=list)
    obsolete: bool = False


@dataclass
class OboOntology:
    path: str
    header: dict[str, list[str]]
    terms: dict[str, OboTerm]

    @property
    def version(self) -> str:
        return (self.header.get("data-version") or [""])[0]

    def children_map(self) -> dict[str, list[str]]:
        """Parent id -> child ids, in file order, over non-obsolete terms."""
        out: dict[str, list[str]] = {}
        for term in self.terms.values():
            if term.obsolete:
                continue
            for parent in term.is_a:
                out.setdefault(parent, []).append(term.id)
        return out

    def descendants(self, root: str) -> list[str]:
        """Every term under `root` (inclusive), breadth first, each once."""
        kids = self.children_map()
        seen, order, queue = {root}, [root], [root]
        while queue:
            nxt = []
            for node in queue:
                for child in kids.get(node, ()):
                    if child not in seen:
                        seen.add(child)
                        order.append(child)
                        nxt.append(child)
            queue = nxt
        return order


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _strip_comment(value: str) -> str:
    # " ! " starts a trailing comment unless it is inside quotes.
    if '"' not in value:
        idx = value.find(" !")
        return value[:idx].rstrip() if idx >= 0 else value.strip()
    in_quote, escaped = False, False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch == "!" and not in_quote and (i == 0 or value[i - 1] == " "):
            return value[:i].rstrip()
    return value.strip()


def _parse_lines(lines: Iterator[str], path: str) -> OboOntology:
    header: dict[str, list[str]] = {}
    terms: dict[str, OboTerm] = {}
    stanza: str | None = None
    current: OboTerm | None = None
    stanza_line = 0

    def close() -> None:
        nonlocal current
        if stanza == "Term":
            if current is None:
                raise SourceError(path, stanza_line, "[Term] stanza has no 'id:' line")
            if current.id in terms:
                raise SourceError(path, stanza_line, f"duplicate term id {current.id}")
            terms[current.id] = current
        current = None

    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n").rstrip("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("!"):
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                raise SourceError(path, lineno, f"malformed stanza header {stripped!r}")
            close()
            stanza, stanza_line = stripped[1:-1], lineno
            continue
        tag, sep, value = stripped.partition(":")
        if not sep or not tag or " " in tag:
            raise SourceError(path, lineno, f"expected 'tag: value', got {stripped[:60]!r}")
        value = value.strip()
        if stanza is None:
            header.setdefault(tag, []).append(value)
            continue
        if stanza != "Term":
            continue
        if tag == "id":
            if current is not None:
                raise SourceError(path, lineno, "second 'id:' in one stanza")
            if not _ID.match(value):
                raise SourceError(path, lineno, f"malformed term id {value!r}")
            current = OboTerm(id=value, line=stanza_line)
            continue
        if current is None:
            raise SourceError(path, lineno, f"'{tag}:' before the stanza's 'id:'")
        _apply_tag(current, tag, value, path, lineno)
    close()
    if not terms:
        raise SourceError(path, 0, "no [Term] stanzas: not an OBO ontology")
    return OboOntology(path=path, header=header, terms=terms)


def _apply_tag(term: OboTerm, tag: str, value: str, path: str, lineno: int) -> None:
    if tag == "name":
        term.name = _strip_comment(value)
    elif tag == "def":
        m = _QUOTED.match(value)
        if not m:
            raise SourceError(path, lineno, "def: value must start with a quoted string")
        term.definition = _unescape(m.group(1))
    elif tag == "synonym":
        m = _SYNONYM.match(value)
        if not m:
            raise SourceError(path, lineno, f"malformed synonym {value[:60]!r}")
        term.synonyms.append((_unescape(m.group(1)), m.group(2)))
    elif tag == "is_a":
        parent = _strip_comment(value).split()[0] if value.strip() else ""
        if not _ID.match(parent):
            raise SourceError(path, lineno, f"malformed is_a target {value[:60]!r}")
        term.is_a.append(parent)
    elif tag == "xref":
        term.xrefs.append(_strip_comment(value).split(" ")[0])
    elif tag == "alt_id":
        term.alt_ids.append(_strip_comment(value))
    elif tag == "is_obsolete":
        term.obsolete = _strip_comment(value).lower() == "true"


def read_obo(path: str | Path) -> OboOntology:
    """Parse an OBO file; raises SourceError naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise SourceError(str(p), 0, "file not found")
    try:
        with p.open(encoding="utf-8") as fh:
            return _parse_lines(fh, str(p))
    except UnicodeDecodeError as exc:
        raise SourceError(str(p), 0, f"not UTF-8 text ({exc.reason})") from exc
