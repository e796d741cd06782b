"""Anatomy mapping tables for the `dicom` source (see `dicom.py`), split from the
modality tables (`dicom_modality_groups.py`) so each axis can be read and edited alone.

Here: the project-written groups above the DICOM anatomy concepts, the rules that
place each concept in a group, the part-of nesting between concepts, the report
wording the CIDs lack, and the chest-radiology structures the CIDs lack.

Concepts are named by their pydicom keyword (`Lung`, `EndoArterial`, `Artery`): any
keyword pydicom has for the same code works, so `Chest` and `Thorax` are one concept.
Group names end in "region" or "system" so that no group has the same name as a
concept (`Thoracic region` above SCT `Chest`) and a name lookup never hits a group
where the concept was meant. Every table is checked when the source runs: a keyword
that names no concept fails the build instead of silently dropping a rule.
"""

from __future__ import annotations

# (slug, name) in display order; the key is MEDRAY:anatomy/<slug>.
ANATOMY_GROUPS: list[tuple[str, str]] = [
    ("head-and-neck", "Head and neck region"),
    ("nervous-system", "Central nervous system"),
    ("thorax", "Thoracic region"),
    ("cardiovascular", "Cardiovascular system"),
    ("abdomen", "Abdominal region"),
    ("digestive", "Digestive system"),
    ("urinary", "Urinary system"),
    ("reproductive", "Reproductive system"),
    ("pelvis", "Pelvic region"),
    ("spine", "Spine and back region"),
    ("upper-limb", "Upper limb region"),
    ("lower-limb", "Lower limb region"),
    ("musculoskeletal", "Musculoskeletal system (general)"),
    ("multiple-regions", "Multiple body regions"),
    ("other", "Other anatomic region"),
]
ANATOMY_OTHER = "other"

# Explicit placements, checked before the rules (the exceptions the rules get wrong).
ANATOMY_EXPLICIT: dict[str, str] = {
    "VertebralColumnAndCranium": "multiple-regions",
    "LumbarRegion": "spine",  # SCT 52612000 is the lumbar region of the back
    "LeftLumbarRegion": "abdomen",  # ...while left/right lumbar are abdominal regions
    "RightLumbarRegion": "abdomen",
    "Phantom": "other",
    "Axilla": "upper-limb",
    "Buttock": "pelvis",
    "Omentum": "abdomen",
    "OmentalBursa": "abdomen",
    "SternoclavicularJoint": "thorax",
    "AdrenalGland": "abdomen",  # endocrine, not urinary (the urinary rule's "renal" matches it)
}

# Ordered keyword rules on the lower-cased name (first match wins).
ANATOMY_RULES: list[tuple[str, str]] = [
    ("multiple-regions", r"\band\b.*\b(chest|abdomen|pelvis|extremities)\b|entire body"),
    (
        "cardiovascular",
        r"arter|aort|\bveins?\b|venous|vena\b|atri(um|al)\b|ventric|cardiac|coronary|heart"
        r"|fistula|ductus|truncus|baffle|conduit|vessel|circle of willis|saphen|tributary"
        r"|graft|triatriatum",
    ),
    ("nervous-system", r"brain|cerebell|spinal cord"),
    ("spine", r"spine|vertebra|sacrum|coccyx|\bback\b"),
    (
        "head-and-neck",
        r"head|neck|skull|crani|\bface\b|facial|scalp|cheek|\bjaw|mandib|maxill|zygom|nasal"
        r"|\bnose|pharyn|laryn|mouth|tongue|\bear\b|auditory|mastoid|\beye|orbit|optic"
        r"|cornea|sclera|sella|fontanel|parotid|submandib|submental|thyroid|sinus"
        r"|temporomandibular",
    ),
    (
        "thorax",
        r"thora|chest|lung|pulmon|bronch|trache|mediastin|thymus|breast|\brib\b|stern"
        r"|subxiphoid|pleura|diaphragm",
    ),
    (
        "digestive",
        r"liver|hepat|biliar|\bbile|gallbladder|pancrea|esophag|stomach|duoden|jejun|\bileum"
        r"|intestin|colon|\brect|\banus\b",
    ),
    ("urinary", r"kidney|renal|ureter|urethr|bladder|calyx|urinary"),
    (
        "reproductive",
        r"uter(us|ine)|cervix|ovar|vagin|vulva|prostat|testis|scrot|penis|broad ligament"
        r"|fallopian",
    ),
    (
        "abdomen",
        r"abdom|hypochond|subcostal|epigastr|hypogastr|umbilical|flank|inguinal|retroperit"
        r"|spleen|adrenal",
    ),
    ("pelvis", r"pelvi|perine|\bilium\b|sacroiliac"),
    (
        "upper-limb",
        r"upper limb|shoulder|\barm\b|elbow|forearm|wrist|\bhand\b|finger|thumb|humer"
        r"|scapula|clavic|acromio",
    ),
    (
        "lower-limb",
        r"lower limb|lower leg|\bhip\b|thigh|femur|fibula|tibia|knee|patella|poplit|ankle"
        r"|\bfoot\b|\btoe\b|calcane|tarsal|sesamoid",
    ),
    ("musculoskeletal", r"joint|articular|extremity|muscle|\bbone"),
]

