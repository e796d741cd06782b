"""Negation and uncertainty cues for NegEx-style assertion, scoped to the sentence.

A pre-cue governs entities after it (up to a window of words), a post-cue
entities before it; a termination term ("but", "however") ends a cue's scope;
a pseudo-cue ("no change") is matched so that its "no" negates nothing.
Phrases are whole words in `normalize_term` form.
"""

from __future__ import annotations

PRE_NEG, POST_NEG, PRE_UNC, POST_UNC, TERMINATE, PSEUDO = range(6)

CUES: dict[int, tuple[str, ...]] = {
    PRE_NEG: (
        "no", "not", "without", "negative for", "free of", "no evidence of", "no evidence for",
        "no signs of", "no sign of", "no findings of", "no radiographic evidence of", "absence of",
        "absent", "denies", "denied", "denying", "never had", "resolution of", "resolved",
        "interval resolution of", "no new", "no definite", "no acute", "no focal", "no significant",
        "no large", "no obvious", "no residual", "no further", "not seen", "nor", "neither",
        "rules out", "ruled out", "no suspicious", "clear of", "no other",
    ),
    POST_NEG: (
        "is absent", "are absent", "not seen", "is not seen", "are not seen", "not identified",
        "is not identified", "are not identified", "not present", "is not present", "not demonstrated",
        "not visualized", "has resolved", "have resolved", "resolved", "is resolved", "ruled out",
        "has been ruled out", "was ruled out", "free", "unlikely", "is unlikely", "removed",
        "has been removed", "no longer seen", "no longer present",
    ),
    PRE_UNC: (
        "may", "might", "could", "possible", "possibly", "probable", "probably", "likely", "questionable",
        "question of", "suspicious for", "suspected", "suspect", "suspicion of", "concerning for",
        "worrisome for", "suggestive of", "suggest", "suggests", "suggesting", "cannot exclude",
        "can not exclude", "cannot rule out", "can not rule out", "cannot be excluded", "rule out",
        "r o", "differential diagnosis", "differential includes", "versus", "vs", "borderline",
        "equivocal", "may represent", "could represent", "may reflect", "might represent",
        "indeterminate", "presumed", "presumably", "possibility of", "potential",
    ),
    POST_UNC: (
        "is not excluded", "not excluded", "cannot be excluded", "can not be excluded",
        "not ruled out", "cannot be ruled out", "is not ruled out", "is suspected", "is possible",
        "is questionable", "is likely", "are likely", "versus", "vs", "not entirely excluded",
        "would be difficult to exclude", "is considered", "is favored", "is a consideration",
    ),
    TERMINATE: (
        "but", "however", "although", "though", "except", "aside from", "apart from", "which",
        "secondary to", "as the cause of", "as the source of", "cause of", "source of", "etiology of",
        "origin of", "still", "otherwise", "whereas", "yet", "nevertheless", "with the exception of",
    ),
    PSEUDO: (
        "no change", "no interval change", "no significant change", "no significant interval change",
        "no definite change", "no increase", "no decrease", "not only", "not necessarily", "no further change",
        "not changed", "not significantly changed", "gram negative", "without change", "without interval change",
        "no suspicious change", "not certain if", "not certain whether", "not extend", "not cause",
    ),
}



def cue_masks() -> dict[str, int]:
    """Phrase -> bit mask of its kinds (a phrase such as "resolved" is a pre- and a post-cue)."""
    masks: dict[str, int] = {}
    for kind, phrases in CUES.items():
        for phrase in phrases:
            masks[phrase] = masks.get(phrase, 0) | (1 << kind)
    return masks
