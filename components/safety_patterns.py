"""Deterministic detection of crisis and medical-emergency messages with spaCy's Matcher.

Kept free of Rasa so it can be tested on plain spaCy docs. Every token gets a
normalised form, written into spaCy's own ``token.norm_``: lower case, common
misspellings and near-misses of key words corrected, then the lookup lemma. The
patterns match on that form, so "killing myslef", "suicidle" and "kill my self" all
match. Matching on the built-in NORM attribute keeps the Matcher in compiled code; a
custom ``token._`` attribute made it call Python for every token and pattern (6.0 ms a
message against about 1 ms).
"""
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from spacy.matcher import Matcher
from spacy.tokens import Doc, Token
from spacy.vocab import Vocab

CRISIS = "crisis"
MEDICAL_EMERGENCY = "medical_emergency"
PERSONAL_MEDICAL_ADVICE = "ask_personal_medical_advice"
# Most urgent first: a message that is both gets the more urgent reply.
PRIORITY = (CRISIS, MEDICAL_EMERGENCY, PERSONAL_MEDICAL_ADVICE)


# Misspellings too short or too far off for the fuzzy match below.
MISSPELLINGS: Dict[str, str] = {
    "kil": "kill", "kll": "kill", "kilk": "kill", "klil": "kill", "kms": "kms",
    "myslf": "myself", "mysef": "myself", "mself": "myself", "meself": "myself",
    "myselfe": "myself", "miself": "myself", "muself": "myself",
    "sucide": "suicide", "suiside": "suicide", "suicde": "suicide",
    "suicid": "suicide", "suacide": "suicide", "siucide": "suicide",
    "sucidal": "suicidal", "suicidle": "suicidal", "suicidel": "suicidal", "suisidal": "suicidal",
    "sucidial": "suicidal", "suicdal": "suicidal", "suicidial": "suicidal", "suacidal": "suicidal",
    "wanna": "want", "wana": "want", "gonna": "go", "ima": "go", "imma": "go",
    "dyin": "die", "dying": "die", "died": "die", "dead": "dead", "ded": "dead",
    "alive": "alive", "alve": "alive", "aliv": "alive", "anymore": "anymore", "anymor": "anymore",
    "nomore": "anymore", "nt": "not", "breath": "breathe", "breathin": "breathe", "cant": "not", "can't": "not",
    "dont": "not", "don't": "not", "wont": "not", "won't": "not", "didnt": "not",
    "isnt": "not", "n't": "not", "never": "never", "im": "be", "i'm": "be",
    "whats": "what", "what's": "what", "selfharm": "selfharm", "self-harm": "selfharm",
    "unalive": "unalive", "unaliving": "unalive", "od": "overdose", "od'd": "overdose", "oded": "overdose",
    "overdosed": "overdose", "overdosing": "overdose", "overdoes": "overdose", "sh": "selfharm",
    "tired": "tired", "done": "done", "harn": "harm", "hram": "harm",  "of": "of", "seizing": "seizure", "seizures": "seizure",
}

# Long key words matched with one typo (two for the longest): "suicidle", "overdoes".
FUZZY_KEYWORDS: Dict[str, str] = {
    "suicide": "suicide", "suicidal": "suicidal", "suicidality": "suicidal",
    "myself": "myself", "himself": "himself", "herself": "herself", "themselves": "themselves",
    "killing": "kill", "overdose": "overdose", "seizure": "seizure", "breathe": "breathe",
    "breathing": "breathe", "unalive": "unalive", "anymore": "anymore", "alive": "alive",
    "unresponsive": "unresponsive", "unconscious": "unconscious", "worthless": "worthless",
    "hopeless": "hopeless", "burden": "burden", "cutting": "cut", "better": "better",
    "would": "would", "again": "again", "bridge": "bridge", "living": "live",
}
SHORT_KEYWORDS: Dict[str, str] = {"want": "want", "life": "life", "plan": "plan", "live": "live",
                                  "kill": "kill", "dead": "dead", "self": "self", "harm": "harm",
                                  "jump": "jump", "pill": "pill", "over": "over"}


