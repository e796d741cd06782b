"""One finding of a manifest check: where it is (file, object, JSON path) and what is wrong."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Problem:
    source: str  # the manifest file or kustomize directory the object came from
    object: str  # Kind/name
    path: str  # JSON path inside the object, "$" for the object itself
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.object}: {self.path}: {self.message}"


def object_label(obj: dict) -> str:
    """``Kind/name`` of a manifest, with placeholders where either is missing."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind', '<no kind>')}/{meta.get('name', '<no name>')}"


def json_path(parts: Iterable[str | int]) -> str:
    """``["spec", "workerGroupSpecs", 0, "replicas"]`` -> ``$.spec.workerGroupSpecs[0].replicas``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out
