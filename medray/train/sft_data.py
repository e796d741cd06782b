"""SFT samples over Arrow batches: JSON-ish rows in, token ids and labels out, every malformed row with a reason.

A row is a chat sample (`messages`, `images`) or a structured-CoT sample
(`question`, `cot`, `answer`, `images`), either as the table's own columns
or as JSON text in one column (`json_column`: what `read_sft_files` writes
for JSONL, since chat content mixes strings and part lists, which Arrow
cannot hold in one column type). `tokenize_sft_batch` is a plain function
over a `pyarrow.Table`; `SFTTokenizeBatches` is the same for Ray Data's
`map_batches` (one table per batch, kept rows and rejects told apart by
`reason`), so `in = kept + rejected` holds per batch.

Output columns (`SFT_SCHEMA`): `input_ids`, `labels` (list<int32>, -100
off the loss), `num_tokens`, `num_loss_tokens`, `n_images`, `image_refs`
(list of `{path, bytes}`, the Hugging Face datasets image layout: a path,
local or s3://, or the encoded bytes), `truncated_turns`, `reasoning`.
Images are referenced, not decoded: pixels are made at collate time
(`medray.train.sft_collate`), so shards stay small and the image
preprocessor can change without re-tokenising.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medray import storage
from medray.data.io import discover_inputs, iter_lines
from medray.data.stage import Stage, StageResult
from medray.errors import ConfigError, MedrayError
from medray.train.chat_format import ChatEncoder, ChatFormatConfig, EncodedChat, SampleError
from medray.train.cot import cot_sample_to_chat, is_cot_sample, is_reasoning

IMAGE_REF_TYPE = pa.struct([("path", pa.string()), ("bytes", pa.binary())])
SFT_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("input_ids", pa.list_(pa.int32())),
    ("labels", pa.list_(pa.int32())),
    ("num_tokens", pa.int32()),
    ("num_loss_tokens", pa.int32()),
    ("n_images", pa.int32()),
    ("image_refs", pa.list_(IMAGE_REF_TYPE)),
    ("truncated_turns", pa.int32()),  # messages dropped from the end to fit max_len (overflow: truncate)
    ("reasoning", pa.bool_()),  # the target is a structured chain of thought
])
REJECT_SCHEMA = pa.schema([("id", pa.string()), ("reason", pa.string()), ("detail", pa.string()), ("raw", pa.string())])
TAGGED_SCHEMA = pa.schema(list(SFT_SCHEMA) + [f for f in REJECT_SCHEMA if f.name != "id"])
PASSTHROUGH_COLUMNS = ("id", "source")  # bookkeeping columns that are not part of a sample


@dataclass
class SFTDataConfig:
    tokenizer: str = "out/tokenizer"  # a folder written by `medray tokenizer train` (local or s3://)
    chat: ChatFormatConfig = field(default_factory=ChatFormatConfig)
    json_column: str = "sample"  # a column of JSON samples; when absent, a row's own columns are the sample
    id_column: str = "id"
    image_root: str = ""  # relative image paths are under this folder (local or s3://)
    check_images: bool = False  # decode each image while tokenising: a broken one is rejected (bad_image), not met mid-training
    pad_to_multiple_of: int = 8  # collate pads each batch to a multiple of this (1: the batch's longest)

    def validate(self, prefix: str = "data") -> SFTDataConfig:
        self.chat.validate(f"{prefix}.chat")
        if self.pad_to_multiple_of < 1:
            raise ConfigError(f"{prefix}.pad_to_multiple_of", f"must be at least 1, got {self.pad_to_multiple_of}")
        if not self.json_column:
            raise ConfigError(f"{prefix}.json_column", "must name a column")
        return self


# ---- images ----------------------------------------------------------------------------------------


def image_ref(value, image_root: str = "") -> dict:
    """`{"path", "bytes"}` of an image given as a path, bytes or such a dict; raises SampleError."""
    if isinstance(value, dict):
        path, data = value.get("path"), value.get("bytes")
    elif isinstance(value, str):
        path, data = value, None
    elif isinstance(value, (bytes, bytearray)):
        path, data = None, bytes(value)
    else:
        raise SampleError("bad_image_ref", f"an image is a path, bytes or {{path, bytes}}, got {type(value).__name__}")
    if data is None and not (isinstance(path, str) and path):
        raise SampleError("bad_image_ref", f"an image has neither a path nor bytes: {value!r:.80}")
    if data is None and image_root and not storage.is_remote(path) and not path.startswith("/"):
        path = storage.join(image_root, path)
    return {"path": path if data is None else None, "bytes": data}


def load_image(ref):
    """An RGB PIL image from a ref (dict, path, bytes) or a PIL image; raises MedrayError naming the path."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    ref = image_ref(ref)
    where = ref["path"] or f"<{len(ref['bytes'])} bytes>"
    try:
        data = ref["bytes"] if ref["bytes"] is not None else storage.read_bytes(ref["path"])
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, MedrayError) as err:
        raise MedrayError(f"{where}: not a readable image ({err})") from None


