"""A generated medical corpus with planted defects and its ground truth.

Why: the text engine's tests, `make demo` and `medray bench data` need a
corpus where the right answer is known. Clean documents (clinical notes,
radiology reports, textbook sections, patient leaflets; `synthetic_docs`)
are built from the tree's own names and synonyms, each about a few nodes
drawn from a Zipf law, so node frequencies are skewed the way real corpora
are and tree-guided sampling has something to fix. Defects
(`synthetic_defects`) are planted at known lines, each with the reason the
pipeline should give: exact and near duplicates, junk for every rule,
keyword spam, personal identifiers inside good documents, malformed lines.

The output is JSONL files cycling through plain, .gz and .zst, plus
`ground_truth.json` beside them. Record ids are `<file name>:<1-based
line>`, the reader's ids. Records come in chunks of 2,000, each spread over
all files in contiguous parts; a chunk depends only on (seed, chunk number),
so output is byte-identical for a seed (gzip mtime 0, no names in headers)
whatever the number of worker processes, and `size_mb` mode streams
hundreds of MB with flat memory and the same defect rates.

This module is the entry point, `generate_corpus`; a chunk is planned and
made in `synthetic_chunk`, written in `synthetic_files`, and its ground
truth kept in `synthetic_truth`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from medray import storage
from medray.data.synthetic_chunk import CHUNK_RECORDS, ChunkMaker, even_split
from medray.data.synthetic_docs import Composer
from medray.data.synthetic_files import CorpusFiles, file_names, make_chunks
from medray.data.synthetic_truth import GROUND_TRUTH, Truth, build_ground_truth
from medray.errors import MedrayError
from medray.met.tree import Tree


def generate_corpus(tree: Tree, out_dir: str, *, n_docs: int = 2000, files: int = 4, seed: int = 0,
                    size_mb: float | None = None, plant: bool = True, skew: float = 1.1,
                    record_doc_nodes: bool | None = None, workers: int | None = None) -> dict:
    """Write a JSONL corpus with planted defects to `out_dir` (local or s3://); return its ground truth.

    `n_docs` records (blank lines come on top), or with `size_mb` about that
    many MB (1e6 bytes) of uncompressed JSONL at the same defect rates.
    Files cycle through .jsonl, .jsonl.gz, .jsonl.zst. `skew` is the Zipf
    exponent of node mentions (0: uniform). `record_doc_nodes` (default:
    only without `size_mb`) lists every kept document's nodes in the ground
    truth. `workers` processes make chunks (default: one, or up to 8 but
    one fewer than the cores for `size_mb` >= 64); the output does not
    depend on it.
    """
    if files < 1:
        raise MedrayError(f"files must be at least 1, got {files}")
    if size_mb is None and n_docs < 1:
        raise MedrayError(f"n_docs must be at least 1, got {n_docs}")
    if workers is None:
        # one core stays with this process, which compresses and writes
        workers = max(1, min((os.cpu_count() or 1) - 1, 8)) if size_mb is not None and size_mb >= 64 else 1
    out_dir = str(out_dir)
    t0 = time.perf_counter()
    names = file_names(files)
    record_nodes = size_mb is None if record_doc_nodes is None else record_doc_nodes
    maker = ChunkMaker(Composer(tree, seed, skew), seed, plant, names, record_nodes)
    setup_s = time.perf_counter() - t0
    if size_mb is None:
        sizes = even_split(n_docs, -(-n_docs // CHUNK_RECORDS))
    else:
        sizes = iter(lambda: CHUNK_RECORDS, None)  # until the target size is reached
    truth = Truth(record_nodes)
    with contextlib.ExitStack() as stack:
        out = CorpusFiles(out_dir, names, stack)
        for chunk in stack.enter_context(contextlib.closing(make_chunks(maker, sizes, workers))):
            out.write(chunk)
            truth.merge(chunk.truth)
            if size_mb is not None and sum(out.written) >= size_mb * 1e6:
                break
    gen_s = time.perf_counter() - t0 - setup_s
    gt = build_ground_truth(truth, out.table(), seed=seed, skew=skew, n_docs=n_docs if size_mb is None else None,
                            size_mb=size_mb, plant=plant, files=files)
    storage.write_text(storage.join(out_dir, GROUND_TRUTH), json.dumps(gt, indent=1 if size_mb is None else None))
    # not in the file, which must be the same for a seed: how long this run took
    gt["timing"] = {"setup_s": round(setup_s, 3), "generate_s": round(gen_s, 3), "workers": workers,
                    "mb_per_s": round(sum(out.written) / 1e6 / max(gen_s, 1e-9), 2)}
    return gt
