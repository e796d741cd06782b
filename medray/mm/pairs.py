"""Image-report pairs from a MIMIC-CXR-style folder (local or s3://), with rejects, never a crash.

The layout is `medray.mm.layout`'s: phantoms and users' own data (MIMIC-CXR-JPG images with the
MIMIC-CXR reports beside them) are read by the same code. One row per image:

    id          the study id when the study has one image, else `<study_id>/<image_id>`
                (counted over the image files listed, so an id does not change when a sibling
                image fails to decode)
    study_id, subject_id, image_id, image_path (full URI)
    report      the whole report text
    findings    FINDINGS and IMPRESSION (whitespace collapsed, a blank line between them), the
                text used downstream; the whole report when it has neither section
    split       from split.csv (by image id, else study id) when present, else ""
    labels      the study's line of labels.jsonl as JSON (phantoms), else null

A study without a report, a report without text, a study folder without an image and an image
that does not decode each go to the rejects with `id`, `path`, `reason` and `detail`.
"""

from __future__ import annotations

import concurrent.futures
import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from PIL import Image

from medray import storage
from medray.errors import MedrayError, SourceError
from medray.mm.layout import IMAGE_SUFFIXES, LABELS_FILE, REPORT_SUFFIX, SPLIT_FILES, parse_path

PAIR_SCHEMA = pa.schema([(name, pa.string()) for name in (
    "id", "study_id", "subject_id", "image_id", "image_path", "report", "findings", "split", "labels")])
REJECT_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string()), ("reason", pa.string()),
                           ("detail", pa.string())])
REJECT_REASONS = ("no_report", "empty_report", "no_image", "image_decode", "read_error",
                  "unexpected_path", "bad_labels")
IMAGE_CHECKS = ("verify", "decode", "none")

_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z &/]*[A-Z]):", re.MULTILINE)
_KEEP = ("FINDINGS", "IMPRESSION", "CONCLUSION")


def report_sections(text: str) -> dict[str, str]:
    """MIMIC-style sections (`FINDINGS:`, `IMPRESSION:` ...) by upper-case header, whitespace collapsed."""
    heads = list(_HEADER.finditer(text))
    sections: dict[str, str] = {}
    for head, following in zip(heads, heads[1:] + [None]):
        body = text[head.end(): following.start() if following else len(text)]
        sections[head.group(1).strip()] = " ".join(body.split())
    return sections


def findings_text(report: str) -> str:
    """The FINDINGS and IMPRESSION bodies (any header naming them); the whole text when there are none."""
    kept = [body for name, body in report_sections(report).items()
            if body and any(word in name for word in _KEEP)]
    return "\n\n".join(kept) if kept else " ".join(report.split())


@dataclass
class _Study:
    subject_id: str
    study_id: str
    report: str | None = None
    images: list[tuple[str, str]] = field(default_factory=list)  # (image_id, uri)


def _list_studies(root: str) -> tuple[list[_Study], list[dict]]:
    files_root = storage.join(root, "files")
    if not storage.exists(files_root):
        raise SourceError(files_root, 0, "no files/ folder: expected a MIMIC-CXR layout, "
                          "files/pXX/pNNNNNNNN/sNNNNNNNN/<image> with sNNNNNNNN.txt beside the study folder")
    base = files_root.rstrip("/")
    studies: dict[tuple[str, str], _Study] = {}
    rejects = []
    for uri in storage.list_files(files_root):
        relative = uri[len(base):].lstrip("/").replace("\\", "/")
        entry = parse_path(relative)
        if entry is None:
            if relative.lower().endswith(IMAGE_SUFFIXES + (REPORT_SUFFIX,)):
                rejects.append(_reject(relative, uri, "unexpected_path",
                                       "not files/pXX/pNNNNNNNN/sNNNNNNNN/<image> or .../sNNNNNNNN.txt"))
            continue  # other files (index.html, checksums) are not part of the layout
        study = studies.setdefault((entry.study_id, entry.subject_id), _Study(entry.subject_id, entry.study_id))
        if entry.kind == "report":
            study.report = uri
        else:
            study.images.append((entry.image_id, uri))
    return [studies[k] for k in sorted(studies)], rejects


def _reject(id_: str, path: str, reason: str, detail: str = "") -> dict:
    return {"id": id_, "path": path, "reason": reason, "detail": detail}


