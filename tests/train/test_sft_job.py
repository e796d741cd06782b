"""SFT / mid-training on 2 Ray Train workers (CPU, gloo, DDP): text with structured CoT and replay, then a VLM.

Real components: a local Ray cluster, Ray Data (tokenising actor pool, shards), MLflow on SQLite,
transformers models built from config. The text corpus is real: Human Phenotype Ontology terms as
definition Q&A, structured-CoT samples built on its is_a links, and Symptom Ontology definitions as
the replay source, with planted malformed rows. The VLM sees real DICOM images bundled with pydicom
and learns their modality with only its connector training. The fault drill kills rank 1 after
step 6; the run resumes from the step-4 checkpoint and must end at the uninterrupted run's loss.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from medray import storage
from medray.data.tokenizer import load_tokenizer, train_tokenizer
from medray.errors import ConfigError
from medray.models.causal_lm import ModelConfig
from medray.models.vlm import VisionConfig, VLMConfig
from medray.tracking import metric_history
from medray.train.chat_format import IGNORE_INDEX, ChatFormatConfig
from medray.train.cot import cot_sample_to_chat
from medray.train.loop import DRILL_MARKER, run_training
from medray.train.mixture import MixtureConfig, MixtureSource, ShareSchedule, step_micro_batches
from medray.train.sft import SFTConfig, SFTTask, SFTTrainDataConfig, image_tokens
from medray.train.sft_prepare import MANIFEST, PREPARED, REJECTS, prepare_source

ONTOLOGY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ontology"
STEPS, MAX_LEN, VOCAB = 12, 256, 1024
MODALITIES = {"CT": "computed tomography", "MR": "magnetic resonance", "NM": "nuclear medicine", "US": "ultrasound"}
DICOM_FILES = {"CT_small.dcm": "CT", "693_J2KI.dcm": "CT", "J2K_pixelrep_mismatch.dcm": "CT", "MR_small.dcm": "MR",
               "examples_overlay.dcm": "MR", "JPEG2000.dcm": "NM", "examples_rgb_color.dcm": "US", "ExplVR_BigEnd.dcm": "US"}


# ---- a chat corpus from the ontologies ---------------------------------------------------------------


def obo_terms(path: Path) -> dict[str, dict]:
    """id -> {name, def, parents} of every term with a short definition."""
    terms = {}
    for block in path.read_text().split("\n[Term]\n")[1:]:
        term_id = re.search(r"^id: (\S+)", block, re.M)
        name = re.search(r"^name: (.+)$", block, re.M)
        definition = re.search(r'^def: "(.*?)"', block, re.M)
        if term_id and name and definition and not re.search(r"^is_obsolete: true", block, re.M):
            terms[term_id.group(1)] = {"name": name.group(1), "def": definition.group(1),
                                       "parents": re.findall(r"^is_a: (\S+)", block, re.M)}
    return terms


def short(terms: dict, words: int) -> list[dict]:
    return [t for t in terms.values() if len(t["def"].split()) <= words]


def write_jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def qa(question: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Three sources (medical Q&A, structured CoT, replay) with planted malformed rows, and a tokenizer."""
    hpo, symp = ONTOLOGY / "hp.obo", ONTOLOGY / "symp.obo"
    if not hpo.is_file() or not symp.is_file():
        pytest.skip(f"{ONTOLOGY} lacks hp.obo / symp.obo: the SFT tests train on real ontology text")
    root = tmp_path_factory.mktemp("sft")
    terms = obo_terms(hpo)
    medical = [qa(f"What is {t['name']}?", t["def"], system="You are a careful clinical assistant." if i % 3 == 0 else None)
               for i, t in enumerate(short(terms, 22)[:600])]
    planted = {3: ('{"messages": [{"role": "user", "content": "What is', "bad_json"),
               10: ({"messages": [{"role": "nurse", "content": "Vitals?"}, {"role": "assistant", "content": "Stable."}]}, "unknown_role"),
               20: ({"messages": [{"role": "user", "content": "What is ataxia?"}]}, "no_assistant_turn"),
               30: (qa("Define everything.", " ".join(t["def"] for t in short(terms, 22)[:40])), "too_long")}
    for line in sorted(planted):
        medical.insert(line - 1, planted[line][0])
    reasoning = []
    for t in short(terms, 14):
        parents = [terms[p] for p in t["parents"] if p in terms]
        if not parents or len(reasoning) == 240:
            continue
        parent = parents[0]["name"]
        reasoning.append({"question": f"What class of phenotype is {t['name']}?", "answer": parent,
                          "cot": {"understanding": "The parent class of the term is asked for.",
                                  "knowledge_recall": t["def"],
                                  "reasoning": f"HPO lists it under {parent}.",
                                  "conclusion": "So that is its class."}})
    bad_cot = dict(reasoning[0], cot={k: v for k, v in reasoning[0]["cot"].items() if k != "reasoning"})
    reasoning.insert(4, bad_cot)  # line 5
    general = [qa(f"Define the symptom {t['name']}.", t["def"]) for t in short(obo_terms(symp), 22)]
    write_jsonl(root / "medical" / "qa.jsonl", medical)
    write_jsonl(root / "reasoning.jsonl", reasoning)
    write_jsonl(root / "general.jsonl", general)
    texts = [t["def"] for t in terms.values()] + [f"{t['name']} belongs to" for t in terms.values()]
    tokenizer = train_tokenizer(iter(texts), VOCAB, str(root / "tokenizer"))
    expected = {("qa.jsonl", line): reason for line, (_, reason) in planted.items()}
    expected[("reasoning.jsonl", 5)] = "cot_missing_section"
    return {"root": root, "tokenizer": tokenizer, "medical": str(root / "medical"), "reasoning": str(root / "reasoning.jsonl"),
            "general": str(root / "general.jsonl"), "expected_rejects": expected}


