"""Tree sources; importing this package registers them all by name."""

from medray.met.sources import (  # noqa: F401  (registration side effects)
    dicom,
    disease_ontology,
    icd10cm,
    obo_sources,
    radiology_lexicon,
)
from medray.met.sources.base import SOURCES, SourceNode, register_source

__all__ = ["SOURCES", "SourceNode", "register_source"]
