"""The words of the planted defects: near-duplicate edits, junk, boilerplate, spam, identifiers, foreign text.

Why apart: the makers in `synthetic_defects` draw on these fixed lists,
which have nothing to do with the clean documents' templates
(`synthetic_text`). The identifiers are fictional (555 numbers, example
domains); the foreign sentences are real French, German and Spanish
clinical prose.
"""

from __future__ import annotations

from medray.data.synthetic_text import block_lines

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

REPEATED_LINES = block_lines("""
    Patient tolerated the procedure well and was returned to the ward.
    Vital signs remain stable and the patient is resting comfortably.
    Awaiting results from the laboratory before further action is taken.
    Nursing note: patient seen on rounds, no new complaints this shift.
    Medication administered as charted by the nursing staff.
    Template text not completed by the author of this document.
    """)

LAB_ANALYTES = block_lines("""
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
BOILERPLATE_LINES = block_lines("""
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

SPAM_PHRASES = block_lines("""
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
    "fr": block_lines("""
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
    "de": block_lines("""
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
    "es": block_lines("""
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
