"""Templates of the generated corpus's explanatory documents: textbook sections and patient leaflets.

Why apart: the care documents' templates (`synthetic_text`, which also
describes the template grammar) are a module of their own; these two kinds
add titles and question headers that name the document's topic ({d0}).
"""

from __future__ import annotations

from medray.data.synthetic_text import block_lines

# ---- textbook sections ---------------------------------------------------------------------------

TEXTBOOK_TITLES = ["{D0}", "{D0}: clinical overview", "Overview of {d0}", "{D0} in adults", "Approach to {d0}"]
TEXTBOOK = {
    "definition": block_lines("""
        {T} is a condition in which the normal function of the {a} is disturbed, leading to {s} and, in some cases, {s}.
        {T} refers to a group of disorders that share a common mechanism and typically present with {s}.
        The term {t} describes a clinical entity rather than a single disease process.
        {T} is often grouped with {d} because both affect the {a}.
        Historically, {t} was confused with {d}, and the two were distinguished only when reliable imaging became available.
        {T} may be primary or secondary to another illness such as {d}.
        """),
    "epidemiology": block_lines("""
        {T} is most often diagnosed in adults, although it may occur at any age.
        The incidence of {t} increases with age and is slightly higher in men than in women.
        Risk factors include smoking, obesity and a history of {d}.
        Population studies suggest that many cases remain undiagnosed because early symptoms are mild.
        Occupational exposures and family history contribute to risk in a minority of patients.
        The condition is more common in regions where {d} is endemic.
        Rates of {t} have risen over recent decades, partly because of better detection on {m}.
        """),
    "pathophysiology": block_lines("""
        The underlying mechanism involves inflammation of the {a} with subsequent tissue remodelling.
        <Genetic susceptibility|Inherited risk> interacts with <environmental triggers|infection|repeated injury> to produce the disease.
        Impaired clearance and local immune dysregulation lead to {s}.
        In advanced stages, fibrosis of the {a} may cause permanent loss of function.
        Secondary {s} develops when compensatory mechanisms fail.
        Experimental models have shown that repeated injury to the {a} reproduces many features of {t}.
        Reduced blood flow to the {a} explains the {s} seen in some patients.
        """),
    "clinical": block_lines("""
        Patients with {t} commonly present with {s} and {s}.
        The most characteristic feature is {s}, which may precede other symptoms by {dur}.
        Physical examination may reveal {s} over the {a}.
        Some patients remain asymptomatic and are identified incidentally on {m}.
        Complications include {d} and {s}.
        The course is variable, with periods of remission and relapse.
        In older adults the presentation may be atypical, with {s} as the only complaint.
        Symptoms usually develop over {dur} and may be mistaken for {d}.
        """),
    "diagnosis": block_lines("""
        Diagnosis rests on the combination of <clinical findings|history and examination> and <imaging|laboratory tests|{m}>.
        {M} of the {a} is the preferred initial investigation.
        A {test} helps to exclude {d}.
        The main differential diagnoses are {d} and {d}.
        Biopsy is reserved for atypical cases or when malignancy is suspected.
        Characteristic findings on {m} include {s} and {s}.
        A normal {test} does not rule out {t}.
        """),
    "treatment": block_lines("""
        Management of {t} aims to relieve symptoms and prevent complications.
        First-line treatment is {drug}, with {drug} added when the response is incomplete.
        Lifestyle measures, including weight reduction and regular exercise, are recommended for all patients.
        Surgical intervention is considered when {s} persists despite medical therapy.
        Treatment of coexisting {d} improves outcomes.
        Patients should be reviewed regularly to monitor for {s}.
        {Drug} given {freq} reduces the frequency of {s} in most trials.
        """),
    "prognosis": block_lines("""
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
    "what": block_lines("""
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
    "symptoms": block_lines("""
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
    "diagnosis": block_lines("""
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
    "treatment": block_lines("""
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
    "call": block_lines("""
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
