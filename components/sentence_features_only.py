"""Sentence features in place of per-word features, for classifiers with no transformer layers.

With `number_of_transformer_layers: 0`, DIET and the ResponseSelector classify a message from
its sentence features alone: its per-word (sequence) features go through their own input
layers and are dropped at the last step, and they were most of the classifiers' training time.
Placed after the featurizers, this replaces each message's per-word text features by one row,
a copy of its sentence features from the same featurizer, so the classifiers keep the inputs
they need, with the same shapes, at a fraction of the cost. Nothing else reads per-word text
features: entity recognition is off.
"""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, FEATURE_TYPE_SEQUENCE, TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components.fingerprints import DigestedFeatures


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class SentenceFeaturesOnly(GraphComponent):
    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SentenceFeaturesOnly:
        return cls()

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            message.features = sentence_rows_as_sequences(message.features)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self.process(training_data.training_examples)
        return training_data


def sentence_rows_as_sequences(features: List[Features]) -> List[Features]:
    """The features, with each per-word text feature replaced by its featurizer's sentence row."""
    sentence = {
        (feature.origin, feature.is_sparse()): feature
        for feature in features
        if feature.attribute == TEXT and feature.type == FEATURE_TYPE_SENTENCE
    }
    replaced = []
    for feature in features:
        same_featurizer = sentence.get((feature.origin, feature.is_sparse()))
        if feature.attribute == TEXT and feature.type == FEATURE_TYPE_SEQUENCE and same_featurizer is not None:
            feature = DigestedFeatures(same_featurizer.features, FEATURE_TYPE_SEQUENCE, TEXT, feature.origin)
        replaced.append(feature)
    return replaced
