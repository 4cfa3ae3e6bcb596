"""A Rasa featurizer that adds a pretrained sentence embedding to every message.

DIET and the ResponseSelector see it as a dense sentence feature next to the sparse word
and character n-gram counts, so wording the training examples never used still lands near
the examples that mean the same. Each message is embedded once; later components (the
safety net) read the same vector with `sentence_embedding(message)`, and the safety net its
clauses' vectors, from the same encoder pass, with `clause_embeddings(message)`. A message the
channel embedded together with others (components/message_embeddings.py) is not encoded again.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components.message_embeddings import embed_messages, shared_batcher
from components.minilm import shared_encoder

# The name this featurizer's features carry (Features.origin), so other components find them.
ORIGIN = "sentence_encoder"
# Where a message keeps its clauses' embeddings (not part of the parse result).
CLAUSE_EMBEDDINGS = "clause_embeddings"


def sentence_embedding(message: Message) -> Optional[np.ndarray]:
    """The message's MiniLM embedding (384 floats), if the featurizer ran on it."""
    for feature in message.features:
        if feature.origin == ORIGIN and feature.attribute == TEXT and feature.type == FEATURE_TYPE_SENTENCE:
            return feature.features[0]
    return None


def clause_embeddings(message: Message) -> Optional[np.ndarray]:
    """The embeddings of the message's clauses (components/message_embeddings.py), one row each,
    if the featurizer embedded it as a visitor's message."""
    return message.get(CLAUSE_EMBEDDINGS)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class SentenceEncoderFeaturizer(DenseFeaturizer, GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {**DenseFeaturizer.get_default_config(), "alias": ORIGIN}

    @staticmethod
    def required_packages() -> List[Text]:
        return ["tokenizers", "safetensors"]

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SentenceEncoderFeaturizer:
        return cls(config, execution_context.node_name)

    def __init__(self, config: Dict[Text, Any], name: Text) -> None:
        super().__init__(name, config)
        self._identifier = ORIGIN
        self.encoder = shared_encoder()

    def process(self, messages: List[Message]) -> List[Message]:
        """Visitors' messages: their embeddings and their clauses'."""
        with_text = [message for message in messages if isinstance(message.get(TEXT), str)]
        batcher = shared_batcher()
        taken = [batcher.take(message.get(TEXT)) for message in with_text]
        missing = [message.get(TEXT) for message, found in zip(with_text, taken, strict=True) if found is None]
        embedded = iter(embed_messages(missing))
        for message, found in zip(with_text, taken, strict=True):
            embeddings = found or next(embedded)
            self.add_features_to_message(None, embeddings.whole[np.newaxis, :], TEXT, message)
            message.set(CLAUSE_EMBEDDINGS, embeddings.clauses)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Training examples: their embeddings only, batched by length (faster than one at a time)."""
        with_text = [message for message in training_data.training_examples if isinstance(message.get(TEXT), str)]
        embeddings = self.encoder.encode_many([message.get(TEXT) for message in with_text])
        for message, embedding in zip(with_text, embeddings, strict=True):
            self.add_features_to_message(None, embedding[np.newaxis, :], TEXT, message)
        return training_data

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        """Nothing to check: the alias is the only option."""