def _damerau_levenshtein(a: str, b: str, limit: int) -> int:
    """Edit distance counting a swap of two neighbours as one edit; stops early past limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: List[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


LEET = str.maketrans({"1": "i", "!": "i", "0": "o", "3": "e", "@": "a", "$": "s", "*": "", "4": "a"})


def _fuzzy_keyword(word: str) -> Optional[str]:
    word = word.translate(LEET)
    if word in MISSPELLINGS:
        return MISSPELLINGS[word]
    if len(word) == 4 and word.isalpha():
        # Swapped letters only ("lfie", "wnat", "plna"): one edit is too loose for short words.
        for keyword, norm in SHORT_KEYWORDS.items():
            if word != keyword and sorted(word) == sorted(keyword) and word[0] == keyword[0]:
                return norm
        return None
    if len(word) < 5 or not word.isalpha():
        return None
    for keyword, norm in FUZZY_KEYWORDS.items():
        limit = 2 if len(keyword) >= 8 else 1
        if word[0] == keyword[0] and _damerau_levenshtein(word, keyword, limit) <= limit:
            return norm
    return None


def normalise(token: Token) -> str:
    word = token.lower_.replace("\u2019", "'")
    if word in MISSPELLINGS:
        return MISSPELLINGS[word]
    lemma = token.lemma_.lower() if token.lemma_ else word
    if lemma in MISSPELLINGS:
        return MISSPELLINGS[lemma]
    return _fuzzy_keyword(word) or lemma


def _any(*words: str) -> Dict:
    return {"NORM": {"IN": list(words)}}


def _opt(*words: str) -> Dict:
    return {"NORM": {"IN": list(words)}, "OP": "?"}


# One optional arbitrary token: "want to *really* die".
ANY: Dict = {"OP": "?"}


SELF = ("myself", "himself", "herself", "themselves", "themself", "ourselves")
OTHER_PERSON = ("someone", "somebody", "anyone", "anybody", "people", "him", "her", "them", "everyone")
RELATIVE = ("husband", "wife", "partner", "boyfriend", "girlfriend", "kid", "child", "son",
            "daughter", "mom", "dad", "mother", "father", "boss", "roommate", "neighbor",
            "neighbour", "family", "coworker", "brother", "sister")
POSSESSIVE = ("my", "his", "her", "their", "your", "our")
HARM_VERB = ("kill", "hurt", "harm", "cut", "burn", "shoot", "hang", "stab", "drown", "poison",
             "starve", "strangle", "suffocate", "unalive", "off", "yeet")
NEG = ("not", "never", "no")
WANT = ("want", "wish", "hope", "plan", "try", "rather", "ready", "decide")
HARM_OTHERS_VERB = ("kill", "hurt", "harm", "stab", "shoot", "strangle")

# Patterns named after what they detect; the name is logged with the decision.
CRISIS_PATTERNS: Dict[str, List[List[Dict]]] = {
    "suicide_term": [[_any("suicide", "suicidal", "kms", "kys", "unalive", "selfharm")],
                     [_any("sui"), _any("thought", "thoughts", "ideation")]],
    "self_harm": [
        [_any("self"), {"ORTH": "-", "OP": "?"}, _any("harm", "harming", "injury", "injure")],
        [_any(*HARM_VERB), ANY, _any(*SELF)],
        [_any(*HARM_VERB), _any("my"), _any("self")],
        [_any("cut", "cutting", "slit", "slash"), _opt("my", "his", "her"),
         _any("wrist", "wrists", "arm", "arms", "thigh", "thighs", "leg", "legs", "skin")],
        # Habitual self-injury: "burning my arm", "scratching my wrists"; not "burned my hand on the stove".
        [{"LOWER": {"IN": ["burning", "scratching", "carving", "scraping"]}}, _opt("my", "his", "her"),
         _any("wrist", "wrists", "arm", "arms", "thigh", "thighs", "leg", "legs", "skin", "stomach")],
        [_any("cut", "cutting"), _any("again")],
        [_any("fresh", "new", "deep", "deeper"), _any("cut", "cuts", "wound", "wounds", "scar", "scars")],
        [_any("cut", "cutting"), _any("deep", "deeper")],
        [_any("do"), _any("something", "anything", "it"), _any("to"), _any(*SELF)],
        [_any("do", "doing"), _any("it", "this", "that"), _any("to"), _any(*SELF)],
        [_any("how"), _any("to"), _any(*HARM_VERB), _any("yourself", *SELF)],
        [_any("take", "took"), _any(*POSSESSIVE), _opt("own"), _any("life")],
    ],
    # Only as someone's intent: "will it hurt my son" is not a threat.
    "harm_to_others": [
        [_any("i", "he", "she", "they"), ANY, ANY, ANY, _any(*HARM_OTHERS_VERB), _any(*OTHER_PERSON, "me", "us")],
        [_any("i", "he", "she", "they"), ANY, ANY, ANY, _any(*HARM_OTHERS_VERB), _any(*POSSESSIVE), _any(*RELATIVE, "ex")],
    ],
    "end_life": [
        [_any("end"), _any(*POSSESSIVE), _opt("own"), _any("life")],
        [_any("end"), _any("it"), _any("all")],
        [_any("done", "over", "stop", "leave", "dip", "out", "sleep", "end", "gone"), _any("for"), _any("good")],
        [_any("check", "checking"), _any("out"), _any("permanently", "forever", "early")],
        [_any("it", "this", "everything"), _opt("all"), _any("to"), _any("be"), _any("over")],
        [_any("way", "ways", "method", "methods"), _any("to"), _any("die", "suicide", "overdose")],
        [_any("way", "ways", "method", "methods"), _any("to"), _any("kill", "end", "go"), _any(*SELF, "it", "my")],
        [_any("think", "thinking", "thought"), _any("about", "of"), _any("the", "my", "a"), _any("gun", "rope", "noose", "bridge", "pills")],
        [_any("painless", "quick", "quickest", "easiest"), ANY, _any("way", "ways", "death")],
        [_any("how"), _any("many", "much"), _any("pill", "pills", "tablets", "meds"), ANY, ANY, ANY, _any("take", "kill")],
        [_any("want", "plan", "go", "try", "wanna"), ANY, _any("overdose")],
        [_any("jump", "drive", "crash", "steer"), _any("off", "of", "into", "in"), ANY, ANY, _any("bridge", "roof", "building", "balcony", "cliff", "road", "tree", "traffic", "train", "wall")],
        [_any("eat"), _any("a"), _any("bullet")],
        [_any(*WANT), ANY, ANY, _any("end"), _any("it", "thing", "everything")],
        [_any("take"), _any("all"), _any(*POSSESSIVE, "the", "these", "those"), _opt("sleeping"), _any("pill", "pills", "tablet", "med", "meds")],
        [_any("overdose"), _any("on"), _any("purpose")],
        [_any("jump"), _any("off", "from", "into"), ANY, _any("bridge", "roof", "building", "balcony", "train", "cliff", "window")],
        [_any("jump"), _any("in"), _any("front")],
        [_any("suicide", "goodbye"), _any("note", "letter", "letters", "notes")],
        # "before i do something i can't take back", "...something i'll never be able to undo".
        [_any("do", "doing"), _any("something", "anything"), ANY, ANY, ANY, ANY, _any("undo", "reverse")],
        [_any("do", "doing"), _any("something", "anything"), ANY, ANY, ANY, ANY, _any("take", "come"), _any("back")],
        [_any("do", "doing"), _any("something", "anything"), _any("irreversible")],
    ],
    # Vague phrases that count only when said outright, at the end of a clause:
    # "i'm going to end it tonight", not "can i end it early?".
    "said_outright": [
        [_any("end"), _any("it", "thing", "everything")],
        [_any("check", "checking"), _any("out")],
        [_any("want", "go", "plan"), _any("to"), _any("jump", "drive", "crash", "step")],
        [_any("want", "need", "urge"), _any("to"), _any("cut", "hurt", "bleed")],
        [_any("not"), _any("be"), _any("around", "here")],
    ],
    # "take them all" only where the message is about pills.
    "take_all_pills": [
        [_any("take", "took", "swallow"), _any("them", "it"), _any("all")],
    ],
    # "i don't want to die from a bad reaction" is negated; "i don't want to live" is its own pattern.
    # "i'd like to die", not "feel like i'm dying".
    "want_to_die": [
        [_any(*WANT), ANY, ANY, _any("die", "dead")],
        [_any("like"), _any("to"), ANY, _any("die", "dead")],
        [_any("think", "thinking", "thought", "talk", "talking", "joke", "joking", "obsess"), _any("about", "of"),
         _any("die", "death", "dying", "suicide", "end", "kill", "hurt", "harm")],
    ],
    "wish_to_die": [
        [_any("want", "wish", "like", "rather"), ANY, _any("to"), _any("disappear"), _opt("forever", "permanently")],
        [_any("wish"), _any("i", "he", "she"), _any("be", "was", "were", "wasn't", "weren't"), _opt("never", "not"), _any("dead", "bear", "born", "alive", "here", "around", "exist")],
        [_any("wish"), _any("i", "he", "she"), _any("have"), _any("never"), _any("be", "been"), _any("bear", "born")],
        [_any("not", "never"), ANY, _any("want", "wish"), _opt("to"), _any("be"), _any("alive", "here", "around")],
        [_any("not"), ANY, _any("want"), _opt("to"), _any("live", "exist", "wake")],
        [_any("want", "wish"), ANY, _any("to"), _any("not", "never"), _any("exist", "be", "live", "wake")],
        [_any("sleep"), ANY, _any("and"), _any("never", "not"), _any("wake")],
        [_any("disappear"), _any("forever", "permanently")],
        [_any("if", "after", "when", "once"), _any("i", "he", "she"), _any("be", "was", "am"), {"LOWER": {"IN": ["gone", "dead"]}}],
        [_any("hope", "hoping", "wish", "pray", "praying"), ANY, ANY, _any("not", "never"), _any("wake")],
        [_any("never"), ANY, _any("bear", "born")],
        [_any("no", "any"), _any("future")],
        [_any("not"), _any("see"), ANY, _any("future")],
        [_any("still"), _any("be"), _any("here", "around", "alive")],
        [_any("not"), _any("be"), _any("around", "here"), _any("much", "long", "anymore", "tomorrow", "for", "by")],
        [_any("not"), _any("plan"), _any("on"), _any("be", "being"), _any("here", "around", "alive")],
        [_any("not"), _any("be"), ANY, _any("burden", "problem"), _any("for", "to"), _any("anyone", "anybody")],
        [_any("no", "out"), ANY, ANY, _any("reason", "reasons"), ANY, ANY, _any("to"), _any("live", "stay", "keep", "continue", "exist", "be")],
        [_any("say", "said", "saying"), ANY, ANY, _any("goodbye", "goodbyes")],
        [_any("goodbye"), _any("message", "text", "post", "video", "letter", "note")],
        [_any("give", "giving", "gave"), ANY, ANY, _any("stuff", "thing", "things", "belongings", "possessions"), _any("away")],
        [_any("give", "giving", "gave"), _any("away"), ANY, _any("stuff", "thing", "things", "belongings", "possessions")],
        [_any("want", "wish", "hope", "rather"), ANY, _any("to"), _any("never", "not"), _any("wake")],
        [_any("better"), _any("off"), _any("dead", "without", "gone", "if")],
        [_any("no", "nothing"), _any("reason", "point"), _any("to", "in", "for"), _any("live", "living", "be", "go", "keep", "exist", "stay")],
        [_any("nothing"), _any("to"), _any("live"), _any("for")],
        [_any("what"), _opt("be", "is", "'s", "s", "have"), _any("the"), _any("point"), _any("anymore")],
        [_any("no"), _any("point"), _opt("in", "to", "of"), _any("be", "being", "live", "living", "go", "going", "try", "trying", "exist")],
        [_any("point"), _opt("of", "in"), _any("live", "living", "life", "anything", "go", "going", "trying", "exist", "existing")],
        [_any("not", "never"), _any("worth"), _any("live", "living")],
        [_any("life"), ANY, _any("not"), _any("worth")],
        # "tired of being alive", not "tired of being tired".
        [_any("tired", "tire", "sick", "done"), _any("of", "with"), _any("live", "living", "life", "existing", "exist")],
        [_any("tired", "tire", "sick", "done"), _any("of", "with"), _any("be"), _any("alive", "here", "around")],
        [_any("not"), _any("go"), _any("on"), _opt("like", "anymore", "living")],
        [_any("not"), _any("do"), _any("this", "it", "life"), _any("anymore")],
        [_any("not"), _any("take"), _any("it", "this"), _any("anymore")],
        [_any("be", "feel"), _opt("just", "such", "only"), _any("a"), _any("burden")],
        [_any("burden"), _any("to"), _any("everyone", "everybody", "my", "the", "them", "all")],
        [_any("give", "giving", "gave"), _any("away"), _any("my", "all")],
        [_any("say"), _any("goodbye"), _any("to"), _any("everyone", "everybody", "my")],
        [_any("no"), _any("way"), _any("out")],
        [_any("see"), _any("no"), _any("future")],
        [_any("not"), _any("see"), _any("a"), _any("future")],
        [_any("not"), _any("be"), _any("here"), _any("tomorrow", "much", "for", "next")],
        [_any("everyone", "everybody", "world", "they", "family"), ANY, _any("be"), _any("better"), _any("off")],
        [_any("rope", "noose", "gun", "pills"), _any("ready")],
        [_any("stockpile", "stockpiling", "hoarding", "saving", "save", "saved"), _opt("up"), _any("pill", "pills", "meds", "med")],
    ],
}

EMERGENCY_PATTERNS: Dict[str, List[List[Dict]]] = {
    "chest_pain": [
        [_any("chest"), _any("pain", "pains", "hurt", "hurts", "tight", "tightness", "pressure", "ache", "aching", "crushing")],
        [_any("pain", "pressure", "tightness", "crushing"), _any("in"), _any("my", "his", "her", "the"), _any("chest")],
        [_any("heart"), _any("attack")],
        [_any("chest"), _any("be", "is", "feel", "feels"), _opt("really", "so", "very"), _any("tight", "heavy", "hurt", "hurting")],
        [_any("clutch", "clutching", "grab", "grabbing"), _any("my", "his", "her", "their"), _any("chest")],
    ],
    "breathing": [
        [_any("not", "struggle", "struggling", "hard", "trouble", "difficulty", "barely", "stop"), _opt("to"), _any("breathe")],
        [_any("short"), _any("of"), _any("breath", "breathe")],
        [_any("throat", "tongue", "lip", "lips", "face"), _opt("be", "is", "are", "keep"), _any("swell", "swelling", "swollen", "close", "closing")],
        [_any("choke", "choking", "suffocating", "gasping", "gasp", "wheeze", "wheezing")],
        [_any("breathing", "breathe", "breath"), _opt("be", "is"), _opt("really", "so", "very"), _any("slow", "shallow", "weird")],
        [_any("not"), _any("get"), ANY, _any("air", "breath")],
        [_any("throat"), _any("feel", "feels", "be", "is"), _opt("really", "so", "very"), _any("tight", "closing", "swollen")],
    ],
    "seizure": [[_any("seizure", "convulse", "convulsing", "convulsion", "convulsions")]],
    "unresponsive": [
        [_any("unresponsive", "unconscious")],
        [_any("pass", "passed", "passing", "black", "blacking"), _any("out")],
        [_any("faint", "fainted", "fainting", "collapse", "collapsed")],
        [_any("not"), _any("wake"), _any("up")],
        # "she's not responding", "he still isn't really responding"; not "my laptop isn't responding".
        [_any("he", "she", "they", *RELATIVE), ANY, ANY, _any("not"), _opt("really", "even"),
         _any("respond", "responding", "responsive")],
        [_any("call", "need", "get"), _opt("an", "a"), _any("ambulance", "paramedic", "paramedics")],
    ],
    "overdose": [
        [_any("i", "he", "she", "they", "we", "someone", "somebody", "son", "daughter", "friend", "kid", "husband", "wife", "partner", "be", "just", "think", "maybe", "may", "might"), ANY, _any("overdose")],
        [_any("take", "took", "swallow", "swallowed", "drank", "ate"), _any("too"), _any("many", "much")],
        [_any("take", "took", "swallow", "swallowed", "ate"), _any("a", "an", "the", "my", "his", "her", "half"), _opt("whole", "entire", "full"), _any("bottle", "bunch", "handful", "pack", "box")],
    ],
    "severe_reaction": [
        [_any("heart"), _opt("be", "is", "'s"), _any("race", "racing", "pounding", "pound")],
        [_any("severe", "bad", "allergic", "serious", "scary"), _any("reaction")],
        [_any("can"), _any("not"), _any("stop"), _any("vomit", "vomiting", "throw", "throwing", "shaking", "bleeding")],
        [_any("slur", "slurring", "slurred"), _opt("my", "his", "her"), _any("speech", "words")],
        [_any("face"), _opt("be", "is"), _any("droop", "drooping", "numb")],
        [_any("speech"), _opt("be", "is"), _any("slur", "slurred", "slurring")],
        [_any("have", "having"), _any("a"), _any("stroke")],
        [_any("not"), _any("feel", "move"), _any("my", "his", "her"), _any("leg", "legs", "arm", "arms", "face", "body")],
        [_any("not"), _any("stand"), _any("up")],
        [_any("arm"), _any("be", "is", "go", "going"), _any("numb")],
        [_any("vomit", "vomiting", "puking", "throwing"), _any("nonstop", "non", "constantly")],
        [_any("hive", "hives"), ANY, ANY, ANY, _any("throat", "breathe", "tongue", "lips")],
    ],
}

# Named medicines only: "can people stay on antidepressants?" is a general FAQ.
MEDICATIONS = (
    "maoi", "maois", "benzo", "benzos", "zoloft", "sertraline", "lexapro", "escitalopram",
    "prozac", "fluoxetine", "paxil", "paroxetine", "celexa", "citalopram", "wellbutrin", "bupropion",
    "effexor", "venlafaxine", "cymbalta", "duloxetine", "pristiq", "trintellix", "remeron",
    "mirtazapine", "trazodone", "lithium", "lamictal", "lamotrigine", "depakote", "seroquel",
    "quetiapine", "abilify", "aripiprazole", "risperdal", "zyprexa", "latuda", "xanax", "alprazolam",
    "klonopin", "clonazepam", "ativan", "lorazepam", "valium", "diazepam", "adderall", "vyvanse",
    "ritalin", "concerta", "suboxone", "buprenorphine", "methadone", "naltrexone", "vivitrol",
    "gabapentin", "neurontin", "lyrica", "pregabalin", "tramadol", "oxycodone", "percocet",
    "hydrocodone", "zofran", "ondansetron", "propranolol", "clonidine", "ambien", "topamax",
    "nardil", "parnate", "emsam", "spravato", "metoprolol", "lisinopril", "blood thinner", "warfarin",
    "insulin", "birth control", "the pill",
)
CONDITIONS = (
    "bipolar", "schizophrenia", "schizoaffective", "psychosis", "psychotic", "epilepsy", "seizures",
    "glaucoma", "afib", "arrhythmia", "hypertension", "high blood pressure", "heart condition",
    "heart disease", "heart failure", "heart attack", "heart attacks", "pacemaker", "stroke", "aneurysm", "liver", "kidney", "bladder",
    "cystitis", "borderline", "bpd", "adhd", "autism", "diabetes", "asthma", "copd", "sleep apnea",
    "thyroid", "addiction", "alcoholism", "alcohol abuse", "drug abuse", "substance abuse", "substance use",
    "drinking problem", "drug problem", "sober", "in recovery", "eating disorder", "anorexia", "tbi", "brain injury",
    "dementia",
)
FIRST_PERSON = ("i", "my", "me", "i'm", "im", "i've", "ive", "mine")


def _phrase_patterns(phrases: Iterable[str]) -> List[List[Dict]]:
    return [[{"LOWER": word} for word in phrase.split()] for phrase in phrases]


# A question about the visitor's own care: their medicines, dose, pregnancy or diagnosis.
# Matched parts are combined in SafetyMatcher._personal_advice, which also needs "i"/"my".
ADVICE_PATTERNS: Dict[str, List[List[Dict]]] = {
    "medication": _phrase_patterns(MEDICATIONS),
    "condition": _phrase_patterns(CONDITIONS),
    "pregnancy": [
        # The surface form: "nursing" lemmatises to "nurse", which also means the clinic's nurse.
        [{"LOWER": {"IN": ["pregnant", "pregnancy", "breastfeed", "breastfeeding", "nursing", "ivf",
                           "conceive", "postpartum", "newborn"]}}],
        [_any("pump"), _any("and"), _any("dump")],
        [_any("breast"), _any("feed", "feeding")],
        [_any("trying"), _any("for"), _any("a"), _any("baby")],
    ],
    "dose": [
        [_any("my", "extra", "double", "higher", "lower", "bigger", "smaller", "next", "missed"),
         _opt("home", "usual", "next", "first", "last", "daily", "nightly", "regular"),
         _any("dose", "dosage", "troche", "troches", "spray", "sprays", "lozenge", "mg")],
        [_any("how"), _any("many", "much"), _opt("mg", "milligrams"), _any("spray", "sprays", "troche", "troches", "mg", "ketamine", "milligrams", "dose")],
        [{"LIKE_NUM": True}, _any("mg", "milligrams", "milligram", "sprays", "troches")],
        [{"TEXT": {"REGEX": r"^\d+mg$"}}],
        [_any("twice", "double")],
    ],
    # Their own medicines without a name ("my meds", "blood pressure pills"), and alcohol or
    # drugs taken with their treatment.
    "own_medicine": [
        [_any("my"), _opt("blood", "heart", "thyroid", "sleep", "anxiety", "pain", "daily", "regular"),
         _opt("pressure"), _any("med", "meds", "medication", "medications", "pill", "pills", "prescription", "prescriptions")],
        [_any("on", "take", "taking"), _any("blood", "heart", "thyroid", "sleep", "anxiety", "pain"), _opt("pressure"),
         _any("med", "meds", "medication", "medications", "pill", "pills")],
        [_any("can", "should", "ok", "okay"), _any("i"), ANY, ANY, ANY,
         _any("wine", "beer", "alcohol", "drink", "drinks", "weed", "cannabis", "marijuana", "edible", "edibles")],
        [_any("wine", "beer", "alcohol", "drink", "drinking", "weed", "cannabis", "marijuana", "edible", "edibles"),
         ANY, ANY, _any("after", "before", "with", "during"), _any("my")],
    ],
    "change_medication": [
        [_any("stop", "quit", "taper", "wean", "skip", "switch", "pause", "halt", "come", "go"),
         _opt("off", "taking"), _any("my", "all")],
        [_any("stop", "quit", "skip", "pause"), _any("take", "taking")],
        [_any("diagnose", "diagnosed")],
    ],
}
# A medicine or condition is the visitor's own when one of these comes just before it:
# "i'm on lithium", "my zoloft", "i have bipolar", "diagnosed with epilepsy".
OWN_CUES = {"i", "my", "on", "take", "taking", "diagnosed", "have", "'ve", "got"}
OWN_WINDOW = 4

# An emergency is happening to someone: general or hypothetical questions about symptoms
# ("can ketamine cause chest pain?", "what if I have a seizure?") are answered as FAQs.
PERSON = {"i", "me", "my", "he", "she", "him", "her", "his", "they", "them", "their", "we", "us",
          "our", "husband", "wife", "son", "daughter", "friend", "partner", "mom", "dad", "mother",
          "father", "kid", "child", "baby", "brother", "sister", "boyfriend", "girlfriend",
          "roommate", "someone", "somebody"}
# Words of a general, hypothetical or long-past question. "will" and "last" are not among them:
# "collapsed and will not wake up", "took too many pills last night and won't wake up".
NOT_NOW = {"if", "cause", "risk", "possible", "common", "normal", "ever", "history", "usually",
           "chance", "likely", "would", "past", "safe", "years", "months", "allowed"}
NOW = {"now", "currently", "right", "just", "help", "911", "ambulance", "hospital", "er"}
# Ways of placing an event long ago, shared by the emergency and the crisis readings.
_YEARS_AGO = r"\b(?:years?|yrs?|decades?) (?:ago|back)\b"
_AS_A_CHILD = r"\bas an? (?:kid|child|teen|teenager|baby|toddler|young \w+)\b"
_WHEN_I_WAS = r"\bwhen (?:i|he|she|they|we) (?:was|were)\b"
_AT_SCHOOL = r"\bin (?:high school|college|my (?:teens|twenties|thirties|20s|30s))\b"
# Told as long past ("had a seizure as a kid", "a heart attack in 2015", "fainted once years
# ago"), unless something is still going on ("...last night and still won't wake up").
LONG_PAST = re.compile("|".join([
    _YEARS_AGO, _AS_A_CHILD, r"\b(?:in|back in|since) (?:19|20)\d\d\b", _WHEN_I_WAS, _AT_SCHOOL, r"\blast year\b",
    r"\bgrowing up\b"]), re.IGNORECASE)
STILL_GOING = re.compile(
    r"\b(?:right|just) now\b|\bnow (?:he|she|i|i'm|my|his|her|it|they|we)\b|\bstill (?:won'?t|can'?t|isn'?t|is not|"
    r"not|un\w+|bleeding|having|has|hasn'?t|going|passed out|out)\b|\bwon'?t (?:wake|breathe|respond)|\bnot "
    r"(?:breathing|waking|responding)\b|\b(?:tonight|today|this morning|this evening)\b", re.IGNORECASE)


def told_as_long_past(text: str) -> bool:
    """The event is history, asked about now: no 911 for it."""
    return bool(LONG_PAST.search(text)) and not STILL_GOING.search(text)


# Crisis words told as history ("i attempted suicide years ago, doing much better now", "used to
# self harm in high school") read like negated ones, unless they are back or ongoing ("...and
# lately the thoughts are back", "since 2019 i've wanted to die every day": "since" and "last
# year" are not history here).
CRISIS_HISTORY = re.compile("|".join([
    _YEARS_AGO, _AS_A_CHILD, r"\b(?:in|back in|was|were) (?:19|20)\d\d\b", _WHEN_I_WAS, _AT_SCHOOL,
    r"\bgrowing up\b", r"\bused to\b", r"\b(?:forever|ages|long time|long while) ago\b",
    r"\bold (?:\w+[- ])?(?:harm )?scars?\b"]), re.IGNORECASE)
CRISIS_NOW = re.compile(
    r"\b(?:again|lately|recently|these days|anymore|right now|tonight|today|this (?:week|month)|every (?:day|night)"
    r"|all the time|constantly|(?:are|is|came) back|still (?:think|feel|want|have|get|struggle|cut|hurt|am|do))\b",
    re.IGNORECASE)


def crisis_told_as_history(text: str) -> bool:
    return bool(CRISIS_HISTORY.search(text)) and not CRISIS_NOW.search(CRISIS_HISTORY.sub(" ", text))

# A plan held in reserve for when treatment fails: "if this doesn't work i have a plan".
# Each part alone is ordinary ("if it doesn't work, what then?", "treatment plan").
IF_IT_FAILS: List[List[Dict]] = [
    [_any("if"), _any("this", "it", "ketamine", "that", "nothing"), ANY, _any("not", "never"), _opt("work", "help", "either")],
    [_any("if"), _any("this", "it", "ketamine"), _any("fail", "fails")],
    [_any("last"), _any("try", "chance", "resort", "shot", "attempt")],
]
THEN_THE_END: List[List[Dict]] = [
    [_any("i", "i've"), ANY, _any("a"), _any("plan")],
    [_any("be", "i'm"), _any("done")],
    [_any("check", "checking"), _any("out")],
    [_any("give", "giving"), _any("up"), _opt("for", "on")],
    [_any("that"), _any("be", "is"), _any("it")],
]

# Figurative uses of "kill" that bag-of-words models read as a crisis: things that "kill me",
# killing weeds or time, a boss who will "kill me". A partner or parent is left out on
# purpose: "my husband will kill me" can be a real threat.
FIGURATIVE: List[List[Dict]] = [
    [_any("needle", "needles", "price", "prices", "wait", "waiting", "traffic", "heat", "commute",
          "suspense", "job", "work", "bill", "bills", "cost", "costs", "feet", "back", "shoes"),
     _opt("be", "is", "are", "really", "just"), _any("kill", "killing"), _any("me")],
    [_any("kill", "killing"), _opt("the", "some", "off", "all"),
     _any("weed", "weeds", "ant", "ants", "bug", "bugs", "time", "germ", "germs", "mold", "pest",
          "pests", "bacteria", "process", "app", "mosquito", "mosquitoes", "fly", "flies")],
    [_any("boss", "coach", "teacher", "manager", "professor", "trainer"), ANY, ANY, ANY,
     _any("kill"), _any("me")],
    # Eagerness: "dying to try it", "i'd kill for an appointment".
    [_any("die", "dying"), _any("to"), _any("know", "try", "see", "get", "start", "hear", "book", "find",
                                         "meet", "talk", "learn", "begin", "ask")],
    [_any("kill"), _any("for")],
]

# Descriptive words that a visitor may negate ("i'm not suicidal, just curious").
NEGATABLE = {"suicide_term", "self_harm", "want_to_die"}
CLAUSE_END = {"and", "but", "so", "tonight", "today", "now", "soon", "already", "then", "lol",
              "honestly", "if", "because", "before", "when", "tbh", "forever", "off", "permanently",
              "badly", "really", "anymore", "again"}
PILLS = {"pill", "pills", "med", "meds", "medication", "bottle", "tablet", "tablets"}
# Idioms that contain a pattern but mean something else.
IDIOMS: List[List[Dict]] = [
    [_any("kill"), _any(*SELF), _any("laugh", "laughing")],
    [_any("die", "dead"), _any("laugh", "laughing", "of"), _opt("laughter", "embarrassment", "boredom", "shame")],
    [_any("career", "social", "political", "professional", "fashion", "financial"), _any("suicide")],
]


@dataclass(frozen=True)
class Detection:
    kind: str  # one of PRIORITY
    pattern: str
    text: str
    own_care: bool = False  # for personal medical advice: about the visitor's own care


class SafetyMatcher:
    """Finds crisis and emergency wording in a spaCy doc."""

    def __init__(self, vocab: Vocab) -> None:
        self._matcher = Matcher(vocab)
        for name, patterns in CRISIS_PATTERNS.items():
            self._matcher.add(f"{CRISIS}:{name}", patterns)
        for name, patterns in EMERGENCY_PATTERNS.items():
            self._matcher.add(f"{MEDICAL_EMERGENCY}:{name}", patterns)
        self._matcher.add("idiom", IDIOMS)
        self._matcher.add("if_it_fails", IF_IT_FAILS)
        self._matcher.add("then_the_end", THEN_THE_END)
        self._matcher.add("figurative", FIGURATIVE)
        for name, patterns in ADVICE_PATTERNS.items():
            self._matcher.add(f"{PERSONAL_MEDICAL_ADVICE}:{name}", patterns)
        self._strings = vocab.strings

    def detect(self, doc: Doc) -> Optional[Detection]:
        return self.analyse(doc)[0]

    def analyse(self, doc: Doc) -> Tuple[Optional[Detection], bool]:
        """The most urgent detection (crisis, emergency, personal advice) or None, and whether
        the message has a benign reading of crisis words: only negated ("i'm not suicidal,
        just curious"), told as history ("self harmed as a teen, fine for years") or figurative
        ("needles kill me")."""
        for token in doc:
            token.norm_ = normalise(token)
        matches = self._matcher(doc)
        idiom_tokens = {
            i
            for match_id, start, end in matches
            if self._strings[match_id] == "idiom"
            for i in range(start, end)
        }
        found: List[Detection] = []
        negated_crisis = False
        labels = {self._strings[match_id] for match_id, _, _ in matches}
        if {"if_it_fails", "then_the_end"} <= labels:
            found.append(Detection(CRISIS, "plan_if_treatment_fails", doc.text))
        for match_id, start, end in matches:
            label = self._strings[match_id]
            if label in ("idiom", "if_it_fails", "then_the_end", "figurative") or idiom_tokens.intersection(range(start, end)):
                continue
            kind, name = label.split(":")
            # The history reading only for crisis words that could be history, not every message.
            if name in NEGATABLE and (self._negated(doc, start) or crisis_told_as_history(doc.text)):
                negated_crisis = True
                continue
            if kind == MEDICAL_EMERGENCY and not self._happening_now(doc):
                continue
            if name == "said_outright" and not self._clause_ends(doc, end):
                continue
            if name == "take_all_pills" and not any(t.norm_ in PILLS for t in doc):
                continue
            own_care = kind == PERSONAL_MEDICAL_ADVICE and self._is_own_care(doc, name, start)
            found.append(Detection(kind, name, doc[start:end].text, own_care))
        if not any(d.kind == MEDICAL_EMERGENCY for d in found):
            found += self._vital_signs(doc)
        found = [d for d in found if d.kind != PERSONAL_MEDICAL_ADVICE or d.own_care]
        for kind in PRIORITY:
            for detection in found:
                if detection.kind == kind:
                    return detection, False
        return None, negated_crisis or bool(labels & {"figurative", "idiom"})

    @staticmethod
    def _is_own_care(doc: Doc, name: str, start: int) -> bool:
        if name in ("medication", "condition"):
            window = doc[max(0, start - OWN_WINDOW):start]
            return any(token.lower_ in OWN_CUES for token in window)
        return any(token.lower_ in FIRST_PERSON for token in doc)

    @staticmethod
    def _vital_signs(doc: Doc) -> List[Detection]:
        """Dangerous readings, with a person and no hypothetical: blood pressure of 180 over 110
        or more ("bp 210/130", "220 over 125"), a pulse of 140 or more or 40 or less, oxygen
        saturation of 88% or less."""
        text = doc.text.lower()
        readings = []
        pressure = re.search(r"\b(2\d\d|1[89]\d)\s*(?:/|over)\s*(\d{2,3})\b", text)
        if pressure and re.search(r"\b(bp|blood ?pressure|monitor|reading|cuff|pressure)\b", text):
            readings.append(pressure)
        for pulse in re.finditer(r"\b(?:heart ?rate|pulse|hr)\D{0,12}?(\d{2,3})\b|\b(\d{2,3})\s*bpm\b", text):
            value = int(pulse.group(1) or pulse.group(2))
            if value >= 140 or value <= 40:
                readings.append(pulse)
        for oxygen in re.finditer(r"\b(?:oxygen|o2|spo2|sats?|saturation)\D{0,12}?(\d{2})\s*%", text):
            if int(oxygen.group(1)) <= 88:
                readings.append(oxygen)
        if readings and SafetyMatcher._happening_now(doc):
            return [Detection(MEDICAL_EMERGENCY, "vital_signs", readings[0].group(0))]
        return []

    @staticmethod
    def _clause_ends(doc: Doc, end: int) -> bool:
        return end == len(doc) or doc[end].is_punct or doc[end].norm_ in CLAUSE_END

    @staticmethod
    def _happening_now(doc: Doc) -> bool:
        if told_as_long_past(doc.text):
            return False
        norms = {token.norm_ for token in doc} | {token.lower_ for token in doc}
        if norms & NOW:
            return True
        if norms & NOT_NOW:
            return False
        # A bare "cant breathe" is as urgent as "my husband cant breathe".
        return bool(norms & PERSON) or len(doc) <= 6

    @staticmethod
    def _negated(doc: Doc, start: int) -> bool:
        """A negation cue in the three tokens before ("not suicidal", "no thoughts of self harm")."""
        window: Iterable[Token] = doc[max(0, start - 3):start]
        return any(token.norm_ in NEG for token in window)
