"""ICD-10-CM (FY2026, from the `simple-icd-10-cm` package) as the disease skeleton.

Chapters, blocks, categories and subcategories keep their ICD hierarchy;
inclusion terms become synonyms, and each description also yields the
short form a clinician writes ("Pleural effusion" for "Pleural effusion,
not elsewhere classified").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from medray.met.sources.base import SourceNode, register_source

_QUALIFIERS = re.compile(
    r"(,\s*(not elsewhere classified|unspecified|not otherwise specified)|\s+NOS\b|\s+NEC\b)\s*$",
    re.IGNORECASE,
)
_PAREN = re.compile(r"\s*\([^()]*\)")
_RANGE = re.compile(r"\s*\([A-Z0-9]{3}(-[A-Z0-9]{3})?\)\s*$")


def chapter_key(code: str) -> str:
    return f"ICD10CM:CH{int(code):02d}"


def icd_key(code: str) -> str:
    """Key of a dotted ICD-10-CM code; chapters ("10") become `ICD10CM:CH10`."""
    return chapter_key(code) if code.isdigit() else f"ICD10CM:{code}"


def term_variants(term: str) -> list[str]:
    """The term plus its forms without NOS/NEC/unspecified tails and parentheticals."""
    out = [term.strip()]
    short = _QUALIFIERS.sub("", term).strip()
    bare = _PAREN.sub("", short).strip(" ,")
    for v in (short, bare):
        if v and v not in out:
            out.append(v)
    return out


@register_source("icd10cm")
def icd10cm_nodes(**_options) -> Iterator[SourceNode]:
    import simple_icd_10_cm as cm

    seen: set[str] = set()
    for code in cm.get_all_codes(True):  # dotted; parents come before their children
        # A one-category block shares its category's code (block "B10" holds category "B10");
        # it comes first, and gets the range form "B10-B10" so both keep distinct keys.
        is_lone_block = code not in seen and cm.get_parent(code) == code
        parent = cm.get_parent(code, prioritize_blocks=is_lone_block)
        key_code = f"{code}-{code}" if is_lone_block else code
        parent_code = f"{parent}-{parent}" if parent == code and not is_lone_block else parent
        seen.add(code)
        description = cm.get_description(code, prioritize_blocks=is_lone_block)
        if is_lone_block or cm.is_chapter_or_block(code):
            name = _RANGE.sub("", description)  # the range is in the codes already
        else:
            name = description
        synonyms: list[str] = []
        for v in term_variants(name)[1:]:
            synonyms.append(v)
        for term in cm.get_inclusion_term(code) if not (is_lone_block or cm.is_chapter_or_block(code)) else []:
            for v in term_variants(term):
                if v != name and v not in synonyms:
                    synonyms.append(v)
        codes = [icd_key(key_code)]
        if cm.is_chapter(code):
            codes.append(f"ICD10CM:{description[description.rfind('(') + 1:-1]}" if description.endswith(")") else codes[0])
        yield SourceNode(
            key=icd_key(key_code),
            parent=icd_key(parent_code) if parent_code else None,
            axis="disease",
            name=name,
            synonyms=synonyms,
            codes=list(dict.fromkeys(codes)),
            source="icd10cm",
        )
