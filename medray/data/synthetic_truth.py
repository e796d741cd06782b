"""The ground truth of a generated corpus: what each planted record is, and the file that states it.

Why apart: chunks (`synthetic_chunk`) record what they plant in a `Truth`,
the corpus merges them in order, and `build_ground_truth` turns the result
into `ground_truth.json`, with the rules, thresholds and definitions the
tests and `make demo` check the pipeline against.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from medray import storage
from medray.data.synthetic_defects import ASSUMED_THRESHOLDS, DEFINITIONS, MALFORMED
from medray.data.synthetic_text_defects import BOILERPLATE_MARKERS, PII_FORMATS

GROUND_TRUTH = "ground_truth.json"
RULES = {
    "exact_duplicate": "records whose exact_key is equal form a group; the first in (file name order, line order) is kept, "
                       "the others are exact_duplicate. Copies always come after their original.",
    "near_duplicate": "each planted cluster is an original plus 1-3 edited copies (a few words changed, inserted or "
                      "deleted); the original comes first in (file name order, line order) and is the one expected kept.",
    "blank_lines": "empty or whitespace-only lines are not records: skipped without a reject, still counted as lines, "
                   "so later ids keep their physical line numbers.",
    "pii": "pii documents are clean documents with identifiers inserted; they are expected kept (scrubbed), with the "
           "exact number of identifiers of each kind listed per document.",
    "expected": "every record expected not to reach the output, with its reason; every other record is expected kept.",
    "junk": "each junk document breaks exactly one rule of `thresholds` by a wide margin (its measures are listed).",
}


def load_ground_truth(out_dir: str) -> dict:
    """The ground truth written beside a generated corpus."""
    return json.loads(storage.read_text(storage.join(str(out_dir), GROUND_TRUTH)))


@dataclass
class Truth:
    """The ground truth of a chunk, or of the corpus once chunks are merged in order."""

    record_doc_nodes: bool
    expected: dict[str, str] = field(default_factory=dict)
    exact: list[dict] = field(default_factory=list)
    near: list[dict] = field(default_factory=list)
    junk: list[dict] = field(default_factory=list)
    low_quality: list[dict] = field(default_factory=list)
    pii_docs: dict[str, dict[str, int]] = field(default_factory=dict)
    malformed: list[dict] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    doc_nodes: dict[str, list[str]] = field(default_factory=dict)
    node_counts: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    clean_stats: list[dict] = field(default_factory=list)
    kept: int = 0

    def keep(self, rid: str, kind: str, nodes: list[str]) -> None:
        self.kept += 1
        self.kinds[kind] += 1
        self.node_counts.update(nodes)
        if self.record_doc_nodes:
            self.doc_nodes[rid] = nodes

    def merge(self, other: Truth) -> None:
        for name in ("exact", "near", "junk", "low_quality", "malformed", "blank", "clean_stats"):
            getattr(self, name).extend(getattr(other, name))
        for name in ("expected", "pii_docs", "doc_nodes"):
            getattr(self, name).update(getattr(other, name))
        self.node_counts.update(other.node_counts)
        self.kinds.update(other.kinds)
        self.kept += other.kept


def build_ground_truth(truth: Truth, table: list[dict], **params) -> dict:
    """The content of ground_truth.json: `table` describes the files, `params` are the generation's arguments."""
    by_reason = Counter(truth.expected.values())
    pii_totals: Counter = Counter()
    for counts in truth.pii_docs.values():
        pii_totals.update(counts)
    node_counts = dict(sorted(truth.node_counts.items(), key=lambda kv: (-kv[1], kv[0])))
    values = sorted(node_counts.values())
    clean = truth.clean_stats
    return {
        "version": 1,
        "params": params,
        "id_format": "<file name relative to the corpus directory>:<1-based line number>",
        "files": table,
        "rules": RULES,
        "thresholds": ASSUMED_THRESHOLDS,
        "definitions": DEFINITIONS,
        "boilerplate_markers": list(BOILERPLATE_MARKERS),
        "counts": {
            "lines": sum(f["lines"] for f in table), "records": sum(f["records"] for f in table),
            "blank_lines": len(truth.blank), "expected_kept": truth.kept, "pii_docs": len(truth.pii_docs),
            "rejected": sum(by_reason[r] for r in MALFORMED),
            "by_reason": dict(sorted(by_reason.items())),
            "kept_by_kind": dict(sorted(truth.kinds.items())),
        },
        "expected": truth.expected,
        "exact_duplicates": truth.exact,
        "near_duplicates": truth.near,
        "junk": truth.junk,
        "low_quality": truth.low_quality,
        "malformed": truth.malformed,
        "blank_lines": truth.blank,
        "pii": {"formats": PII_FORMATS, "totals": {k: pii_totals.get(k, 0) for k in ("email", "phone", "mrn", "dob")},
                "docs": truth.pii_docs},
        "clean_stats": {"sampled_docs": len(clean), **({
            "min_words": min(s["words"] for s in clean), "max_words": max(s["words"] for s in clean),
            **{f"max_{k}": max(s[k] for s in clean)
               for k in ("symbol_ratio", "digit_ratio", "duplicate_line_fraction", "boilerplate_line_fraction")},
        } if clean else {})},
        "nodes": {
            "skew": params["skew"],
            "kept_docs": truth.kept,
            "distinct": len(node_counts),
            "top_share": round(values[-1] / max(truth.kept, 1), 4) if values else 0.0,
            "median_share": round(values[len(values) // 2] / max(truth.kept, 1), 4) if values else 0.0,
            "doc_counts": node_counts,
            **({"docs": truth.doc_nodes} if truth.record_doc_nodes else {}),
        },
    }
