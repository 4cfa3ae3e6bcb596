"""The embedding ensemble: trained on real embeddings, it moves a ranking towards its own reading."""
import numpy as np
import pytest
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, INTENT_RESPONSE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components.embedding_ensemble import DomainDistance, EmbeddingEnsemble, _blend, intents_and_topics
from components.sentence_encoder import SentenceEncoderFeaturizer

EXAMPLES = [
    ("faq", "faq/addiction_risk", ["can you get addicted to ketamine", "is it habit forming", "will i get hooked"]),
    ("faq", "faq/side_effects", ["what side effects are there", "does it make you nauseous", "will i feel dizzy"]),
    ("greet", None, ["hello", "hi there", "good morning"]),
    ("out_of_scope", None, ["what's the best pizza topping", "who won the world cup", "fix my laptop's wifi"]),
]


def message(text, intent=None, key=None):
    data = {TEXT: text}
    if intent:
        data[INTENT] = intent
    if key:
        data[INTENT_RESPONSE_KEY] = key
    return Message(data=data)


@pytest.fixture()
def ensemble(tmp_path):
    featurizer = SentenceEncoderFeaturizer(SentenceEncoderFeaturizer.get_default_config(), "sentence_encoder")
    examples = [message(t, intent, key) for intent, key, texts in EXAMPLES for t in texts]
    featurizer.process_training_data(TrainingData(training_examples=examples))
    storage, resource = LocalModelStorage(tmp_path), Resource("ensemble")
    # Three examples a label, far fewer than the real data: the distance check compares the
    # nearest example of each side, and few in-domain examples are near any question.
    config = {"neighbours": 1, "in_domain_min_similarity": 0.2}
    component = EmbeddingEnsemble(config, storage, resource)
    component.train(TrainingData(training_examples=examples))
    return EmbeddingEnsemble.load(config, storage, resource, None), featurizer


def test_blend_averages_and_reorders():
    ranking = [{"name": "a", "confidence": 0.6}, {"name": "b", "confidence": 0.4}]
    blended = _blend(ranking, "name", {"a": 0.0, "b": 1.0}, 0.5)
    assert [entry["name"] for entry in blended] == ["b", "a"]
    assert blended[0]["confidence"] == pytest.approx(0.7)


def test_topics_are_classes_whose_sum_is_the_faq():
    intents, topics = intents_and_topics({"faq/a": 0.3, "faq/b": 0.1, "greet": 0.6})
    assert intents == pytest.approx({"faq": 0.4, "greet": 0.6})
    assert topics == pytest.approx({"faq/a": 0.75, "faq/b": 0.25})


def test_a_wrong_topic_is_corrected_by_the_embedding(ensemble):
    component, featurizer = ensemble
    parsed = message("could i end up dependent on it")
    featurizer.process([parsed])
    parsed.set(INTENT, {"name": "greet", "confidence": 0.55})
    parsed.set(INTENT_RANKING_KEY, [{"name": "greet", "confidence": 0.55}, {"name": "faq", "confidence": 0.45}])
    parsed.set("response_selector", {"faq": {
        "response": {"intent_response_key": "faq/side_effects", "confidence": 0.55, "responses": [],
                     "utter_action": "utter_faq/side_effects"},
        "ranking": [{"intent_response_key": "faq/side_effects", "confidence": 0.55},
                    {"intent_response_key": "faq/addiction_risk", "confidence": 0.45}]}})
    component.process([parsed])
    assert parsed.get(INTENT)["name"] == "faq"
    response = parsed.get("response_selector")["faq"]["response"]
    assert response["intent_response_key"] == "faq/addiction_risk"
    assert response["utter_action"] == "utter_faq/addiction_risk"
    assert np.isclose(sum(e["confidence"] for e in parsed.get(INTENT_RANKING_KEY)), 1.0)


def test_a_message_without_an_embedding_is_left_alone(ensemble):
    component, _ = ensemble
    parsed = message("hello")
    parsed.set(INTENT, {"name": "greet", "confidence": 0.9})
    component.process([parsed])
    assert parsed.get(INTENT) == {"name": "greet", "confidence": 0.9}


