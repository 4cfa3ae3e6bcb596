"""The Rasa featurizer: one embedding per message, found again by later components."""
import numpy as np
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components import sentence_encoder
from components.minilm import shared_encoder
from components.sentence_encoder import SentenceEncoderFeaturizer, sentence_embedding


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
    real_encode_many = component.encoder.encode_many
    monkeypatch.setattr(component.encoder, "encode_many", lambda texts: calls.extend(texts) or real_encode_many(texts))
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
