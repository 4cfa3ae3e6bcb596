"""The safety net: explicit patterns (matches, non-matches, negation, misspellings) and how
the component combines them with the classifier over the sentence embedding and DIET's reading.

Indirect wording ("i wrote letters to my kids just in case") is the classifier's, not a
pattern's: the safety panels (make test-safety) measure it on the trained model."""
import numpy as np
import pytest
from rasa.nlu.constants import SPACY_DOCS
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message

from components.message_embeddings import clauses
from components.safety_net import CLASSES, CRISIS_CLAUSE, OTHER, NearestExamples, SafetyNet, decide
from components.safety_patterns import (
    CRISIS,
    MEDICAL_EMERGENCY,
    PERSONAL_MEDICAL_ADVICE,
    SafetyMatcher,
    told_as_long_past,
)
from components.sentence_encoder import ORIGIN, keep_pretrained_embeddings


@pytest.fixture(scope="module")
def matcher(nlp):
    return SafetyMatcher(nlp.vocab)


def kind(matcher, nlp, text):
    detection = matcher.detect(nlp(text))
    return detection.kind if detection else None


@pytest.mark.parametrize("text", [
    "i want to kill myself",
    "I've been thinking about suicide a lot",
    "sometimes i wish i was dead",
    "everyone would be better off without me",
    "i just want to sleep and never wake up",
    "i don't want to live anymore",
    "i've been cutting myself again",
    "my son says he wants to end his life",
    "i'm scared i'm going to hurt someone",
    "kms",
    "thinking of unaliving myself",
    "please call me back before i do something i can't take back",
    "i'm scared of doing something i could never undo",
    "i'm so tired of being alive",
    "i'd like to die in my sleep",
    "i keep scratching my arms until they bleed",
])
def test_crisis_wording_is_detected(matcher, nlp, text):
    assert kind(matcher, nlp, text) == CRISIS


@pytest.mark.parametrize("text", [
    "i want to kil myslef",
    "feeling sucidal again",
    "i keep having suicidle thoughts",
    "i dont wanna live anymroe",
    "s*icidal thoughts every night",
    "su1c1dal",
])
def test_common_misspellings_are_detected(matcher, nlp, text):
    assert kind(matcher, nlp, text) == CRISIS


@pytest.mark.parametrize("text", [
    "will it kill my pain",
    "i'm dying to know the price",
    "this wait is killing me",
    "i'd kill for an appointment this week",
    "i was killing myself laughing at that video",
    "can i end it early if i feel weird during the infusion",
    "what's the point of maintenance sessions",
    "i'm checking out your website",
    "i want to cut back on coffee before my session",
    "what's the best way to kill weeds",
    "can i do something to get my deposit back",
    "is there anything i can take to undo the nausea",
    "honestly i'm tired of being tired",
    "what if i feel like i'm dying when i dissociate",
    "i burned my hand on the stove, can i still come in",
    "my laptop isn't responding, can i book by phone",
])
def test_benign_wording_is_not_detected(matcher, nlp, text):
    assert kind(matcher, nlp, text) is None


@pytest.mark.parametrize("text", [
    "i'm not suicidal, just curious how long a session takes",
    "no thoughts of self harm, i just have bad anxiety",
    "i've never been suicidal",
    "i don't want to die from a bad reaction, how safe is it",
])
def test_negated_descriptions_are_not_detected(matcher, nlp, text):
    assert kind(matcher, nlp, text) is None


@pytest.mark.parametrize("text, benign", [
    ("i was suicidal years ago, much better since, can i still qualify", True),
    ("i used to cut myself as a teen, does the iv nurse need to know", True),
    ("i tried to kill myself years ago and lately those thoughts are back", False),
    ("i used to self harm and this week i started again", False),
    ("my worst suicidal stretch was 2012, i'm steady now, can i qualify", True),
    ("i had a suicide attempt ages ago, does the intake team need to know", True),
    ("will my old self-harm scars be a problem for the iv", True),
])
def test_crisis_words_told_as_history_read_like_negated_ones(matcher, nlp, text, benign):
    detection, benign_reading = matcher.analyse(nlp(text))
    assert (detection is None and benign_reading) is benign
    if not benign:
        assert detection.kind == CRISIS


