"""Loading the trained model without tracing a training step (channels/model_loading.py) gives a
model that predicts exactly what Rasa's own load gives, traced for prediction as Rasa leaves it."""
import asyncio
import json
import os
import subprocess
import sys

from rasa.core.agent import Agent
from rasa.utils.tensorflow.models import RasaModel

from channels import model_loading
from scripts.nlu_eval import heldout_path, load_examples
from tests.conftest import MODEL, ROOT

# Not the empty message: the channels answer it themselves, and Rasa's parse fails on it either way.
MESSAGES = [text for text, _ in load_examples(heldout_path("dev"))[:60]] + ["ok", "a" * 2000]


def parses(agent):
    async def parse_all():
        return [await agent.parse_message(text) for text in MESSAGES]
    return json.dumps([(p["intent_ranking"], p.get("response_selector")) for p in asyncio.run(parse_all())],
                      sort_keys=True, default=str)


def loaded_models(agent):
    return [node._component.model for node in agent.processor.graph_runner._instantiated_nodes.values()
            if getattr(getattr(node, "_component", None), "model", None) is not None
            and isinstance(node._component.model, RasaModel)]


def test_the_rasa_server_loads_models_the_fast_way():
    # A fresh interpreter: this module's own import of model_loading must not decide the test.
    code = ("import channels.handler; from rasa.utils.tensorflow.models import RasaModel; "
            "print(RasaModel.__dict__['load'].__func__.__name__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.stdout.split()[-1:] == ["load_without_tracing_training"], result.stderr[-2000:]


def test_the_model_predicts_bit_for_bit_what_rasas_own_load_gives(monkeypatch):
    fast = Agent.load(str(MODEL))
    models = loaded_models(fast)
    assert len(models) == 2  # DIET and the ResponseSelector
    assert all(model.run_eagerly is False and model._tf_predict_step is not None for model in models)
    with monkeypatch.context() as patch:
        patch.setattr(RasaModel, "load", classmethod(model_loading.RASAS_LOAD))
        rasas = Agent.load(str(MODEL))
    assert parses(fast) == parses(rasas)