def text_config(corpus, name: str, fail_at_step: int | None = None) -> SFTConfig:
    data = SFTTrainDataConfig(
        sources=[MixtureSource("medical", corpus["medical"]), MixtureSource("reasoning", corpus["reasoning"]),
                 MixtureSource("general", corpus["general"], share=0.2)],
        schedule=ShareSchedule(source="reasoning", start_share=0.1, end_share=0.5, start_step=0, end_step=STEPS),
        chat=ChatFormatConfig(max_len=MAX_LEN), prepare_actors=1)
    cfg = SFTConfig(model=ModelConfig(tokenizer=corpus["tokenizer"], hidden_size=64, num_layers=2, num_heads=4,
                                      num_kv_heads=2, intermediate_size=128, max_position_embeddings=MAX_LEN),
                    data=data, max_steps=STEPS, micro_batch_size=4, global_batch_size=16, log_every=2,
                    fail_at_step=fail_at_step)
    cfg.optim.lr, cfg.schedule.warmup_steps = 3e-3, 2
    cfg.scaling.cpus_per_worker = 0.5
    cfg.checkpoint.storage_path, cfg.checkpoint.name, cfg.checkpoint.every_steps = str(corpus["root"] / "runs"), name, 4
    cfg.tracking.uri = f"sqlite:///{corpus['root'] / 'mlflow.db'}"
    return cfg


def loss_history(summary: dict) -> list[float]:
    return [value for _, value in metric_history(summary["mlflow_run_id"], summary["tracking_uri"], "loss")]


def manifest(run_dir: str, source: str) -> dict:
    return json.loads(storage.read_text(storage.join(run_dir, PREPARED, source, MANIFEST)))


@pytest.fixture(scope="module")
def text_runs(ray_local, corpus):
    plain = run_training(text_config(corpus, "text"), SFTTask())
    drilled = run_training(text_config(corpus, "text-drill", fail_at_step=6), SFTTask())
    return plain, drilled