@pytest.mark.parametrize("text", [
    "i'm not suicidal but i want to die",
    "i don't want to live like this, i want to kill myself",
])
def test_negation_does_not_hide_a_second_crisis_statement(matcher, nlp, text):
    assert kind(matcher, nlp, text) == CRISIS


@pytest.mark.parametrize("text", [
    "i'm having chest pain right now",
    "my husband can't breathe",
    "she's having a seizure",
    "i think i overdosed",
    "just had my infusion and my heart is racing and i feel like passing out",
    "cant breathe",
    "she's not responding to me at all",
])
def test_emergencies_happening_now_are_detected(matcher, nlp, text):
    assert kind(matcher, nlp, text) == MEDICAL_EMERGENCY


@pytest.mark.parametrize("text", [
    "can ketamine cause chest pain?",
    "what if i have a seizure during the infusion",
    "is shortness of breath a common side effect",
])
def test_questions_about_symptoms_are_not_emergencies(matcher, nlp, text):
    assert kind(matcher, nlp, text) is None


@pytest.mark.parametrize("text", [
    "my bp cuff says 205/118 after my dose",
    "my heart rate is 170 right now after the spray",
])
def test_dangerous_readings_are_emergencies(matcher, nlp, text):
    assert kind(matcher, nlp, text) == MEDICAL_EMERGENCY


@pytest.mark.parametrize("text", [
    "i'm on lexapro, can i still do infusions",
    "should i stop my wellbutrin before starting",
    "can i take an extra troche if it wears off",
    "is 50mg a good dose for me",
    "will it hurt my baby if i'm pregnant",
    "i'm breastfeeding, is the nasal spray ok",
    "i have bipolar 2, will it make me manic",
    "i was diagnosed with epilepsy as a kid, can i get ketamine",
    "i'm nursing my baby, is that a problem",
    "can i take my blood pressure pills on infusion day",
    "can i have a beer after my session",
    "i had a heart attack a few years back, am i allowed to have infusions",
    "i used to have a drinking problem, been sober 3 years, would that rule me out",
])
def test_questions_about_own_care_are_personal_medical_advice(matcher, nlp, text):
    assert kind(matcher, nlp, text) == PERSONAL_MEDICAL_ADVICE


@pytest.mark.parametrize("text", [
    "can people stay on their antidepressants during treatment",
    "how is ketamine different from ssris",
    "is ketamine used for bipolar depression",
    "what is the usual dose compared with anesthesia",
    "will a nurse be with me during the infusion",
])
def test_general_questions_are_not_personal_medical_advice(matcher, nlp, text):
    assert kind(matcher, nlp, text) is None


@pytest.mark.parametrize("text, benign", [
    ("needles kill me, does the iv hurt", True),
    ("my boss is going to kill me if i'm late", True),
    ("how do i kill weeds", True),
    ("my husband will kill me if i leave", False),
    ("i'm dying to hear how the first session went for others", True),
    ("honestly i would kill for a saturday slot", True),
    ("i'm dying, to be honest", False),
    ("quitting like that was career suicide, anyway do you take walk ins", True),
])
def test_figurative_kill_has_a_benign_reading_except_from_a_partner(matcher, nlp, text, benign):
    detection, benign_reading = matcher.analyse(nlp(text))
    assert detection is None
    assert benign_reading is benign


def test_crisis_outranks_emergency(matcher, nlp):
    assert kind(matcher, nlp, "i took all my pills because i want to die") == CRISIS


