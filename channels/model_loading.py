"""Loading a trained DIET or ResponseSelector without tracing a training step it never takes.

Rasa 3.6 gives a TensorFlow model its variables at load time by fitting it on one example, as a
TensorFlow graph: tracing that training step (loss, gradients, the optimiser's update) was most
of the Rasa server's start-up, and the step's result is overwritten at once by the trained
weights. Here the one step runs eagerly; the trained weights are then read and prediction is
traced exactly as in Rasa, so the model predicts what Rasa's own load gives, bit for bit
(tests/test_model_loading.py). channels/handler.py installs it in the Rasa server.
"""
from typing import Any, Optional, Text

from rasa.utils.tensorflow.constants import RUN_EAGERLY
from rasa.utils.tensorflow.model_data import RasaModelData
from rasa.utils.tensorflow.models import RasaModel

RASAS_LOAD = RasaModel.load.__func__


def load_without_tracing_training(cls: type, model_file_name: Text, model_data_example: RasaModelData,
                                  predict_data_example: Optional[RasaModelData] = None,
                                  finetune_mode: bool = False, *args: Any, **kwargs: Any) -> RasaModel:
    config = kwargs.get("config") or {}
    if finetune_mode or config.get(RUN_EAGERLY):
        return RASAS_LOAD(cls, model_file_name, model_data_example, predict_data_example, finetune_mode,
                          *args, **kwargs)
    model = RASAS_LOAD(cls, model_file_name, model_data_example, None, False,
                       *args, **{**kwargs, "config": {**config, RUN_EAGERLY: True}})
    model.run_eagerly = False
    if isinstance(getattr(model, "config", None), dict):
        model.config[RUN_EAGERLY] = config.get(RUN_EAGERLY)
    if predict_data_example:
        model.run_inference(predict_data_example)  # traces prediction now, as Rasa's load does
    return model


RasaModel.load = classmethod(load_without_tracing_training)