def test_a_message_nearer_the_off_topic_examples_is_out_of_scope(ensemble):
    component, featurizer = ensemble
    parsed = message("recommend a good lasagna recipe")
    featurizer.process([parsed])
    # DIET sure of an FAQ question, so that the blend keeps it and the distance check decides.
    parsed.set(INTENT, {"name": "faq", "confidence": 0.95})
    parsed.set(INTENT_RANKING_KEY, [{"name": "faq", "confidence": 0.95}, {"name": "out_of_scope", "confidence": 0.05}])
    component.process([parsed])
    assert parsed.get(INTENT) == {"name": "out_of_scope", "confidence": 1.0}
    assert [entry["name"] for entry in parsed.get(INTENT_RANKING_KEY)].count("out_of_scope") == 1
    check = parsed.get("out_of_scope_check")
    assert check["mean_nearest_out_of_scope"] > check["mean_nearest_in_domain"]


def test_a_question_near_the_domain_keeps_its_reading(ensemble):
    component, featurizer = ensemble
    parsed = message("is there a risk of becoming addicted")
    featurizer.process([parsed])
    parsed.set(INTENT, {"name": "faq", "confidence": 0.6})
    parsed.set(INTENT_RANKING_KEY, [{"name": "faq", "confidence": 0.6}, {"name": "out_of_scope", "confidence": 0.4}])
    component.process([parsed])
    assert parsed.get(INTENT)["name"] == "faq"


def test_a_crisis_reading_is_never_moved_out_of_scope(ensemble):
    component, featurizer = ensemble
    parsed = message("who will even care when i'm gone")
    featurizer.process([parsed])
    parsed.set(INTENT, {"name": "crisis", "confidence": 0.6})
    parsed.set(INTENT_RANKING_KEY, [{"name": "crisis", "confidence": 0.6}])
    component.process([parsed])
    assert parsed.get(INTENT)["name"] == "crisis"


def test_a_weak_reading_is_left_to_the_fallback(ensemble):
    component, featurizer = ensemble
    component.config["weight"] = 0.0  # DIET's reading alone, so that only the distance check could move it
    parsed = message("recommend a good lasagna recipe")
    featurizer.process([parsed])
    parsed.set(INTENT, {"name": "faq", "confidence": 0.2})
    parsed.set(INTENT_RANKING_KEY, [{"name": "faq", "confidence": 0.2}, {"name": "greet", "confidence": 0.15}])
    component.process([parsed])
    # Nearer the off-topic examples, but too weak a reading for the distance check to move.
    assert parsed.get(INTENT)["confidence"] < EmbeddingEnsemble.get_default_config()["fallback_threshold"]
    assert DomainDistance.out_of_scope(parsed.get("out_of_scope_check"), 0.2)


def out_of_scope_reading(featurizer, text):
    parsed = message(text)
    featurizer.process([parsed])
    parsed.set(INTENT, {"name": "out_of_scope", "confidence": 1.0})
    parsed.set(INTENT_RANKING_KEY, [{"name": "out_of_scope", "confidence": 1.0}, {"name": "faq", "confidence": 0.0}])
    return parsed


def test_an_out_of_scope_reading_of_a_question_among_the_domains_examples_gives_way(ensemble):
    component, featurizer = ensemble
    parsed = out_of_scope_reading(featurizer, "can a person get addicted to ketamine")
    component.process([parsed])
    assert parsed.get(INTENT)["name"] == "faq"
    assert "out_of_scope" not in [entry["name"] for entry in parsed.get(INTENT_RANKING_KEY)]


def test_an_out_of_scope_reading_far_from_the_domain_stands(ensemble):
    component, featurizer = ensemble
    parsed = out_of_scope_reading(featurizer, "who won the football world cup last time")
    component.process([parsed])
    assert parsed.get(INTENT)["name"] == "out_of_scope"
