"""The Rasa featurizer: one embedding per message, found again by later components."""
import numpy as np
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import INTENT, INTENT_RESPONSE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components import sentence_encoder
from components.message_embeddings import clauses
from components.minilm import shared_encoder
from components.sentence_encoder import (
    SentenceEncoderFeaturizer,
    clause_embeddings,
    keep_pretrained_embeddings,
    pretrained_embedding,
    sentence_embedding,
)


def featurizer():
    return SentenceEncoderFeaturizer(SentenceEncoderFeaturizer.get_default_config(), "sentence_encoder")


def test_each_message_gets_its_embedding_as_a_dense_sentence_feature():
    message = Message(data={TEXT: "how long does one infusion take"})
    featurizer().process([message])
    embedding = sentence_embedding(message)
    assert np.allclose(embedding, shared_encoder().encode("how long does one infusion take"))
    _, dense = message.get_dense_features(TEXT)
    assert dense.features.shape == (1, 384)


def test_a_message_is_embedded_once(monkeypatch):
    calls = []
    component = featurizer()
    real_encode = component.encoder.encode_with_pretrained
    monkeypatch.setattr(component.encoder, "encode_with_pretrained",
                        lambda texts: calls.extend(texts) or real_encode(texts))
    message = Message(data={TEXT: "side effects?"})
    component.process([message])
    sentence_embedding(message)
    sentence_embedding(message)
    assert calls == ["side effects?"]


def test_a_batch_gets_the_same_embeddings_as_messages_one_at_a_time():
    texts = ["side effects?", "", "how long does one infusion take, and is it safe with zoloft", "ok"]
    messages = [Message(data={TEXT: text}) for text in texts]
    featurizer().process(messages)
    for message, text in zip(messages, texts, strict=True):
        assert np.abs(sentence_embedding(message) - shared_encoder().encode(text)).max() < 1e-5


def test_training_examples_are_featurized_and_messages_without_text_are_left_alone():
    examples = [Message(data={TEXT: "is it addictive", "intent": "faq"}), Message(data={"intent": "greet"})]
    featurizer().process_training_data(TrainingData(training_examples=examples))
    assert sentence_embedding(examples[0]) is not None
    assert sentence_embedding(examples[1]) is None


def test_empty_and_huge_messages_are_embedded():
    messages = [Message(data={TEXT: ""}), Message(data={TEXT: "ketamine " * 50_000})]
    featurizer().process(messages)
    for message in messages:
        assert np.isfinite(sentence_embedding(message)).all()


def test_the_featurizer_shares_one_encoder_per_process():
    assert featurizer().encoder is featurizer().encoder is sentence_encoder.shared_encoder()


TUNING_EXAMPLES = [
    ("how long am i hooked up to the iv", "faq/infusion_session"),
    ("how long does one infusion take", "faq/infusion_session"),
    ("how many hours is a session", "faq/infusion_session"), ("is ketamine addictive", "faq/addiction_risk"),
    ("can i get hooked on it", "faq/addiction_risk"), ("will i become dependent on it", "faq/addiction_risk"),
    ("hello there", "greet"), ("hi", "greet"), ("good morning", "greet"),
]


def training_data():
    examples = []
    for text, label in TUNING_EXAMPLES:
        data = {TEXT: text, INTENT: label.split("/")[0]}
        if "/" in label:
            data[INTENT_RESPONSE_KEY] = label
        examples.append(Message(data=data))
    return TrainingData(training_examples=examples)


def cohesion(encoder):
    """Mean cosine between each example and its label's mean embedding."""
    embeddings = encoder.encode_many([text for text, _ in TUNING_EXAMPLES])
    labels = np.array([label for _, label in TUNING_EXAMPLES])
    centres = {label: embeddings[labels == label].mean(axis=0) for label in set(labels)}
    return np.mean([vector @ centres[label] / np.linalg.norm(centres[label])
                    for vector, label in zip(embeddings, labels, strict=True)])


