"""Phantom sets on disk and S3, read back through the paired-data reader, with rejects; the CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medray.errors import MedrayError, SourceError
from medray.mm.commands import mm_app
from medray.mm.layout import image_path, report_path
from medray.mm.pairs import findings_text, read_pairs
from medray.mm.phantom import sample_study, write_phantoms

N, SEED = 24, 3


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def label_lines(root) -> dict[str, dict]:
    lines = Path(root, "labels.jsonl").read_text().splitlines()
    return {r["study_id"]: r for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantoms") / "set"
    summary = write_phantoms(N, str(root), seed=SEED)
    assert summary["studies"] == summary["images"] == N
    assert summary["splits"] == {"train": 19, "validate": 3, "test": 2}
    assert summary["normal"] + sum(1 for r in label_lines(root).values() if r["findings"]) == N
    return root


def test_layout_matches_mimic_cxr(phantom_root: Path):
    labels = label_lines(phantom_root)
    assert sorted(labels) == [str(50_000_000 + i) for i in range(N)]
    first = sample_study(SEED, 0)
    png = Path(image_path(str(phantom_root), first.subject_id, first.study_id, first.image_id))
    assert png.parent.name == f"s{first.study_id}" and png.parents[1].name == f"p{first.subject_id}"
    assert png.parents[2].name == f"p{first.subject_id[:2]}" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(report_path(str(phantom_root), first.subject_id, first.study_id)).read_text() == first.report
    assert labels[first.study_id]["findings"] == [f.to_dict() for f in first.findings]
    split_rows = (phantom_root / "split.csv").read_text().splitlines()
    assert split_rows[0] == "dicom_id,study_id,subject_id,split" and len(split_rows) == N + 1
    assert split_rows[1] == f"{first.image_id},{first.study_id},{first.subject_id},{labels[first.study_id]['split']}"


def test_same_seed_writes_identical_bytes_with_any_number_of_workers(phantom_root: Path, tmp_path: Path):
    write_phantoms(N, str(tmp_path / "again"), seed=SEED, workers=2)
    assert tree_digest(tmp_path / "again") == tree_digest(phantom_root)
    with pytest.raises(MedrayError, match="already exists"):
        write_phantoms(N, str(tmp_path / "again"), seed=SEED)
    write_phantoms(4, str(tmp_path / "again"), seed=SEED + 1, overwrite=True)
    assert len(list((tmp_path / "again").rglob("*.png"))) == 4


def test_read_pairs_round_trip(phantom_root: Path):
    pairs, rejects = read_pairs(str(phantom_root))
    assert rejects.num_rows == 0
    labels = label_lines(phantom_root)
    rows = pairs.to_pylist()
    assert [r["id"] for r in rows] == sorted(labels)  # one image per study: the id is the study id
    for row in rows:
        truth = labels[row["id"]]
        assert json.loads(row["labels"]) == truth
        assert row["split"] == truth["split"] and row["image_id"] == truth["image_id"]
        assert row["subject_id"] == truth["subject_id"]
        assert row["report"] == Path(report_path(str(phantom_root), row["subject_id"], row["id"])).read_text()
        assert row["findings"] == findings_text(row["report"])
        assert "INDICATION" not in row["findings"] and "year-old" not in row["findings"]
        assert row["findings"].endswith(".") and Path(row["image_path"]).is_file()


def test_read_pairs_through_s3(s3_prefix: str, phantom_root: Path):
    write_phantoms(8, s3_prefix, seed=SEED)
    pairs, rejects = read_pairs(s3_prefix)
    assert rejects.num_rows == 0 and pairs.num_rows == 8
    local = {r["id"]: r for r in read_pairs(str(phantom_root))[0].to_pylist()}
    for row in pairs.to_pylist():
        assert row["image_path"].startswith(s3_prefix + "/files/p10/")
        assert (row["report"], row["labels"]) == (local[row["id"]]["report"], local[row["id"]]["labels"])
    # splits depend on n, labels do not: 8 studies split 6/1/1
    assert sorted(pairs.column("split").to_pylist()) == ["test"] + ["train"] * 6 + ["validate"]


def test_bad_records_go_to_rejects_and_the_rest_is_read(phantom_root: Path, tmp_path: Path):
    root = tmp_path / "broken"
    shutil.copytree(phantom_root, root)
    ids = sorted(label_lines(root))
    studies = {i: sample_study(SEED, int(i) - 50_000_000) for i in ids[:5]}

    def report(i):
        return Path(report_path(str(root), studies[i].subject_id, i))

    def image(i):
        return Path(image_path(str(root), studies[i].subject_id, i, studies[i].image_id))

    report(ids[0]).unlink()  # no_report
    report(ids[1]).write_text("  \n \n")  # empty_report
    image(ids[2]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 40)  # image_decode
    image(ids[3]).unlink()  # no_image
    second = image(ids[4]).with_name("second-view.png")  # a study with two images
    shutil.copy(image(ids[4]), second)
    (root / "files" / "p10" / "stray.txt").write_text("not a report")  # unexpected_path
    (root / "files" / "index.html").write_text("<html></html>")  # not part of the layout: ignored
    pairs, rejects = read_pairs(str(root))

    got = {(r["id"], r["reason"]) for r in rejects.to_pylist()}
    assert got == {(ids[0], "no_report"), (ids[1], "empty_report"), (ids[2], "image_decode"),
                   (ids[3], "no_image"), ("p10/stray.txt", "unexpected_path")}
    by_reason = {r["reason"]: r for r in rejects.to_pylist()}
    assert by_reason["no_report"]["path"] == str(report(ids[0]))
    assert by_reason["image_decode"]["path"] == str(image(ids[2])) and by_reason["image_decode"]["detail"]
    read_ids = pairs.column("id").to_pylist()
    assert len(read_ids) == N - 4 + 1
    assert {f"{ids[4]}/second-view", f"{ids[4]}/{studies[ids[4]].image_id}"} <= set(read_ids)
    assert set(ids[5:]) <= set(read_ids)


def test_mimic_split_file_and_reports_without_sections(phantom_root: Path, tmp_path: Path):
    root = tmp_path / "mimic"
    shutil.copytree(phantom_root, root)
    (root / "labels.jsonl").unlink()
    split = root / "split.csv"
    (root / "mimic-cxr-2.0.0-split.csv.gz").write_bytes(gzip.compress(split.read_bytes()))
    split.unlink()
    first = sample_study(SEED, 0)
    report_file = Path(report_path(str(root), first.subject_id, first.study_id))
    report_file.write_text("Small left pleural effusion.\n  No pneumothorax.\n")
    pairs, _ = read_pairs(str(root))
    rows = {r["id"]: r for r in pairs.to_pylist()}
    original = {r["id"]: r for r in read_pairs(str(phantom_root))[0].to_pylist()}
    assert all(rows[i]["split"] == original[i]["split"] for i in rows)
    assert all(r["labels"] is None for r in rows.values())
    assert rows[first.study_id]["findings"] == "Small left pleural effusion. No pneumothorax."


def test_a_root_without_files_folder_is_a_source_error(tmp_path: Path):
    with pytest.raises(SourceError, match="files"):
        read_pairs(str(tmp_path))


def test_cli_phantom_and_pairs(tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(mm_app, ["phantom", str(out), "--n", "6", "--seed", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["studies"] == 6 and set(summary["classes"]) == {
        "pleural_effusion", "cardiomegaly", "consolidation", "lung_opacity", "pneumothorax",
        "lung_lesion", "atelectasis", "edema"}
    assert sum(summary["splits"].values()) == 6 and summary["seconds"] >= 0

    again = runner.invoke(mm_app, ["phantom", str(out), "--n", "6"])
    assert again.exit_code != 0 and isinstance(again.exception, MedrayError)
    table = runner.invoke(mm_app, ["phantom", str(out), "--n", "6", "--overwrite"])
    assert table.exit_code == 0 and "Phantom studies" in table.stdout and "pneumothorax" in table.stdout

    result = runner.invoke(mm_app, ["pairs", str(out), "--json", "--out", str(tmp_path / "tables")])
    assert result.exit_code == 0, result.output
    counted = json.loads(result.stdout)
    assert counted["pairs"] == counted["studies"] == 6 and counted["rejects"] == {}
    assert pq.read_table(tmp_path / "tables" / "pairs.parquet").num_rows == 6
    assert pq.read_table(tmp_path / "tables" / "rejects.parquet").num_rows == 0
