"""The two-stage filter on phantom pairs with planted bad items: every row ends kept, filtered or rejected, with its reason."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from medray.errors import ConfigError
from medray.medtrim.loss import info_nce
from medray.medtrim.model import MedTrimModel, MedTrimModelConfig, preprocess_images, tokenize_texts
from medray.met.build import build_tree
from medray.met.matcher import Matcher
from medray.mm.align import filter_and_align
from medray.mm.align_score import ClipScorer, MedTrimScorer, cosine_rows
from medray.mm.image_rules import dct_hash, difference_hash, hamming, near_duplicates
from medray.mm.layout import image_path, report_path
from medray.mm.mm_settings import AlignConfig, ImageRulesConfig, RetrieveConfig, ScoreConfig
from medray.mm.pairs import read_image, read_pairs
from medray.mm.phantom import write_phantoms
from medray.mm.retrieve import anchor_pairs

N = 40
CORRUPT, TINY, DUPLICATE = "59999991", "59999992", "59999993"


def _plant(root: Path, study_id: str, image: bytes, report: str) -> None:
    subject = "1" + study_id[1:]
    png = Path(image_path(str(root), subject, study_id, f"img{study_id}"))
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(image)
    Path(report_path(str(root), subject, study_id)).write_text(report)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """40 phantoms plus a corrupt image, a tiny image, an exact duplicate, an emptied and a swapped report."""
    root = tmp_path_factory.mktemp("align") / "set"
    write_phantoms(N, str(root), seed=11, size=128)
    first, _ = read_pairs(str(root))
    labels = {r["id"]: json.loads(r["labels"]) for r in first.to_pylist()}
    with_findings = [i for i, lab in labels.items() if any(f["certainty"] == "present" for f in lab["findings"])]
    original, donor, swapped, emptied = with_findings[0], with_findings[1], with_findings[2], with_findings[3]
    rows = {r["id"]: r for r in first.to_pylist()}
    report = Path(rows[donor]["image_path"]).parent.with_suffix(".txt").read_text()
    _plant(root, CORRUPT, b"\x89PNG\r\n\x1a\n not really a png", report)
    tiny = Path(root, "tiny.png")
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tiny)
    _plant(root, TINY, tiny.read_bytes(), report)
    tiny.unlink()
    _plant(root, DUPLICATE, Path(rows[original]["image_path"]).read_bytes(), report)
    pairs, rejects = read_pairs(str(root), check_images="none")
    assert rejects.num_rows == 0 and pairs.num_rows == N + 3
    # A findings text emptied, and one swapped in from a study with other findings.
    other = next(i for i in with_findings[4:] if {f["name"] for f in labels[i]["findings"]}
                 .isdisjoint(f["name"] for f in labels[swapped]["findings"]))
    texts = dict(zip(pairs["id"].to_pylist(), pairs["findings"].to_pylist()))
    texts[emptied], texts[swapped] = "", texts[other]
    pairs = pairs.set_column(pairs.schema.get_field_index("findings"), "findings",
                             pa.array([texts[i] for i in pairs["id"].to_pylist()], pa.string()))
    return {"pairs": pairs, "original": original, "swapped": swapped, "true_text": rows[swapped]["findings"],
            "emptied": emptied}


@pytest.fixture(scope="module")
def tree():
    built, _ = build_tree([("radiology_lexicon", {}), ("dicom", {})])
    return built


@pytest.fixture(scope="module")
def anchors(planted, tree):
    cfg = RetrieveConfig()
    cfg.embedding.enabled = False  # retrieval's own tests cover the embedding path
    return anchor_pairs(planted["pairs"], tree, cfg, matcher=Matcher(tree)).anchors


@pytest.fixture(scope="module")
def trained(planted):
    """A tiny MedTrim model whose projections are fitted (InfoNCE) to the true phantom pairs, so alignment means something."""
    torch.manual_seed(0)
    model = MedTrimModel(MedTrimModelConfig.tiny(image_size=64, proj_dim=16))
    from medray.medtrim.model import build_text_tokenizer

    tokenizer = build_text_tokenizer(model.config)
    rows = [r for r in planted["pairs"].to_pylist() if r["id"] < "59"]
    texts = [planted["true_text"] if r["id"] == planted["swapped"] else r["findings"] for r in rows]
    keep = [i for i, t in enumerate(texts) if t.strip()]
    pixels = preprocess_images([read_image(rows[i]["image_path"]) for i in keep], model.preprocessor)
    batch = tokenize_texts(tokenizer, [texts[i] for i in keep], model.config.text.max_length)
    with torch.no_grad():  # towers stay as built; fitting the two projections is enough and takes a second
        image_features, text_features = model.image_features(pixels), model.text_features(**batch)
    optim = torch.optim.AdamW([*model.image_proj.parameters(), *model.text_proj.parameters()], lr=1e-2)
    for _ in range(200):
        image = torch.nn.functional.normalize(model.image_proj(image_features), dim=-1)
        text = torch.nn.functional.normalize(model.text_proj(text_features), dim=-1)
        loss = info_nce(image, text, temperature=0.1)
        optim.zero_grad()
        loss.backward()
        optim.step()
    return model.eval(), tokenizer


def test_hashes_find_duplicates_and_tell_phantoms_apart(planted):
    paths = dict(zip(planted["pairs"]["id"].to_pylist(), planted["pairs"]["image_path"].to_pylist()))
    ids = sorted(i for i in paths if i < "59")[:12]
    images = [Image.open(paths[i]) for i in ids]
    hashes = [dct_hash(im, 16) for im in images]
    apart = min(hamming(a, b) for k, a in enumerate(hashes) for b in hashes[k + 1:])
    assert apart > 10  # distinct studies sit well beyond the default max_distance
    rescaled = images[0].resize((100, 100))
    assert hamming(dct_hash(rescaled, 16), hashes[0]) <= 10 and hamming(difference_hash(rescaled), difference_hash(images[0])) <= 4
    dups = near_duplicates(["a", "b", "c"], [0b1111, 0b1110, 0b110000], max_distance=1, bits=8)
    assert dups == {"b": ("a", 1)}


def test_planted_items_end_with_their_reasons(planted, anchors, tree):
    result = filter_and_align(planted["pairs"], anchors, tree, AlignConfig())
    rejects = {r["id"]: r for r in result.rejects.to_pylist()}
    filtered = {r["id"]: r for r in result.filtered.to_pylist()}
    assert rejects[CORRUPT]["reason"] == "image_decode" and rejects[CORRUPT]["path"].endswith(".png")
    assert rejects[planted["emptied"]]["reason"] == "missing_text"
    assert filtered[TINY]["rule"] == "image_too_small" and filtered[TINY]["detail"].startswith("8x8")
    assert filtered[DUPLICATE]["rule"] == "near_duplicate_image"
    assert filtered[DUPLICATE]["detail"].startswith(f"duplicate of {planted['original']} (hash distance 0)")
    assert planted["original"] in result.kept["id"].to_pylist()
    normal = [i for i, r in filtered.items() if r["rule"] == "no_entity"]
    entity_ids = {r["id"] for r in anchors.to_pylist() if tree.node(r["node_id"]).axis in ("symptom", "disease")}
    assert normal and entity_ids.isdisjoint(normal)
    counts = result.counts
    assert counts["in"] == N + 3 == counts["kept"] + counts["filtered"] + counts["rejected"]
    assert counts["reasons"]["rejected"] == {"image_decode": 1, "missing_text": 1}
    assert sum(counts["reasons"]["stage1"].values()) == counts["stages"]["stage1"]["filtered"] == result.filtered.num_rows
    assert counts["stages"]["stage1"]["out"] == result.kept.num_rows  # no stage 2 configured
    assert set(result.kept["id"].to_pylist()).isdisjoint(set(filtered) | set(rejects))
    again = filter_and_align(planted["pairs"], anchors, tree, AlignConfig())
    assert again.kept.equals(result.kept) and again.filtered.equals(result.filtered)


def test_alignment_score_is_the_cosine_of_the_towers(planted, anchors, tree, trained):
    model, tokenizer = trained
    cfg = AlignConfig(score=ScoreConfig(model="medtrim", model_path="in-memory", threshold="none"))
    result = filter_and_align(planted["pairs"], anchors, tree, cfg, scorer=MedTrimScorer(model, tokenizer))
    kept = result.kept.to_pylist()[:6]
    with torch.no_grad():
        pixels = preprocess_images([read_image(r["image_path"]) for r in kept], model.preprocessor)
        image = model.encode_image(pixels).numpy()
        text = model.encode_text(**tokenize_texts(tokenizer, [r["findings"] for r in kept], model.config.text.max_length)).numpy()
    direct = (image * text).sum(axis=1)
    assert np.allclose([r["score"] for r in kept], direct, atol=1e-5)
    # The swapped-in report scores below the image's own report, and a global cut between them removes it.
    scorer = MedTrimScorer(model, tokenizer)
    swapped = next(r for r in planted["pairs"].to_pylist() if r["id"] == planted["swapped"])
    emb, _, _ = scorer.embed_images([swapped["image_path"]] * 2)
    wrong, right = cosine_rows(emb, scorer.embed_texts([swapped["findings"], planted["true_text"]]))
    assert wrong < right
    cfg.score.threshold, cfg.score.min_score = "global", float((wrong + right) / 2)
    cut = filter_and_align(planted["pairs"], anchors, tree, cfg, scorer=scorer)
    low = {r["id"]: r for r in cut.filtered.to_pylist() if r["stage"] == "stage2"}
    assert low[planted["swapped"]]["rule"] == "low_alignment"
    assert all(s >= cfg.score.min_score for s in cut.kept["score"].to_pylist())
    assert cut.counts["in"] == cut.counts["kept"] + cut.counts["filtered"] + cut.counts["rejected"]


def test_per_node_percentile_drops_the_bottom_share_of_each_node(planted, anchors, tree, trained):
    model, tokenizer = trained
    cfg = AlignConfig(score=ScoreConfig(model="medtrim", model_path="in-memory", threshold="per_node", drop_percent=25))
    scorer = MedTrimScorer(model, tokenizer)
    result = filter_and_align(planted["pairs"], anchors, tree, cfg, scorer=scorer)
    cfg.score.threshold = "none"
    everything = filter_and_align(planted["pairs"], anchors, tree, cfg, scorer=scorer).kept.to_pylist()
    dropped = {r["id"] for r in result.filtered.to_pylist() if r["rule"] == "low_alignment_node"}
    groups: dict[str, list[dict]] = {}
    for row in everything:
        groups.setdefault(row["node_id"], []).append(row)
    expected = set()
    for rows in groups.values():
        rows.sort(key=lambda r: (r["score"], r["id"]))
        expected |= {r["id"] for r in rows[: math.floor(len(rows) * 0.25)]}
    assert dropped == expected and len(dropped) >= 2
    assert result.counts["reasons"]["stage2"] == {"low_alignment_node": len(dropped)}
    assert result.kept.num_rows == len(everything) - len(dropped)


def test_clip_folder_scores_match_its_features(planted, anchors, tree, tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from medray.medtrim.model import TextEncoderConfig, build_text_tokenizer

    tokenizer = build_text_tokenizer(TextEncoderConfig())
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 128, "eos_token_id": tokenizer.sep_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=16)
    torch.manual_seed(0)
    folder = tmp_path / "clip"
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    cfg = AlignConfig(score=ScoreConfig(model="clip", model_path=str(folder), threshold="none"))
    result = filter_and_align(planted["pairs"], anchors, tree, cfg)
    scorer = ClipScorer(str(folder))
    kept = result.kept.to_pylist()[:4]
    with torch.no_grad():
        pixels = scorer.processor(images=[Image.open(r["image_path"]).convert("RGB") for r in kept], return_tensors="pt")
        image = scorer.model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output.numpy()
        enc = tokenizer([r["findings"] for r in kept], padding=True, truncation=True, max_length=77, return_tensors="pt")
        text = scorer.model.get_text_features(**enc).pooler_output.numpy()
    assert np.allclose([r["score"] for r in kept], cosine_rows(image, text), atol=1e-5)
    with pytest.raises(ConfigError, match="align.score.model_path"):
        filter_and_align(planted["pairs"], anchors, tree, AlignConfig(score=ScoreConfig(model="clip", model_path=str(tmp_path / "none"))))


def test_config_errors_name_the_key(planted, anchors, tree):
    with pytest.raises(ConfigError, match="align.text_column"):
        filter_and_align(planted["pairs"], anchors, tree, AlignConfig(text_column="caption"))
    with pytest.raises(ConfigError, match="align.score.drop_percent"):
        filter_and_align(planted["pairs"], anchors, tree, AlignConfig(score=ScoreConfig(drop_percent=120)))
    with pytest.raises(ConfigError, match="align.image.min_aspect"):
        AlignConfig(image=ImageRulesConfig(min_aspect=3.0)).check()
