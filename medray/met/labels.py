"""Report-level observation labels (CheXpert convention) from matcher hits.

A hit counts toward an observation when it lands on the observation's node,
on one of its `also_codes`, or when its surface is one of the observation's
lexicon forms (so the label does not depend on which node an ambiguous
surface was resolved to). Per observation: 1 if any mention is present,
else -1 if any is uncertain, else 0 if mentioned only as absent; not
mentioned -> None. "No Finding" is 1 when no observation other than
support devices is 1 or -1.
"""

from __future__ import annotations

from collections.abc import Iterable

from medray.met.normalize import normalize_term
from medray.met.sources.radiology_lexicon import OBSERVATIONS, Observation
from medray.met.tree import Tree

CHEXPERT_NAMES = {
    "enlarged_cardiomediastinum": "Enlarged Cardiomediastinum",
    "cardiomegaly": "Cardiomegaly",
    "lung_opacity": "Lung Opacity",
    "lung_lesion": "Lung Lesion",
    "edema": "Edema",
    "consolidation": "Consolidation",
    "pneumonia": "Pneumonia",
    "atelectasis": "Atelectasis",
    "pneumothorax": "Pneumothorax",
    "pleural_effusion": "Pleural Effusion",
    "pleural_other": "Pleural Other",
    "fracture": "Fracture",
    "support_devices": "Support Devices",
}
_RANK = {"present": 3, "uncertain": 2, "absent": 1}
_LABEL = {3: 1, 2: -1, 1: 0}


def observation_index(tree: Tree) -> tuple[dict[str, str], dict[str, str]]:
    """(node id -> observation slug, normalised surface -> slug) for the lexicon's observations.

    The surface map makes the class independent of which node an ambiguous
    surface was resolved to in a large tree.
    """
    by_node: dict[str, str] = {}
    by_surface: dict[str, str] = {}
    for obs in OBSERVATIONS:
        for code in (f"MEDRAY:finding/{obs.slug}", *([obs.xref] if obs.xref else []), *obs.also_codes):
            nid = tree.by_code(code)
            if nid:
                by_node.setdefault(nid, obs.slug)
        for form in (*obs.surfaces, *obs.absent_forms):
            by_surface.setdefault(normalize_term(form), obs.slug)
    return by_node, by_surface


def observation_labels(hits: Iterable[dict], tree: Tree, observations: tuple[Observation, ...] = OBSERVATIONS) -> dict[str, int | None]:
    """CheXpert-named labels for one report's hits (dicts with node_id, surface, assertion)."""
    by_node, by_surface = observation_index(tree)
    best: dict[str, int] = {}
    for hit in hits:
        slug = by_node.get(hit["node_id"]) or by_surface.get(normalize_term(hit["surface"]))
        if slug:
            best[slug] = max(best.get(slug, 0), _RANK[hit["assertion"]])
    labels: dict[str, int | None] = {CHEXPERT_NAMES[o.slug]: _LABEL.get(best.get(o.slug, 0)) for o in observations}
    findings = [v for k, v in labels.items() if k != "Support Devices"]
    labels["No Finding"] = 1 if not any(v in (1, -1) for v in findings) else None
    return labels