def _read_splits(root: str) -> dict[str, str]:
    """image id -> split and study id -> split, from the first split file found at the root."""
    for name in SPLIT_FILES:
        uri = storage.join(root, name)
        if not storage.exists(uri):
            continue
        raw = storage.read_bytes(uri)
        text = (gzip.decompress(raw) if name.endswith(".gz") else raw).decode("utf-8")
        splits: dict[str, str] = {}
        for row in csv.DictReader(io.StringIO(text)):
            split = (row.get("split") or "").strip()
            if row.get("dicom_id"):
                splits[row["dicom_id"].strip()] = split
            if row.get("study_id"):
                splits.setdefault(f"s:{row['study_id'].strip()}", split)
        return splits
    return {}


def _read_labels(root: str) -> tuple[dict[str, str], list[dict]]:
    uri = storage.join(root, LABELS_FILE)
    if not storage.exists(uri):
        return {}, []
    labels, rejects = {}, []
    for line_no, line in enumerate(storage.read_text(uri).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            labels[str(record["study_id"])] = json.dumps(record, sort_keys=True)
        except (ValueError, KeyError, TypeError) as err:
            rejects.append(_reject(f"{LABELS_FILE}:{line_no}", uri, "bad_labels", repr(err)[:200]))
    return labels, rejects


def _check_image(uri: str, check: str) -> str | None:
    """None when the image is readable; otherwise why not."""
    if check == "none":
        return None
    try:
        data = storage.read_bytes(uri)
        with Image.open(io.BytesIO(data)) as img:
            img.verify() if check == "verify" else img.load()
    except Exception as err:  # PIL raises many types for bad data; any of them means "does not decode"
        return f"{type(err).__name__}: {err}"[:300]
    return None


def _read_study(study: _Study, check: str) -> tuple[list[dict], list[dict]]:
    rows, rejects = [], []
    if study.report is None:
        expected = study.images[0][1].rsplit("/", 2)[0] + f"/s{study.study_id}{REPORT_SUFFIX}"
        return rows, [_reject(study.study_id, expected, "no_report", f"{len(study.images)} image(s)")]
    try:
        report = storage.read_bytes(study.report).decode("utf-8", errors="replace")
    except OSError as err:
        return rows, [_reject(study.study_id, study.report, "read_error", str(err)[:300])]
    if not report.strip():
        return rows, [_reject(study.study_id, study.report, "empty_report")]
    if not study.images:
        return rows, [_reject(study.study_id, study.report, "no_image", "the study folder holds no image")]
    findings = findings_text(report)
    for image_id, uri in sorted(study.images):
        pair_id = study.study_id if len(study.images) == 1 else f"{study.study_id}/{image_id}"
        problem = _check_image(uri, check)
        if problem:
            rejects.append(_reject(pair_id, uri, "image_decode", problem))
            continue
        rows.append({"id": pair_id, "study_id": study.study_id, "subject_id": study.subject_id,
                     "image_id": image_id, "image_path": uri, "report": report, "findings": findings})
    return rows, rejects


def read_pairs(root: str, check_images: str = "verify", threads: int | None = None) -> tuple[pa.Table, pa.Table]:
    """(pairs, rejects) for a MIMIC-CXR-style folder; both sorted by id.

    `check_images`: "verify" (PIL's structural check, cheap), "decode" (full decode), "none".
    Files are read on `threads` threads (default 16 for s3://, 4 locally): the work is waiting on I/O.
    """
    if check_images not in IMAGE_CHECKS:
        raise ValueError(f"check_images must be one of {IMAGE_CHECKS}, got {check_images!r}")
    studies, rejects = _list_studies(root)
    splits = _read_splits(root)
    labels, label_rejects = _read_labels(root)
    rejects += label_rejects
    threads = threads or (16 if storage.is_remote(root) else 4)
    rows: list[dict] = []
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for study_rows, study_rejects in pool.map(lambda s: _read_study(s, check_images), studies):
            rows += study_rows
            rejects += study_rejects
    for row in rows:
        row["split"] = splits.get(row["image_id"], splits.get(f"s:{row['study_id']}", ""))
        row["labels"] = labels.get(row["study_id"])
    rows.sort(key=lambda r: r["id"])
    rejects.sort(key=lambda r: (r["id"], r["reason"]))
    return pa.Table.from_pylist(rows, PAIR_SCHEMA), pa.Table.from_pylist(rejects, REJECT_SCHEMA)


def read_image(uri: str):
    """One image for a model: grey 8-bit as a uint8 array (the towers' batched grey path), any other
    mode as a PIL image. A file that does not decode raises `MedrayError` naming it."""
    try:
        with Image.open(io.BytesIO(storage.read_bytes(uri))) as img:
            img.load()
            return np.asarray(img) if img.mode == "L" else img.copy()
    except (OSError, MedrayError) as err:
        raise MedrayError(f"{uri}: image does not decode ({err})") from None
