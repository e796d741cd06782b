"""OBER: report text -> meta-entities `{finding class: {"adjectives", "directions"}}` (MedTrim).

Findings come from the Medical Entity Tree matcher, mapped to CheXpert
classes by node or by surface form, the way report labels are; descriptors
come from `lexicon.py`. Each sentence is cut into clauses at connectives
(";", "but", "with", ", and a ...", ", mild ...") and a descriptor goes to
the nearest finding of its own clause, so in "small left effusion and large
right pneumothorax" each size and side lands on its own finding.

The matcher runs on the clauses (one call per batch), which scopes its
negation and hedge cues to the clause: in "no pneumothorax or effusion, mild
atelectasis" the "no" stops before the atelectasis. A negated finding is not
a finding (the released MedTrim code keeps them); a hedged one is kept unless
`uncertain: drop`. A report with nothing left is `no_finding`.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from medray.errors import ConfigError
from medray.medtrim import lexicon
from medray.met.labels import observation_index
from medray.met.matcher import Matcher
from medray.met.normalize import normalize_term
from medray.met.tree import Tree

NO_FINDING = "no_finding"
UNCERTAIN_MODES = ("keep", "drop")
# Devices say what was done to the patient, not what the patient has: never a finding class.
EXCLUDED_CLASSES = frozenset({"support_devices"})

Entities = dict[str, dict[str, frozenset[str]]]


@dataclass
class OberConfig:
    tree: Optional[str] = None  # noqa: UP045  (tree parquet, local or s3://; None: the radiology lexicon alone, built in memory)
    uncertain: str = "keep"  # keep | drop: hedged findings ("possible effusion")

    def check(self, prefix: str = "ober") -> None:
        if self.uncertain not in UNCERTAIN_MODES:
            raise ConfigError(f"{prefix}.uncertain", f"{self.uncertain!r}: expected one of {', '.join(UNCERTAIN_MODES)}")
        if self.tree is not None:
            from medray import storage

            if not str(self.tree).strip() or not storage.exists(self.tree):
                raise ConfigError(f"{prefix}.tree", f"no tree at {self.tree!r} (a tree parquet, or null for the lexicon)")


@lru_cache(maxsize=2)
def _matcher_for(tree_path: str | None) -> tuple[Matcher, dict[str, str], dict[str, str]]:
    if tree_path is None:
        from medray.met.build import build_tree

        tree, _ = build_tree([("radiology_lexicon", {})])
    else:
        tree = Tree.load(tree_path)
    return (Matcher(tree), *observation_index(tree))


# ---- sentences and clauses ----------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_DEGREE = re.compile(r"\b(?:" + "|".join(sorted(lexicon.DEGREE_ADVERBS)) + r")\b", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


def split_clauses(sentence: str) -> list[str]:
    """Cut before a break word, at ";", and at a comma or "and" that opens a new noun phrase.

    A comma or "and" between two descriptors ("left and right", "patchy, hazy")
    joins modifiers of one finding and does not cut.
    """
    first_words, descriptor_words, _ = lexicon.descriptor_words()
    words = list(_WORD.finditer(sentence))
    lower = [w.group().lower() for w in words]
    cuts = [0]
    for i in range(1, len(words)):
        gap = sentence[words[i - 1].end():words[i].start()]
        if ";" in gap or (lower[i] in lexicon.CLAUSE_BREAKS and lower[i - 1] not in lexicon.CLAUSE_LINKS):
            cuts.append(words[i].start())
            continue
        if not ("," in gap or lower[i] == "and"):
            continue
        j = i + 1 if lower[i] == "and" else i
        if j >= len(words):
            continue
        opener = lower[j]
        if opener in lexicon.CLAUSE_OPENERS or (opener in first_words and lower[i - 1] not in descriptor_words):
            cuts.append(words[i].start())
    cuts.append(len(sentence))
    return [c for c in (sentence[a:b].strip(" ,;\t\n") for a, b in zip(cuts, cuts[1:])) if c]


@dataclass
class _Mention:
    cls: str
    assertion: str
    start: int  # word span in its clause
    end: int
    adjectives: set
    directions: set

    def distance(self, start: int, end: int) -> tuple[int, int]:
        """Words between a descriptor and this mention; ties go to the mention after the descriptor."""
        return (self.start - end, 0) if end <= self.start else (start - self.end, 1)

    def take(self, values: Iterable[tuple[str, str]]) -> None:
        for kind, canonical in values:
            (self.directions if kind == lexicon.DIRECTION else self.adjectives).add(canonical)


class Ober:
    """Built once (a matcher over the tree); `extract_batch` makes one matcher call per batch."""

    def __init__(self, config: OberConfig | None = None, *, tree: Tree | None = None):
        self.config = config or OberConfig()
        self.config.check()
        if tree is not None:
            self.matcher = Matcher(tree)
            self.by_node, self.by_surface = observation_index(tree)
        else:
            self.matcher, self.by_node, self.by_surface = _matcher_for(self.config.tree)
        self.keep = {"present", "uncertain"} if self.config.uncertain == "keep" else {"present"}

    def extract(self, text: str | None) -> Entities | None:
        return self.extract_batch([text])[0]

    def extract_batch(self, texts: Sequence[str | None]) -> list[Entities | None]:
        """Meta-entities per text; None for a text with no words (the caller rejects it)."""
        docs = [[split_clauses(s) for s in split_sentences(t)] if t and _WORD.search(t) else None
                for t in texts]
        flat = [c for doc in docs if doc for sentence in doc for c in sentence]
        hits = self.matcher.match_batch([_DEGREE.sub(lambda m: " " * len(m.group()), c) for c in flat])
        found: dict[int, list[tuple[str, str, int, int]]] = {}
        cols = hits.to_pydict()
        for k, nid, start, end, surface, assertion in zip(
            cols["doc"], cols["node_id"], cols["start"], cols["end"], cols["surface"], cols["assertion"]
        ):
            cls = self.by_node.get(nid) or self.by_surface.get(normalize_term(surface))
            if cls and cls not in EXCLUDED_CLASSES:
                found.setdefault(k, []).append((cls, assertion, start, end))
        out, k = [], 0
        for doc in docs:
            if doc is None:
                out.append(None)
                continue
            mentions = []
            for sentence in doc:
                mentions += self._read_sentence(sentence, [found.get(k + i, []) for i in range(len(sentence))])
                k += len(sentence)
            out.append(self._merge(mentions))
        return out

    def _read_sentence(self, clauses: list[str], hits: list[list]) -> list[_Mention]:
        mentions: list[_Mention] = []
        last: _Mention | None = None  # the finding a descriptor-only clause continues
        for clause, clause_hits in zip(clauses, hits):
            words = list(_WORD.finditer(clause))
            starts = [w.start() for w in words]
            lower = [w.group().lower() for w in words]
            here = [_Mention(cls, a, bisect_left(starts, s), bisect_left(starts, e), set(), set())
                    for cls, a, s, e in clause_hits]
            found = lexicon.find_descriptors(lower)
            closing, target = lexicon.final_cue(lower), max(here, key=lambda m: m.end) if here else last
            if closing and target is not None and target.assertion == "present":
                target.assertion = closing  # "X with a pleural line cannot be excluded": X is hedged
            if not here:
                covered = {i for s, e, _ in found for i in range(s, e)}
                if last is not None and found and all(i in covered or w in lexicon.FILLERS for i, w in enumerate(lower)):
                    for _, _, values in found:
                        last.take(values)
                continue
            for start, end, values in found:
                inside = [m for m in here if start < m.end and m.start < end]
                if not inside:
                    min(here, key=lambda m: m.distance(start, end)).take(values)
                elif lower[start] in lexicon.DEGREE_ADVERBS:  # "heart is mildly enlarged"
                    inside[0].take(values)
                # other words inside a finding's phrase are the finding itself ("enlarged heart")
            mentions += here
            last = max(here, key=lambda m: m.end)
        return mentions

    def _merge(self, mentions: list[_Mention]) -> Entities:
        merged: dict[str, tuple[set, set]] = {}
        for m in mentions:
            if m.assertion in self.keep:
                adjectives, directions = merged.setdefault(m.cls, (set(), set()))
                adjectives |= m.adjectives
                directions |= m.directions
        if not merged:
            return {NO_FINDING: {"adjectives": frozenset(), "directions": frozenset()}}
        return {cls: {"adjectives": frozenset(adj), "directions": lexicon.canonical_side(dirs)}
                for cls, (adj, dirs) in sorted(merged.items())}


# ---- serialisation ------------------------------------------------------------------------------

def entities_to_json(entities: Entities) -> str:
    """Stable JSON: classes and descriptor lists sorted, so equal entities give equal strings."""
    return json.dumps({cls: {"adjectives": sorted(v["adjectives"]), "directions": sorted(v["directions"])}
                       for cls, v in sorted(entities.items())}, separators=(",", ":"))


def entities_from_json(text: str) -> Entities:
    return {cls: {"adjectives": frozenset(v["adjectives"]), "directions": frozenset(v["directions"])}
            for cls, v in json.loads(text).items()}


# ---- the batch stage ----------------------------------------------------------------------------

REPORT_COLUMNS = ("report", "findings")
IMPRESSION_COLUMNS = ("impression", "impressions")


def report_texts(batch, column: str | None = None) -> list[str | None]:
    """The report of each row: `column`, else `report`, else `findings` followed by the impression."""
    names = batch.column_names
    if column is not None:
        if column not in names:
            raise ConfigError("text_column", f"no column {column!r} in the batch (columns: {', '.join(names)})")
        return batch.column(column).to_pylist()
    if "report" in names:
        return batch.column("report").to_pylist()
    if "findings" not in names:
        raise ConfigError("text_column", f"the batch has no {' or '.join(REPORT_COLUMNS)} column "
                                         f"(columns: {', '.join(names)})")
    parts = [batch.column("findings").to_pylist()]
    parts += [batch.column(c).to_pylist() for c in IMPRESSION_COLUMNS if c in names]
    return ["\n\n".join(p for p in row if p and p.strip()) or None for row in zip(*parts)]


class OberStage:
    """Ray Data stage (`map_batches(OberStage, fn_constructor_args=(config,), batch_format="pyarrow",
    compute=ActorPoolStrategy(...))`): adds `entities` (JSON) and `reject_reason` (null when fine).

    A row with no report text gets `reject_reason = "empty_report"` and null entities, so the
    caller can route it to rejects with its id instead of failing the job.
    """

    name = "ober"

    def __init__(self, config: OberConfig | None = None, text_column: str | None = None):
        self.ober = Ober(config)
        self.text_column = text_column

    def __call__(self, batch):
        import pyarrow as pa

        if isinstance(batch, pa.RecordBatch):
            batch = pa.Table.from_batches([batch])
        entities = self.ober.extract_batch(report_texts(batch, self.text_column))
        columns = {
            "entities": pa.array([None if e is None else entities_to_json(e) for e in entities], pa.string()),
            "reject_reason": pa.array([EMPTY_REPORT if e is None else None for e in entities], pa.string()),
        }
        for name, values in columns.items():
            if name in batch.column_names:
                batch = batch.drop_columns([name])
            batch = batch.append_column(name, values)
        return batch


EMPTY_REPORT = "empty_report"


@lru_cache(maxsize=1)
def _default_stage() -> OberStage:
    return OberStage()


def ober_stage(batch):
    """`OberStage` with the default config, as a plain function (one OBER per process)."""
    return _default_stage()(batch)
