"""The MIMIC-CXR file layout, shared by the phantom writer and the paired-data reader.

    ROOT/files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg
    ROOT/files/p10/p10000032/s50414267.txt        (the report of that study)
    ROOT/split.csv   dicom_id,study_id,subject_id,split   (MIMIC's mimic-cxr-2.0.0-split.csv)
    ROOT/labels.jsonl  one study per line: study_id, findings, negated, split (phantoms only)

Ids are MIMIC's: digits without the `p` / `s` folder prefixes, so they join with MIMIC's own
CSV files unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from medray import storage

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
REPORT_SUFFIX = ".txt"
SPLIT_FILES = ("split.csv", "mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-split.csv.gz")
LABELS_FILE = "labels.jsonl"
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")


def subject_dir(root: str, subject_id: str) -> str:
    return storage.join(root, "files", f"p{subject_id[:2]}", f"p{subject_id}")


def study_dir(root: str, subject_id: str, study_id: str) -> str:
    return storage.join(subject_dir(root, subject_id), f"s{study_id}")


def report_path(root: str, subject_id: str, study_id: str) -> str:
    return storage.join(subject_dir(root, subject_id), f"s{study_id}{REPORT_SUFFIX}")


def image_path(root: str, subject_id: str, study_id: str, image_id: str, suffix: str = ".png") -> str:
    return storage.join(study_dir(root, subject_id, study_id), f"{image_id}{suffix}")


@dataclass(frozen=True)
class LayoutEntry:
    """What a path under `files/` is: a study's report or one of its images."""

    kind: str  # "report" or "image"
    subject_id: str
    study_id: str
    image_id: str = ""


def parse_path(relative: str) -> LayoutEntry | None:
    """Read a path relative to `files/`; None when it is not a report or an image of the layout."""
    parts = relative.strip("/").split("/")
    name = parts[-1].lower()
    if len(parts) == 3 and name.endswith(REPORT_SUFFIX):
        group, subject, study = parts[0], parts[1], parts[2][: -len(REPORT_SUFFIX)]
        if _prefixed(group, "p") and _prefixed(subject, "p") and _prefixed(study, "s"):
            return LayoutEntry("report", subject[1:], study[1:])
    if len(parts) == 4 and name.endswith(IMAGE_SUFFIXES):
        group, subject, study, image = parts
        if _prefixed(group, "p") and _prefixed(subject, "p") and _prefixed(study, "s"):
            return LayoutEntry("image", subject[1:], study[1:], image.rsplit(".", 1)[0])
    return None


def _prefixed(part: str, letter: str) -> bool:
    return len(part) > 1 and part[0] == letter and part[1:].isalnum()
