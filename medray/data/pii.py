"""Personal-identifier scrubbing: RE2 patterns and typed placeholders ("[EMAIL]", "[MRN]", ...).

Kept texts leave the rules stage without e-mail addresses, birth dates, SSNs, record numbers or
phone numbers; the patterns are RE2 so a whole batch is rewritten by `pyarrow.compute`.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

# RE2 patterns (no look-around). A keyword kept in group 1/2 stays in the text: "MRN: [MRN]".
# Applied in this order: DOB before phone (dates are digit runs too), SSN and MRN before phone.

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}-\d{1,2}-\d{1,2}"
         rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}})")
PII_PATTERNS: dict[str, tuple[str, str]] = {
    "email": (r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", "[EMAIL]"),
    "dob": (r"(?i)(\b(?:DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)\s*(?:[:#-]|is|was)?\s*)"
            + _DATE + r"\b", r"\1[DOB]"),
    "ssn": (r"(?i)(\b(?:SSN|SS#|social\s+security(?:\s+(?:number|no\.?|#))?)\s*[:#]?\s*)?\b\d{3}-\d{2}-\d{4}\b"
            r"|(\b(?:SSN|SS#|social\s+security(?:\s+(?:number|no\.?|#))?)\s*[:#]?\s*)\d{9}\b", r"\1\2[SSN]"),
    "mrn": (r"(?i)(\b(?:MRN|MR#|medical\s+record(?:\s+(?:number|no\.?))?|med\s+rec(?:\s+no\.?)?|chart\s+(?:number|no\.?)"
            r"|patient\s+id|hospital\s+(?:number|no\.?))\s*#?\s*[:#]?\s*(?:is\s+)?)[A-Z]{0,3}-?\d{5,12}\b", r"\1[MRN]"),
    "phone": (r"(?i)(\b(?:phone|tel|telephone|cell|mobile|fax|pager|call)\.?(?:\s*(?:no\.?|number|#))?\s*[:#]?\s*)"
              r"\+?\d[\d .-]{5,14}\d\b"
              r"|(?:\+?\b1[ .-]?)?(?:\(\d{3}\)[ .-]?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b"
              r"|\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}\b", r"\1[PHONE]"),
}
PII_KINDS = tuple(PII_PATTERNS)


def scrub_pii(texts: pa.Array | pa.ChunkedArray, kinds: tuple[str, ...] | list[str] = PII_KINDS
              ) -> tuple[pa.Array | pa.ChunkedArray, Counter]:
    """Replace identifiers with typed placeholders; counts per kind as `pii_<kind>`.

    Each kind costs one counting pass; only the texts that hold one are rewritten.
    """
    counts: Counter = Counter()
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    for kind in PII_KINDS:
        if kind not in kinds:
            continue
        pattern, replacement = PII_PATTERNS[kind]
        found = pc.count_substring_regex(texts, pattern)
        counts[f"pii_{kind}"] = int(pc.sum(found).as_py() or 0)
        if counts[f"pii_{kind}"]:
            holds = pc.greater(found, 0)
            texts = pc.replace_with_mask(texts, holds, pc.replace_substring_regex(texts.filter(holds), pattern, replacement))
    return texts, counts
