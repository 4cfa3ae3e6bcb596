import copy

import numpy as np
import scipy.sparse
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.constants import SPACY_DOCS, TOKENS_NAMES
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.nlu.tokenizers.spacy_tokenizer import SpacyTokenizer
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components.fingerprints import DigestedFeatures, FingerprintedCountVectorsFeaturizer, FingerprintedSpacyTokenizer

TEXTS = ["my mom's on zoloft, can she still get the infusions?", "how long is the drip", "side effects?"]


def tokenized(tokenizer_class, nlp):
    messages = [Message(data={TEXT: text}) for text in TEXTS]
    for message in messages:
        message.set(SPACY_DOCS[TEXT], nlp(message.get(TEXT)))
    tokenizer_class(tokenizer_class.get_default_config()).process(messages)
    return messages


def test_the_tokens_and_their_fingerprints_are_rasas(nlp):
    for ours, rasas in zip(tokenized(FingerprintedSpacyTokenizer, nlp), tokenized(SpacyTokenizer, nlp), strict=True):
        ours, rasas = ours.get(TOKENS_NAMES[TEXT]), rasas.get(TOKENS_NAMES[TEXT])
        assert ours == rasas
        assert [(t.text, t.lemma, t.data) for t in ours] == [(t.text, t.lemma, t.data) for t in rasas]
        assert [t.fingerprint() for t in ours] == [t.fingerprint() for t in rasas]


def test_a_token_whose_data_changes_has_a_new_fingerprint(nlp):
    token = tokenized(FingerprintedSpacyTokenizer, nlp)[0].get(TOKENS_NAMES[TEXT])[0]
    before = token.fingerprint()
    token.set("pattern", {"dose": True})
    assert token.fingerprint() != before


def test_the_count_features_are_rasas(nlp, tmp_path):
    def featurized(featurizer_class):
        config = {**featurizer_class.get_default_config(), "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4}
        storage = tmp_path / featurizer_class.__name__
        storage.mkdir()
        featurizer = featurizer_class.create(config, LocalModelStorage(storage),
                                             Resource("counts"), ExecutionContext(GraphSchema({}), "counts"))
        messages = tokenized(SpacyTokenizer, nlp)
        featurizer.train(TrainingData(messages))
        featurizer.process_training_data(TrainingData(messages))
        return messages

    ours, rasas = featurized(FingerprintedCountVectorsFeaturizer), featurized(CountVectorsFeaturizer)
    for our_message, rasa_message in zip(ours, rasas, strict=True):
        assert our_message.features
        assert [(f.type, f.attribute, f.features.shape) for f in our_message.features] == \
               [(f.type, f.attribute, f.features.shape) for f in rasa_message.features]
        for our_feature, rasa_feature in zip(our_message.features, rasa_message.features, strict=True):
            assert isinstance(our_feature, DigestedFeatures)
            assert (our_feature.features != rasa_feature.features).nnz == 0


def test_features_with_another_value_have_another_fingerprint():
    def fingerprint(value, kind=FEATURE_TYPE_SENTENCE):
        matrix = scipy.sparse.coo_matrix(np.array([[0.0, value, 1.0]]))
        return DigestedFeatures(matrix, kind, TEXT, "counts").fingerprint()

    assert fingerprint(2.0) == fingerprint(2.0)
    assert len({fingerprint(2.0), fingerprint(3.0), fingerprint(0.0), fingerprint(2.0, "sequence")}) == 4


def test_a_deep_copy_is_what_pythons_generic_deep_copy_gives():
    for matrix in (scipy.sparse.coo_matrix(np.array([[0.0, 2.0, 0.0, 1.0]])), np.arange(4.0)[np.newaxis, :]):
        features = DigestedFeatures(matrix, FEATURE_TYPE_SENTENCE, TEXT, ["word_counts"])
        features.fingerprint()
        ours = copy.deepcopy(features)
        generic = DigestedFeatures.__new__(DigestedFeatures)
        generic.__dict__ = copy.deepcopy(features.__dict__)
        assert type(ours) is DigestedFeatures
        assert {key: value for key, value in vars(ours).items() if key != "features"} == \
               {key: value for key, value in vars(generic).items() if key != "features"}
        assert np.array_equal(dense(ours.features), dense(generic.features))
        # Nothing shared: combining the copy with other features leaves the original as it was.
        assert ours.features is not features.features and ours.origin is not features.origin
        ours.combine_with_features(DigestedFeatures(matrix, FEATURE_TYPE_SENTENCE, TEXT, "char_counts"))
        assert features.features.shape == matrix.shape and features.origin == ["word_counts"]


def dense(matrix):
    return matrix.toarray() if scipy.sparse.issparse(matrix) else matrix
