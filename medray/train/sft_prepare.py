"""SFT sources tokenised once, on the driver's Ray cluster, into parquet the training workers read.

Why a separate step: tokenising inside the training loop would repeat on every epoch and every
restart, and a malformed sample would surface as a crash mid-run. Here each source is read in
order (`read_sft_files`: ids are `file:line`), tokenised by `SFTTokenizeBatches` on a Ray Data
actor pool, and written as `prepared/<source>/part-*.parquet` (`SFT_SCHEMA`) plus
`rejects/<source>/part-*.parquet` (id, file, line, reason, detail, raw), both under the run's
folder. `prepared/<source>/_manifest.json` is written last: the counts (in = kept + rejected, by
reason), the part files and a fingerprint of the input files (name, size, mtime), the tokenizer
and the settings that change the tokens. A run that finds a manifest with the same fingerprint
reuses it, so a resumed job does not tokenise again; anything else starts the source over.

Part names are a hash of the ids in the part, so two preparations of the same input give the same
files in the same order, and the rows a training step reads do not depend on which run
tokenised them.

`check_source_heads` reads the first rows of each source's first files on the driver, before any
heavy work, to refuse a source that is not SFT data (no `messages`, no `question`/`cot`) or that
holds images when no vision model is configured.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from medray import storage
from medray.config import to_dict
from medray.data.io import InputFile, discover_inputs
from medray.data.tokenizer import IMAGE_TOKEN
from medray.errors import ConfigError, MedrayError
from medray.train.chat_format import ChatEncoder
from medray.train.sft_data import SFTDataConfig, SFTTokenizeBatches, read_sft_files, split_tagged

FORMAT_VERSION = 1
MANIFEST = "_manifest.json"  # "_": parquet readers skip it, so the folder reads as one table
PREPARED, REJECTS = "prepared", "rejects"
HEAD_FILES, HEAD_ROWS = 4, 32  # what the driver reads of each source before any work starts
REJECT_COLUMNS = ("id", "file", "line", "reason", "detail", "raw")


@dataclass
class PreparedSource:
    name: str
    files: list[str]  # kept rows, SFT_SCHEMA parquet, in training order
    counts: dict = field(default_factory=dict)  # in, kept, rejected, rejected_by_reason, tokens, ...
    reused: bool = False
    manifest: str = ""


# ---- the driver's cheap checks --------------------------------------------------------------------


def source_inputs(path: str, key: str) -> list[InputFile]:
    """The JSONL / parquet files of one source; ConfigError naming `key` when there are none or they mix formats."""
    try:
        files = discover_inputs(path) if path and storage.exists(path) else []
    except MedrayError as err:
        raise ConfigError(key, str(err)) from None
    if not files:
        raise ConfigError(key, f"{path!r}: no .jsonl, .jsonl.gz, .jsonl.zst or .parquet SFT files found")
    kinds = {f.is_parquet for f in files}
    if len(kinds) > 1:
        raise ConfigError(key, f"{path!r} mixes JSONL and parquet files ({files[0].name}, ...): give them as two sources")
    return files


def _head_samples(file: InputFile, json_column: str) -> Iterator[tuple[str, object]]:
    """(id, parsed sample or None) for the first rows of `file`."""
    table = next(iter(read_sft_files(file.uri, chunk_rows=HEAD_ROWS, json_column=json_column)), None)
    if table is None:
        return
    has_json = json_column in table.column_names
    for row in table.to_pylist():
        if has_json:
            try:
                sample = json.loads(row[json_column]) if isinstance(row.get(json_column), str) else None
            except json.JSONDecodeError:
                sample = None
        else:
            sample = {k: v for k, v in row.items() if k not in ("id", "source")}
        yield row["id"], sample


def check_source_heads(files: list[InputFile], key: str, json_column: str, has_vision: bool) -> None:
    """Refuse a file whose first rows hold no chat or CoT sample, or an image sample without a VLM."""
    for file in files[:HEAD_FILES]:
        seen = 0
        keys: set[str] = set()
        for row_id, sample in _head_samples(file, json_column):
            if not isinstance(sample, dict):
                continue
            keys.update(sample)
            if "messages" not in sample and not ("question" in sample and "cot" in sample):
                continue
            seen += 1
            if sample.get("images") and not has_vision:
                raise ConfigError("vlm", f"{row_id}: a sample with images, but no vision-language model is "
                                         "configured: set `vlm` (a vision tower and connector) or drop image samples")
        if not seen:
            found = ", ".join(sorted(keys)[:8]) or "no JSON objects"
            raise ConfigError(key, f"{file.uri}: none of the first {HEAD_ROWS} rows is an SFT sample: expected "
                                   f"`messages` (chat) or `question` + `cot` (structured CoT) fields, found {found}")


# ---- tokenising on Ray Data -----------------------------------------------------------------------


class SFTTokenizer(SFTTokenizeBatches):
    """`SFTTokenizeBatches` with `<image>` added to a tokenizer that lacks it, as the model loader adds it."""

    def setup(self) -> None:
        from medray.models.causal_lm import load_model_tokenizer

        tokenizer = load_model_tokenizer(self.config.tokenizer, None, (IMAGE_TOKEN,))
        self.encoder = ChatEncoder(tokenizer, self.config.chat)


def chat_encoder(config: SFTDataConfig) -> ChatEncoder:
    """The encoder the workers of `prepare_source` use, built on the driver to check the tokenizer early."""
    stage = SFTTokenizer(config)
    stage.setup()
    return stage.encoder


def _read_rows(batch: pa.Table, json_column: str, chunk_rows: int) -> Iterator[pa.Table]:
    for root in batch.column("root").to_pylist():
        yield from read_sft_files(root, chunk_rows=chunk_rows, json_column=json_column)


def _location(ids: list, names: set[str]) -> tuple[list, list]:
    """(file, line) of each `file:line` id; None for ids a parquet source brought itself."""
    files, lines = [], []
    for row_id in ids:
        name, _, line = (row_id or "").rpartition(":")
        known = name in names and line.isdigit()
        files.append(name if known else None)
        lines.append(int(line) if known else None)
    return files, lines


def _write_part(batch: pa.Table, kept_dir: str, rejects_dir: str, names: list[str]) -> pa.Table:
    """Write one tokenised batch's kept rows and rejects; return its counts as one row."""
    kept, rejects = split_tagged(batch)
    ids = batch.column("id").to_pylist()
    part = f"part-{hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:24]}.parquet"
    if kept.num_rows:
        storage.write_parquet(kept, storage.join(kept_dir, part))
    reject_ids = rejects.column("id").to_pylist()
    if rejects.num_rows:
        files, lines = _location(reject_ids, set(names))
        located = rejects.add_column(1, "file", pa.array(files, pa.string())).add_column(2, "line", pa.array(lines, pa.int64()))
        storage.write_parquet(located.select(list(REJECT_COLUMNS)), storage.join(rejects_dir, part))
    counts = {
        "part": part if kept.num_rows else None, "in": batch.num_rows, "kept": kept.num_rows,
        "tokens": int(pc.sum(kept.column("num_tokens")).as_py() or 0),
        "loss_tokens": int(pc.sum(kept.column("num_loss_tokens")).as_py() or 0),
        "max_tokens": int(pc.max(kept.column("num_tokens")).as_py() or 0),
        "images": int(pc.sum(kept.column("n_images")).as_py() or 0),
        "reasoning": int(pc.sum(kept.column("reasoning").cast(pa.int64())).as_py() or 0),
        "reasons": json.dumps(Counter(rejects.column("reason").to_pylist())),
    }
    return pa.Table.from_pylist([counts])


