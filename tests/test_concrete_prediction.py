"""DIET and the ResponseSelector calling their traced graph with tensors
(components/concrete_prediction.py) predict bit for bit what Rasa's own call gives."""
from rasa.core.agent import Agent
from rasa.utils.tensorflow.models import RasaModel

from components.concrete_prediction import ConcreteDIETClassifier, ConcreteResponseSelector
from tests.conftest import MODEL
from tests.test_model_loading import parses  # dev messages, "ok" and the longest a message gets


def classifiers(agent):
    return [node._component for node in agent.processor.graph_runner._instantiated_nodes.values()
            if isinstance(getattr(node, "_component", None), (ConcreteDIETClassifier, ConcreteResponseSelector))]


def test_the_trained_model_predicts_through_the_concrete_graph():
    agent = Agent.load(str(MODEL))
    found = classifiers(agent)
    assert sorted(type(component).__name__ for component in found) == ["ConcreteDIETClassifier",
                                                                       "ConcreteResponseSelector"]
    parses(agent)
    assert all(component.model.__dict__.get("_concrete_predict_step") is not None for component in found)


def test_the_concrete_graph_predicts_what_rasas_own_call_gives():
    agent = Agent.load(str(MODEL))
    concrete = parses(agent)
    for component in classifiers(agent):
        # Rasa's own prediction call, through the same traced function.
        component.model._rasa_predict = RasaModel._rasa_predict.__get__(component.model)
    assert parses(agent) == concrete