# ---- rows -> samples -> tokens ----------------------------------------------------------------------


def _row_sample(row: dict, json_column: str, has_json: bool) -> dict:
    if not has_json:
        sample = {k: v for k, v in row.items() if k not in PASSTHROUGH_COLUMNS and v is not None}
    else:
        text = row.get(json_column)
        if not isinstance(text, str) or not text.strip():
            raise SampleError("bad_json", f"{json_column!r} is empty or not text")
        try:
            sample = json.loads(text)
        except json.JSONDecodeError as err:
            raise SampleError("bad_json", str(err)) from None
        if not isinstance(sample, dict):
            raise SampleError("bad_json", f"a sample is a JSON object, got {type(sample).__name__}")
    return cot_sample_to_chat(sample) if is_cot_sample(sample) else sample


def _raw(row: dict, json_column: str, has_json: bool) -> str:
    if has_json and isinstance(row.get(json_column), str):
        return row[json_column]
    return json.dumps(row, sort_keys=True, ensure_ascii=False, default=repr)


def tokenize_sft_batch(batch: pa.Table, encoder: ChatEncoder, config: SFTDataConfig) -> StageResult:
    """The batch's samples tokenised (`SFT_SCHEMA`) and its rejects (`REJECT_SCHEMA`): in = kept + rejected."""
    has_json = config.json_column in batch.column_names
    rows = batch.to_pylist()
    ids = [None if row.get(config.id_column) is None else str(row[config.id_column]) for row in rows]
    samples: list[dict | SampleError] = []
    for row in rows:
        try:
            samples.append(_row_sample(row, config.json_column, has_json))
        except SampleError as err:
            samples.append(err)
    candidates = [s for s in samples if not isinstance(s, SampleError)]
    encoded = iter(encoder.encode_many(candidates))
    kept: dict[str, list] = {f.name: [] for f in SFT_SCHEMA}
    rejects: dict[str, list] = {f.name: [] for f in REJECT_SCHEMA}
    counts: Counter = Counter()
    for row, row_id, sample in zip(rows, ids, samples):
        result = sample if isinstance(sample, SampleError) else next(encoded)
        if not isinstance(result, SampleError):
            try:
                refs = _kept_images(sample, result, config)
            except SampleError as err:
                result = err
        if isinstance(result, SampleError):
            for key, value in (("id", row_id), ("reason", result.reason), ("detail", result.detail),
                               ("raw", _raw(row, config.json_column, has_json))):
                rejects[key].append(value)
            continue
        loss = result.num_loss_tokens
        for key, value in (("id", row_id), ("input_ids", result.input_ids), ("labels", result.labels),
                           ("num_tokens", len(result.input_ids)), ("num_loss_tokens", loss),
                           ("n_images", result.n_images), ("image_refs", refs),
                           ("truncated_turns", result.truncated_turns), ("reasoning", is_reasoning(sample))):
            kept[key].append(value)
        counts.update(samples=1, tokens=len(result.input_ids), loss_tokens=loss, images=result.n_images,
                      truncated_samples=int(result.truncated_turns > 0), truncated_turns=result.truncated_turns)
    return StageResult(pa.table(kept, schema=SFT_SCHEMA), pa.table(rejects, schema=REJECT_SCHEMA), counts)


def _kept_images(sample: dict, encoded: EncodedChat, config: SFTDataConfig) -> list[dict]:
    """Refs of the images the encoding kept (the first ones: truncation drops whole trailing turns)."""
    refs = [image_ref(v, config.image_root) for v in (sample.get("images") or [])[: encoded.n_images]]
    if config.check_images:
        for ref in refs:
            try:
                load_image(ref)
            except MedrayError as err:
                raise SampleError("bad_image", str(err)) from None
    return refs


class SFTTokenizeStage(Stage):
    """The stage form of `tokenize_sft_batch`: the tokenizer is loaded once per worker, in `setup`."""

    name = "sft_tokenize"
    stateful = True

    def __init__(self, config: SFTDataConfig):
        self.config = config.validate()
        self.encoder: ChatEncoder | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "encoder": None}  # ship the config; each worker loads its own tokenizer

    def setup(self) -> None:
        self.encoder = ChatEncoder.from_path(self.config.tokenizer, self.config.chat)

    def process(self, batch: pa.Table) -> StageResult:
        if self.encoder is None:
            self.setup()
        return tokenize_sft_batch(batch, self.encoder, self.config)