def message_for(nlp, text, intent, confidence, ranking=None):
    message = Message(data={TEXT: text})
    message.set(SPACY_DOCS[TEXT], nlp(text))
    message.set("intent", {"name": intent, "confidence": confidence})
    message.set("intent_ranking", ranking or [{"name": intent, "confidence": confidence}])
    return message


def test_component_overrides_a_confident_model(nlp):
    message = message_for(nlp, "how fast does it work, i want to die", "faq", 0.97)
    SafetyNet().process([message])
    assert message.get("intent") == {"name": CRISIS, "confidence": 1.0}
    assert message.get("intent_ranking")[0]["name"] == CRISIS
    assert message.get("safety_net")["model_intent"]["name"] == "faq"
    assert "safety_net" in message.as_dict(only_output_properties=True)


def test_component_rescues_a_crisis_intent_the_fallback_replaced(nlp):
    # Neither is sure on its own (0.6 and 0.45); their mean is 0.525.
    ranking = [{"name": CRISIS, "confidence": 0.6}, {"name": "faq", "confidence": 0.3}]
    message = with_embedding(message_for(nlp, "i can't see a way forward", "nlu_fallback", 0.5, ranking))
    net(crisis=0.45).process([message])
    assert message.get("intent")["name"] == CRISIS
    assert message.get("safety_net")["reason"] == "model"


def test_diets_crisis_reading_without_the_classifiers_falls_to_the_next_reading(nlp):
    ranking = [{"name": CRISIS, "confidence": 0.7}, {"name": "faq", "confidence": 0.3}]
    message = with_embedding(message_for(nlp, "i've been so lonely since the move", CRISIS, 0.7, ranking))
    net(crisis=0.1).process([message])
    assert message.get("intent") == {"name": "faq", "confidence": 0.3}
    assert message.get("safety_net")["reason"] == "benign_reading"


def test_component_sends_own_care_questions_to_a_clinician(nlp):
    message = message_for(nlp, "i'm on lithium, how long does an infusion take", "faq", 0.9)
    SafetyNet().process([message])
    assert message.get("intent")["name"] == PERSONAL_MEDICAL_ADVICE


def test_component_never_downgrades_the_models_crisis_to_advice(nlp):
    message = with_embedding(message_for(nlp, "i'm on lithium and i can't see a way forward", CRISIS, 0.8))
    net(crisis=0.4).process([message])
    assert message.get("intent") == {"name": CRISIS, "confidence": 0.8}


def test_component_overrules_a_crisis_reading_of_a_negated_message(nlp):
    ranking = [{"name": CRISIS, "confidence": 0.9}, {"name": "faq", "confidence": 0.6}]
    message = message_for(nlp, "i'm not suicidal, just curious how long a session takes", CRISIS, 0.9, ranking)
    SafetyNet().process([message])
    assert message.get("intent") == {"name": "faq", "confidence": 0.6}
    assert message.get("safety_net")["reason"] == "benign_reading"


def test_component_asks_to_rephrase_when_the_next_reading_is_weak(nlp):
    ranking = [{"name": CRISIS, "confidence": 0.95}, {"name": "deny", "confidence": 0.02}]
    message = message_for(nlp, "i don't want to die, i want to live better", CRISIS, 0.95, ranking)
    SafetyNet().process([message])
    assert message.get("intent")["name"] == "nlu_fallback"


def test_the_next_reading_is_judged_by_its_share_of_what_the_danger_reading_left(nlp):
    # Below 0.3 of its own, but all that the crisis reading left: the question is answered.
    ranking = [{"name": CRISIS, "confidence": 0.71}, {"name": "faq", "confidence": 0.28},
               {"name": "deny", "confidence": 0.01}]
    message = message_for(nlp, "how long do i have to stay around after it ends", CRISIS, 0.71, ranking)
    net(crisis=0.1).process([message])
    assert message.get("intent") == {"name": "faq", "confidence": 0.28}
    # Less than half of what was left, split with other readings: asked to rephrase.
    split = [{"name": CRISIS, "confidence": 0.5}, {"name": "faq", "confidence": 0.2},
             {"name": "deny", "confidence": 0.15}, {"name": "affirm", "confidence": 0.15}]
    unclear = message_for(nlp, "how long do i have to stay around after it ends", CRISIS, 0.5, split)
    net(crisis=0.1).process([unclear])
    assert unclear.get("intent")["name"] == "nlu_fallback"


