"""A Rasa featurizer that adds a sentence embedding to every message.

DIET and the ResponseSelector see it as a dense sentence feature next to the sparse word
and character n-gram counts, so wording the training examples never used still lands near
the examples that mean the same. Training can first tune the encoder's top layers on the
training examples (components/encoder_tuning.py, `fine_tune_epochs`); the model keeps them.
Each message is embedded once; later components read the vector with
`sentence_embedding(message)`. The safety net reads the pretrained encoder's vectors of the
message and of its clauses, from the same pass, with `pretrained_embedding(message)` and
`clause_embeddings(message)`. A message the channel embedded together with others
(components/message_embeddings.py) is not encoded again.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, INTENT, INTENT_RESPONSE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components.encoder_tuning import TuningSettings, fine_tune
from components.fingerprints import add_digested_features, array_digest
from components.message_embeddings import embed_messages, shared_batcher
from components.minilm import MiniLMEncoder, shared_encoder

# The name this featurizer's features carry (Features.origin), so other components find them.
ORIGIN = "sentence_encoder"
# Where a message keeps its clauses' embeddings and its pretrained embedding, which the safety
# net reads (not part of the parse result).
CLAUSE_EMBEDDINGS = "clause_embeddings"
PRETRAINED_EMBEDDING = "pretrained_embedding"
TUNED_WEIGHTS_FILE = "tuned_layers.npz"


class _Kept:
    """Vectors kept in a message's data. Rasa fingerprints every message's data after each
    training step, even with its cache off, and would print a bare NumPy array as text for it
    (about 1 ms for 384 floats: an eighth of the training's time); this gives it a digest of the
    bytes instead."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def fingerprint(self) -> str:
        return array_digest(self.values)


def keep_pretrained_embeddings(message: Message, pretrained: np.ndarray, clauses: Optional[np.ndarray] = None) -> None:
    """Keeps the pretrained embeddings of the message (and of its clauses) for the safety net."""
    message.set(PRETRAINED_EMBEDDING, _Kept(pretrained))
    if clauses is not None:
        message.set(CLAUSE_EMBEDDINGS, _Kept(clauses))


def sentence_embedding(message: Message) -> Optional[np.ndarray]:
    """The message's MiniLM embedding (384 floats), if the featurizer ran on it."""
    for feature in message.features:
        if feature.origin == ORIGIN and feature.attribute == TEXT and feature.type == FEATURE_TYPE_SENTENCE:
            return feature.features[0]
    return None


def pretrained_embedding(message: Message) -> Optional[np.ndarray]:
    """The pretrained encoder's embedding of the message (the same as `sentence_embedding`'s
    unless training tuned the encoder), if the featurizer ran on it."""
    kept = message.get(PRETRAINED_EMBEDDING)
    return None if kept is None else kept.values


def clause_embeddings(message: Message) -> Optional[np.ndarray]:
    """The pretrained embeddings of the message's clauses (components/message_embeddings.py), one
    row each, if the featurizer embedded it as a visitor's message."""
    kept = message.get(CLAUSE_EMBEDDINGS)
    return None if kept is None else kept.values


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class SentenceEncoderFeaturizer(DenseFeaturizer, GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            "alias": ORIGIN,
            # 0: the pretrained encoder as it is.
            "fine_tune_epochs": 0,
            "fine_tune_layers": 6,
            "fine_tune_learning_rate": 5e-5,
            # The encoder's products in 8 bits (components/bert_onnx.py): training's features too,
            # so the classifiers learn from what they will be given.
            "quantized": False,
        }

    def add_features_to_message(self, sequence: Any, sentence: Any, attribute: Text, message: Message) -> None:
        # Features that fingerprint and copy cheaply (components/fingerprints.py).
        add_digested_features(self._identifier, sequence, sentence, attribute, message)

    @staticmethod
    def required_packages() -> List[Text]:
        return ["tokenizers", "safetensors", "onnx", "onnxruntime", "tensorflow"]

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SentenceEncoderFeaturizer:
        return cls(config, execution_context.node_name, model_storage, resource)

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> SentenceEncoderFeaturizer:
        """The encoder with the tuned layers the model keeps, if training tuned any."""
        tuned = None
        try:
            with model_storage.read_from(resource) as directory:
                path = directory / TUNED_WEIGHTS_FILE
                if path.exists():
                    with np.load(path) as arrays:
                        tuned = {name: arrays[name] for name in arrays.files}
        except ValueError:  # nothing was persisted: an untuned encoder
            pass
        return cls(config, execution_context.node_name, model_storage, resource,
                   MiniLMEncoder(tuned=tuned, quantized=config["quantized"]) if tuned else None)

    def __init__(self, config: Dict[Text, Any], name: Text, model_storage: Optional[ModelStorage] = None,
                 resource: Optional[Resource] = None, encoder: Optional[MiniLMEncoder] = None) -> None:
        """`model_storage` and `resource`: where training keeps the tuned layers."""
        super().__init__(name, config)
        self._identifier = ORIGIN
        self._model_storage, self._resource = model_storage, resource
        self.encoder = encoder or (MiniLMEncoder(quantized=True) if config["quantized"] else shared_encoder())
        # The channel's batcher embeds queued messages with this model's encoder.
        shared_batcher().use(self.encoder)

    def train(self, training_data: TrainingData) -> Resource:
        """Tunes the encoder's top layers on the examples' intents and FAQ topics, if configured."""
        if self._config["fine_tune_epochs"] <= 0:
            return self._resource
        examples = [(example.get(TEXT), example.get(INTENT_RESPONSE_KEY) or example.get(INTENT))
                    for example in training_data.intent_examples if isinstance(example.get(TEXT), str)]
        settings = TuningSettings(epochs=self._config["fine_tune_epochs"], layers=self._config["fine_tune_layers"],
                                  learning_rate=self._config["fine_tune_learning_rate"])
        tuned = fine_tune(shared_encoder(), [text for text, _ in examples], [label for _, label in examples], settings)
        with self._model_storage.write_to(self._resource) as directory:
            np.savez(directory / TUNED_WEIGHTS_FILE, **tuned)
        self.encoder = MiniLMEncoder(tuned=tuned, quantized=self._config["quantized"])
        shared_batcher().use(self.encoder)
        return self._resource

    def process(self, messages: List[Message]) -> List[Message]:
        """Visitors' messages: their embeddings and their clauses'."""
        with_text = [message for message in messages if isinstance(message.get(TEXT), str)]
        batcher = shared_batcher()
        taken = [batcher.take(message.get(TEXT), self.encoder) for message in with_text]
        missing = [message.get(TEXT) for message, found in zip(with_text, taken, strict=True) if found is None]
        embedded = iter(embed_messages(missing, self.encoder))
        for message, found in zip(with_text, taken, strict=True):
            embeddings = found or next(embedded)
            self.add_features_to_message(None, embeddings.whole[np.newaxis, :], TEXT, message)
            keep_pretrained_embeddings(message, embeddings.pretrained, embeddings.clauses)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Training examples: their embeddings, no clauses, batched by length (faster than one at a time)."""
        with_text = [message for message in training_data.training_examples if isinstance(message.get(TEXT), str)]
        tuned, pretrained = self.encoder.encode_with_pretrained([message.get(TEXT) for message in with_text])
        for message, embedding, pretrained_one in zip(with_text, tuned, pretrained, strict=True):
            self.add_features_to_message(None, embedding[np.newaxis, :], TEXT, message)
            keep_pretrained_embeddings(message, pretrained_one)
        return training_data

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        if not 1 <= config["fine_tune_layers"] <= 6:
            raise ValueError("fine_tune_layers must be between 1 and 6 (the encoder has 6 layers)")