def test_training_tunes_the_encoder_and_the_model_keeps_the_tuned_layers(tmp_path):
    config = {**SentenceEncoderFeaturizer.get_default_config(),
              "fine_tune_epochs": 60, "fine_tune_layers": 2, "fine_tune_learning_rate": 1e-4}
    storage, resource = LocalModelStorage(tmp_path), Resource("sentence_encoder")
    trained = SentenceEncoderFeaturizer(config, "sentence_encoder", storage, resource)
    trained.train(training_data())
    # The tuned layers bring each label's examples closer together.
    assert cohesion(trained.encoder) > cohesion(shared_encoder()) + 0.01
    loaded = SentenceEncoderFeaturizer.load(config, storage, resource, ExecutionContext(GraphSchema({}), "test"))
    text = "how long is the drip"
    assert np.abs(loaded.encoder.encode(text) - trained.encoder.encode(text)).max() < 1e-6
    assert np.abs(loaded.encoder.encode(text) - shared_encoder().encode(text)).max() > 1e-3
    # The channel's batcher embeds with the loaded model's encoder.
    assert sentence_encoder.shared_batcher().encoder is loaded.encoder
    # Messages carry both embeddings: the tuned one as the classifiers' feature, the pretrained
    # one (of the message and its clauses) for the safety net.
    message = Message(data={TEXT: "does it work fast? i don't know how much longer i can keep going"})
    loaded.process([message])
    assert np.abs(sentence_embedding(message) - loaded.encoder.encode(message.get(TEXT))).max() < 1e-5
    assert np.abs(pretrained_embedding(message) - shared_encoder().encode(message.get(TEXT))).max() < 1e-5
    assert np.abs(clause_embeddings(message) - shared_encoder().encode_many(clauses(message.get(TEXT)))).max() < 1e-5
    data = training_data()
    loaded.process_training_data(data)
    for example in data.training_examples:
        assert np.abs(pretrained_embedding(example) - shared_encoder().encode(example.get(TEXT))).max() < 1e-5
        assert np.abs(sentence_embedding(example) - loaded.encoder.encode(example.get(TEXT))).max() < 1e-5


def test_without_tuning_the_model_keeps_the_pretrained_encoder(tmp_path):
    config = SentenceEncoderFeaturizer.get_default_config()
    storage, resource = LocalModelStorage(tmp_path), Resource("sentence_encoder")
    SentenceEncoderFeaturizer(config, "sentence_encoder", storage, resource).train(training_data())
    loaded = SentenceEncoderFeaturizer.load(config, storage, resource, ExecutionContext(GraphSchema({}), "test"))
    assert loaded.encoder is shared_encoder()


def test_a_tuning_of_more_layers_than_the_encoder_has_is_refused():
    with pytest.raises(ValueError):
        SentenceEncoderFeaturizer({**SentenceEncoderFeaturizer.get_default_config(), "fine_tune_layers": 7}, "x")


@pytest.mark.parametrize("tuning_epochs", [0, 5])
def test_in_8_bits_training_s_features_come_from_the_encoder_the_model_loads(tmp_path, tuning_epochs):
    config = {**SentenceEncoderFeaturizer.get_default_config(), "quantized": True,
              "fine_tune_epochs": tuning_epochs, "fine_tune_layers": 2}
    storage, resource = LocalModelStorage(tmp_path), Resource("sentence_encoder")
    trained = SentenceEncoderFeaturizer(config, "sentence_encoder", storage, resource)
    trained.train(training_data())
    data = training_data()
    trained.process_training_data(data)
    loaded = SentenceEncoderFeaturizer.load(config, storage, resource, ExecutionContext(GraphSchema({}), "test"))
    assert loaded.encoder.quantized and loaded.encoder is not shared_encoder()
    for example in data.training_examples:
        message = Message(data={TEXT: example.get(TEXT)})
        loaded.process([message])
        assert np.abs(sentence_embedding(example) - sentence_embedding(message)).max() < 1e-5
        assert np.abs(sentence_embedding(example) - shared_encoder().encode(example.get(TEXT))).max() > 1e-4


def test_the_kept_pretrained_embeddings_are_part_of_a_messages_fingerprint():
    # Rasa's training cache tells messages apart by their fingerprints.
    def fingerprint(value):
        message = Message(data={TEXT: "how long is the drip"})
        keep_pretrained_embeddings(message, np.full(384, value, np.float32), np.full((2, 384), value, np.float32))
        return message.fingerprint()

    assert fingerprint(0.5) == fingerprint(0.5)
    assert fingerprint(0.5) != fingerprint(0.25)
