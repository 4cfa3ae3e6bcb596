"""DIET and the ResponseSelector predicting through their traced graph with tensors.

Rasa calls a model's prediction `tf.function` with NumPy arrays, and TensorFlow then binds,
checks and converts them against the input signature on every call, which for one message
took longer than running the graph itself. Here the concrete function Rasa traced for that
signature is called with tensors converted once: the same graph and the same outputs, bit for
bit (tests/test_concrete_prediction.py), about 1.5 ms less a turn for the two models.
Training is Rasa's own.
"""
from __future__ import annotations

import types
from typing import Any, Dict, Text, Tuple

import numpy as np
import tensorflow as tf
from keras.utils import tf_utils
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.nlu.selectors.response_selector import ResponseSelector
from rasa.shared.constants import DIAGNOSTIC_DATA
from rasa.utils.tensorflow.models import RasaModel


def predict_with_concrete_function(model: RasaModel, batch_in: Tuple[np.ndarray, ...]) -> Dict[Text, Any]:
    """RasaModel._rasa_predict, calling the traced graph directly once Rasa has traced it."""
    traced = model._tf_predict_step
    if model._run_eagerly or traced is None or not model.prepared_for_prediction:
        return RasaModel._rasa_predict(model, batch_in)
    signature = traced.input_signature[0]
    concrete = model.__dict__.get("_concrete_predict_step")
    if concrete is None:
        concrete = model._concrete_predict_step = traced.get_concrete_function(signature)
    tensors = [tf.convert_to_tensor(array, dtype=spec.dtype) for array, spec in zip(batch_in, signature, strict=True)]
    outputs = tf_utils.sync_to_numpy_or_python_type(concrete(tensors))
    if DIAGNOSTIC_DATA in outputs:
        outputs[DIAGNOSTIC_DATA] = model._empty_lists_to_none_in_dict(outputs[DIAGNOSTIC_DATA])
    return outputs


class _ConcretePrediction:
    @classmethod
    def _load(cls, *args: Any, **kwargs: Any) -> Any:
        component = super()._load(*args, **kwargs)
        if isinstance(component.model, RasaModel):
            component.model._rasa_predict = types.MethodType(predict_with_concrete_function, component.model)
        return component


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR],
    is_trainable=True,
)
class ConcreteDIETClassifier(_ConcretePrediction, DIETClassifier):
    """Rasa's DIETClassifier, predicting through its traced graph with tensors."""


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class ConcreteResponseSelector(_ConcretePrediction, ResponseSelector):
    """Rasa's ResponseSelector, predicting through its traced graph with tensors."""
