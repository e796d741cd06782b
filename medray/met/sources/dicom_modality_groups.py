"""Modality mapping tables for the `dicom` source (see `dicom.py`), split from the
anatomy tables (`dicom_anatomy_groups.py`) so each axis can be read and edited alone.

Here: the project-written groups above the DICOM modality concepts, the rules that
place each defined term (CT, MR, ...) in a group, the nesting between terms, which
terms are safe as synonyms, and the naming fixes and report wording the CIDs lack.
Group names end in "modalities" so that no group has the same name as a concept
(`Computed tomography modalities` above DCM `Computed Tomography`). Every table is
checked when the source runs: a code or keyword that names no concept fails the build.
"""

from __future__ import annotations

MODALITY_GROUPS: list[tuple[str, str]] = [
    ("radiography", "Radiography modalities"),
    ("computed-tomography", "Computed tomography modalities"),
    ("magnetic-resonance", "Magnetic resonance modalities"),
    ("ultrasound", "Ultrasound modalities"),
    ("nuclear-medicine", "Nuclear medicine modalities"),
    ("optical", "Endoscopy, optical and photographic modalities"),
    ("ophthalmic-measurement", "Ophthalmic measurement modalities"),
    ("pathology", "Pathology and microscopy modalities"),
    ("waveform", "Waveform and physiological signal modalities"),
    ("radiotherapy", "Radiotherapy modalities"),
    ("non-image-object", "Non-image and derived object modalities"),
    ("other", "Other modalities"),
]
MODALITY_OTHER = "other"

# Explicit placements by DICOM code (the code is the defined term, e.g. CT).
MODALITY_EXPLICIT: dict[str, str] = {
    "CR": "radiography", "DX": "radiography", "RG": "radiography", "MG": "radiography",
    "IO": "radiography", "PX": "radiography", "XA": "radiography", "RF": "radiography",
    "BMD": "radiography",
    "CT": "computed-tomography", "CTPROTOCOL": "computed-tomography",
    "MR": "magnetic-resonance",
    "US": "ultrasound", "IVUS": "ultrasound", "BDUS": "ultrasound", "PA": "ultrasound",
    "NM": "nuclear-medicine", "PT": "nuclear-medicine",
    "ES": "optical", "XC": "optical", "DMS": "optical", "OP": "optical", "OCT": "optical",
    "IVOCT": "optical", "OPT": "optical", "OPTBSV": "optical", "OPTENF": "optical",
    "LS": "optical", "OSS": "optical", "DG": "optical",
    "AR": "ophthalmic-measurement", "KER": "ophthalmic-measurement",
    "LEN": "ophthalmic-measurement", "SRF": "ophthalmic-measurement",
    "VA": "ophthalmic-measurement", "OAM": "ophthalmic-measurement",
    "OPM": "ophthalmic-measurement", "OPV": "ophthalmic-measurement",
    "IOL": "ophthalmic-measurement",
    "SM": "pathology", "GM": "pathology", "CFM": "pathology", "STAIN": "pathology",
    "ECG": "waveform", "EEG": "waveform", "EMG": "waveform", "EOG": "waveform",
    "HD": "waveform", "RESP": "waveform", "EPS": "waveform", "BI": "waveform",
    "TG": "other", "POS": "other", "OT": "other",
    "RTIMAGE": "radiotherapy", "RTDOSE": "radiotherapy", "RTPLAN": "radiotherapy",
    "RTSTRUCT": "radiotherapy", "RTRECORD": "radiotherapy",
    "KO": "non-image-object", "PR": "non-image-object", "SR": "non-image-object",
    "SEG": "non-image-object", "REG": "non-image-object", "RWV": "non-image-object",
    "FID": "non-image-object", "SMR": "non-image-object", "DOC": "non-image-object",
    "HC": "non-image-object", "ASMT": "non-image-object", "M3D": "non-image-object",
    "TEXTUREMAP": "non-image-object", "PLAN": "non-image-object", "AU": "non-image-object",
}

