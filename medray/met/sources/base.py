"""What a tree source yields, and the registry that names the sources.

A source is a function `(SourceConfig) -> Iterator[SourceNode]` that yields
parents before children. Keys are the source's own codes (`ICD10CM:J90`,
`HP:0002202`) or project-written group keys (`MEDRAY:...`); the builder turns
them into stable node ids and merges concepts that several sources name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from medray.met.tree import check_axis


@dataclass
class SourceNode:
    key: str
    parent: str | None  # key of the parent from the same source; None = directly under the axis
    axis: str
    name: str
    synonyms: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # every code this concept has in its source
    xrefs: list[str] = field(default_factory=list)  # codes of the same concept in *other* sources
    source: str = ""
    # Surface forms that assert the concept is absent ("heart size normal" -> cardiomegaly).
    absent_forms: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_axis(self.axis)
        if self.key not in self.codes and not self.key.startswith("MEDRAY:"):
            self.codes.insert(0, self.key)


SourceFn = Callable[..., Iterator[SourceNode]]
SOURCES: dict[str, SourceFn] = {}


def register_source(name: str) -> Callable[[SourceFn], SourceFn]:
    """Name a source so configs can list it (`sources: [icd10cm, hpo, ...]`)."""

    def deco(fn: SourceFn) -> SourceFn:
        SOURCES[name] = fn
        return fn

    return deco
