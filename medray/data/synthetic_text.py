"""The words of the generated corpus (`synthetic.py`): templates, fillers, foreign text, junk.

Template slots: {d} {s} {a} {m} a disease, symptom, anatomy or modality
node of the document (capitalised as {D} {S} {A} {M}); {t} / {T} the
document's topic (its first disease); {age} and {sexw} the document's
patient; any other {name} a value from FILLERS (capitalised when the tag is); <a|b|c> one of the alternatives. No template names a body part or
finding outside the slots, so a document mentions exactly the nodes it was
given (checked against the tiny test tree). The foreign sentences are
real French, German and Spanish clinical prose.
"""

from __future__ import annotations


def _lines(block: str) -> list[str]:
    return [ln.strip() for ln in block.strip().splitlines() if ln.strip()]


FILLERS = {
    "dur": _lines("""
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
    "drug": _lines("""
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
    "test": _lines("""
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
    "chief": _lines("""
        {S} for {dur}.
        Worsening {s} over the past {dur}.
        Follow-up of {t}.
        Evaluation of {s} and {s}.
        Referred for management of {t}.
        {S} and {s} since {dur} ago.
        Routine review of {t}.
        """),
    "hpi": _lines("""
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
    "pmh": _lines("""
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
    "meds": _lines("""
        Current medications include {drug} {freq} and {drug} {freq}.
        The patient takes {drug} {freq} and uses {drug} {freq}.
        {Drug} was discontinued {dur} ago because of side effects.
        The patient takes {drug} {freq} for {d}.
        No over-the-counter or herbal supplements are used.
        """),
    "exam": _lines("""
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
    "plan": _lines("""
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
    "exam": _lines("""
        {M} of the {a} without contrast.
        {M} of the {a} with intravenous contrast.
        {M} of the {a}, two views.
        {M} of the {a} and {a}.
        Portable {m} of the {a}.
        """),
    "indication": _lines("""
        {S}. Evaluate for {t}.
        History of {d}, now with {s}.
        Follow-up of known {t}.
        Suspected {t} after {dur} of {s}.
        {S} and {s}; assess for {d}.
        Preoperative assessment in a patient with {d}.
        """),
    "technique": _lines("""
        Images were acquired in the <standard|frontal and lateral|supine and erect> projections.
        Multiplanar reformats were obtained from thin-section source images.
        Contrast was administered without complication.
        The <standard|routine> <departmental|institutional> protocol was followed<| without deviation>.
        Images were obtained before and after contrast administration.
        Examination is limited by patient motion.
        """),
    "comparison": _lines("""
        Comparison is made with the prior study from {dur} ago.
        No prior studies are available for comparison.
        Comparison with outside {m} of the {a} from {dur} ago.
        Compared with the examination performed {dur} ago.
        """),
    "findings": _lines("""
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
    "impression": _lines("""
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

# ---- textbook sections ---------------------------------------------------------------------------

TEXTBOOK_TITLES = ["{D0}", "{D0}: clinical overview", "Overview of {d0}", "{D0} in adults", "Approach to {d0}"]
TEXTBOOK = {
    "definition": _lines("""
        {T} is a condition in which the normal function of the {a} is disturbed, leading to {s} and, in some cases, {s}.
        {T} refers to a group of disorders that share a common mechanism and typically present with {s}.
        The term {t} describes a clinical entity rather than a single disease process.
        {T} is often grouped with {d} because both affect the {a}.
        Historically, {t} was confused with {d}, and the two were distinguished only when reliable imaging became available.
        {T} may be primary or secondary to another illness such as {d}.
        """),
    "epidemiology": _lines("""
        {T} is most often diagnosed in adults, although it may occur at any age.
        The incidence of {t} increases with age and is slightly higher in men than in women.
        Risk factors include smoking, obesity and a history of {d}.
        Population studies suggest that many cases remain undiagnosed because early symptoms are mild.
        Occupational exposures and family history contribute to risk in a minority of patients.
        The condition is more common in regions where {d} is endemic.
        Rates of {t} have risen over recent decades, partly because of better detection on {m}.
        """),
    "pathophysiology": _lines("""
        The underlying mechanism involves inflammation of the {a} with subsequent tissue remodelling.
        <Genetic susceptibility|Inherited risk> interacts with <environmental triggers|infection|repeated injury> to produce the disease.
        Impaired clearance and local immune dysregulation lead to {s}.
        In advanced stages, fibrosis of the {a} may cause permanent loss of function.
        Secondary {s} develops when compensatory mechanisms fail.
        Experimental models have shown that repeated injury to the {a} reproduces many features of {t}.
        Reduced blood flow to the {a} explains the {s} seen in some patients.
        """),
    "clinical": _lines("""
        Patients with {t} commonly present with {s} and {s}.
        The most characteristic feature is {s}, which may precede other symptoms by {dur}.
        Physical examination may reveal {s} over the {a}.
        Some patients remain asymptomatic and are identified incidentally on {m}.
        Complications include {d} and {s}.
        The course is variable, with periods of remission and relapse.
        In older adults the presentation may be atypical, with {s} as the only complaint.
        Symptoms usually develop over {dur} and may be mistaken for {d}.
        """),
    "diagnosis": _lines("""
        Diagnosis rests on the combination of <clinical findings|history and examination> and <imaging|laboratory tests|{m}>.
        {M} of the {a} is the preferred initial investigation.
        A {test} helps to exclude {d}.
        The main differential diagnoses are {d} and {d}.
        Biopsy is reserved for atypical cases or when malignancy is suspected.
        Characteristic findings on {m} include {s} and {s}.
        A normal {test} does not rule out {t}.
        """),
    "treatment": _lines("""
        Management of {t} aims to relieve symptoms and prevent complications.
        First-line treatment is {drug}, with {drug} added when the response is incomplete.
        Lifestyle measures, including weight reduction and regular exercise, are recommended for all patients.
        Surgical intervention is considered when {s} persists despite medical therapy.
        Treatment of coexisting {d} improves outcomes.
        Patients should be reviewed regularly to monitor for {s}.
        {Drug} given {freq} reduces the frequency of {s} in most trials.
        """),
    "prognosis": _lines("""
        Most patients with {t} have a favourable prognosis when treatment is started early.
        The prognosis is worse in the presence of {d}.
        Long-term follow-up shows that recurrence occurs in a substantial minority of cases.
        Persistent {s} after treatment predicts a slower recovery.
        """),
}
TEXTBOOK_HEADERS = {
    "definition": ["Definition", "Introduction"],
    "epidemiology": ["Epidemiology"],
    "pathophysiology": ["Pathophysiology", "Mechanisms"],
    "clinical": ["Clinical features", "Presentation"],
    "diagnosis": ["Diagnosis", "Investigations"],
    "treatment": ["Treatment", "Management"],
    "prognosis": ["Prognosis", "Outcome"],
}

# ---- patient education ---------------------------------------------------------------------------

EDUCATION_TITLES = ["Understanding {d0}", "{D0}: what you need to know", "Living with {d0}",
                    "A patient guide to {d0}", "Questions and answers about {d0}"]
EDUCATION = {
    "what": _lines("""
        {T} is a <health problem|medical condition|long-term condition> that affects the {a}.
        <It can make you feel tired|You may feel more tired than usual|It often causes tiredness> and <it may cause|it can lead to|some people develop> {s}.
        <Many|Some|A lot of> people live with {t} for <years|a long time|many months> without knowing it.
        {T} is not contagious, and you cannot catch it from <other people|family members|anyone else>.
        <Doctors|Experts|Researchers> do not always know exactly what causes {t}.
        <It is more likely|Your risk is higher|You are more likely to get it> if you already have {d}.
        <In most people|For many people|Usually>, {t} develops slowly over {dur}.
        <Some|Certain> habits, such as smoking, can make {t} worse.
        {T} is sometimes confused with {d}, <because|as> the symptoms can look alike.
        <The|Your> {a} <may|can> be affected in <different|several> ways.
        <Knowing|Learning> more about {t} can help you <take part in|make choices about|plan> your care.
        """),
    "symptoms": _lines("""
        <Common|Typical|The most common> symptoms include {s} and {s}.
        You may notice {s}, <especially|mostly|often> after <physical activity|a busy day|climbing stairs>.
        <Some people|A few people|Others> also have {s}.
        Symptoms can come and go, and they <are not the same for everyone|differ from person to person>.
        Write down when your {s} <happens|starts|gets worse>, so you can tell your <care team|doctor|nurse>.
        <In the early stages|At first|Early on>, you may have no symptoms at all.
        {S} <can be|is sometimes> the first sign <you notice|that something is wrong>.
        <Tell|Let> your doctor <know|right away> if {s} <keeps you awake|stops you from working|makes daily tasks hard>.
        Some people <feel|notice> {s} <only at night|mainly in the morning|after meals>.
        """),
    "diagnosis": _lines("""
        Your <doctor|care team|nurse practitioner> will ask about your symptoms and examine your {a}.
        You may need a {test} or {m} of the {a}.
        These tests help your doctor rule out other problems such as {d}.
        <Most|Many of these|The usual> tests are <quick and painless|simple and safe|done in the clinic>.
        Bring a list of your <medicines|medications and supplements> to the appointment.
        <A|Your> {test} <shows|can show> how well your body is <working|coping>.
        <Sometimes|In some cases|Occasionally> a specialist in {d} will <see|review> you.
        <It may take|Results can take|You may wait> {dur} <to get results|before all the results are back>.
        <Ask|Feel free to ask> <why a test is needed|what each test is for> and what the results mean.
        """),
    "treatment": _lines("""
        Treatment depends on <how severe your symptoms are|your age and general health|what is causing your symptoms>.
        Your doctor may prescribe {drug} to help control {s}.
        Take your medicine exactly as prescribed, <even when you feel well|and do not stop it on your own>.
        <Healthy habits|Simple changes>, such as <eating well|a balanced diet>, staying active and not smoking, can help.
        Some people need a procedure if <medicines do not work|other treatments have not helped>.
        Ask before taking any new medicine, because it may interact with {drug}.
        {Drug} is <usually|often> taken {freq}.
        <Side effects|Problems with {drug}> are <usually mild|not common>, but tell your doctor if they happen.
        <Physical therapy|Gentle exercise|Breathing exercises> <may help|can help> with {s}.
        <Your care team|Your doctor> will <check|review> how well the treatment works after {dur}.
        Treating {d} <at the same time|as well> <can improve|often improves> your symptoms.
        """),
    "call": _lines("""
        Call your doctor if you have {s} that <gets worse|does not go away|keeps coming back>.
        Get medical help right away if you have {s} or {s}.
        Contact your care team if you notice new symptoms or side effects from {drug}.
        Keep all follow-up appointments so your doctor can <check your progress|adjust your treatment>.
        <Go to|Visit> the emergency department if {s} <starts suddenly|is severe>.
        <Call|Phone> <your clinic|the nurse line> if you <are not sure what to do|have questions about {drug}>.
        """),
}
EDUCATION_HEADERS = {
    "what": ["What is {d0}?", "About {d0}"],
    "symptoms": ["What are the symptoms?", "Signs to look for"],
    "diagnosis": ["How is it diagnosed?", "Tests you may need"],
    "treatment": ["How is it treated?", "Treatment options"],
    "call": ["When should I call my doctor?", "When to get help"],
}

# ---- near-duplicate edits ------------------------------------------------------------------------

EDIT_WORDS = ["also", "now", "clearly", "reportedly", "again", "still", "further", "slightly", "recently",
              "possibly", "notably", "today", "initially", "currently", "somewhat", "generally"]

# ---- junk ----------------------------------------------------------------------------------------

# too_short documents: opening (1-2 words) + a term (1-4) + closing (1) + an optional note (1): at most 8 words
SHORT_OPENINGS = ["No", "Known", "Possible", "Query", "Resolved", "Chronic", "Suspected", "History of",
                  "Rule out", "Mild", "Stable", "Worsening", "New", "Old", "Likely"]
SHORT_CLOSINGS = ["noted.", "seen.", "today.", "again.", "confirmed.", "unchanged.", "improving.", "resolved.",
                  "reported.", "documented.", "present.", "persists."]
SHORT_NOTES = ["Recheck.", "Pending.", "Reviewed.", "Repeat.", "Discussed.", "Charted.", "Dictated.",
               "Signed.", "Urgent.", "Routine.", "Acknowledged."]

REPEATED_LINES = _lines("""
    Patient tolerated the procedure well and was returned to the ward.
    Vital signs remain stable and the patient is resting comfortably.
    Awaiting results from the laboratory before further action is taken.
    Nursing note: patient seen on rounds, no new complaints this shift.
    Medication administered as charted by the nursing staff.
    Template text not completed by the author of this document.
    """)

LAB_ANALYTES = _lines("""
    Sodium
    Potassium
    Chloride
    Bicarbonate
    Urea
    Creatinine
    Glucose
    Calcium
    Magnesium
    Phosphate
    Albumin
    Bilirubin
    ALT
    AST
    ALP
    GGT
    Hemoglobin
    Hematocrit
    Platelets
    WBC
    Neutrophils
    Lymphocytes
    INR
    Ferritin
    TSH
    Troponin
    Lactate
    CRP
    Urate
    Lipase
    """)

# markup debris: none is prose punctuation (brackets, slashes, dashes, %, + can be), none is "@"
SYMBOL_WRAPS = [("**", "**"), ("##", "##"), ("~~", "~~"), ("==", "=="), ("<<", ">>"), ("{{", "}}"),
                ("^^", "^^"), ("$$", "$$"), ("&&", "&&"), ("||", "||"), ("<#", "#>"), ("*=", "=*")]

BOILERPLATE_MARKERS = (
    "cookie", "subscribe", "newsletter", "privacy policy", "terms of use", "all rights reserved",
    "sign in to your", "log in to", "skip to main", "skip to navigation", "share this", "follow us", "back to top", "read more",
    "related articles", "advertisement", "download our app", "main menu", "search this site",
    "print this page", "was this page helpful", "manage preferences", "reject all", "accept all",
    "contact us", "site map", "sitemap", "terms and conditions", "powered by",
)
BOILERPLATE_LINES = _lines("""
    Accept all cookies
    We use cookies to improve your experience on our website and to analyse traffic.
    Cookie settings and preferences
    Manage preferences
    Reject all non-essential cookies
    By continuing to browse {site} you agree to our use of cookies.
    Subscribe to our newsletter for weekly health news
    Sign up for the {site} newsletter and never miss an update
    Skip to main content
    Skip to navigation
    Home | About us | Contact us | Careers
    Main menu: Conditions, Treatments, Wellness, News
    Search this site
    Privacy policy
    Terms of use and medical disclaimer
    Terms and conditions apply to all content on {site}
    Copyright {site} media group. All rights reserved.
    All rights reserved by {site}.
    Share this article with a friend
    Share this page on social media
    Follow us on social media for daily tips
    Log in to your {site} account
    Sign in to your account to save articles
    Read more articles like this one
    Read more about our editorial policy
    Related articles you may like
    Advertisement
    Back to top
    Print this page
    Was this page helpful? Yes or no
    Download our app for iPhone and Android
    Contact us with questions about this website
    Site map
    Powered by the {site} content platform
    Follow us for the latest updates from {site}
    Log in to leave a comment
    Subscribe now to read the full story
    Accept all and continue to {site}
    """)
SITES = ["HealthDaily", "MedInfo Online", "WellnessHub", "CareCompass", "ClinicNews", "Body and Mind Weekly",
         "FamilyHealth Portal", "The Health Desk"]

SPAM_PHRASES = _lines("""
    best {kw} treatment online
    cheap {kw} pills fast delivery
    buy {kw} remedy without prescription
    {kw} cure that really works
    top rated {kw} doctors near me
    miracle {kw} supplement
    doctors hate this {kw} secret
    lowest price on {kw} medicine
    natural {kw} cure at home
    instant {kw} relief guaranteed
    {kw} treatment reviews and deals
    amazing {kw} detox formula
    order {kw} pills today
    discount {kw} medication online pharmacy
    fast {kw} fix
    {kw} remedy free shipping
    best cheap {kw} online
    secret {kw} trick revealed
    guaranteed {kw} results in days
    {kw} {kw} {kw} best price
    """)
SPAM_FILLER = ["best", "cheap", "online", "buy", "now", "deal", "discount", "top", "fast", "guaranteed",
               "miracle", "natural", "pills", "cure", "amazing", "offer", "sale", "price", "shop"]

# ---- personal identifiers (fictional: 555 numbers, example domains) --------------------------------

FIRST_NAMES = ["john", "mary", "james", "linda", "robert", "susan", "michael", "karen", "david", "lisa",
               "maria", "ahmed", "chen", "olga", "pedro", "fatima", "kofi", "anna", "li", "sam"]
LAST_NAMES = ["smith", "johnson", "garcia", "brown", "miller", "davis", "martinez", "lopez", "wilson",
              "nguyen", "khan", "kim", "patel", "okafor", "rossi", "schmidt", "dubois", "silva", "cohen"]
EMAIL_DOMAINS = ["example.org", "mail.example.com", "clinic.example.net", "health.example.org"]
# Each PII sentence with the kinds it holds; {email} {phone} {mrn} {dob} are filled per use.
PII_SENTENCES = [
    ("Patient email on file: {email} (verified by the front desk)", ("email",)),
    ("The patient can be reached at {phone} or by email at {email} during the day", ("phone", "email")),
    ("Callback number {phone} was confirmed with the patient", ("phone",)),
    ("Identifiers: {mrn}, {dob}", ("mrn", "dob")),
    ("Registration details were checked ({mrn})", ("mrn",)),
    ("Demographics reviewed, {dob}, and contact number {phone}", ("dob", "phone")),
    ("Results will be sent to {email} and discussed by phone", ("email",)),
    ("Patient verified identity with {dob} at check-in", ("dob",)),
]
PII_FORMATS = {
    "email": "first.last@domain or flast99@domain, domains under example.org/.com/.net",
    "phone": "(AAA) 555-01NN | AAA-555-01NN | AAA.555.01NN | +1 AAA-555-01NN",
    "mrn": "'MRN: ' + 7-9 digits | 'MRN #' + 8 digits | 'medical record number ' + 8 digits",
    "dob": "'DOB: MM/DD/YYYY' | 'DOB MM/DD/YYYY' | 'date of birth YYYY-MM-DD'",
}

# ---- foreign-language clinical prose ---------------------------------------------------------------

FOREIGN = {
    "fr": _lines("""
        Le patient, âgé de soixante-sept ans, s'est présenté aux urgences pour une douleur thoracique apparue la veille au soir.
        L'examen clinique retrouve une diminution du murmure vésiculaire à la base droite.
        La radiographie du thorax montre un épanchement pleural de faible abondance.
        Un traitement antibiotique a été débuté après la réalisation des hémocultures.
        Les antécédents comprennent une hypertension artérielle et un diabète de type deux bien équilibré.
        La patiente ne signale ni fièvre ni perte de poids au cours des derniers mois.
        Le scanner thoracique ne met pas en évidence d'embolie pulmonaire.
        Une surveillance clinique et biologique est recommandée pendant les prochaines semaines.
        L'insuffisance cardiaque est une cause fréquente d'essoufflement chez les personnes âgées.
        Le diagnostic repose sur l'association des signes cliniques, de l'imagerie et des examens biologiques.
        Il est conseillé au patient d'arrêter le tabac et de pratiquer une activité physique régulière.
        La douleur est soulagée par le repos et aggravée par l'effort.
        Le bilan sanguin montre une légère élévation de la protéine C réactive.
        En l'absence d'amélioration, une ponction pleurale pourra être envisagée.
        Les symptômes ont disparu après trois jours de traitement.
        La pneumonie communautaire reste une cause importante d'hospitalisation en hiver.
        Le médecin traitant a été informé des résultats par courrier.
        La tension artérielle est stable et la fréquence cardiaque est normale.
        Une consultation de contrôle est prévue dans un mois avec de nouveaux examens.
        Les patients atteints de bronchopneumopathie chronique obstructive doivent être vaccinés contre la grippe chaque année.
        L'échographie abdominale ne révèle aucune anomalie du foie ni de la vésicule biliaire.
        Le traitement par anticoagulants a été poursuivi sans complication hémorragique.
        """),
    "de": _lines("""
        Der Patient stellte sich mit seit drei Tagen bestehenden Brustschmerzen in der Notaufnahme vor.
        Bei der körperlichen Untersuchung fand sich ein abgeschwächtes Atemgeräusch rechts basal.
        Die Röntgenaufnahme des Thorax zeigt einen kleinen Pleuraerguss auf der rechten Seite.
        Nach Abnahme der Blutkulturen wurde eine antibiotische Therapie begonnen.
        In der Vorgeschichte bestehen ein arterieller Bluthochdruck und ein gut eingestellter Diabetes mellitus.
        Die Patientin verneint Fieber, Nachtschweiß und ungewollten Gewichtsverlust.
        Die Computertomographie ergab keinen Hinweis auf eine Lungenembolie.
        Wir empfehlen eine klinische Verlaufskontrolle in vier Wochen.
        Die Herzinsuffizienz ist eine häufige Ursache für Atemnot bei älteren Menschen.
        Die Diagnose beruht auf der Kombination von klinischem Befund, Bildgebung und Laborwerten.
        Dem Patienten wurde geraten, mit dem Rauchen aufzuhören und sich regelmäßig zu bewegen.
        Die Schmerzen bessern sich in Ruhe und verstärken sich bei Belastung.
        Im Labor zeigte sich ein leicht erhöhtes C-reaktives Protein.
        Bei fehlender Besserung sollte eine Pleurapunktion erwogen werden.
        Nach drei Tagen Behandlung waren die Beschwerden vollständig rückläufig.
        Die ambulant erworbene Lungenentzündung ist im Winter ein häufiger Grund für eine stationäre Aufnahme.
        Der Hausarzt wurde schriftlich über die Befunde informiert.
        Blutdruck und Herzfrequenz waren während des gesamten Aufenthalts stabil.
        Eine Kontrolluntersuchung mit erneuter Blutentnahme ist in einem Monat geplant.
        Patienten mit chronisch obstruktiver Lungenerkrankung sollten jährlich gegen Grippe geimpft werden.
        Die Sonographie des Abdomens zeigte keine Auffälligkeiten an Leber und Gallenblase.
        Die Antikoagulation wurde ohne Blutungskomplikationen fortgeführt.
        """),
    "es": _lines("""
        El paciente acudió a urgencias por un dolor torácico que comenzó la noche anterior.
        En la exploración física se observa una disminución del murmullo vesicular en la base derecha.
        La radiografía de tórax muestra un derrame pleural de pequeño tamaño.
        Se inició tratamiento antibiótico después de extraer los hemocultivos.
        Entre sus antecedentes destacan la hipertensión arterial y una diabetes tipo dos bien controlada.
        La paciente niega fiebre, sudoración nocturna y pérdida de peso en los últimos meses.
        La tomografía computarizada no muestra signos de embolia pulmonar.
        Se recomienda un control clínico y analítico en las próximas semanas.
        La insuficiencia cardíaca es una causa frecuente de dificultad respiratoria en las personas mayores.
        El diagnóstico se basa en la combinación de los hallazgos clínicos, las pruebas de imagen y los análisis de sangre.
        Se aconsejó al paciente dejar de fumar y realizar actividad física de forma regular.
        El dolor mejora con el reposo y empeora con el esfuerzo.
        La analítica muestra una ligera elevación de la proteína C reactiva.
        Si no hay mejoría, se valorará realizar una toracocentesis.
        Los síntomas desaparecieron tras tres días de tratamiento.
        La neumonía adquirida en la comunidad sigue siendo una causa importante de ingreso hospitalario en invierno.
        Se informó por escrito al médico de cabecera de los resultados.
        La presión arterial y la frecuencia cardíaca se mantuvieron estables durante el ingreso.
        Se programó una consulta de seguimiento dentro de un mes con nuevos análisis.
        Los pacientes con enfermedad pulmonar obstructiva crónica deben vacunarse cada año contra la gripe.
        La ecografía abdominal no revela alteraciones en el hígado ni en la vesícula biliar.
        El tratamiento anticoagulante se mantuvo sin complicaciones hemorrágicas.
        """),
}