def test_negation_never_overrules_a_second_positive_statement(nlp):
    message = message_for(nlp, "i'm not suicidal but my family would be better off without me", CRISIS, 0.9)
    SafetyNet().process([message])
    assert message.get("intent")["name"] == CRISIS


def test_component_leaves_ordinary_messages_alone(nlp):
    message = message_for(nlp, "what are the side effects", "faq", 0.99)
    SafetyNet().process([message])
    assert message.get("intent") == {"name": "faq", "confidence": 0.99}
    assert message.get("safety_net") is None


class FixedScores:
    """A safety classifier whose probabilities don't depend on the message."""

    def __init__(self, crisis, emergency):
        self.scores = {CRISIS: crisis, MEDICAL_EMERGENCY: emergency, OTHER: 1 - crisis - emergency}

    def probabilities_many(self, embeddings):
        return np.tile([self.scores[label] for label in CLASSES], (len(embeddings), 1))


def with_embedding(message):
    """The featurizer's two embeddings: the classifiers' feature and the safety net's pretrained one."""
    message.add_features(Features(np.ones((1, 384), np.float32), FEATURE_TYPE_SENTENCE, TEXT, ORIGIN))
    keep_pretrained_embeddings(message, np.ones(384, np.float32))
    return message


def net(crisis=0.0, emergency=0.0):
    return SafetyNet({"crisis_threshold": 0.5, "emergency_threshold": 0.5, "emergency_pattern_support": 0.1},
                     classifier=FixedScores(crisis, emergency))


def test_the_classifiers_crisis_reading_overrides_a_confident_answer(nlp):
    message = with_embedding(message_for(nlp, "i have been quietly putting my affairs in order", "faq", 0.9))
    net(crisis=0.8).process([message])
    assert message.get("intent") == {"name": CRISIS, "confidence": 1.0}
    assert message.get("safety_net")["reason"] == "classifier"
    assert message.get("safety_evidence")[CRISIS] == pytest.approx(0.8)


def test_suicidal_intent_phrased_as_an_emergency_gets_the_crisis_reply(nlp):
    message = with_embedding(message_for(nlp, "took all my sleeping pills, not waking up this time",
                                         MEDICAL_EMERGENCY, 0.9))
    net(crisis=0.5, emergency=0.45).process([message])
    assert message.get("intent")["name"] == CRISIS


def test_the_classifiers_emergency_reading_overrides_an_answer(nlp):
    message = with_embedding(message_for(nlp, "he took too many pills last night and won't wake up", "faq", 0.6))
    net(emergency=0.9).process([message])
    assert message.get("intent")["name"] == MEDICAL_EMERGENCY


def test_an_emergency_pattern_needs_the_classifiers_support(nlp):
    question = "will i be unconscious during the infusion"
    unsupported = with_embedding(message_for(nlp, question, "faq", 0.9))
    net(emergency=0.02).process([unsupported])
    assert unsupported.get("intent") == {"name": "faq", "confidence": 0.9}
    supported = with_embedding(message_for(nlp, "my husband is unconscious", "faq", 0.5))
    net(emergency=0.3).process([supported])
    assert supported.get("intent")["name"] == MEDICAL_EMERGENCY


def test_the_models_emergency_reading_without_support_takes_the_next_reading(nlp):
    ranking = [{"name": MEDICAL_EMERGENCY, "confidence": 0.6}, {"name": "faq", "confidence": 0.35}]
    message = with_embedding(message_for(nlp, "is it normal to feel my heart pound after", MEDICAL_EMERGENCY, 0.6,
                                         ranking))
    net(emergency=0.01).process([message])
    assert message.get("intent") == {"name": "faq", "confidence": 0.35}


