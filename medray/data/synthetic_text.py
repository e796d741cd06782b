"""Templates of the generated care documents (clinical notes, radiology reports); the template grammar.

Why apart: the clean documents (`synthetic_docs`) are filled in from
templates; this module holds the notes and reports, the fillers every
template draws on and the `block_lines` helper the other word lists share.
The explanatory kinds live in `synthetic_text_teaching`, the words of the
planted defects in `synthetic_text_defects`.

Template slots: {d} {s} {a} {m} a disease, symptom, anatomy or modality
node of the document (capitalised as {D} {S} {A} {M}); {t} / {T} the
document's topic (its first disease); {age} and {sexw} the document's
patient; any other {name} a value from FILLERS (capitalised when the tag
is); <a|b|c> one of the alternatives. No template names a body part or
finding outside the slots, so a document mentions exactly the nodes it was
given (checked against the tiny test tree).
"""

from __future__ import annotations


def block_lines(block: str) -> list[str]:
    """The non-empty lines of a triple-quoted block, stripped."""
    return [ln.strip() for ln in block.strip().splitlines() if ln.strip()]


FILLERS = {
    "dur": block_lines("""
        two days
        three days
        five days
        a week
        ten days
        two weeks
        three weeks
        a month
        six weeks
        two months
        three months
        six months
        nine months
        a year
        several weeks
        several months
        several years
        """),
    "drug": block_lines("""
        lisinopril
        metformin
        atorvastatin
        amlodipine
        omeprazole
        levothyroxine
        albuterol
        prednisone
        ibuprofen
        acetaminophen
        furosemide
        metoprolol
        sertraline
        gabapentin
        warfarin
        apixaban
        insulin glargine
        montelukast
        azithromycin
        amoxicillin
        doxycycline
        tamsulosin
        losartan
        hydrochlorothiazide
        pantoprazole
        clopidogrel
        fluticasone
        budesonide
        allopurinol
        colchicine
        spironolactone
        ceftriaxone
        """),
    "freq": ["once daily", "twice daily", "three times daily", "at bedtime", "every morning", "as needed",
             "every eight hours", "once weekly"],
    "sev": ["mild", "moderate", "severe", "minimal", "marked", "subtle", "extensive", "small", "large",
            "new", "chronic", "acute"],
    "side": ["left", "right", "bilateral"],
    "test": block_lines("""
        complete blood count
        basic metabolic panel
        liver function panel
        lipid profile
        urinalysis
        thyroid function test
        C-reactive protein level
        hemoglobin A1c
        blood culture
        coagulation profile
        serum ferritin
        vitamin D level
        """),
    "change": ["unchanged", "slightly larger", "slightly smaller", "improved", "stable", "more conspicuous",
               "less conspicuous"],
    "size": ["3 mm", "4 mm", "5 mm", "6 mm", "8 mm", "9 mm", "1 cm", "12 mm", "15 mm", "2 cm"],
    "where": ["the emergency department", "an outside hospital", "urgent care", "the primary care office",
              "a community clinic"],
    "who": ["the patient's daughter", "the patient's spouse", "the nursing staff", "the primary care physician",
            "a neighbour", "the home care team"],
}

# ---- clinical notes ------------------------------------------------------------------------------

