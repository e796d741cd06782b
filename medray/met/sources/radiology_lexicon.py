"""medray's radiology findings lexicon: chest X-ray observations and descriptors.

Written for the project, informed by the CheXpert labeler's phrase lists and
MedTrim's ontology: every observation has whole-word surface forms (the
matcher works on words, so inflections are listed, not prefixes), phrases
that assert its absence ("heart size normal"), and the HPO concept it is
(`xref`), so the builder folds it into that HPO node. Single generic words
that would flood a general corpus ("mass", "line", "tube", "density") are
left out on purpose; the multi-word forms carry them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from medray.met.sources.base import SourceNode, register_source

GROUP_KEY = "MEDRAY:finding/chest_radiograph"


@dataclass(frozen=True)
class Observation:
    slug: str
    name: str
    xref: str | None  # the HPO concept this observation is
    surfaces: tuple[str, ...]
    absent_forms: tuple[str, ...] = ()
    # Other nodes whose mentions count as this observation when labelling reports.
    also_codes: tuple[str, ...] = field(default=())


OBSERVATIONS: tuple[Observation, ...] = (
    Observation(
        "enlarged_cardiomediastinum", "Enlarged cardiomediastinum", "HP:0034501",
        ("enlarged cardiomediastinum", "widened mediastinum", "mediastinal widening",
         "widening of the mediastinum", "enlarged cardiomediastinal silhouette",
         "cardiomediastinal enlargement", "mediastinal enlargement", "enlarged mediastinum"),
        ("normal cardiomediastinal silhouette", "cardiomediastinal silhouette is normal",
         "cardiomediastinal silhouette within normal limits", "cardiomediastinal contours are normal",
         "normal cardiomediastinal contours", "mediastinum is normal", "normal mediastinal contours"),
    ),
    Observation(
        "cardiomegaly", "Cardiomegaly", "HP:0001640",
        ("cardiomegaly", "cardiac enlargement", "enlarged heart", "enlarged cardiac silhouette",
         "heart is enlarged", "heart size is enlarged", "enlargement of the cardiac silhouette",
         "enlargement of the heart", "enlarged heart size", "increased heart size",
         "cardiac silhouette is enlarged"),
        ("heart size normal", "heart size is normal", "normal heart size", "heart size within normal limits",
         "heart size is within normal limits", "heart is normal in size", "heart is not enlarged",
         "normal cardiac silhouette", "cardiac silhouette is normal", "cardiac silhouette within normal limits",
         "normal size of the heart", "heart size is upper normal", "normal cardiac size"),
    ),
    Observation(
        "lung_opacity", "Lung opacity", "HP:0031457",
        ("opacity", "opacities", "opacification", "opacifications", "airspace disease", "air space disease",
         "airspace opacity", "airspace opacities", "infiltrate", "infiltrates", "infiltration",
         "interstitial marking", "interstitial markings", "interstitial pattern", "reticular pattern",
         "reticular marking", "reticular markings", "reticulation", "parenchymal scarring",
         "peribronchial thickening", "decreased translucency", "increased density",
         "ground glass opacity", "ground glass opacities", "lung opacity", "pulmonary opacity"),
    ),
    Observation(
        "lung_lesion", "Lung lesion", "HP:0033821",
        ("lung lesion", "pulmonary lesion", "lung mass", "pulmonary mass", "mass lesion", "nodule", "nodules",
         "lung nodule", "pulmonary nodule", "pulmonary nodules", "nodular opacity", "nodular opacities",
         "nodular density", "nodular densities", "nodular opacification", "cavitary lesion", "lung tumor",
         "pulmonary neoplasm", "lung neoplasm"),
        also_codes=("HP:0033608",),
    ),
    Observation(
        "edema", "Pulmonary edema", "HP:0100598",
        ("pulmonary edema", "edema", "oedema", "pulmonary oedema", "interstitial edema", "alveolar edema",
         "vascular congestion", "pulmonary vascular congestion", "pulmonary congestion",
         "vascular prominence", "hilar congestion", "fluid overload"),
        also_codes=("HP:0000969",),
    ),
    Observation(
        "consolidation", "Consolidation", "HP:0032177",
        ("consolidation", "consolidations", "consolidative opacity", "consolidative opacities",
         "airspace consolidation", "parenchymal consolidation", "lung consolidation"),
    ),
    Observation(
        "pneumonia", "Pneumonia", "HP:0002090",
        ("pneumonia", "pneumonias", "pneumonic infiltrate", "infectious process", "pulmonary infection",
         "lung infection", "bronchopneumonia"),
    ),
    Observation(
        "atelectasis", "Atelectasis", "HP:0100750",
        ("atelectasis", "atelectases", "atelectatic", "atelectatic change", "atelectatic changes",
         "lung collapse", "lobar collapse", "collapse of the lung", "subsegmental atelectasis",
         "plate like atelectasis", "discoid atelectasis"),
    ),
    Observation(
        "pneumothorax", "Pneumothorax", "HP:0002107",
        ("pneumothorax", "pneumothoraces"),
    ),
    Observation(
        "pleural_effusion", "Pleural effusion", "HP:0002202",
        ("pleural effusion", "pleural effusions", "effusion", "effusions", "pleural fluid", "hydrothorax"),
    ),
    Observation(
        "pleural_other", "Pleural thickening", "HP:0031944",
        ("pleural thickening", "pleural scarring", "pleural scar", "fibrothorax", "pleural plaque",
         "pleural plaques", "pleuroparenchymal scarring", "pleural parenchymal scarring",
         "pleuro parenchymal scar", "pleural parenchymal scar", "pleuro pericardial scar"),
    ),
    Observation(
        "fracture", "Fracture", "HP:0020110",
        ("fracture", "fractures", "fractured", "rib fracture", "rib fractures", "bone fracture"),
    ),
    Observation(
        "support_devices", "Support devices", None,
        ("support device", "support devices", "pacemaker", "pacer", "picc", "picc line",
         "central venous catheter", "central line", "endotracheal tube", "et tube", "nasogastric tube",
         "ng tube", "feeding tube", "chest tube", "sternotomy wires", "median sternotomy wires",
         "tracheostomy tube", "swan ganz catheter", "pacemaker leads", "defibrillator", "mediport",
         "port a cath", "surgical clips", "prosthetic valve"),
    ),
)

# Adjectival descriptors of severity and character: canonical -> surface forms.
ADJECTIVES: dict[str, tuple[str, ...]] = {
    "minimal": ("minimal", "minimally", "trace", "tiny", "slight", "slightly", "subtle", "faint"),
    "small": ("small", "little"),
    "mild": ("mild", "mildly"),
    "moderate": ("moderate", "moderately", "medium"),
    "large": ("large", "big", "huge", "massive", "substantial", "extensive"),
    "severe": ("severe", "severely", "marked", "markedly", "significant", "pronounced", "gross"),
    "acute": ("acute", "abrupt", "new"),
    "chronic": ("chronic", "longstanding", "long standing", "old", "remote"),
    "subacute": ("subacute",),
    "stable": ("stable", "unchanged", "persistent", "residual"),
    "worsening": ("worsening", "worsened", "increasing", "increased", "progressive", "enlarging"),
    "improving": ("improving", "improved", "decreasing", "decreased", "resolving", "diminished"),
    "patchy": ("patchy", "scattered", "multifocal", "streaky"),
    "diffuse": ("diffuse", "diffusely", "widespread"),
    "focal": ("focal", "localized", "discrete"),
    "confluent": ("confluent", "coalescent"),
    "linear": ("linear", "band like", "plate like", "platelike", "discoid"),
    "nodular": ("nodular", "rounded", "round"),
    "hazy": ("hazy", "ill defined", "vague", "indistinct"),
    "dense": ("dense", "homogeneous"),
    "heterogeneous": ("heterogeneous",),
    "calcified": ("calcified", "calcific"),
    "loculated": ("loculated",),
    "cavitary": ("cavitary", "cavitating"),
    "interstitial": ("interstitial",),
    "alveolar": ("alveolar", "airspace"),
    "enlarged": ("enlarged", "distended", "dilated", "engorged", "prominent"),
    "hyperinflated": ("hyperinflated", "hyperexpanded", "overinflated"),
    "hypoinflated": ("hypoinflated", "underinflated", "low lung volumes"),
    "suspicious": ("suspicious", "worrisome", "concerning"),
    "degenerative": ("degenerative",),
    "displaced": ("displaced", "malpositioned"),
}

# Directional and positional descriptors: canonical -> surface forms.
DIRECTIONS: dict[str, tuple[str, ...]] = {
    "right": ("right", "right sided", "right side"),
    "left": ("left", "left sided", "left side"),
    "bilateral": ("bilateral", "bilaterally", "both", "each"),
    "unilateral": ("unilateral",),
    "upper": ("upper", "apical", "apex", "biapical", "superior"),
    "middle": ("middle", "mid"),
    "lower": ("lower", "basal", "basilar", "bibasilar", "bibasal", "inferior", "base", "bases"),
    "central": ("central", "perihilar", "hilar"),
    "peripheral": ("peripheral", "subpleural"),
    "anterior": ("anterior", "ventral"),
    "posterior": ("posterior", "dorsal"),
    "medial": ("medial",),
    "lateral": ("lateral", "laterally"),
    "retrocardiac": ("retrocardiac",),
}


def observation_by_slug() -> dict[str, Observation]:
    return {o.slug: o for o in OBSERVATIONS}


@register_source("radiology_lexicon")
def radiology_lexicon_nodes(**_options) -> Iterator[SourceNode]:
    """Observations as symptom-axis findings; HPO xrefs fold them into HPO nodes."""
    yield SourceNode(
        key=GROUP_KEY,
        parent=None,
        axis="symptom",
        name="Chest radiograph finding",
        synonyms=["chest x ray finding", "chest radiograph findings"],
        source="radiology_lexicon",
    )
    for obs in OBSERVATIONS:
        yield SourceNode(
            key=f"MEDRAY:finding/{obs.slug}",
            parent=GROUP_KEY,
            axis="symptom",
            name=obs.name,
            synonyms=list(obs.surfaces),
            codes=[f"MEDRAY:finding/{obs.slug}"],
            xrefs=[obs.xref] if obs.xref else [],
            source="radiology_lexicon",
            absent_forms=list(obs.absent_forms),
        )