def danger_net(crisis, emergency):
    return SafetyNet({"crisis_threshold": 0.8, "emergency_threshold": 0.5, "emergency_pattern_support": 0.1,
                      "combined_crisis_threshold": 0.9, "danger_threshold": 0.7},
                     classifier=FixedScores(crisis, emergency))


@pytest.mark.parametrize("crisis, emergency, expected", [
    (0.45, 0.3, CRISIS),             # danger, mostly the crisis reading: the crisis reply (it has 911)
    (0.25, 0.45, MEDICAL_EMERGENCY),  # danger, mostly the emergency reading
    (0.4, 0.2, "faq"),               # together below the danger bar: the answer stands
])
def test_danger_split_between_crisis_and_emergency_gets_the_likelier_reply(nlp, crisis, emergency, expected):
    message = with_embedding(message_for(nlp, "took a whole strip of pills an hour ago, getting sleepy", "faq", 0.9))
    danger_net(crisis, emergency).process([message])
    assert message.get("intent")["name"] == expected


@pytest.mark.parametrize("text, long_past", [
    ("had a seizure as a kid, am i still eligible?", True),
    ("my mom had a heart attack in 2015, is it safe for her now", True),
    ("had pericarditis 4 years ago and it cleared up completely", True),
    ("he took too many pills last night and won't wake up", False),
    ("had a stroke 2 years ago and now my face is drooping again", False),
    ("my dad collapsed, he is 80 years old", False),
])
def test_long_past_events_are_told_apart_from_ones_still_going_on(text, long_past):
    assert told_as_long_past(text) is long_past


def test_a_long_past_event_needs_a_sure_classifier_for_911(nlp):
    past = with_embedding(message_for(nlp, "my dad had a heart attack years ago, can he have infusions", "faq", 0.8))
    net(emergency=0.7).process([past])
    assert past.get("intent")["name"] not in (MEDICAL_EMERGENCY, CRISIS)
    assert past.get("safety_evidence")["long_past"] is True
    now = with_embedding(message_for(nlp, "my dad is having a heart attack", "faq", 0.8))
    net(emergency=0.7).process([now])
    assert now.get("intent")["name"] == MEDICAL_EMERGENCY


def test_nearest_examples_read_the_class_of_the_closest_training_examples():
    crisis, emergency, other = np.eye(3, 384, dtype=np.float32)
    nearest = NearestExamples({CRISIS: np.stack([crisis, crisis]), MEDICAL_EMERGENCY: np.stack([emergency]),
                               OTHER: np.stack([other, other])}, neighbours=2, temperature=20.0)
    probabilities = nearest.probabilities(crisis * 0.9 + other * 0.1)
    assert probabilities[CRISIS] > 0.99
    assert sum(probabilities.values()) == pytest.approx(1.0)
    # A message and its clauses in one call: each row as if alone.
    queries = np.stack([crisis * 0.9 + other * 0.1, emergency, other * 0.6 + emergency * 0.4])
    rows = nearest.probabilities_many(queries)
    assert rows.shape == (3, 3)
    for query, row in zip(queries, rows, strict=True):
        assert row == pytest.approx([nearest.probabilities(query)[label] for label in CLASSES])
    assert rows[1].argmax() == 1 and rows[2].argmax() == 2


@pytest.mark.parametrize("text, expected", [
    ("does it work fast? i don't know how much longer i can keep going",
     ["does it work fast", "i don't know how much longer i can keep going"]),
    ("what are the side effects", []),
    ("ok. thanks", []),
])
def test_a_message_is_split_into_clauses_of_three_words_or_more(text, expected):
    assert clauses(text) == expected


SURE_BARS = {**SafetyNet.get_default_config(), "crisis_threshold": 0.8, "clause_crisis_threshold": 0.7,
             "emergency_threshold": 0.5, "combined_crisis_threshold": 0.5, "danger_threshold": 0.9}