# Part-of nesting: child keyword -> parent keyword. A nested concept sits in its
# parent's group whatever the rules say, so a chain never crosses groups. Siblings
# (same parent) share a line.
ANATOMY_NEST: dict[str, str] = {
    # head and neck
    "Head": "HeadAndNeck", "Neck": "HeadAndNeck",
    "PharynxAndLarynx": "Neck",
    "Pharynx": "PharynxAndLarynx", "Larynx": "PharynxAndLarynx",
    "Nasopharynx": "Pharynx", "Hypopharynx": "Pharynx",
    "EndoNasopharyngeal": "Nasopharynx",
    "Thyroid": "Neck", "Parathyroid": "Neck", "SupraclavicularRegionOfNeck": "Neck",
    "SubmandibularArea": "Neck", "Submental": "Neck",
    "SubmandibularGland": "SubmandibularArea",
    "Face": "Head", "Scalp": "Head", "Skull": "Head", "Intracranial": "Head", "Ear": "Head",
    "EyeRegion": "Face", "Nose": "Face", "Mouth": "Face", "Cheek": "Face", "JawRegion": "Face",
    "ParotidGland": "Face",
    "Eye": "EyeRegion", "Eyelid": "EyeRegion", "OrbitalStructure": "EyeRegion",
    "OpticCanal": "OrbitalStructure",
    "Cornea": "Eye", "Sclera": "Eye",
    "ExternalAuditoryCanal": "Ear", "InternalAuditoryCanal": "Ear",
    "MastoidBone": "Skull", "SellaTurcica": "Skull", "FontanelOfSkull": "Skull",
    "FacialBones": "Skull",
    "Mandible": "FacialBones", "Maxilla": "FacialBones", "Zygoma": "FacialBones",
    "NasalBone": "FacialBones",
    "TemporomandibularJoint": "JawRegion",
    "EndoNasal": "Nose", "ParanasalSinus": "Nose",
    "Tongue": "Mouth",
    # nervous system
    "Cerebellum": "Brain",
    # thorax
    "IntraThoracic": "Chest",
    "Lung": "IntraThoracic", "Mediastinum": "IntraThoracic",
    "ApexOfLung": "Lung",
    "Thymus": "Mediastinum",
    "Trachea": "TracheaAndBronchus", "Bronchus": "TracheaAndBronchus",
    "SuprasternalNotch": "Sternum",
    # cardiovascular: heart
    "Atrium": "Heart", "Ventricle": "Heart", "CoronaryArtery": "Heart", "CoronarySinus": "Heart",
    "LeftAtrium": "Atrium", "RightAtrium": "Atrium", "CommonAtrium": "Atrium",
    "PulmonaryVenousAtrium": "Atrium", "SystemicVenousAtrium": "Atrium",
    "PulmonaryChamberOfCorTriatriatum": "Atrium", "JuxtaposedAtrialAppendage": "Atrium",
    "LeftAuricularAppendage": "LeftAtrium",
    "RightAuricularAppendage": "RightAtrium",
    "LeftVentricle": "Ventricle", "RightVentricle": "Ventricle", "CommonVentricle": "Ventricle",
    "ApexOfLeftVentricle": "LeftVentricle", "LeftVentricleInflow": "LeftVentricle",
    "LeftVentricleOutflowTract": "LeftVentricle",
    "ApexOfRightVentricle": "RightVentricle", "RightVentricleInflow": "RightVentricle",
    "RightVentricleOutflowTract": "RightVentricle",
    "CongenitalCoronaryArteryFistulaToLeftAtrium": "CoronaryArtery",
    "CongenitalCoronaryArteryFistulaToLeftVentricle": "CoronaryArtery",
    "CongenitalCoronaryArteryFistulaToRightAtrium": "CoronaryArtery",
    "CongenitalCoronaryArteryFistulaToRightVentricle": "CoronaryArtery",
    "GreatCardiacVein": "CoronarySinus",
    "AnteriorCardiacVein": "Heart", "InferiorCardiacVein": "Heart",
    # cardiovascular: vessels
    "Artery": "BloodVessel", "Vein": "BloodVessel", "LumenOfBloodVessel": "BloodVessel",
    "AscendingAorta": "Aorta", "AorticArch": "Aorta", "ThoracicAorta": "Aorta",
    "AbdominalAorta": "Aorta", "PrimitiveAorta": "Aorta", "AorticFistula": "Aorta",
    "StructureOfDescendingThoracicAorta": "ThoracicAorta",
    "LeftPulmonaryArtery": "PulmonaryArtery", "RightPulmonaryArtery": "PulmonaryArtery",
    "PrimitivePulmonaryArtery": "PulmonaryArtery", "PulmonaryArteryConduit": "PulmonaryArtery",
    "PulmonaryArteriovenousFistula": "PulmonaryArtery",
    "SystemicCollateralArteryToLung": "Artery",
    "CommonCarotidArtery": "CarotidArtery", "InternalCarotidArtery": "CarotidArtery",
    "ExternalCarotidArtery": "CarotidArtery",
    "AnteriorCommunicatingArtery": "CircleOfWillis",
    "PosteriorCommunicationArtery": "CircleOfWillis",
    "CircleOfWillis": "CerebralArtery",
    "CommonIliacArtery": "IliacArtery", "ExternalIliacArtery": "IliacArtery",
    "InternalIliacArtery": "IliacArtery",
    "LeftFemoralArtery": "FemoralArtery", "RightFemoralArtery": "FemoralArtery",
    "CommonFemoralArtery": "FemoralArtery", "SuperficialFemoralArtery": "FemoralArtery",
    "ProfundaFemorisArtery": "FemoralArtery",
    "SuperiorMesentericArtery": "MesentericArtery", "InferiorMesentericArtery": "MesentericArtery",
    "LacrimalArteryOfRightEye": "LacrimalArtery",
    "SuperiorVenaCava": "VenaCava", "InferiorVenaCava": "VenaCava",
    "CommonIliacVein": "IliacVein", "ExternalIliacVein": "IliacVein",
    "SuperiorLeftPulmonaryVein": "PulmonaryVein", "InferiorLeftPulmonaryVein": "PulmonaryVein",
    "SuperiorRightPulmonaryVein": "PulmonaryVein", "InferiorRightPulmonaryVein": "PulmonaryVein",
    "PulmonaryVeinConfluence": "PulmonaryVein", "AnomalousPulmonaryVein": "PulmonaryVein",
    "GreatSaphenousVein": "SaphenousVein",
    "SaphenofemoralJunction": "GreatSaphenousVein",
    "PosteriorMedialTributary": "GreatSaphenousVein",
    "BoydPerforatingVein": "VenousNetwork", "DoddPerforatingVein": "VenousNetwork",
    "HunterianPerforatingVein": "VenousNetwork",
    # abdomen
    "HypochondriacRegion": "Abdomen",
    "LeftHypochondriacRegion": "HypochondriacRegion",
    "RightHypochondriacRegion": "HypochondriacRegion",
    "EpigastricRegion": "Abdomen", "UmbilicalRegion": "Abdomen", "HypogastricRegion": "Abdomen",
    "InguinalRegion": "Abdomen",
    "LeftInguinalRegion": "InguinalRegion", "RightInguinalRegion": "InguinalRegion",
    "LeftLumbarRegion": "Abdomen", "RightLumbarRegion": "Abdomen", "Flank": "Abdomen",
    "IntraAbdominopelvic": "Abdomen",
    "Omentum": "IntraAbdominopelvic",
    "OmentalBursa": "Omentum",
    "Retroperitoneum": "IntraAbdominopelvic",
    # digestive
    "Stomach": "EsophagusStomachAndDuodenum", "Esophagus": "EsophagusStomachAndDuodenum",
    "Duodenum": "SmallIntestine", "Jejunum": "SmallIntestine", "Ileum": "SmallIntestine",
    "Colon": "LargeIntestine", "AnusRectumAndSigmoidColon": "LargeIntestine",
    "SigmoidColon": "Colon",
    "Rectum": "AnusRectumAndSigmoidColon", "Anus": "AnusRectumAndSigmoidColon",
    "Liver": "LiverAndBiliaryStructure", "BiliaryTract": "LiverAndBiliaryStructure",
    "Gallbladder": "BiliaryTract", "PancreaticDuctAndBileDuctSystems": "BiliaryTract",
    "BileDuct": "PancreaticDuctAndBileDuctSystems",
    "PancreaticDuct": "PancreaticDuctAndBileDuctSystems",
    "CommonBileDuct": "BileDuct",
    # urinary
    "Kidney": "UpperUrinaryTract", "Ureter": "UpperUrinaryTract",
    "RenalPelvis": "Kidney", "Calyx": "Kidney",
    "Bladder": "BladderAndUrethra", "Urethra": "BladderAndUrethra",
    "EndoVesical": "Bladder",
    # reproductive
    "Uterus": "UterusAndFallopianTubes",
    "Cervix": "Uterus", "BroadLigament": "Uterus",
    "Testis": "Scrotum",
    # pelvis
    "IntraPelvic": "Pelvis", "Ilium": "Pelvis", "SacroiliacJoint": "Pelvis", "Perineum": "Pelvis",
    "Buttock": "Pelvis",
    # spine
    "CervicalSpine": "Spine", "CervicoThoracicSpine": "Spine", "ThoracicSpine": "Spine",
    "ThoracoLumbarSpine": "Spine", "LumbarSpine": "Spine", "LumboSacralSpine": "Spine",
    "SacroCoccygealSpine": "Spine",
    "Sacrum": "SacroCoccygealSpine", "Coccyx": "SacroCoccygealSpine",
    "LumbarRegion": "Back",
    # upper limb
    "Shoulder": "UpperLimb", "UpperArm": "UpperLimb", "ElbowJoint": "UpperLimb",
    "Forearm": "UpperLimb", "WristJoint": "UpperLimb", "Hand": "UpperLimb", "Axilla": "UpperLimb",
    "BoneOfUpperLimb": "UpperLimb", "MuscleOfUpperLimb": "UpperLimb",
    "Finger": "Hand", "Thumb": "Hand",
    "Humerus": "BoneOfUpperLimb",
    "Scapula": "Shoulder", "Clavicle": "Shoulder", "AcromioclavicularJoint": "Shoulder",
    # lower limb
    "Hip": "LowerLimb", "Thigh": "LowerLimb", "Knee": "LowerLimb", "LowerLeg": "LowerLimb",
    "AnkleJoint": "LowerLimb", "Foot": "LowerLimb", "BoneOfLowerLimb": "LowerLimb",
    "MuscleOfLowerLimb": "LowerLimb",
    "HipJoint": "Hip",
    "PoplitealFossa": "Knee", "Patella": "Knee",
    "Femur": "BoneOfLowerLimb", "Fibula": "BoneOfLowerLimb",
    "Toe": "Foot", "Calcaneus": "Foot", "TarsalJoint": "Foot", "SesamoidBonesOfFoot": "Foot",
    # musculoskeletal (general)
    "IntraArticular": "Joint",
    # multiple regions
    "AbdomenAndPelvis": "ChestAbdomenAndPelvis", "ChestAndAbdomen": "ChestAbdomenAndPelvis",
    "ChestAbdomenAndPelvis": "NeckChestAbdomenAndPelvis",
    "NeckChestAndAbdomen": "NeckChestAbdomenAndPelvis",
    "NeckAndChest": "NeckChestAndAbdomen",
    "NeckChestAbdomenAndPelvis": "EntireBody", "PelvisAndLowerExtremities": "EntireBody",
    "VertebralColumnAndCranium": "EntireBody",
}