def _sum_counts(rows: list[dict]) -> dict:
    reasons: Counter = Counter()
    totals = Counter()
    for row in rows:
        reasons.update(json.loads(row["reasons"]))
        for key in ("in", "kept", "tokens", "loss_tokens", "images", "reasoning"):
            totals[key] += row[key]
    out = {key: totals[key] for key in ("in", "kept")}
    out.update(rejected=sum(reasons.values()), rejected_by_reason=dict(sorted(reasons.items())),
               tokens=totals["tokens"], loss_tokens=totals["loss_tokens"], images=totals["images"],
               reasoning=totals["reasoning"], max_tokens=max((r["max_tokens"] for r in rows), default=0))
    if out["in"] != out["kept"] + out["rejected"]:
        raise MedrayError(f"SFT prepare: {out['in']} rows in but {out['kept']} kept + {out['rejected']} rejected")
    return out


# ---- fingerprint and reuse ------------------------------------------------------------------------


def _stamp(uri: str) -> list:
    fs, path = storage.filesystem_for(uri)
    info = fs.get_file_info(path)
    return [info.size, info.mtime_ns]


def fingerprint(files: list[InputFile], config: SFTDataConfig) -> str:
    """What the prepared rows depend on: the input files, the tokenizer's files and the tokenising settings."""
    settings = {k: v for k, v in to_dict(config).items() if k not in ("tokenizer", "pad_to_multiple_of")}
    tokenizer = storage.list_files(config.tokenizer, suffixes=(".json", ".txt", ".model"), recursive=False)
    parts = {
        "version": FORMAT_VERSION, "settings": settings,
        "inputs": [[f.name, *_stamp(f.uri)] for f in files],
        "tokenizer": [[uri.rsplit("/", 1)[-1], *_stamp(uri)] for uri in tokenizer],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _reusable(kept_dir: str, fp: str) -> dict | None:
    """The manifest a previous run left in `kept_dir`, if it was made from the same inputs and settings."""
    try:
        manifest = json.loads(storage.read_text(storage.join(kept_dir, MANIFEST)))
    except (MedrayError, OSError, ValueError):
        return None
    if manifest.get("fingerprint") != fp:
        return None
    if not all(storage.exists(storage.join(kept_dir, f)) for f in manifest.get("files", [])):
        return None
    return manifest


def prepare_source(name: str, root: str, files: list[InputFile], config: SFTDataConfig, run_dir: str, *,
                   actors: int = 2, batch_rows: int = 512, progress: Callable[[str], None] = print) -> PreparedSource:
    """Tokenise one source into `run_dir/prepared/<name>/` (rejects beside), or reuse what a run left there."""
    import ray.data

    kept_dir, rejects_dir = storage.join(run_dir, PREPARED, name), storage.join(run_dir, REJECTS, name)
    manifest_uri = storage.join(kept_dir, MANIFEST)
    fp = fingerprint(files, config)
    manifest = _reusable(kept_dir, fp)
    if manifest is not None:
        progress(f"sft data {name}: reusing {manifest['counts']['kept']} prepared samples")
        return PreparedSource(name, [storage.join(kept_dir, f) for f in manifest["files"]], manifest["counts"],
                              reused=True, manifest=manifest_uri)
    for folder in (kept_dir, rejects_dir):
        storage.delete(folder)
    progress(f"sft data {name}: tokenising {len(files)} file(s)")
    tagged = (ray.data.from_items([{"root": root}])
              .map_batches(_read_rows, fn_kwargs={"json_column": config.json_column, "chunk_rows": batch_rows},
                           batch_size=1, batch_format="pyarrow", num_cpus=0.5)  # unfused: tokenising fans out
              .map_batches(SFTTokenizer, fn_constructor_args=(config,), batch_size=batch_rows, batch_format="pyarrow",
                           compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors)), num_cpus=1)
              .map_batches(_write_part, fn_kwargs={"kept_dir": kept_dir, "rejects_dir": rejects_dir,
                                                   "names": [f.name for f in files]},
                           batch_size=None, batch_format="pyarrow"))
    rows = [row for batch in tagged.iter_batches(batch_size=None, batch_format="pyarrow") for row in batch.to_pylist()]
    counts = _sum_counts(rows)
    parts = sorted(row["part"] for row in rows if row["part"])
    manifest = {"source": name, "fingerprint": fp, "inputs": [f.name for f in files], "counts": counts, "files": parts}
    storage.write_text(manifest_uri, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return PreparedSource(name, [storage.join(kept_dir, f) for f in parts], counts, manifest=manifest_uri)
