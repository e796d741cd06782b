"""Where an image-report pair sits in the tree: its modality, anatomy and findings, as node paths.

Synthesis must say only what the pair's ground truth supports, so every item
is built from this grounding, never from free text alone. Findings come from
the pair's labels when it has them (phantoms: true by construction), else
from its anchors (`node_ids`); a matcher over the report adds the findings it
states as absent, which are the only safe "no" answers. Modality and anatomy
come from the anchors on those axes, else from configured defaults (a chest
radiograph corpus rarely says "chest radiograph" in every report).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from medray.errors import MedrayError
from medray.met.matcher import Matcher
from medray.met.normalize import normalize_term
from medray.met.tree import Tree

FINDING_AXES = ("symptom", "disease")
LABEL_CODE = "MEDRAY:finding/{}"  # the radiology lexicon's code of a phantom finding class


@dataclass
class PairGrounding:
    """The nodes a pair's items may use, split by what the ground truth says about them."""

    pair_id: str
    image_path: str
    findings_text: str
    present: list[str] = field(default_factory=list)  # findings the image has, certain
    uncertain: list[str] = field(default_factory=list)  # findings the report hedges on: never an answer, never a distractor
    absent: list[str] = field(default_factory=list)  # findings the report states are absent
    modality: str | None = None
    anatomy: str | None = None
    attributes: dict[str, dict] = field(default_factory=dict)  # node id -> {severity, side, zone} from labels

    def image_nodes(self) -> list[str]:
        return sorted({*self.present, *self.uncertain})


def is_finding(tree: Tree, node_id: str) -> bool:
    return node_id in tree and not node_id.startswith("MET:") and tree.node(node_id).axis in FINDING_AXES


def node_path(tree: Tree, node_id: str | None, max_levels: int = 0) -> list[str]:
    """Node ids from below the axis node down to `node_id`; the last `max_levels` when set (0: all)."""
    if not node_id:
        return []
    chain = [a for a in reversed(tree.ancestors(node_id)) if not a.startswith("MET:")] + [node_id]
    return chain[-max_levels:] if max_levels > 0 else chain


def path_names(tree: Tree, ids: list[str]) -> list[str]:
    return [tree.node(i).name for i in ids]


def node_terms(tree: Tree, node_id: str, min_chars: int = 3) -> list[str]:
    """The node's name and synonyms, normalised and deduplicated: what leaks or names it in text."""
    node = tree.node(node_id)
    out: list[str] = []
    for term in [node.name, *(node.synonyms or ())]:
        key = normalize_term(term)
        if len(key) >= min_chars and key not in out:
            out.append(key)
    return out


def names_node(text: str, terms: list[str]) -> str | None:
    """The first of `terms` found in `text` as whole words (both normalised), else None."""
    padded = f" {normalize_term(text)} "
    return next((t for t in terms if f" {t} " in padded), None)


def allowed_nodes(tree: Tree, grounding: PairGrounding) -> list[str]:
    """The image's findings, their ancestors and the modality/anatomy paths: what text may assert."""
    out: set[str] = set()
    for nid in [*grounding.image_nodes(), grounding.modality, grounding.anatomy]:
        if nid:
            out.add(nid)
            out.update(tree.ancestors(nid))
    return sorted(out)


def label_node(tree: Tree, name: str) -> str | None:
    """A label's finding class (`pleural_effusion`) -> its node: the lexicon code, else the name."""
    nid = tree.by_code(LABEL_CODE.format(name))
    if nid:
        return nid
    named = tree.by_name(name.replace("_", " "))
    return named[0] if named else None


def _from_labels(tree: Tree, labels: dict, grounding: PairGrounding) -> None:
    for finding in labels.get("findings") or ():
        nid = label_node(tree, finding["name"])
        if nid is None:
            raise MedrayError(f"pair {grounding.pair_id}: label {finding['name']!r} names no node of the tree")
        (grounding.uncertain if finding.get("certainty") == "uncertain" else grounding.present).append(nid)
        grounding.attributes[nid] = {k: finding.get(k) for k in ("severity", "side", "zone") if finding.get(k)}
    for name in labels.get("negated") or ():
        nid = label_node(tree, name)
        if nid is not None:
            grounding.absent.append(nid)


def _from_report(matcher: Matcher, text: str, grounding: PairGrounding) -> None:
    """Unlabelled pairs: the report's own assertions split anchors into present, hedged and absent."""
    hits = matcher.match(text)
    said = {h["node_id"]: h["assertion"] for h in hits if h["assertion"] == "present"}
    for hit in hits:
        said.setdefault(hit["node_id"], hit["assertion"])
    grounding.uncertain += [n for n in grounding.present if said.get(n) == "uncertain"]
    grounding.present = [n for n in grounding.present if said.get(n) not in ("uncertain", "absent")]
    grounding.absent += [n for n, a in said.items() if a == "absent"]


def ground_pair(row: dict, tree: Tree, *, modality: str | None = None, anatomy: str | None = None,
                matcher: Matcher | None = None) -> PairGrounding:
    """The grounding of one pair row (`id`, `image_path`, `findings`, `node_ids`, optional `labels`).

    `modality` / `anatomy` are node ids used when the pair has no anchor on that axis.
    """
    grounding = PairGrounding(str(row["id"]), row.get("image_path") or "", row.get("findings") or "")
    anchors = [n for n in (row.get("node_ids") or ()) if n in tree]
    for nid in anchors:
        axis = tree.node(nid).axis
        if axis == "modality" and grounding.modality is None:
            grounding.modality = nid
        elif axis == "anatomy" and grounding.anatomy is None:
            grounding.anatomy = nid
    grounding.modality = grounding.modality or modality
    grounding.anatomy = grounding.anatomy or anatomy
    labels = row.get("labels")
    if labels:
        _from_labels(tree, json.loads(labels) if isinstance(labels, str) else labels, grounding)
    else:
        grounding.present = [n for n in anchors if is_finding(tree, n)]
        if matcher is not None and grounding.findings_text:
            _from_report(matcher, grounding.findings_text, grounding)
    image = set(grounding.present) | set(grounding.uncertain)
    grounding.present = sorted(set(grounding.present))
    grounding.uncertain = sorted(set(grounding.uncertain) - set(grounding.present))
    grounding.absent = sorted({n for n in grounding.absent if is_finding(tree, n)} - image)
    return grounding
