"""Where the quality classifier's labels come from: the seed set, and judges for borderline text.

The bootstrap loop needs a small, trusted set of good and bad text to start
from. Nothing may be downloaded, so medray writes its own: good text is
medical prose (clinical notes from the tree's terms, plus patient-leaflet,
textbook and study-abstract sentences), bad text is what web crawls are full
of (spam, SEO keyword lists, page boilerplate, garbled bytes, keyword
stuffing, link lists, table debris, machine-translated word salad). Bad text
deliberately carries medical words too, so that the classifier learns the
difference in form, not in topic. The same seed gives the same records.

During the bootstrap, texts the classifier cannot decide go to a judge: any
callable from a list of texts to labels (or None to abstain). The shipped
`HeuristicJudge` applies a few rules a reader can check; an LLM judge plugs
in through `register_judge` and the config's `judge` name.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

from medray.bench.corpus import FILLER, TEMPLATES, generate_documents
from medray.errors import ConfigError, SourceError
from medray.met.tree import Tree

GOOD, BAD = "good", "bad"
LABELS = (GOOD, BAD)


class LabelledText(NamedTuple):
    text: str
    label: str  # "good" or "bad"
    kind: str = ""  # which generator wrote it ("report", "spam", ...); "user" for a seed file


# ---- a small built-in vocabulary (used when no tree is given, and for prose) ----------------

POOLS: dict[str, tuple[str, ...]] = {
    "d": ("pneumonia", "asthma", "type 2 diabetes", "hypertension", "heart failure", "atrial fibrillation",
          "chronic kidney disease", "migraine", "rheumatoid arthritis", "osteoporosis", "hypothyroidism",
          "chronic obstructive pulmonary disease", "pulmonary embolism", "deep vein thrombosis", "sepsis",
          "appendicitis", "cholecystitis", "acute pancreatitis", "cirrhosis", "iron deficiency anaemia",
          "urinary tract infection", "tuberculosis", "multiple sclerosis", "Parkinson disease", "epilepsy",
          "ischaemic stroke", "melanoma", "breast cancer", "colorectal cancer", "lymphoma", "psoriasis", "gout",
          "coeliac disease", "Crohn disease", "ulcerative colitis", "glaucoma", "otitis media", "bronchiolitis",
          "bacterial meningitis", "hepatitis B"),
    "s": ("fever", "cough", "chest pain", "shortness of breath", "fatigue", "headache", "nausea", "vomiting",
          "abdominal pain", "dizziness", "palpitations", "joint swelling", "weight loss", "night sweats", "rash",
          "back pain", "wheezing", "ankle oedema", "confusion", "syncope", "pleural effusion", "consolidation",
          "cardiomegaly", "pneumothorax", "lymphadenopathy"),
    "a": ("left lower lobe", "right upper lobe", "liver", "gallbladder", "kidneys", "pancreas", "lumbar spine",
          "thyroid", "heart", "brain", "abdomen", "pelvis", "knee", "chest", "mediastinum"),
    "m": ("CT", "MRI", "ultrasound", "chest radiograph", "X-ray", "PET scan", "echocardiography", "mammography"),
    "x": ("metformin", "amoxicillin", "lisinopril", "atorvastatin", "salbutamol", "prednisolone", "warfarin",
          "apixaban", "insulin", "levothyroxine", "furosemide", "omeprazole", "paracetamol", "ibuprofen",
          "methotrexate"),
    "t": ("a full blood count", "HbA1c", "serum creatinine", "troponin", "C-reactive protein",
          "liver function tests", "blood cultures", "urinalysis", "a lipid profile", "spirometry"),
    "n": ("two", "three", "four", "six", "eight", "twelve"),
}

PROSE = (
    "{d} is a common condition that affects the {a} and often presents with {s} and {s}.",
    "The diagnosis of {d} is usually confirmed with {t} and, when needed, {m} of the {a}.",
    "First-line treatment for {d} is {x}, with the dose adjusted to kidney function and response.",
    "Patients with {d} should seek medical attention if {s} worsens or new {s} develops.",
    "In older adults, {d} may present atypically, with {s} rather than {s}.",
    "A randomised trial of {x} in patients with {d} found a modest reduction in hospital admissions.",
    "Risk factors for {d} include smoking, obesity, a family history and previous {d}.",
    "Monitoring includes {t} every three to six months and a review of {s} at each visit.",
    "{x} can cause side effects such as {s} and {s}; most are mild and settle within weeks.",
    "Complications of untreated {d} include {d} and lasting damage to the {a}.",
    "On examination there was tenderness over the {a} and the temperature was 38.2 degrees.",
    "Her {t} was elevated, and {m} of the {a} showed {s}.",
    "The mechanism involves inflammation of the {a}, which explains the {s} seen in most patients.",
    "Guidelines recommend reassessing the diagnosis of {d} if symptoms do not improve after {n} weeks of {x}.",
    "Children with {d} usually recover fully, although {s} may persist for several days.",
    "Nurses should record {s}, fluid balance and oxygen saturation every four hours.",
    "He was started on {x} and discharged home with a follow-up appointment in {n} weeks.",
    "Screening for {d} is offered to adults over fifty, because early detection improves outcomes.",
    "The prevalence of {d} has increased over the last decade, partly because the population is ageing.",
    "If {s} is accompanied by {s}, {d} should be considered and {t} requested urgently.",
    "We enrolled 214 adults with {d}; the primary outcome was the change in {s} at {n} weeks.",
    "Most people with {d} can manage their symptoms at home with rest, fluids and {x}.",
)

# ---- the raw material of bad text ----------------------------------------------------------

_SPAM = (
    "Buy {p} online without prescription!!! Lowest prices, {pct}% OFF today only. Order now at {url}",
    "Congratulations! You have been selected to win a ${k} gift card. Click here to claim your prize: {url}",
    "Earn ${k} per day working from home, no experience needed. Limited offer, sign up now!!! {url}",
    "BEST {P} DEALS - free shipping worldwide - 100% satisfaction guaranteed - order today {url}",
    "Best casino bonus {year}: 200 free spins, instant withdrawal, play now at {url}",
    "Doctors HATE this one weird trick to cure {d} fast! Watch the video before it is deleted {url}",
    "Hot singles in your area are waiting for you. Chat now free, no credit card {url}",
    "Get {p} cheap, discreet delivery, no questions asked, pay with bitcoin {url}",
)
_PRODUCTS = ("viagra", "cialis", "weight loss pills", "keto diet pills", "CBD gummies", "diabetes cure",
             "hair growth serum", "testosterone booster", "replica watches", "cheap antibiotics")
_SEO_SUFFIXES = ("treatment", "clinic", "doctor", "cure", "symptoms", "pills", "diet", "specialist")
_SEO_FORMS = ("best {k}", "{k} near me", "cheap {k}", "{k} {year}", "top 10 {k}", "{k} reviews", "buy {k}",
              "{k} online", "{k} price", "{k} free", "{k} fast", "{k} home remedy")
_BOILERPLATE = (
    "Home | About us | Contact | Privacy Policy | Terms of Use",
    "We use cookies to improve your experience. By continuing to browse you agree to our use of cookies. Accept all",
    "Copyright © {year} All rights reserved.",
    "Share this article: Facebook Twitter LinkedIn WhatsApp Email",
    "Subscribe to our newsletter and never miss an update!",
    "Sign in or register to continue reading.",
    "Skip to main content", "Page {k} of {k} Next » « Previous", "Powered by WordPress",
    "JavaScript is disabled in your browser. Please enable JavaScript to view this page.",
    "Related posts", "Leave a comment Cancel reply", "Loading... Please wait",
    "Advertisement", "Click here to download the PDF", "Back to top ↑", "Read more »",
    "Log in | Sign up | Forgot password?", "Tags: health, news, lifestyle, wellness, tips",
)
_MOJIBAKE = ("Ã©", "â€™", "Ã¨", "ï¿½", "â€œ", "Ã¢â‚¬", "Â", "\ufffd", "Ã¼", "Ð¾Ð", "ã€", "â–")
_SITES = ("healthnews", "med-deals", "pharma-shop", "best-clinic", "doc-info", "wellness24", "cure-now",
          "topmed", "rxsale", "bodyfit")
_BROKEN = ("is be", "of the for", "very much good", "they was", "make do", "for to", "which is being",
           "the the", "and also and", "has been will", "to be make", "it for of", "more better", "is are",
           "can to", "so much very", "on at in", "doing the make")


def _fill(template: str, rng: random.Random, pools: dict[str, tuple[str, ...]] = POOLS) -> str:
    def pick(m: re.Match) -> str:
        return rng.choice(pools[m.group(1)])

    text = re.sub(r"\{([a-z])\}", pick, template)
    return text[0].upper() + text[1:]


def _url(rng: random.Random) -> str:
    slug = "-".join(rng.choice(("buy", "cheap", "best", "free", "online", "offer", "deal", "now")) for _ in range(3))
    return f"http://www.{rng.choice(_SITES)}.{rng.choice(('com', 'net', 'biz', 'info', 'ru'))}/{slug}-{rng.randint(1, 999)}.html"


def _fields(rng: random.Random) -> dict[str, str]:
    product = rng.choice(_PRODUCTS)
    return {"p": product, "P": product.upper(), "pct": str(rng.choice((30, 50, 70, 90))), "url": _url(rng),
            "k": str(rng.randint(2, 999)), "year": str(rng.randint(2015, 2026)), "d": rng.choice(POOLS["d"])}


# ---- good text ----------------------------------------------------------------------------


def _prose(rng: random.Random) -> str:
    return " ".join(_fill(rng.choice(PROSE), rng) for _ in range(rng.randint(3, 8)))


def _report(rng: random.Random) -> str:
    parts = [rng.choice(FILLER) if rng.random() < 0.35 else _fill(rng.choice(TEMPLATES), rng)
             for _ in range(rng.randint(4, 12))]
    return " ".join(parts)


# ---- bad text -----------------------------------------------------------------------------


def _spam(rng: random.Random) -> str:
    return " ".join(rng.choice(_SPAM).format(**_fields(rng)) for _ in range(rng.randint(1, 3)))


def _seo(rng: random.Random) -> str:
    base = rng.choice((*POOLS["d"], *_PRODUCTS, *POOLS["x"]))
    key = f"{base} {rng.choice(_SEO_SUFFIXES)}"
    forms = [rng.choice(_SEO_FORMS).format(k=key, year=rng.randint(2015, 2026)) for _ in range(rng.randint(5, 14))]
    return rng.choice((" | ", " - ", ", ", " ")).join(forms)


def _boilerplate(rng: random.Random) -> str:
    return "\n".join(rng.choice(_BOILERPLATE).format(**_fields(rng)) for _ in range(rng.randint(3, 8)))


def _garbled(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=#@%&*{}[]<>~^"
    words = []
    for _ in range(rng.randint(15, 60)):
        if rng.random() < 0.3:
            words.append("".join(rng.choice(_MOJIBAKE) for _ in range(rng.randint(1, 4))))
        else:
            words.append("".join(rng.choice(alphabet) for _ in range(rng.randint(2, 14))))
    return " ".join(words)


def _keyword_stuffed(rng: random.Random) -> str:
    keys = rng.sample((*POOLS["d"], *POOLS["x"], *POOLS["s"]), 2)
    extras = ("treatment", "cure", "best", "natural", "fast", "cheap", "online", "remedy")
    words = [rng.choice(keys) if rng.random() < 0.6 else rng.choice(extras) for _ in range(rng.randint(20, 60))]
    return " ".join(words)


def _link_list(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(4, 12)):
        if rng.random() < 0.5:
            lines.append(_url(rng))
        else:
            lines.append(f"» {rng.choice(POOLS['d']).title()} {rng.choice(_SEO_SUFFIXES).title()} ({rng.randint(1, 300)})")
    return "\n".join(lines)


def _table_junk(rng: random.Random) -> str:
    rows = []
    for _ in range(rng.randint(3, 10)):
        cells = [rng.choice((str(rng.randint(0, 9999)), f"{rng.random() * 100:.2f}", "N/A", "--", "0.00",
                             f"{rng.choice('ABCDEFGH')}{rng.randint(10, 99)}"))
                 for _ in range(rng.randint(3, 7))]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _mt_garbage(rng: random.Random) -> str:
    words = [w for _ in range(3) for w in _fill(rng.choice(PROSE), rng).lower().split()]
    rng.shuffle(words)
    out = []
    for word in words[: rng.randint(12, 30)]:
        out.append(word)
        if rng.random() < 0.4:
            out.append(rng.choice(_BROKEN))
    return " ".join(out)


BAD_KINDS: dict[str, Callable[[random.Random], str]] = {
    "spam": _spam, "seo": _seo, "boilerplate": _boilerplate, "garbled": _garbled,
    "keyword_stuffed": _keyword_stuffed, "link_list": _link_list, "table_junk": _table_junk,
    "mt_garbage": _mt_garbage,
}


def generate_good(n: int, seed: int = 0, tree: Tree | None = None) -> list[LabelledText]:
    """`n` good documents: prose and reports, a third of them from the tree's terms when one is given."""
    rng = random.Random(f"good:{seed}")
    from_tree: Iterator[str] = iter(())
    if tree is not None:
        from_tree = generate_documents(tree, target_bytes=1 << 40, seed=seed, sentences=(3, 10))
    out = []
    for i in range(n):
        if tree is not None and i % 3 == 0:
            out.append(LabelledText(next(from_tree), GOOD, "tree_report"))
        elif rng.random() < 0.5:
            out.append(LabelledText(_report(rng), GOOD, "report"))
        else:
            out.append(LabelledText(_prose(rng), GOOD, "prose"))
    return out