# Fallback rules for codes a newer pydicom adds (first match wins).
MODALITY_RULES: list[tuple[str, str]] = [
    ("ultrasound", r"ultrasound|sonograph"),
    ("computed-tomography", r"computed tomography|\bct\b"),
    ("magnetic-resonance", r"magnetic resonance|\bmr\b"),
    ("nuclear-medicine", r"nuclear|positron|emission"),
    ("radiography", r"radiograph|x-ray|mammograph|fluoroscop|densitometry"),
    ("pathology", r"microscop|slide|patholog"),
    ("ophthalmic-measurement", r"refraction|keratometry|lensometry|visual|ophthalmic .*(measure|mapping)"),
    ("optical", r"endoscop|photograph|optical|ophthalmic|camera|scan"),
    ("waveform", r"waveform|electro|graphy$"),
    ("radiotherapy", r"^rt |radiotherapy"),
    ("non-image-object", r"document|state|segmentation|registration|object|map|report|plan"),
]

# Part-of / kind-of nesting between modality codes: child code -> parent code.
MODALITY_NEST: dict[str, str] = {
    "CTPROTOCOL": "CT",
    "IVUS": "US",
    "BDUS": "US",
    "IVOCT": "OCT",
    "OPT": "OCT",
    "OPTBSV": "OPT",
    "OPTENF": "OPT",
}

# The DICOM defined terms that are also a synonym: only those a report writes and
# no English word or clinical abbreviation shares. US, PT, OT, SM, ES, MR (Mr),
# PA (posteroanterior), DX (diagnosis), CR (creatinine), MG (milligram), HD
# (haemodialysis), OCT (October), POS, DOC, ... stay codes only.
SAFE_ABBREVIATIONS = {"CT", "ECG", "EEG", "EMG", "EOG", "IVUS", "IVOCT", "BMD", "RTSTRUCT", "RTDOSE", "RTPLAN"}

# ---- names -----------------------------------------------------------------------
# A name other than the CID meaning, where pydicom has a better meaning for the same
# code (checked: it must be one of them). "Other" alone would match every "other".
PREFERRED_NAMES: dict[str, str] = {"DCM:OT": "Other Modality"}

# Keywords whose CamelCase split is not a synonym of the code meaning (the anatomy
# ones are in `dicom_anatomy_groups`; `dicom.py` applies both to every concept).
KEYWORD_SYNONYM_SKIP = {
    "DocumentProducer",  # "Document producer", "Spatial fiducials producer": the IOD's
    "SpatialFiducialsProducer",  # producer, not a name anyone writes
}

# Terms too generic to be a synonym of anything (they stay names where pydicom says so).
# Both come from modality codes (OT, AU), but `dicom.py` applies the list to every concept.
SYNONYM_STOPLIST = {"other", "audio"}

# Extra synonyms for modality CID concepts, by keyword (report wording the tables lack).
EXTRA_SYNONYMS: dict[str, list[str]] = {
    "ComputedTomography": ["CAT scan", "computerized tomography", "computerised tomography"],
    "MagneticResonance": ["MRI", "magnetic resonance imaging", "MR imaging"],
    "Ultrasound": ["ultrasonography", "sonography"],
    "PositronEmissionTomography": ["PET scan", "PET imaging"],
    "NuclearMedicine": ["scintigraphy", "nuclear medicine imaging"],
    "Mammography": ["mammogram"],
    "Radiofluoroscopy": ["fluoroscopy"],
    "Electrocardiography": ["electrocardiogram", "EKG"],
    "Electroencephalography": ["electroencephalogram"],
    "Electromyography": ["electromyogram"],
    "PanoramicXRay": ["panoramic radiograph", "orthopantomogram", "orthopantomography"],
    "IntraOralRadiography": ["intraoral radiograph", "dental radiograph"],
    "OpticalCoherenceTomography": ["optical coherence tomogram"],
    "Dermoscopy": ["dermatoscopy"],
}
