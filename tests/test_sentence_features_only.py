"""Per-word text features replaced by the sentence row, nothing else touched."""
import numpy as np
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, FEATURE_TYPE_SEQUENCE, INTENT, RESPONSE, TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components.sentence_features_only import SentenceFeaturesOnly


def count_featurized(tmp_path, texts):
    """Training examples tokenised and featurised by Rasa's own word-count featurizer."""
    examples = [Message(data={TEXT: text, INTENT: "faq", RESPONSE: "Each infusion takes about 40 minutes."})
                for text in texts]
    training_data = TrainingData(training_examples=examples)
    storage = LocalModelStorage(tmp_path)
    context = ExecutionContext(GraphSchema({}), "test")
    WhitespaceTokenizer(WhitespaceTokenizer.get_default_config()).process_training_data(training_data)
    counts = CountVectorsFeaturizer.create(
        {**CountVectorsFeaturizer.get_default_config(), "alias": "word_counts"}, storage, Resource("counts"), context)
    counts.train(training_data)
    counts.process_training_data(training_data)
    return examples


def features_of(message, attribute, feature_type):
    return [feature for feature in message.features if feature.attribute == attribute and feature.type == feature_type]


def test_per_word_text_features_become_one_row_equal_to_the_sentence_row(tmp_path):
    examples = count_featurized(tmp_path, ["how long does one infusion take", "is it addictive"])
    word_rows = features_of(examples[0], TEXT, FEATURE_TYPE_SEQUENCE)[0].features.shape[0]
    assert word_rows == 6

    SentenceFeaturesOnly().process_training_data(TrainingData(training_examples=examples))

    for message in examples:
        [sequence] = features_of(message, TEXT, FEATURE_TYPE_SEQUENCE)
        [sentence] = features_of(message, TEXT, FEATURE_TYPE_SENTENCE)
        assert sequence.features.shape == sentence.features.shape == (1, sentence.features.shape[1])
        assert (sequence.features != sentence.features).nnz == 0
        assert sequence.origin == sentence.origin == "word_counts"


def test_other_attributes_are_left_alone(tmp_path):
    [message] = count_featurized(tmp_path, ["how long does one infusion take"])
    before = {(f.attribute, f.type): f.features.shape for f in message.features if f.attribute != TEXT}
    assert before, "the count featurizer also featurizes the response"
    SentenceFeaturesOnly().process([message])
    assert {(f.attribute, f.type): f.features.shape for f in message.features if f.attribute != TEXT} == before


def test_a_dense_sentence_only_feature_is_kept_and_gets_no_per_word_row():
    embedding = np.ones((1, 384), np.float32)
    message = Message(data={TEXT: "side effects?"},
                      features=[Features(embedding, FEATURE_TYPE_SENTENCE, TEXT, "sentence_encoder")])
    SentenceFeaturesOnly().process([message])
    assert [(f.type, f.origin) for f in message.features] == [(FEATURE_TYPE_SENTENCE, "sentence_encoder")]
    assert message.features[0].features is embedding


def test_messages_without_features_pass_through():
    message = Message(data={TEXT: ""})
    assert SentenceFeaturesOnly().process([message]) == [message]
    assert message.features == []