def generate_bad(n: int, seed: int = 0) -> list[LabelledText]:
    """`n` bad documents, the kinds in turn so that every kind is present in any large enough set."""
    rng = random.Random(f"bad:{seed}")
    kinds = list(BAD_KINDS)
    return [LabelledText(BAD_KINDS[kinds[i % len(kinds)]](rng), BAD, kinds[i % len(kinds)]) for i in range(n)]


def generate_seed(n_per_class: int = 400, seed: int = 0, tree: Tree | None = None) -> list[LabelledText]:
    """A balanced seed set, the same for the same arguments."""
    return generate_good(n_per_class, seed, tree) + generate_bad(n_per_class, seed)


def load_seed_file(uri: str) -> list[LabelledText]:
    """A JSONL seed file, one `{"text": ..., "label": "good" | "bad"}` per line (blank lines skipped).

    Any malformed line stops the load with the file and line named: a seed set
    is small and hand-made, so a silent skip would hide a labelling mistake.
    """
    from medray.storage import open_input_stream

    with open_input_stream(uri) as f:
        raw = f.read()
    out = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SourceError(uri, number, f"not valid JSON ({err})") from None
        if not isinstance(record, dict):
            raise SourceError(uri, number, "expected a JSON object with 'text' and 'label'")
        text, label = record.get("text"), record.get("label")
        if not isinstance(text, str) or not text.strip():
            raise SourceError(uri, number, "'text' must be a non-empty string")
        if label not in LABELS:
            raise SourceError(uri, number, f"'label' must be 'good' or 'bad', not {label!r}")
        out.append(LabelledText(text, label, "user"))
    if not out:
        raise SourceError(uri, 0, "the seed file holds no records")
    return out


