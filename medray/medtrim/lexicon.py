"""Descriptor facts for OBER: adjectives and sides, each surface form mapped to a canonical one.

MedTrim scores report pairs by the overlap of their descriptors, so two
reports that say "minimal" and "mild" must carry the same word. Severity is
collapsed to five canonical forms: the intensity scale `mild`, `moderate`,
`severe` and the size scale `small`, `large` (kept apart because reports say
"small effusion" but "mild cardiomegaly"; `SEVERITY` ranks both on one scale).

Directions are sides only: `left`, `right`, `bilateral`. Lung zones (upper,
middle, lower, perihilar, apical...) are adjectives, not directions: the
direction term of the score compares laterality, and a zone is a property of
the finding like its shape. A word may carry both: "bibasilar" is side
`bilateral` and zone `lower`; "lingular" is side `left` and zone `middle`.

Surface forms are whole words in `normalize_term` form ("plate-like" is
"plate like"). These are medray's own lists, not the MedTrim release's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from medray.met.cues import CUES, POST_NEG, POST_UNC

ADJECTIVE, DIRECTION = "adjective", "direction"

SEVERITY: dict[str, int] = {"mild": 1, "small": 1, "moderate": 2, "severe": 3, "large": 3}

ADJECTIVES: dict[str, tuple[str, ...]] = {
    # severity and size
    "mild": ("mild", "mildly", "minimal", "minimally", "slight", "slightly", "subtle", "minor", "faint"),
    "small": ("small", "tiny", "trace", "little", "smaller", "small sized", "tiny amount"),
    "moderate": ("moderate", "moderately", "medium", "moderate sized", "moderately sized", "average",
                 "intermediate"),
    "severe": ("severe", "severely", "marked", "markedly", "extensive", "extensively", "pronounced",
               "significant", "considerable", "profound", "gross", "dramatic"),
    "large": ("large", "big", "huge", "massive", "sizable", "sizeable", "substantial", "larger", "giant",
              "bulky", "large sized"),
    # shape, extent and character
    "patchy": ("patchy", "spotty", "blotchy", "patchlike"),
    "multifocal": ("multifocal", "scattered", "multiple", "numerous", "spread", "discrete", "several"),
    "focal": ("focal", "focally", "localized", "localised", "solitary", "isolated", "single"),
    "diffuse": ("diffuse", "diffusely", "widespread", "generalized", "generalised", "global"),
    "streaky": ("streaky", "strandlike", "strand like"),
    "linear": ("linear", "curvilinear", "band like", "bandlike", "plate like", "platelike", "discoid"),
    "hazy": ("hazy", "ill defined", "poorly defined", "vague", "indistinct", "blurred", "unsharp"),
    "rounded": ("rounded", "round", "oval", "ovoid", "spherical", "globular", "elliptical"),
    "nodular": ("nodular", "micronodular", "reticulonodular"),
    "reticular": ("reticular", "reticulated", "fibrotic"),
    "confluent": ("confluent", "coalescent", "coalescing"),
    "dense": ("dense", "homogeneous", "homogenous", "solid", "strong"),
    "heterogeneous": ("heterogeneous", "inhomogeneous", "mottled"),
    "well defined": ("well defined", "well circumscribed", "circumscribed", "sharp", "sharply", "pointed",
                     "smooth", "corticated"),
    "calcified": ("calcified", "calcific", "calcifying", "sclerotic"),
    "cavitary": ("cavitary", "cavitating", "cavitated"),
    "loculated": ("loculated", "encapsulated"),
    "layering": ("layering", "dependent", "free flowing"),
    "interstitial": ("interstitial",),
    "alveolar": ("alveolar", "airspace", "air space"),
    "peribronchial": ("peribronchial", "bronchial", "peribronchovascular"),
    "symmetric": ("symmetric", "symmetrical"),
    "asymmetric": ("asymmetric", "asymmetrical"),
    "unilateral": ("unilateral", "one sided"),
    "enlarged": ("enlarged", "distended", "dilated", "engorged", "prominent", "expanded", "widened",
                 "wide", "aneurysmal", "ectatic"),
    "hyperinflated": ("hyperinflated", "hyperexpanded", "overinflated", "overexpanded", "hyperaerated",
                      "inflated"),
    "hypoinflated": ("hypoinflated", "underinflated", "under inflated", "low volume", "poorly inflated"),
    "aerated": ("aerated", "ventilated", "gaseous", "air filled"),
    "airless": ("airless", "collapsed"),
    "thickened": ("thickened", "thick"),
    "flattened": ("flattened", "flat", "depressed"),
    "elevated": ("elevated", "raised"),
    "tortuous": ("tortuous", "unfolded", "elongated"),
    "obstructive": ("obstructive", "obstructing", "postobstructive", "blockage"),
    "compressive": ("compressive", "passive", "relaxation"),
    "infectious": ("infectious", "infective", "infected", "contagious", "septic"),
    "congested": ("congested", "congestive"),
    "suspicious": ("suspicious", "worrisome", "concerning", "alarming", "doubtful", "equivocal"),
    "atypical": ("atypical", "unusual", "peculiar", "strange"),
    "degenerative": ("degenerative", "osteopenic", "demineralized", "demineralised"),
    "deformed": ("deformed", "scoliotic"),
    "crowded": ("crowded", "crowding"),
    "displaced": ("displaced", "malpositioned", "subluxed", "deviated", "rightward deviation"),
    "superimposed": ("superimposed", "overlying"),
    "posttraumatic": ("posttraumatic", "post traumatic", "traumatic"),
    "fissural": ("fissural", "intrafissural"),
    "remarkable": ("remarkable", "discernible", "discernable"),
    # time course
    "acute": ("acute", "abrupt", "sudden", "hyperacute"),
    "subacute": ("subacute",),
    "chronic": ("chronic", "longstanding", "long standing", "old", "remote", "healed"),
    "new": ("new", "newly", "recent", "developing"),
    "stable": ("stable", "unchanged", "similar", "persistent", "persisting", "recurring", "recurrent",
               "redemonstrated"),
    "residual": ("residual", "remaining"),
    "worsening": ("worsening", "worsened", "worse", "increasing", "increased", "progressive",
                  "progressing", "enlarging", "interval worsening", "interval increase"),
    "improving": ("improving", "improved", "decreasing", "decreased", "resolving", "diminished",
                  "diminishing", "regressing"),
    # lung zones
    "upper": ("upper", "apical", "apex", "apices", "superior", "biapical"),
    "middle": ("middle", "mid", "midlung", "lingula", "lingular"),
    "lower": ("lower", "basal", "basilar", "base", "bases", "inferior", "bibasilar",
              "bibasal"),
    "perihilar": ("perihilar", "parahilar", "hilar", "central", "centrally"),
    "peripheral": ("peripheral", "peripherally", "subpleural"),
    "retrocardiac": ("retrocardiac",),
    "anterior": ("anterior", "ventral"),
    "posterior": ("posterior", "dorsal", "back"),
    "lateral": ("lateral", "laterally"),
    "medial": ("medial", "medially"),
    "proximal": ("proximal",),
    "distal": ("distal", "distant"),
}

# Compound severities name both ends; the score's adjective IoU then credits either.
COMPOUND_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "mild to moderate": ("mild", "moderate"), "mild moderate": ("mild", "moderate"),
    "moderate to severe": ("moderate", "severe"), "moderately severe": ("moderate", "severe"),
    "moderate severe": ("moderate", "severe"),
    "small to moderate": ("small", "moderate"), "small moderate": ("small", "moderate"),
    "moderate to large": ("moderate", "large"),
    "mid to lower": ("middle", "lower"),
}

SIDES: dict[str, tuple[str, ...]] = {
    "left": ("left", "left sided", "left side", "lingula", "lingular"),
    "right": ("right", "right sided", "right side"),
    "bilateral": ("bilateral", "bilaterally", "both", "each", "two sided", "bibasilar", "bibasal",
                  "biapical"),
}

# Adverbs of degree sit between the words of a finding phrase ("heart is mildly enlarged"): they
# are read as adjectives and hidden from the entity matcher so the phrase still matches.
DEGREE_ADVERBS: frozenset[str] = frozenset(
    "mildly minimally slightly moderately severely markedly massively significantly extensively".split()
)

# Words that open a new clause after a comma or "and" ("no effusion, mild cardiomegaly").
# Hedge words open one too ("opacity in the lingula, may reflect atelectasis").
CLAUSE_OPENERS: frozenset[str] = frozenset(
    """a an the there this these it no not may might could possibly probably likely perhaps
    suggesting representing compatible consistent""".split()
)
# Words that always start a new clause.
CLAUSE_BREAKS: frozenset[str] = frozenset(
    "but however although though whereas while with without which".split()
)
# A break word after these links evidence to a diagnosis and does not cut: in "blunting of the left
# costophrenic angle is consistent with a small effusion" the side belongs to the effusion.
CLAUSE_LINKS: frozenset[str] = frozenset("consistent compatible".split())
# Words that may sit beside descriptors in a clause that continues the previous finding
# ("bilateral effusions, left greater than right"; "cardiomegaly, which is mild").
FILLERS: frozenset[str] = frozenset(
    """which that is are was were appears appear appearing seen noted also in on of the and than
    greater more less size extent side sides amount degree it they both lung lungs lobe lobes zone
    zones""".split()
)


# Post-cues that end a clause govern its last finding however far back it is ("a small nodule in the
# right middle lobe cannot be excluded"), past the matcher's few-word window. One-word cues ("free",
# "vs") are too loose to reach that far.
FINAL_CUES: dict[tuple[str, ...], str] = {
    tuple(phrase.split(" ")): assertion
    for kind, assertion in ((POST_UNC, "uncertain"), (POST_NEG, "absent")) for phrase in CUES[kind] if " " in phrase
}


def final_cue(words: Sequence[str]) -> str | None:
    """The assertion ("absent", "uncertain") a clause's closing cue gives, if its words end with one."""
    for n in range(min(4, len(words)), 1, -1):
        found = FINAL_CUES.get(tuple(words[-n:]))
        if found:
            return found
    return None


