"""Rasa's SpacyTokenizer and CountVectorsFeaturizer, with outputs Rasa fingerprints quickly.

Rasa fingerprints every message after every training step, even with its cache off, from
each of its tokens (the FAQ examples carry their answer's too) and its features. Its Token
works out its fingerprint again each time, and its Features print a sparse matrix as text,
one line per value, for theirs: together about a sixth of the training's time, measured with
py-spy in session 22. These tokens keep their fingerprint until their data changes, and these
features take a digest of their matrix's bytes. Otherwise the same tokens and features as
Rasa's components give, as tests/test_fingerprints.py checks.

The features also copy cheaply: each classifier deep-copies a message's first features of each
kind at every turn, and Python's generic deep copy of a matrix cost about 0.3 ms a turn.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any, Dict, List, Optional, Text

import numpy as np
import scipy.sparse
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.nlu.tokenizers.spacy_tokenizer import SpacyTokenizer
from rasa.nlu.tokenizers.tokenizer import Token
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, FEATURE_TYPE_SEQUENCE
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message


class FingerprintedToken(Token):
    _fingerprint: Optional[Text] = None

    @classmethod
    def of(cls, token: Token) -> FingerprintedToken:
        return cls(token.text, token.start, token.end, token.data, token.lemma)

    def set(self, prop: Text, info: Any) -> None:
        super().set(prop, info)
        self._fingerprint = None

    def fingerprint(self) -> Text:
        if self._fingerprint is None:
            self._fingerprint = super().fingerprint()
        return self._fingerprint


def array_digest(values: Any, *labels: Any) -> Text:
    """A digest of the labels and of an array's shape and bytes, dense or sparse: a fingerprint
    for Rasa's training cache that does not print the array as text."""
    digest = hashlib.md5("|".join(map(str, (*labels, values.shape))).encode())  # nosec: not security
    if scipy.sparse.issparse(values):
        values = values.tocoo()
        parts = (values.row, values.col, values.data)
    else:
        parts = (values,)
    for part in parts:
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


class DigestedFeatures(Features):
    def fingerprint(self) -> Text:
        if self._cached_fingerprint is None:
            self._cached_fingerprint = array_digest(self.features, self.type, self.origin, self.attribute)
        return self._cached_fingerprint

    def __deepcopy__(self, memo: Dict[int, Any]) -> DigestedFeatures:
        """What copy.deepcopy gives (the other attributes are strings), without its generic walk."""
        copied = copy.copy(self)
        copied.features = self.features.copy()
        copied.origin = copy.copy(self.origin)
        return copied


def add_digested_features(featurizer: Text, sequence: Any, sentence: Any, attribute: Text, message: Message) -> None:
    """A featurizer's add_features_to_message, with DigestedFeatures."""
    for type_, matrix in ((FEATURE_TYPE_SEQUENCE, sequence), (FEATURE_TYPE_SENTENCE, sentence)):
        if matrix is not None:
            message.add_features(DigestedFeatures(matrix, type_, attribute, featurizer))


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=False)
class FingerprintedSpacyTokenizer(SpacyTokenizer):
    def tokenize(self, message: Message, attribute: Text) -> List[Token]:
        return [FingerprintedToken.of(token) for token in super().tokenize(message, attribute)]


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class FingerprintedCountVectorsFeaturizer(CountVectorsFeaturizer):
    def add_features_to_message(self, sequence: Any, sentence: Any, attribute: Text, message: Message) -> None:
        add_digested_features(self._identifier, sequence, sentence, attribute, message)