# ---- text SFT ----------------------------------------------------------------------------------------


def test_text_sft_loss_falls_and_is_in_mlflow(text_runs):
    plain, _ = text_runs
    losses = loss_history(plain)
    assert plain["steps"] == STEPS and len(losses) == STEPS // 2
    assert losses[-1] < losses[0] - 0.4, losses  # from about ln(1024) = 6.9


def test_killed_worker_resumes_to_the_same_loss(text_runs):
    plain, drilled = text_runs
    assert storage.exists(storage.join(drilled["run_dir"], DRILL_MARKER))
    assert drilled["final_loss"] == pytest.approx(plain["final_loss"], abs=1e-6)
    assert drilled["tokens"] == plain["tokens"]


def test_every_row_is_kept_or_rejected_with_reason_file_and_line(text_runs, corpus):
    plain, _ = text_runs
    rejected = {}
    for source in ("medical", "reasoning", "general"):
        counts = manifest(plain["run_dir"], source)["counts"]
        path = Path(corpus[source])
        lines = sum(1 for f in ([path] if path.is_file() else path.glob("*.jsonl")) for line in f.read_text().splitlines() if line.strip())
        kept = pq.read_table(storage.join(plain["run_dir"], PREPARED, source)).num_rows
        reject_dir = Path(plain["run_dir"], REJECTS, source)
        rejects = pq.read_table(reject_dir) if reject_dir.exists() else None
        assert counts["in"] == lines == kept + (rejects.num_rows if rejects else 0)
        assert counts["kept"] == kept and counts["rejected"] == sum(counts["rejected_by_reason"].values())
        for row in (rejects.to_pylist() if rejects else []):
            rejected[(row["file"], row["line"])] = row["reason"]
            assert row["id"] == f"{row['file']}:{row['line']}" and row["raw"]
    assert rejected == corpus["expected_rejects"]


def test_preparation_is_reused_and_deterministic(text_runs, corpus):
    plain, drilled = text_runs
    task = SFTTask()
    cfg = text_config(corpus, "text")
    cfg.check()
    task.check(cfg)
    prepared = task.prepare(cfg)
    assert all(p.reused for p in prepared.values())
    for source, p in prepared.items():
        assert [Path(f).name for f in p.files] == manifest(drilled["run_dir"], source)["files"]  # same parts, either run


def _rows_by_id(corpus) -> dict[str, dict]:
    samples = {}
    for source, prefix in (("medical", "qa.jsonl"), ("reasoning", "reasoning.jsonl")):
        path = Path(corpus[source])
        path = path / "qa.jsonl" if path.is_dir() else path
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            samples[f"{prefix}:{number}"] = line
    return samples


def test_loss_tokens_decode_to_exactly_the_assistant_turns(text_runs, corpus):
    from transformers import AutoModelForCausalLM

    plain, _ = text_runs
    cfg = text_config(corpus, "text")
    task = SFTTask()
    raw = _rows_by_id(corpus)
    rows = []
    for source in ("medical", "reasoning"):
        table = pq.read_table(storage.join(plain["run_dir"], PREPARED, source))
        rows += table.slice(0, 3).to_pylist()
    batch = task.collator(cfg)(rows)
    tokenizer = load_tokenizer(corpus["tokenizer"])
    targets = task.targets(batch)
    trained = targets != IGNORE_INDEX
    assert task.loss_tokens(batch) == int(trained.sum())
    assert task.input_tokens(batch) == sum(r["num_tokens"] for r in rows)
    for i, row in enumerate(rows):
        sample = json.loads(raw[row["id"]])
        chat = cot_sample_to_chat(sample) if "cot" in sample else sample
        expected = "".join(m["content"] + "<|im_end|>" for m in chat["messages"] if m["role"] == "assistant")
        positions = batch["input_ids"][i, 1:][trained[i]].tolist()
        assert tokenizer.decode(positions, skip_special_tokens=False) == expected
        assert targets[i][trained[i]].tolist() == positions
    model = AutoModelForCausalLM.from_pretrained(plain["export"])
    loss_sum, count = task.loss(model, batch, torch.device("cpu"))
    hf_mean = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert float(loss_sum) / int(count) == pytest.approx(float(hf_mean), rel=1e-5)