# Nesting rules inside one group, for whatever ANATOMY_NEST does not name:
# (group slug, regex on the lower-cased name, parent keyword).
ANATOMY_NEST_RULES: list[tuple[str, str, str]] = [
    ("cardiovascular", r"\bartery\b|aorta|arteriosus|coeliacus", "Artery"),
    ("cardiovascular", r"\bveins?\b|vena cava|venous (network|system)", "Vein"),
    ("thorax", r"quadrant of breast", "Breast"),
    ("abdomen", r"quadrant of abdomen", "Abdomen"),
]

# Keywords whose CamelCase split is not a synonym of the code meaning (the modality
# ones are in `dicom_modality_groups`; `dicom.py` applies both to every concept).
KEYWORD_SYNONYM_SKIP = {
    "CardiacSeptumProsthesis",  # the keyword says septum prosthesis, the meaning "Vascular graft"
}

# Extra synonyms for anatomy CID concepts, by keyword (report wording the tables lack).
EXTRA_SYNONYMS: dict[str, list[str]] = {
    "Lung": ["lungs", "lung fields"],
    "ApexOfLung": ["lung apex", "lung apices", "pulmonary apex"],
    "Heart": ["cardiac silhouette"],
    "PulmonaryArtery": ["main pulmonary artery", "pulmonary trunk"],
    "Rib": ["ribs"],
    "Clavicle": ["clavicles", "collarbone"],
    "CervicalSpine": ["cervical vertebrae"],
    "ThoracicSpine": ["thoracic vertebrae", "dorsal spine"],
    "LumbarSpine": ["lumbar vertebrae"],
    "TruncusCoeliacus": ["celiac trunk", "coeliac trunk", "celiac axis"],
    "InnominateArtery": ["brachiocephalic artery"],
    "AorticArch": ["aortic knob", "aortic knuckle"],
}

