"""The policy that answers a crisis or emergency where no rule can."""
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from components.safety_policy import SafetyPolicy
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def domain():
    return Domain.load(str(ROOT / "domain.yml"))


@pytest.fixture
def policy(tmp_path):
    return SafetyPolicy.create(
        SafetyPolicy.get_default_config(), LocalModelStorage(tmp_path), Resource("safety"),
        ExecutionContext(GraphSchema({}), "test"),
    )


def predicted(policy, domain, events):
    tracker = DialogueStateTracker.from_events("visitor", events)
    prediction = policy.predict_action_probabilities(tracker, domain)
    if max(prediction.probabilities) == 0.0:
        return None
    return domain.action_names_or_texts[prediction.max_confidence_index]


def said(intent):
    return UserUttered("…", intent={"name": intent, "confidence": 1.0})


def test_outranks_rule_policy(policy):
    assert policy.priority > 6


@pytest.mark.parametrize("intent, response", [("crisis", "utter_crisis"),
                                              ("medical_emergency", "utter_medical_emergency")])
def test_answers_an_unanswered_safety_message(policy, domain, intent, response):
    events = [ActionExecuted("action_listen"), said(intent)]
    assert predicted(policy, domain, events) == response


def test_answers_when_the_session_start_lost_its_events_then_listens(policy, domain):
    events = [ActionExecuted("action_session_start"), said("crisis")]
    assert predicted(policy, domain, events) == "utter_crisis"
    events.append(ActionExecuted("utter_crisis"))
    assert predicted(policy, domain, events) == "action_listen"


def test_leaves_the_rest_of_a_normal_turn_to_the_rules(policy, domain):
    events = [ActionExecuted("action_listen"), said("crisis"), ActionExecuted("utter_crisis")]
    assert predicted(policy, domain, events) is None


def test_abstains_on_other_messages(policy, domain):
    assert predicted(policy, domain, [ActionExecuted("action_listen"), said("faq")]) is None
    assert predicted(policy, domain, []) is None


@pytest.mark.parametrize("intent, response", [("crisis", "utter_crisis"),
                                              ("medical_emergency", "utter_medical_emergency")])
def test_inside_a_form_answers_then_pauses_the_form_then_listens(policy, domain, intent, response):
    events = [ActionExecuted("booking_form"), ActiveLoop("booking_form"), SlotSet("full_name", "Jordan Ellis"),
              SlotSet("requested_slot", "contact_details"), ActionExecuted("action_listen"), said(intent)]
    assert predicted(policy, domain, events) == response
    events.append(ActionExecuted(response))
    assert predicted(policy, domain, events) == "action_deactivate_loop"
    events += [ActionExecuted("action_deactivate_loop"), ActiveLoop(None), SlotSet("requested_slot", None)]
    assert predicted(policy, domain, events) == "action_listen"
    # The details given so far are kept, so asking to book again resumes the form.
    assert DialogueStateTracker.from_events("visitor", events, domain.slots).get_slot("full_name") == "Jordan Ellis"