def test_reasoning_share_rises_as_scheduled(text_runs, corpus):
    plain, _ = text_runs
    cfg = text_config(corpus, "text")
    plan = SFTTask().plan(cfg)
    per_step = plan.batch_size
    counts = plan.count_matrix(STEPS)[:, plan.names.index("reasoning")]
    target = cfg.data.schedule.share(np.arange(STEPS)) * per_step
    assert abs(np.cumsum(counts) - np.cumsum(target)).max() < 1.0
    assert counts[: STEPS // 3].sum() < counts[STEPS // 3: 2 * STEPS // 3].sum() < counts[2 * STEPS // 3:].sum()
    # the rows the steps draw from the prepared data: CoT targets exactly where the plan puts the reasoning source
    tables = {s: pq.read_table(storage.join(plain["run_dir"], PREPARED, s), columns=["reasoning"]).to_pylist()
              for s in plan.names}
    sources = {s: (lambda epoch, rows=rows: iter(rows)) for s, rows in tables.items()}
    steps = step_micro_batches(plan, sources, lambda rows: rows, micro_batch_size=per_step)
    realised = [sum(r["reasoning"] for r in next(steps)) for _ in range(STEPS)]
    assert realised == counts.tolist()
    thirds = [sum(realised[i:i + STEPS // 3]) / (STEPS // 3 * per_step) for i in range(0, STEPS, STEPS // 3)]
    assert thirds[0] < thirds[1] < thirds[2] and thirds[0] < 0.25 < 0.35 < thirds[2], thirds


def test_cli_reports_kept_and_rejected_rows_per_source(ray_local, corpus, tmp_path):
    from omegaconf import OmegaConf
    from typer.testing import CliRunner

    from medray.cli import app
    from medray.config import to_dict

    cfg = text_config(corpus, "cli")
    cfg.max_steps, cfg.scaling.num_workers, cfg.global_batch_size, cfg.checkpoint.export = 2, 1, 4, False
    conf = tmp_path / "sft.yaml"
    conf.write_text(OmegaConf.to_yaml(to_dict(cfg)))
    result = CliRunner().invoke(app, ["train", "sft", str(conf), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2
    medical = summary["data"]["medical"]
    assert medical["rejected_by_reason"] == {"bad_json": 1, "no_assistant_turn": 1, "too_long": 1, "unknown_role": 1}
    assert medical["in"] == medical["kept"] + medical["rejected"]
    assert summary["data"]["reasoning"]["rejected_by_reason"] == {"cot_missing_section": 1}


# ---- bad config, refused before any worker ---------------------------------------------------------


def with_sources(corpus, *sources: MixtureSource) -> SFTConfig:
    cfg = text_config(corpus, "bad")
    cfg.data = dataclasses.replace(cfg.data, sources=list(sources), schedule=ShareSchedule())
    return cfg


def _no_fields(corpus, tmp_path):
    write_jsonl(tmp_path / "plain.jsonl", [{"text": "Ataxia is a lack of coordination."}] * 4)
    return with_sources(corpus, MixtureSource("plain", str(tmp_path / "plain.jsonl")))


def _images_without_vlm(corpus, tmp_path):
    write_jsonl(tmp_path / "vqa.jsonl", [qa("<image>\nModality?", "CT") | {"images": ["ct.png"]}])
    return with_sources(corpus, MixtureSource("vqa", str(tmp_path / "vqa.jsonl")))


def _changed(**changes):
    def make(corpus, tmp_path):
        cfg = text_config(corpus, "bad")
        for dotted, value in changes.items():
            *parents, last = dotted.split("__")
            target = cfg
            for part in parents:
                target = getattr(target, part)
            setattr(target, last, value)
        return cfg
    return make


@pytest.mark.parametrize("make, key, text", [
    (lambda c, t: with_sources(c, MixtureSource("medical", c["medical"]), MixtureSource("gone", str(t / "nowhere"))),
     "data.sources.1.path", "nowhere"),
    (_no_fields, "data.sources.0.path", "plain.jsonl: none of the first"),
    (_images_without_vlm, "vlm", "vqa.jsonl:1"),
    (_changed(freeze__policy="connector"), "freeze.policy", "causal LM"),
    (_changed(data__chat=ChatFormatConfig(max_len=4096)), "data.chat.max_len", "max_position"),
    (_changed(data__schedule=ShareSchedule(source="cot")), "data.schedule.source", "unknown source"),
])
def test_bad_config_fails_before_any_worker_starts(corpus, tmp_path, make, key, text):
    cfg = make(corpus, tmp_path)
    cfg.checkpoint.storage_path = str(tmp_path / "runs")
    with pytest.raises(ConfigError) as err:
        run_training(cfg, SFTTask())
    assert err.value.key == key and text in str(err.value)
    assert not (tmp_path / "runs").exists()


# ---- multimodal SFT ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dicom_corpus(corpus) -> dict:
    """Real DICOM images (pydicom's bundled test files) as PNGs, with modality questions about them."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from medray.models.images import to_rgb

    root = corpus["root"] / "dicom"
    (root / "images").mkdir(parents=True)
    rows = []
    for name, modality in DICOM_FILES.items():
        path = get_testdata_file(name)
        if path is None:
            continue
        pixels = pydicom.dcmread(path).pixel_array
        assert pydicom.dcmread(path).Modality == modality
        image = to_rgb(pixels[0] if pixels.ndim == 4 else pixels).resize((64, 64))
        png = f"{Path(name).stem}.png"
        image.save(root / "images" / png)
        for question in ("Which imaging modality produced this image?", "Name the modality of this scan.",
                         "What kind of medical image is this?"):
            rows.append(qa(f"<image>\n{question}", f"{modality}: {MODALITIES[modality]}.") | {"images": [png]})
    if len({r["messages"][-1]["content"] for r in rows}) < 3:
        pytest.skip("pydicom's bundled test images are missing")
    write_jsonl(root / "vqa.jsonl", rows * 4)
    return {"root": root, "vqa": str(root / "vqa.jsonl"), "images": str(root / "images")}


def vlm_config(corpus, dicom_corpus) -> SFTConfig:
    cfg = text_config(corpus, "vlm")
    # hidden 256: a frozen random LLM's logits span about 0.02 x hidden, so the connector alone can move the loss
    cfg.model = dataclasses.replace(cfg.model, hidden_size=256, intermediate_size=512)
    cfg.vlm = VLMConfig(vision=VisionConfig(kind="siglip", image_size=32, patch_size=8, hidden_size=64, num_layers=2,
                                            num_heads=4, intermediate_size=128, seed=4), connector_seed=5)
    cfg.freeze.policy = "connector"
    cfg.data = SFTTrainDataConfig(sources=[MixtureSource("vqa", dicom_corpus["vqa"]),
                                           MixtureSource("general", corpus["general"], share=0.25)],
                                  image_root=dicom_corpus["images"], chat=ChatFormatConfig(max_len=MAX_LEN),
                                  prepare_actors=1)
    cfg.optim.lr = 1e-2
    cfg.micro_batch_size, cfg.global_batch_size = 1, 8  # single-sample micro-batches: replay ones hold no image
    return cfg


@pytest.fixture(scope="module")
def vlm_run(ray_local, corpus, dicom_corpus):
    return run_training(vlm_config(corpus, dicom_corpus), SFTTask())


def test_vlm_connector_only_sft(vlm_run, corpus, dicom_corpus):
    from transformers import LlavaForConditionalGeneration

    from medray.models.vlm import load_vlm

    assert vlm_run["steps"] == STEPS and len(loss_history(vlm_run)) == STEPS // 2
    cfg = vlm_config(corpus, dicom_corpus)
    counts = manifest(vlm_run["run_dir"], "vqa")["counts"]
    assert counts["images"] == counts["kept"] == counts["in"] > 0
    exported = LlavaForConditionalGeneration.from_pretrained(vlm_run["export"])
    initial, _, _ = load_vlm(cfg.vlm_config())
    before, after = initial.state_dict(), exported.state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("multi_modal_projector" in k for k in changed)  # LLM and tower frozen
    plan, micro = SFTTask().plan(cfg), cfg.micro_batch_size
    assert any(set(plan.slots(step)[i:i + micro]) == {"general"}  # text-only micro-batches ran too, under DDP
               for step in range(STEPS) for i in range(0, plan.batch_size, micro))
    rows = pq.read_table(storage.join(vlm_run["run_dir"], PREPARED, "vqa")).slice(0, 8).to_pylist()
    assert exported.config.image_seq_length == 16 == rows[0]["input_ids"].count(exported.config.image_token_id)
    task = SFTTask()
    task.build_model(cfg, torch.device("cpu"))  # the tower's preprocessor for the collator
    batch = task.collator(cfg)(rows)
    assert batch["pixel_values"].shape == (8, 3, 32, 32)
    with torch.no_grad():
        start, trained = (float(torch.div(*task.loss(m, batch, torch.device("cpu")))) for m in (initial, exported))
    assert trained < start - 0.3, (start, trained)  # image answers, connector alone trained


def test_a_saved_vlm_is_configured_from_its_folder(vlm_run, corpus, dicom_corpus):
    cfg = vlm_config(corpus, dicom_corpus)
    cfg.model, cfg.vlm = ModelConfig(), VLMConfig(path=vlm_run["export"])  # stage 2 starts from stage 1's export
    cfg.freeze.policy = "llm+connector"
    cfg.check()
    assert cfg.model.tokenizer == vlm_run["export"]
    assert image_tokens(cfg) == 16


def test_prepare_on_s3_is_reused(ray_local, s3_server, corpus):
    from medray.data.io import discover_inputs

    config = text_config(corpus, "s3").data.sample_config(corpus["tokenizer"])
    run_dir, files = s3_server.uri("sft-prepare"), discover_inputs(corpus["general"])

    def prepare():
        return prepare_source("general", corpus["general"], files, config, run_dir, actors=1, progress=lambda _: None)

    first, again = prepare(), prepare()
    assert not first.reused and again.reused and again.files == first.files
    assert all(f.startswith("s3://") for f in first.files)
    assert sum(storage.read_parquet(f).num_rows for f in first.files) == first.counts["kept"] == first.counts["in"]
    config.chat = dataclasses.replace(config.chat, max_len=64)  # other settings: tokenised again
    changed = prepare()
    assert not changed.reused and changed.counts["rejected_by_reason"]["too_long"] > 0
    assert changed.counts["kept"] + changed.counts["rejected"] == changed.counts["in"] == first.counts["in"]


def test_shipped_configs_load():
    from medray.config import load_config

    for name in ("sft_tiny", "sft_vlm_tiny", "sft_gpu"):
        cfg = load_config(SFTConfig, f"train/{name}")
        assert cfg.global_batch_size == cfg.micro_batch_size * cfg.scaling.num_workers * cfg.grad_accum
        MixtureConfig(cfg.data.sources, cfg.data.schedule, cfg.seed).validate("data")
        assert (cfg.vlm is not None) == (name == "sft_vlm_tiny")