# Chest-radiology structures: (slug, name, parent, synonyms). A name that a CID
# concept already has merges into that concept (only the synonyms are added);
# otherwise the entry becomes MEDRAY:anatomy/<slug> under `parent`, which is a
# keyword, a slug of an earlier entry, or None for the thorax group. No 2-3 letter
# capitals (RUL, LLL): they collide with other abbreviations.
CHEST_STRUCTURES: list[tuple[str, str, str | None, list[str]]] = [
    ("right-lung", "Right lung", "Lung", ["right lung field"]),
    ("left-lung", "Left lung", "Lung", ["left lung field"]),
    ("upper-lobe-of-right-lung", "Upper lobe of right lung", "right-lung",
     ["right upper lobe", "right upper lung lobe"]),
    ("middle-lobe-of-right-lung", "Middle lobe of right lung", "right-lung",
     ["right middle lobe", "middle lobe of lung", "right middle lung lobe"]),
    ("lower-lobe-of-right-lung", "Lower lobe of right lung", "right-lung",
     ["right lower lobe", "right lower lung lobe"]),
    ("upper-lobe-of-left-lung", "Upper lobe of left lung", "left-lung",
     ["left upper lobe", "left upper lung lobe"]),
    ("lingula-of-left-lung", "Lingula of left lung", "upper-lobe-of-left-lung",
     ["lingula", "lingular segment", "lingular lobe"]),
    ("lower-lobe-of-left-lung", "Lower lobe of left lung", "left-lung",
     ["left lower lobe", "left lower lung lobe"]),
    ("hilum-of-lung", "Hilum of lung", "Lung", ["pulmonary hilum", "lung hilum", "pulmonary hila", "hila"]),
    ("right-hilum", "Right hilum of lung", "hilum-of-lung", ["right hilum", "right hilar region"]),
    ("left-hilum", "Left hilum of lung", "hilum-of-lung", ["left hilum", "left hilar region"]),
    ("pleura", "Pleura", "IntraThoracic", ["pleural space", "pleural cavity"]),
    ("right-pleura", "Right pleura", "pleura", ["right pleural space"]),
    ("left-pleura", "Left pleura", "pleura", ["left pleural space"]),
    ("costophrenic-angle", "Costophrenic angle", "pleura",
     ["costophrenic recess", "costophrenic sulcus", "costodiaphragmatic recess", "costophrenic angles"]),
    ("right-costophrenic-angle", "Right costophrenic angle", "costophrenic-angle", []),
    ("left-costophrenic-angle", "Left costophrenic angle", "costophrenic-angle", []),
    ("diaphragm", "Diaphragm", None, ["hemidiaphragms", "diaphragmatic dome"]),
    ("right-hemidiaphragm", "Right hemidiaphragm", "diaphragm", ["right diaphragm", "right hemi-diaphragm"]),
    ("left-hemidiaphragm", "Left hemidiaphragm", "diaphragm", ["left diaphragm", "left hemi-diaphragm"]),
    ("chest-wall", "Chest wall", "Chest", ["thoracic wall"]),
    # present in the CIDs: merge by name, add report wording
    ("mediastinum", "Mediastinum", None, ["mediastinal contour"]),
    ("trachea", "Trachea", None, ["windpipe"]),
    ("heart", "Heart", None, []),
    ("aorta", "Aorta", None, []),
    ("pulmonary-artery", "Pulmonary artery", None, []),
    ("rib", "Rib", None, []),
    ("clavicle", "Clavicle", None, []),
    ("cervical-spine", "Cervical spine", None, []),
    ("thoracic-spine", "Thoracic spine", None, []),
    ("lumbar-spine", "Lumbar spine", None, []),
]