CLINICAL_NOTE = {
    "chief": block_lines("""
        {S} for {dur}.
        Worsening {s} over the past {dur}.
        Follow-up of {t}.
        Evaluation of {s} and {s}.
        Referred for management of {t}.
        {S} and {s} since {dur} ago.
        Routine review of {t}.
        """),
    "hpi": block_lines("""
        The patient is a {age}-year-old {sexw} with a history of {t} who presents with {s} of {dur} duration.
        This {age}-year-old {sexw} was referred by {who} because of {s} and {s}.
        Symptoms began {dur} ago and have gradually worsened despite rest.
        The patient reports {sev} {s} that is worse at night and partly relieved by {drug}.
        There is no history of {s} or recent travel.
        The patient denies {s}, {s} and {s}.
        Over the past {dur} the patient has also noticed {s}.
        A similar episode occurred {dur} ago and resolved without treatment.
        The patient was previously evaluated at {where}, where {t} was suspected.
        Family history is notable for {d} in a first-degree relative.
        The patient attributes the symptoms to <a change in diet|increased stress at work|poor sleep|a recent move> and <reduced exercise|long working hours|family worries>.
        Sleep has been poor because of {s}, and appetite is reduced.
        The patient has been taking {drug} {freq} with partial improvement.
        Review of systems is positive for {s} and negative for {s}.
        There has been no unintentional weight loss or night sweats.
        The patient lives <alone|with family|with a partner>, <walks daily|exercises rarely|works full time> and <does not smoke|quit smoking years ago|smokes occasionally>.
        Symptoms are <aggravated|made worse> by <exertion|cold weather|lying flat|eating> and improve <after a period of rest|with time|with {drug}>.
        The patient was seen in {where} {dur} ago for {s} and was discharged on {drug}.
        According to {who}, the {s} has become more frequent since {dur} ago.
        The patient describes the {s} as intermittent, lasting several hours at a time.
        Prior treatment with {drug} was stopped after {dur} because of nausea.
        {S} first appeared after a viral illness {dur} ago.
        The patient has missed work several times this month because of {s}.
        There is a remote history of {d}, for which the patient received {drug}.
        Current symptoms are similar to those experienced during the diagnosis of {t}.
        The patient is otherwise active and independent in daily activities.
        """),
    "pmh": block_lines("""
        Past medical history is significant for {d} and {d}.
        The patient has a long-standing history of {d}, well controlled on {drug}.
        Surgical history includes an uncomplicated appendectomy in childhood.
        There is a remote history of {d}, treated without sequelae.
        No known drug allergies.
        The patient is allergic to penicillin, which causes a rash.
        Immunizations are up to date.
        Other history includes {d} diagnosed {dur} ago.
        The patient had {d} as a child and has had no problems since.
        """),
    "meds": block_lines("""
        Current medications include {drug} {freq} and {drug} {freq}.
        The patient takes {drug} {freq} and uses {drug} {freq}.
        {Drug} was discontinued {dur} ago because of side effects.
        The patient takes {drug} {freq} for {d}.
        No over-the-counter or herbal supplements are used.
        """),
    "exam": block_lines("""
        On examination the patient is <alert|awake>, <oriented|cooperative> and in <no acute distress|mild discomfort>.
        Examination of the {a} reveals {sev} {s}.
        The {a} is tender to palpation without {s}.
        Heart sounds are regular <without murmurs, rubs or gallops|with no added sounds>.
        Breath sounds are diminished at the {side} base.
        There is no {s}, and the {a} appears normal.
        Neurological examination is grossly nonfocal.
        The abdomen is soft and non-tender with normal bowel sounds.
        Skin is warm and dry without rash.
        Vital signs are <within normal limits|stable|unremarkable> and the patient is <afebrile|comfortable at rest>.
        Gait is steady and strength is preserved in all four limbs.
        Inspection of the {a} shows {sev} {s} on the {side} side.
        Palpation of the {a} reproduces the {s} described by the patient.
        There is {sev} {s} but no {s}.
        Capillary refill is brisk and peripheral pulses are palpable.
        """),
    "plan": block_lines("""
        The clinical picture is most consistent with {t}.
        Differential diagnosis includes {t}, {d} and {d}.
        We will obtain {m} of the {a} to evaluate for {s}.
        Start {drug} {freq} and reassess in {dur}.
        Laboratory workup will include a {test} and a {test}.
        The patient was counselled about the expected course of {t} and about warning signs that need urgent review.
        Referral to a specialist in {d} has been placed.
        Follow-up is arranged in {dur}, sooner if {s} develops.
        The patient understands and agrees with the plan.
        If symptoms persist, {m} of the {a} will be considered.
        Continue {drug} at the current dose.
        {T} is likely, although {d} cannot be excluded at this stage.
        We discussed the risks and benefits of {drug}, and the patient prefers to start it.
        Return precautions were reviewed with the patient and {who}.
        A {test} will be repeated in {dur} to monitor the response.
        """),
}
CLINICAL_HEADERS = {
    "chief": ["Chief complaint", "Reason for visit", "Presenting complaint"],
    "hpi": ["History of present illness", "History", "Subjective"],
    "pmh": ["Past medical history", "Background", "Medical history"],
    "meds": ["Medications", "Current medications"],
    "exam": ["Physical examination", "Examination", "Objective"],
    "plan": ["Assessment and plan", "Impression and plan", "Assessment"],
}