class SFTTokenizeBatches(SFTTokenizeStage):
    """For `Dataset.map_batches(SFTTokenizeBatches, fn_constructor_args=(config,), batch_format="pyarrow")`.

    Returns one table per batch (`TAGGED_SCHEMA`): kept rows with a null
    `reason`, rejects with their reason and raw row; `split_tagged` parts them.
    """

    def __call__(self, batch: pa.Table) -> pa.Table:  # type: ignore[override]
        return tag_result(self.process(batch))


def tag_result(result: StageResult) -> pa.Table:
    kept, rejects = result.kept, result.dropped
    none = pa.nulls(kept.num_rows, pa.string())
    tagged_kept = kept.append_column("reason", none).append_column("detail", none).append_column("raw", none)
    n = rejects.num_rows
    zeros = pa.array([0] * n, pa.int32())
    empty_ids = pa.array([[]] * n, pa.list_(pa.int32()))
    tagged_rejects = pa.table({
        "id": rejects.column("id"), "input_ids": empty_ids, "labels": empty_ids, "num_tokens": zeros,
        "num_loss_tokens": zeros, "n_images": zeros, "image_refs": pa.array([[]] * n, pa.list_(IMAGE_REF_TYPE)),
        "truncated_turns": zeros, "reasoning": pa.array([False] * n), "reason": rejects.column("reason"),
        "detail": rejects.column("detail"), "raw": rejects.column("raw"),
    }, schema=TAGGED_SCHEMA)
    return pa.concat_tables([tagged_kept.cast(TAGGED_SCHEMA), tagged_rejects])


def split_tagged(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept rows in `SFT_SCHEMA`, rejects in `REJECT_SCHEMA`) of a tagged table."""
    rejected = pc.is_valid(table.column("reason"))
    kept = table.filter(pc.invert(rejected)).select(SFT_SCHEMA.names)
    return kept, table.filter(rejected).select(REJECT_SCHEMA.names)


# ---- files ------------------------------------------------------------------------------------------


def read_sft_files(paths: str | list[str], chunk_rows: int = 1000, json_column: str = "sample") -> Iterator[pa.Table]:
    """SFT files (JSONL, plain/.gz/.zst, or parquet; local or s3://) as tables of `chunk_rows` rows.

    Every row gets `source` and an `id` (`file:line`; parquet rows keep
    their own `id`, else `file:row`). A JSONL line stays JSON text in
    `json_column`, parsed (or rejected as bad_json) by `tokenize_sft_batch`;
    blank lines are skipped.
    """
    if chunk_rows < 1:
        raise MedrayError("chunk_rows must be at least 1")
    for file in discover_inputs(paths):
        if file.is_parquet:
            yield from _parquet_tables(file.uri, file.name, chunk_rows)
            continue
        ids: list[str] = []
        texts: list[str | None] = []
        with storage.open_input_stream(file.uri) as stream:
            for number, raw in enumerate(iter_lines(stream), start=1):
                if not raw.strip():
                    continue
                try:
                    texts.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    texts.append(None)  # rejected as bad_json, with its id
                ids.append(f"{file.name}:{number}")
                if len(ids) == chunk_rows:
                    yield _jsonl_table(ids, texts, file.name, json_column)
                    ids, texts = [], []
        if ids:
            yield _jsonl_table(ids, texts, file.name, json_column)


def _jsonl_table(ids: list[str], texts: list[str | None], source: str, json_column: str) -> pa.Table:
    return pa.table({"id": ids, "source": [source] * len(ids), json_column: pa.array(texts, pa.string())})


def _parquet_tables(uri: str, name: str, chunk_rows: int) -> Iterator[pa.Table]:
    """Parquet batches as they are, with `source` set and `id` added where the file has none."""
    with storage.open_input_file(uri) as handle:
        row = 0
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=chunk_rows):
            table = pa.Table.from_batches([batch])
            if "source" in table.column_names:
                table = table.drop_columns(["source"])
            if "id" not in table.column_names:
                table = table.add_column(0, "id", pa.array([f"{name}:{row + i + 1}" for i in range(batch.num_rows)]))
            row += batch.num_rows
            yield table.add_column(1, "source", pa.array([name] * batch.num_rows, pa.string()))
