"""Inputs of `medray met coverage`: entity lists and corpora to tag."""

from __future__ import annotations

from medray.errors import SourceError
from medray.met.tree import AXES, Tree


def read_entities(path: str) -> list[str] | dict[str, list[str]]:
    """One entity per line, or `term<TAB>axis` lines (then grouped by axis)."""
    from medray.storage import read_text

    flat: list[str] = []
    by_axis: dict[str, list[str]] = {}
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        term, sep, axis = line.partition("\t")
        if sep:
            axis = axis.strip()
            if axis not in AXES:
                raise SourceError(path, lineno, f"unknown axis {axis!r}: expected one of {', '.join(AXES)}")
            by_axis.setdefault(axis, []).append(term.strip())
        else:
            flat.append(term.strip())
    if flat and by_axis:
        raise SourceError(path, 0, "mixes plain lines and term<TAB>axis lines")
    if not flat and not by_axis:
        raise SourceError(path, 0, "no entities")
    return by_axis or flat


def read_corpus(path: str, text_column: str = "text"):
    """A Ray Dataset over .txt (one document per line), .jsonl/.json or .parquet files."""
    import ray.data

    from medray.runtime import init_ray

    init_ray()
    if path.endswith((".parquet", "/")) or not path.rsplit("/", 1)[-1].count("."):
        return ray.data.read_parquet(path, columns=[text_column])
    if path.endswith((".jsonl", ".json", ".jsonl.gz")):
        return ray.data.read_json(path).select_columns([text_column])
    if path.endswith(".txt"):
        return ray.data.read_text(path).rename_columns({"text": text_column})
    raise SourceError(path, 0, "corpus must be .txt, .jsonl, .json or .parquet")


def corpus_frequencies(tree: Tree, corpus: str, text_column: str = "text") -> dict:
    """Tag a corpus with the tree's matcher on Ray; node frequency statistics of its mentions."""
    from medray.met.coverage import node_frequency_stats
    from medray.met.matcher import Matcher
    from medray.met.ray_match import count_mentions_ray, present_counts

    counts = count_mentions_ray(read_corpus(corpus, text_column), Matcher(tree), text_column)
    stats = node_frequency_stats(tree, present_counts(counts))
    stats["mentions_by_assertion"] = {
        a: int(sum(c for c, x in zip(counts["count"].to_pylist(), counts["assertion"].to_pylist()) if x == a))
        for a in ("present", "absent", "uncertain")
    }
    return stats