# ---- judges ---------------------------------------------------------------------------------


class Judge(Protocol):
    """Labels texts "good" or "bad", or None to abstain; called only on borderline texts."""

    def __call__(self, texts: list[str]) -> list[str | None]: ...


JUDGES: dict[str, Callable[[], Judge]] = {}


def register_judge(name: str) -> Callable:
    """Make a judge available to configs by name (`judge: NAME`); an LLM judge registers the same way."""
    def wrap(factory: Callable[[], Judge]) -> Callable[[], Judge]:
        JUDGES[name] = factory
        return factory
    return wrap


def make_judge(name: str) -> Judge | None:
    if name == "none":
        return None
    if name not in JUDGES:
        raise ConfigError("judge", f"unknown judge {name!r}: expected one of none, {', '.join(sorted(JUDGES))}")
    return JUDGES[name]()


@register_judge("heuristic")
class HeuristicJudge:
    """Transparent rules: prose has function words, varied words, sentences and few spam cues.

    Bad when spam cues pile up, when too few tokens are words, when function
    words are rare (lists, tables, keyword stuffing), when a few words repeat
    over and over, or when sentences run together in lower case or with
    doubled words (word salad). Good when none of that holds, the text
    starts like a sentence and it names at least one medical word. Otherwise
    it abstains: better no label than a wrong one.
    """

    STOPWORDS = frozenset(
        "a an the and or but of in on at to for from with without by as is are was were be been has have had "
        "it its this that these those which who whom when where while if then than there their they he she "
        "his her we our you your not no may can should will would after before during over under into".split())
    MEDICAL = frozenset(
        "patient patients clinical diagnosis treatment therapy disease symptoms symptom pain fever infection "
        "chronic acute examination history dose medication blood imaging chest lung heart kidney liver "
        "cancer tumour tumor findings lesion effusion pneumonia diabetes hypertension trial surgery "
        "physician nurse hospital admission discharge prescribed tests renal cardiac pulmonary".split())
    SPAM = frozenset(
        "buy cheap click free offer discount order casino bonus prize win subscribe cookies http https www "
        "com deals shipping guaranteed bitcoin sign login register singles".split())
    _SENTENCE_START = re.compile(r"[.!?]\s+(\S)")

    def __init__(self, min_words: int = 12, min_stopword_ratio: float = 0.15, min_word_ratio: float = 0.7,
                 min_unique_ratio: float = 0.3, max_spam_hits: int = 2):
        self.min_words, self.min_stopword_ratio = min_words, min_stopword_ratio
        self.min_word_ratio, self.min_unique_ratio, self.max_spam_hits = min_word_ratio, min_unique_ratio, max_spam_hits

    def judge_one(self, text: str) -> str | None:
        tokens = text.split()
        if len(tokens) < self.min_words:
            return None
        words = [w for w in (t.strip(".,;:!?()\"'").lower() for t in tokens) if w.isalpha()]
        spam = sum(w in self.SPAM for w in words) + text.count("http") + text.count("|")
        if spam > self.max_spam_hits or len(words) < self.min_word_ratio * len(tokens):
            return BAD
        if sum(w in self.STOPWORDS for w in words) < self.min_stopword_ratio * len(words):
            return BAD
        if len(set(words)) < self.min_unique_ratio * len(words):
            return BAD
        starts = self._SENTENCE_START.findall(text)
        doubled = any(a.isalpha() and a.lower() == b.lower() for a, b in zip(tokens, tokens[1:]))
        if doubled or sum(c.islower() for c in starts) * 2 > len(starts) > 1:
            return BAD
        if not text.lstrip()[:1].isupper():
            return None
        return GOOD if any(w in self.MEDICAL for w in words) else None

    def __call__(self, texts: list[str]) -> list[str | None]:
        return [self.judge_one(t) for t in texts]