@lru_cache(maxsize=1)
def descriptor_index() -> dict[str, tuple[tuple[str, str], ...]]:
    """Phrase -> ((kind, canonical), ...); kind is ADJECTIVE or DIRECTION."""
    index: dict[str, list[tuple[str, str]]] = {}
    for kind, table in ((ADJECTIVE, ADJECTIVES), (DIRECTION, SIDES)):
        for canonical, surfaces in table.items():
            for surface in surfaces:
                index.setdefault(surface, []).append((kind, canonical))
    for surface, canonicals in COMPOUND_ADJECTIVES.items():
        index[surface] = [(ADJECTIVE, c) for c in canonicals]
    return {phrase: tuple(dict.fromkeys(values)) for phrase, values in index.items()}


@lru_cache(maxsize=1)
def descriptor_words() -> tuple[frozenset[str], frozenset[str], int]:
    """(first words of descriptor phrases, all their words, longest phrase in words)."""
    phrases = [p.split(" ") for p in descriptor_index()]
    return (frozenset(p[0] for p in phrases), frozenset(w for p in phrases for w in p),
            max(len(p) for p in phrases))


def find_descriptors(words: Sequence[str]) -> list[tuple[int, int, tuple[tuple[str, str], ...]]]:
    """Leftmost-longest descriptor phrases in lower-case words: (first word, end word, values)."""
    index = descriptor_index()
    longest = descriptor_words()[2]
    out, i = [], 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            values = index.get(" ".join(words[i:i + n]))
            if values:
                out.append((i, i + n, values))
                i += n
                break
        else:
            i += 1
    return out


def known_surface(phrase: str) -> bool:
    """Whether a (normalised) phrase is a descriptor this lexicon reads."""
    return phrase in descriptor_index()


def severity_level(adjectives: Iterable[str]) -> int:
    """The highest severity rank among canonical adjectives (0 when none names a severity)."""
    return max((SEVERITY.get(a, 0) for a in adjectives), default=0)


def canonical_side(directions: Iterable[str]) -> frozenset[str]:
    """One side: both sides, or "bilateral" with either, read as bilateral."""
    sides = set(directions)
    if "bilateral" in sides or {"left", "right"} <= sides:
        return frozenset({"bilateral"})
    return frozenset(sides)
