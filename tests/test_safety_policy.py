"""The policy that answers a crisis or emergency where no rule can, and adds the answer to a
question asked alongside a safety reply (components/safety_policy.py)."""
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.importers.importer import TrainingDataImporter

from components.safety_policy import SafetyPolicy, answer_alongside
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def domain():
    """The domain as training builds it, with the FAQ's retrieval action utter_faq."""
    importer = TrainingDataImporter.load_from_config(str(ROOT / "config.yml"), str(ROOT / "domain.yml"),
                                                     [str(ROOT / "data")])
    return importer.get_domain()


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


def parse(intent, selector_key="faq/side_effects", selector_confidence=0.9, model_intent=None):
    data = {
        "text": "…",
        "intent": {"name": intent, "confidence": 1.0},
        "response_selector": {"faq": {"response": {
            "intent_response_key": selector_key, "confidence": selector_confidence}}},
    }
    if model_intent:
        data["safety_net"] = {"intent": intent, "model_intent": {"name": model_intent, "confidence": 0.8}}
    return data


def said(intent, parse_data=None):
    return UserUttered("…", intent={"name": intent, "confidence": 1.0}, parse_data=parse_data)


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


def test_a_crisis_with_nothing_asked_alongside_is_followed_by_listening(policy, domain):
    events = [ActionExecuted("action_listen"), said("crisis", parse("crisis", "faq/suicidal_thoughts", 0.95)),
              ActionExecuted("utter_crisis")]
    assert predicted(policy, domain, events) == "action_listen"


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


def test_informational_crisis_question_also_gets_the_faq_answer():
    data = parse("crisis", "faq/suicidal_thoughts", 0.95, model_intent="faq")
    assert answer_alongside(data, 0.6) == "utter_faq/suicidal_thoughts"


def test_crisis_statement_gets_no_guessed_faq_answer():
    # The selector always names some topic; a crisis the model recognised itself gets no FAQ.
    data = parse("crisis", "faq/suicidal_thoughts", 0.95)
    assert answer_alongside(data, 0.6) is None
    assert answer_alongside(parse("crisis", model_intent="crisis"), 0.6) is None


def test_crisis_mixed_with_a_cost_question_gets_the_cost_answer_too():
    assert answer_alongside(parse("crisis", model_intent="ask_cost"), 0.6) == "utter_ask_cost"


def test_personal_medical_question_gets_general_information_when_the_topic_is_clear():
    assert answer_alongside(parse("ask_personal_medical_advice", "faq/staying_on_antidepressants", 0.9), 0.6) \
        == "utter_faq/staying_on_antidepressants"
    assert answer_alongside(parse("ask_personal_medical_advice", "faq/side_effects", 0.3), 0.6) is None


def test_other_intents_get_nothing_extra():
    assert answer_alongside(parse("faq"), 0.6) is None
    assert answer_alongside({}, 0.6) is None


@pytest.mark.parametrize("model_intent, answer", [("faq", "utter_faq"), ("ask_cost", "utter_ask_cost")])
def test_a_question_asked_alongside_a_crisis_is_answered_after_the_crisis_reply_then_it_listens(
        policy, domain, model_intent, answer):
    message = said("crisis", parse("crisis", "faq/suicidal_thoughts", 0.95, model_intent=model_intent))
    events = [ActionExecuted("action_listen"), message]
    assert predicted(policy, domain, events) == "utter_crisis"
    events.append(ActionExecuted("utter_crisis"))
    assert predicted(policy, domain, events) == answer
    events.append(ActionExecuted(answer))
    assert predicted(policy, domain, events) == "action_listen"


def test_inside_a_form_a_crisis_gets_its_answer_then_the_form_pauses(policy, domain):
    message = said("crisis", parse("crisis", "faq/suicidal_thoughts", 0.95, model_intent="faq"))
    events = [ActionExecuted("booking_form"), ActiveLoop("booking_form"), SlotSet("requested_slot", "full_name"),
              ActionExecuted("action_listen"), message, ActionExecuted("utter_crisis")]
    assert predicted(policy, domain, events) == "utter_faq"
    events.append(ActionExecuted("utter_faq"))
    assert predicted(policy, domain, events) == "action_deactivate_loop"


def test_a_personal_medical_question_gets_the_rules_reply_then_the_answer_then_carries_on(policy, domain):
    message = said("ask_personal_medical_advice", parse("ask_personal_medical_advice", "faq/side_effects", 0.9))
    events = [ActionExecuted("action_listen"), message]
    assert predicted(policy, domain, events) is None  # the rules reply
    events.append(ActionExecuted("utter_personal_medical_advice"))
    assert predicted(policy, domain, events) == "utter_faq"
    events.append(ActionExecuted("utter_faq"))
    assert predicted(policy, domain, events) == "action_listen"
    in_form = [ActionExecuted("booking_form"), ActiveLoop("booking_form"), SlotSet("requested_slot", "full_name"),
               *events]
    assert predicted(policy, domain, in_form) == "booking_form"


def test_a_personal_medical_question_with_no_clear_topic_is_left_to_the_rules(policy, domain):
    message = said("ask_personal_medical_advice", parse("ask_personal_medical_advice", "faq/side_effects", 0.3))
    events = [ActionExecuted("action_listen"), message, ActionExecuted("utter_personal_medical_advice")]
    assert predicted(policy, domain, events) is None
