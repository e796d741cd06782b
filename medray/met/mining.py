"""Candidate mining for growing the tree: entity-looking phrases out of text, and their counts.

Split out of `medray.met.grow` (which attaches the counted candidates) so the
rule set and the Ray Data counting can be read, tested and reused on their own:
`mine_candidates` pulls phrases from texts with the word lists in `RULES`, and
`count_candidates_ray` sums them over a corpus without bringing it to the driver.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from medray.errors import MedrayError
from medray.met.normalize import normalize_term

__all__ = ["RULES", "MiningRules", "count_candidates_ray", "fragment_shares", "is_generic_phrase", "mine_candidates"]

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
        "unlike including e g i see word term".split()
    )
    leading_drop: frozenset[str] = frozenset(
        "severe mild moderate marked significant possible probable suspected known new "
        "unspecified various multiple several certain rare common typical classic classical "
        "isolated recurrent persistent frequent occasional early late current specified".split()
    )
    # modifiers too vague to make a generic head a concept: "structural anomaly", "developmental defect"
    vague_modifiers: frozenset[str] = frozenset(
        "structural functional developmental congenital acquired morphological morphologic "
        "physiological physiologic anatomical anatomic clinical general specific nonspecific "
        "increased decreased reduced elevated abnormal certain underlying additional primary "
        "secondary various".split()
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


def is_generic_phrase(term: str, rules: MiningRules = RULES) -> bool:
    """True for a generic head behind only vague modifiers ("structural anomaly", "developmental
    defect"): too unspecific to be a node. A specific head keeps it ("developmental hypoplasia")."""
    words = normalize_term(term).split()
    if len(words) < 2:
        return False
    _, kind = _singular_head(words[-1], rules)
    return kind == "generic" and all(w in rules.vague_modifiers for w in words[:-1])


def fragment_shares(counts: dict[str, int], terms: Iterable[str]) -> dict[str, float]:
    """For each multi-word term, the share of its occurrences that are the tail of a longer candidate.

    A term's occurrences are its own count plus the counts of the candidates
    it ends ("use disorder" in "alcohol use disorder"); 0.79 for "use disorder"
    on the HPO + ICD-10-CM corpus, where it is mostly a cut-off fragment.
    Single words are left out: suffix heads are counted inside longer phrases on purpose.
    """
    wanted = {t for t in terms if " " in t}
    nested = dict.fromkeys(wanted, 0)
    if wanted:
        for term, count in counts.items():
            words = term.split()
            for i in range(1, len(words) - 1):
                tail = " ".join(words[i:])
                if tail in nested:
                    nested[tail] += int(count)
    return {t: n / (n + int(counts.get(t, 0))) if n else 0.0 for t, n in nested.items()}


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
