"""Phantom chest radiograph studies: labels drawn first, then the image and the report from them.

A study is a pure function of (seed, index): `np.random.default_rng([seed, index])` draws the
anatomy, the findings, the classes the report mentions as absent, and the seeds of the drawing
and of the wording. The labels are therefore true by construction, which makes phantoms the test
set of every image-text capability (entity extraction, triplet mining, retrieval), and the same
files on disk go through the reader users' own MIMIC-CXR-style data goes through.

About 20% of studies are normal; the others have one to three findings drawn uniformly among the
classes, so every class appears in roughly a sixth of the studies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from medray.mm.phantom_anatomy import Anatomy, sample_anatomy
from medray.mm.phantom_draw import FINDING_ORDER, draw_chest
from medray.mm.phantom_report import write_report

FINDING_CLASSES = FINDING_ORDER
SEVERITIES = {
    "pleural_effusion": ("small", "moderate", "large"),
    "cardiomegaly": ("mild", "moderate", "severe"),
    "consolidation": ("mild", "moderate", "severe"),
    "lung_opacity": ("mild", "moderate", "severe"),
    "pneumothorax": ("small", "large"),
    "lung_lesion": ("small", "large"),
    "atelectasis": ("mild", "moderate", "severe"),
    "edema": ("mild", "moderate", "severe"),
}
SIDES = {
    "pleural_effusion": ("left", "right", "bilateral"),
    "cardiomegaly": (None,),
    "consolidation": ("left", "right"),
    "lung_opacity": ("left", "right", "bilateral"),
    "pneumothorax": ("left", "right"),
    "lung_lesion": ("left", "right"),
    "atelectasis": ("left", "right", "bilateral"),
    "edema": ("bilateral",),
}
# The lung zone a report names besides the side (a direction word: upper, middle, lower); None: none.
ZONES = {
    "pleural_effusion": (None,),
    "cardiomegaly": (None,),
    "consolidation": ("upper", "middle", "lower"),
    "lung_opacity": ("upper", "middle", "lower", None),
    "pneumothorax": ("upper", None),
    "lung_lesion": ("upper", "middle", "lower"),
    "atelectasis": ("lower",),
    "edema": (None,),
}
NORMAL_FRACTION = 0.2
FINDINGS_PER_STUDY = {1: 0.45, 2: 0.35, 3: 0.2}
UNCERTAIN_FRACTION = 0.15
# How often a report states a class as absent when the study does not have it.
MENTION_ABSENT = {"pleural_effusion": 0.8, "pneumothorax": 0.8, "cardiomegaly": 0.6, "consolidation": 0.6,
                  "edema": 0.4, "lung_opacity": 0.25, "lung_lesion": 0.25, "atelectasis": 0.25}
STUDY_BASE, SUBJECT_BASE = 50_000_000, 10_000_000


@dataclass(frozen=True)
class Finding:
    """One labelled finding; `zone` is the lung zone the report names, when it names one."""

    name: str
    severity: str
    side: str | None
    certainty: str = "present"  # "present" | "uncertain"
    zone: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Finding:
        return cls(data["name"], data["severity"], data.get("side"), data.get("certainty", "present"),
                   data.get("zone"))


@dataclass
class PhantomStudy:
    study_id: str
    subject_id: str
    image_id: str
    image: np.ndarray  # uint8, size x size
    report: str
    findings: list[Finding]
    negated: list[str]  # classes the report states as absent
    anatomy: Anatomy = field(repr=False)
    draw_seed: int = field(repr=False)

    def labels(self) -> dict:
        return {"study_id": self.study_id, "subject_id": self.subject_id, "image_id": self.image_id,
                "findings": [f.to_dict() for f in self.findings], "negated": list(self.negated)}

    def redraw(self, findings: list[Finding]) -> np.ndarray:
        """The same patient, noise and finding shapes, with other findings: for measuring effects."""
        return draw_chest(self.anatomy, findings, self.image.shape[0], self.draw_seed)


def _pick(rng: np.random.Generator, options: tuple):
    return options[int(rng.integers(len(options)))]


def sample_findings(rng: np.random.Generator) -> list[Finding]:
    if rng.uniform() < NORMAL_FRACTION:
        return []
    counts, weights = zip(*FINDINGS_PER_STUDY.items())
    k = int(rng.choice(counts, p=weights))
    chosen = sorted(rng.choice(len(FINDING_CLASSES), size=k, replace=False))
    findings = []
    for i in chosen:
        name = FINDING_CLASSES[int(i)]
        certainty = "uncertain" if rng.uniform() < UNCERTAIN_FRACTION else "present"
        findings.append(Finding(name, _pick(rng, SEVERITIES[name]), _pick(rng, SIDES[name]), certainty,
                                _pick(rng, ZONES[name])))
    return _separate_air_and_fluid(findings)


def _separate_air_and_fluid(findings: list[Finding]) -> list[Finding]:
    """An effusion goes to the side without the pneumothorax: one hemithorax holds one or the other."""
    ptx = next((f for f in findings if f.name == "pneumothorax"), None)
    if ptx is None:
        return findings
    other = "left" if ptx.side == "right" else "right"
    return [Finding(f.name, f.severity, other, f.certainty, f.zone)
            if f.name == "pleural_effusion" and f.side in (ptx.side, "bilateral") else f for f in findings]


def sample_negated(findings: list[Finding], rng: np.random.Generator) -> list[str]:
    present = {f.name for f in findings}
    negated = [n for n in FINDING_CLASSES if n not in present and rng.uniform() < MENTION_ABSENT[n]]
    if not findings and len(negated) < 2:  # a normal report says what it ruled out
        negated = sorted({*negated, "pleural_effusion", "pneumothorax"}, key=FINDING_CLASSES.index)
    return negated


def study_ids(index: int) -> tuple[str, str]:
    """(study_id, subject_id) for the index-th study: 8 digits, as in MIMIC-CXR."""
    if not 0 <= index < SUBJECT_BASE:
        raise ValueError(f"study index {index} out of range 0..{SUBJECT_BASE - 1}")
    return str(STUDY_BASE + index), str(SUBJECT_BASE + index)


def _image_id(rng: np.random.Generator) -> str:
    """A DICOM-id-like name (five dash-separated 8-hex groups), as MIMIC-CXR names its images."""
    raw = rng.bytes(20).hex()
    return "-".join(raw[i:i + 8] for i in range(0, 40, 8))


def sample_study(seed: int, index: int, size: int = 224) -> PhantomStudy:
    """The index-th study of the phantom set `seed`: image, report and true labels."""
    rng = np.random.default_rng([seed, index])
    anatomy = sample_anatomy(rng)
    findings = sample_findings(rng)
    negated = sample_negated(findings, rng)
    draw_seed = int(rng.integers(2**62))
    report = write_report(findings, negated, np.random.default_rng(int(rng.integers(2**62))))
    study_id, subject_id = study_ids(index)
    image = draw_chest(anatomy, findings, size, draw_seed)
    return PhantomStudy(study_id, subject_id, _image_id(rng), image, report, findings, negated, anatomy, draw_seed)


def write_phantoms(n: int, out: str, seed: int = 0, size: int = 224,
                   splits: tuple[float, float, float] = (0.8, 0.1, 0.1), workers: int | None = None,
                   overwrite: bool = False) -> dict:
    """Write `n` studies under `out` in the MIMIC-CXR layout (see `medray.mm.layout`); a summary.

    Splits are MIMIC's names (train, validate, test) with exact sizes; workers default to one
    process below 1,000 studies and up to four above.
    """
    from medray.mm.phantom_write import write_phantoms as write

    return write(n, out, seed=seed, size=size, splits=splits, workers=workers, overwrite=overwrite)