# ---- radiology reports ---------------------------------------------------------------------------

RADIOLOGY = {
    "exam": block_lines("""
        {M} of the {a} without contrast.
        {M} of the {a} with intravenous contrast.
        {M} of the {a}, two views.
        {M} of the {a} and {a}.
        Portable {m} of the {a}.
        """),
    "indication": block_lines("""
        {S}. Evaluate for {t}.
        History of {d}, now with {s}.
        Follow-up of known {t}.
        Suspected {t} after {dur} of {s}.
        {S} and {s}; assess for {d}.
        Preoperative assessment in a patient with {d}.
        """),
    "technique": block_lines("""
        Images were acquired in the <standard|frontal and lateral|supine and erect> projections.
        Multiplanar reformats were obtained from thin-section source images.
        Contrast was administered without complication.
        The <standard|routine> <departmental|institutional> protocol was followed<| without deviation>.
        Images were obtained before and after contrast administration.
        Examination is limited by patient motion.
        """),
    "comparison": block_lines("""
        Comparison is made with the prior study from {dur} ago.
        No prior studies are available for comparison.
        Comparison with outside {m} of the {a} from {dur} ago.
        Compared with the examination performed {dur} ago.
        """),
    "findings": block_lines("""
        There is {sev} {s} in the {side} {a}.
        No {s} is identified.
        The {a} is within normal limits.
        {T} is again noted and appears {change} compared with the prior examination.
        There is no evidence of {s} or {s}.
        A {size} nodular opacity is present in the {side} {a}, {change} in size.
        The visualised portions of the {a} are unremarkable.
        <Mild|Moderate|Minimal> degenerative changes are present <without acute abnormality|with no acute finding>.
        Findings may represent {s}, although {d} is also a consideration.
        The {a} demonstrates {sev} {s} with associated {s}.
        Support lines and tubes are in <satisfactory|appropriate|unchanged> position.
        Osseous structures show no aggressive lesion.
        The cardiomediastinal silhouette is within normal limits.
        Soft tissues are unremarkable.
        There is {sev} thickening of the {a} wall, which may reflect {s}.
        No free fluid or free air is seen.
        The {a} and {a} are normal in size and appearance.
        A {size} focus of {s} is seen adjacent to the {a}.
        No {s} or {s} is seen on this examination.
        The previously described {s} has resolved.
        The {side} {a} shows {sev} {s}, {change} since the prior study.
        Appearances of the {a} are in keeping with {t}.
        The remainder of the <examination|study> is <unremarkable|within normal limits>.
        """),
    "impression": block_lines("""
        {T}, {change} from prior.
        No acute {s}.
        {Sev} {s} in the {side} {a}; consider {d}.
        Findings consistent with {t}.
        Recommend follow-up {m} in {dur}.
        No evidence of {d}.
        {S} in the {a}, likely related to {t}.
        No significant interval change.
        """),
}
RADIOLOGY_HEADERS = {
    "exam": ["EXAMINATION", "EXAM", "STUDY"],
    "indication": ["INDICATION", "CLINICAL HISTORY", "HISTORY"],
    "technique": ["TECHNIQUE"],
    "comparison": ["COMPARISON"],
    "findings": ["FINDINGS"],
    "impression": ["IMPRESSION", "CONCLUSION"],
}