@pytest.mark.parametrize("clause, emergency, expected", [
    (0.76, 0.77, MEDICAL_EMERGENCY),  # a toddler who swallowed pills and is floppy: the whole message wins
    (0.76, 0.40, "crisis"),           # the emergency reading is below its bar: the clause stands
    (0.95, 0.60, "crisis"),           # the clause is surer than the emergency reading
])
def test_a_clause_read_alone_yields_to_a_surer_emergency_reading(clause, emergency, expected):
    scores = {CRISIS: 0.1, CRISIS_CLAUSE: clause, MEDICAL_EMERGENCY: emergency}
    assert decide(SURE_BARS, scores, None, False, "faq")[0] == expected


@pytest.mark.parametrize("crisis, clause, emergency, benign_reading, expected", [
    (0.33, 0.46, 0.14, False, "crisis"),            # "thanks for everything, i'm done fighting this"
    (0.15, 0.0, 0.10, False, MEDICAL_EMERGENCY),    # an unsure classifier: DIET's emergency stands
    (0.33, 0.46, 0.60, False, MEDICAL_EMERGENCY),   # the classifier itself reads an emergency
    (0.33, 0.46, 0.14, True, MEDICAL_EMERGENCY),    # crisis words only negated or figurative
])
def test_suicidal_intent_told_as_an_emergency_gets_the_crisis_reply(crisis, clause, emergency, benign_reading,
                                                                     expected):
    scores = {CRISIS: crisis, CRISIS_CLAUSE: clause, MEDICAL_EMERGENCY: emergency}
    assert decide(SURE_BARS, scores, None, benign_reading, MEDICAL_EMERGENCY)[0] == expected


def test_an_emergency_the_model_only_half_heard_is_not_911_on_its_own():
    # Nonsense ("blorp znak") can land in a near tie between an emergency and out of scope, which
    # the fallback catches; the weak classifier reading that backs a sure model does not back it.
    scores = {CRISIS: 0.17, CRISIS_CLAUSE: 0.0, MEDICAL_EMERGENCY: 0.15}
    assert decide(SURE_BARS, scores, None, False, MEDICAL_EMERGENCY)[0] == MEDICAL_EMERGENCY
    assert decide(SURE_BARS, scores, None, False, MEDICAL_EMERGENCY, unsure_model=True)[0] != MEDICAL_EMERGENCY
    # The classifier's own emergency reading or an emergency pattern still sends it to 911.
    sure = {**scores, MEDICAL_EMERGENCY: 0.6}
    assert decide(SURE_BARS, sure, None, False, MEDICAL_EMERGENCY, unsure_model=True)[0] == MEDICAL_EMERGENCY
    assert decide(SURE_BARS, scores, MEDICAL_EMERGENCY, False, MEDICAL_EMERGENCY,
                  unsure_model=True)[0] == MEDICAL_EMERGENCY


def test_the_safety_net_reads_the_pretrained_embedding_not_the_tuned_one(nlp):
    # A tuned encoder reads crisis words more than meaning ("i'm dying to try this"), so the
    # safety classifier is given the pretrained encoder's embedding of the message.
    seen = []

    class Recording(FixedScores):
        def probabilities_many(self, embeddings):
            seen.extend(embeddings)
            return super().probabilities_many(embeddings)

    message = message_for(nlp, "i'm dying to try this", "faq", 0.9)
    message.add_features(Features(np.ones((1, 384), np.float32), FEATURE_TYPE_SENTENCE, TEXT, ORIGIN))
    pretrained = np.full(384, 0.5, np.float32)
    keep_pretrained_embeddings(message, pretrained)
    SafetyNet({"crisis_threshold": 0.5}, classifier=Recording(0.0, 0.0)).process([message])
    assert seen and all(np.array_equal(embedding, pretrained) for embedding in seen)
