"""Tokenised SFT rows -> padded tensors, with pixels made from each sample's images.

Right padding to the batch's longest row, rounded up to a multiple of
`pad_to_multiple_of` (8 suits tensor cores and keeps the number of
distinct shapes small, so kernels and compiled graphs are reused).
`attention_mask` is 1 on real tokens, padding is the tokenizer's pad id,
and padded labels are -100 so they never reach the loss. Images are
decoded here, not when tokenising, through a pluggable preprocessor (any
callable PIL image -> tensor [C, H, W], e.g. the vision model's); their
tensors are stacked in sample order, then image order within a sample,
which is the order of the `<image>` placeholder runs in `input_ids`.

The collator takes what a data loader hands it: a `pyarrow.Table`, a
dict of columns (numpy or lists) or a list of row dicts; `ray_collate_fn`
wraps it for Ray Data's `iter_torch_batches(collate_fn=...)`, which then
hands it Arrow batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medray.errors import MedrayError
from medray.train.chat_format import IGNORE_INDEX
from medray.train.sft_data import load_image

if TYPE_CHECKING:
    import torch

NEEDED = ("input_ids", "labels")


def _rows_of(column: pa.ChunkedArray) -> list[np.ndarray]:
    """A list<int> column as one int64 array per row, without going through Python lists."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    values = array.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []


def _columns(batch) -> dict[str, Sequence]:
    if isinstance(batch, pa.Table):
        columns: dict[str, Sequence] = {c: _rows_of(batch.column(c)) for c in NEEDED if c in batch.column_names}
        if "image_refs" in batch.column_names:
            columns["image_refs"] = batch.column("image_refs").to_pylist()
        return columns
    if isinstance(batch, dict):
        return batch
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise MedrayError("collate: an empty batch")
        return {key: [row[key] for row in batch] for key in batch[0]}
    raise MedrayError(f"collate: expected a table, a dict of columns or a list of rows, got {type(batch).__name__}")


def _refs(value) -> list:
    """A row's image refs as a list (Ray may give a numpy object array, or None for no images)."""
    if value is None:
        return []
    return list(value)


class SFTCollator:
    """`collate(batch) -> {"input_ids", "attention_mask", "labels"[, "pixel_values"]}` as torch tensors.

    `pixel_values` [n_images, C, H, W] is present when the batch holds
    images; a batch with images and no `image_processor` is an error.
    """

    def __init__(self, pad_id: int, *, pad_to_multiple_of: int = 8, image_processor: Callable | None = None,
                 image_loader: Callable = load_image):
        if pad_to_multiple_of < 1:
            raise MedrayError(f"pad_to_multiple_of must be at least 1, got {pad_to_multiple_of}")
        self.pad_id, self.multiple = int(pad_id), pad_to_multiple_of
        self.image_processor, self.image_loader = image_processor, image_loader

    def __call__(self, batch) -> dict:
        import torch

        columns = _columns(batch)
        missing = [c for c in NEEDED if c not in columns]
        if missing:
            raise MedrayError(f"collate: the batch has no {', '.join(missing)} column (columns: {', '.join(columns)})")
        ids = [np.asarray(row, dtype=np.int64) for row in columns["input_ids"]]
        labels = [np.asarray(row, dtype=np.int64) for row in columns["labels"]]
        if any(len(i) != len(label) for i, label in zip(ids, labels)):
            raise MedrayError("collate: a row's input_ids and labels differ in length")
        longest = max((len(i) for i in ids), default=0)
        width = -(-longest // self.multiple) * self.multiple
        input_ids = np.full((len(ids), width), self.pad_id, np.int64)
        attention = np.zeros((len(ids), width), np.int64)
        padded_labels = np.full((len(ids), width), IGNORE_INDEX, np.int64)
        for row, (i, label) in enumerate(zip(ids, labels)):
            input_ids[row, : len(i)] = i
            attention[row, : len(i)] = 1
            padded_labels[row, : len(label)] = label
        out = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention),
               "labels": torch.from_numpy(padded_labels)}
        refs = [ref for row in columns.get("image_refs", []) for ref in _refs(row)]
        if refs:
            out["pixel_values"] = self.pixel_values(refs)
        return out

    def pixel_values(self, refs: list) -> torch.Tensor:
        import torch

        if self.image_processor is None:
            raise MedrayError(f"collate: the batch holds {len(refs)} images but no image_processor was given")
        tensors = []
        for ref in refs:
            value = torch.as_tensor(self.image_processor(self.image_loader(ref)))
            if value.ndim != 3:
                raise MedrayError(f"collate: the image processor returned shape {tuple(value.shape)}, expected [C, H, W]")
            tensors.append(value)
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise MedrayError(f"collate: images of different shapes {sorted(shapes)}: the processor must resize to one size")
        return torch.stack(tensors)


def ray_collate_fn(collator: SFTCollator):
    """The collator as Ray Data's `ArrowBatchCollateFn` (Arrow batches in, no numpy detour)."""
    from ray.data.collate_fn import ArrowBatchCollateFn

    class SFTArrowCollate(ArrowBatchCollateFn):
        def __init__(self, inner: SFTCollator):
            self.inner = inner

        def __call__(self, batch: pa.Table) -> dict:
            return self.inner(batch)

    return SFTArrowCollate(collator)
