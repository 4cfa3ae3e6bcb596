"""Custom actions, with the real clinic file and real tracker structures."""
import asyncio
from datetime import time

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted
from rasa_sdk.executor import CollectingDispatcher

from actions.safety import ActionAnswerQuestionAfterSafetyReply, answer_alongside
from actions.session import ActionSessionStart
from clinic_core.clinic import ClinicConfigError, load_clinic
from clinic_core.settings import CLINIC_FILE

CLINIC_YAML = """
name: Test Clinic
phone: "(555) 000-1111"
email: hello@test.example
address: 1 Test Road
website: https://test.example
timezone: America/New_York
hours:
  monday: "08:30-17:00"
  tuesday: "08:30-17:00"
  wednesday: "08:30-17:00"
  thursday: "08:30-17:00"
  friday: "08:30-12:00"
  saturday: closed
"""


def tracker_with(parse_data):
    return Tracker("visitor", {}, parse_data, [], False, None, None, "action_listen")


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


def test_clinic_file_of_the_project_loads():
    clinic = load_clinic(CLINIC_FILE)
    assert set(clinic.slots()) == {"clinic_name", "clinic_phone", "clinic_email", "clinic_address",
                                   "clinic_website", "clinic_hours"}
    assert all(clinic.slots().values())


def test_fill_puts_the_clinics_details_into_a_response_text():
    clinic = load_clinic(CLINIC_FILE)
    text = clinic.fill("Call {clinic_phone} at {clinic_name}; {other} stays.")
    assert text == f"Call {clinic.phone} at {clinic.name}; {{other}} stays."


def test_hours_are_summarised_by_runs_of_days(tmp_path):
    path = tmp_path / "clinic.yml"
    path.write_text(CLINIC_YAML)
    clinic = load_clinic(path)
    assert clinic.hours["monday"] == (time(8, 30), time(17, 0))
    assert clinic.hours["sunday"] is None  # a day left out is closed
    assert clinic.hours_summary() == "Mon-Thu 8:30 AM-5:00 PM, Fri 8:30 AM-12:00 PM, Sat-Sun closed"


@pytest.mark.parametrize("broken, message", [
    (CLINIC_YAML.replace("name: Test Clinic\n", ""), "missing name"),
    (CLINIC_YAML.replace('"08:30-12:00"', '"noon"'), "hours.friday"),
    (CLINIC_YAML.replace('"08:30-12:00"', '"12:00-08:30"'), "before closing"),
    (CLINIC_YAML.replace("saturday", "caturday"), "unknown days"),
    (CLINIC_YAML.replace("America/New_York", "Eastern"), "timezone: unknown time zone 'Eastern'"),
    (CLINIC_YAML.replace("https://test.example", "test dot example"), "website"),
    (CLINIC_YAML.split("hours:")[0] + "hours: weekdays\n", "hours: expected one line per day"),
    ("name: [unclosed", "not valid YAML"),
    ("- just a list", "expected name, phone"),
])
def test_a_broken_clinic_file_is_explained(tmp_path, broken, message):
    path = tmp_path / "clinic.yml"
    path.write_text(broken)
    with pytest.raises(ClinicConfigError, match=message):
        load_clinic(path)


def test_missing_clinic_file_is_explained(tmp_path):
    with pytest.raises(ClinicConfigError, match="not found"):
        load_clinic(tmp_path / "nope.yml")


def test_session_start_fills_clinic_slots_and_shows_the_frame_once():
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionSessionStart().run(dispatcher, tracker_with({}), {}))
    assert events[0] == SessionStarted()
    assert events[-1] == ActionExecuted("action_listen")
    slots = {event["name"]: event["value"] for event in events if event["event"] == "slot"}
    assert slots == load_clinic(CLINIC_FILE).slots()
    assert [message["response"] for message in dispatcher.messages] == ["utter_frame"]
    assert dispatcher.messages[0]["clinic_name"] == slots["clinic_name"]


def test_the_frame_states_the_conversation_retention_the_purge_uses(monkeypatch):
    monkeypatch.setenv("CONVERSATION_RETENTION_DAYS", "14")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionSessionStart().run(dispatcher, tracker_with({}), {}))
    assert dispatcher.messages[0]["conversation_retention_days"] == 14


@pytest.mark.parametrize("marked", [True, False])
def test_a_session_begun_without_the_action_server_keeps_its_slots_when_it_starts_again(marked):
    # channels/handler.py marks the session it starts while the action server is down.
    began = {"event": "session_started", "metadata": {"started_without_action_server": True} if marked else None}
    slots = {"crisis_support_shown": True, "requested_slot": "full_name", "clinic_phone": "(555) 000-0000"}
    tracker = Tracker("visitor", slots, {}, [began, {"event": "action", "name": "action_listen"}],
                      False, None, None, "action_listen")
    events = asyncio.run(ActionSessionStart().run(CollectingDispatcher(), tracker, {}))
    set_slots = {event["name"]: event["value"] for event in events if event["event"] == "slot"}
    assert ("crisis_support_shown" in set_slots) is marked
    assert "requested_slot" not in set_slots
    assert set_slots["clinic_phone"] == load_clinic(CLINIC_FILE).phone  # always from clinic.yml


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


def test_action_sends_the_chosen_response_by_name():
    dispatcher = CollectingDispatcher()
    tracker = tracker_with(parse("crisis", "faq/suicidal_thoughts", 0.95, model_intent="faq"))
    events = asyncio.run(ActionAnswerQuestionAfterSafetyReply().run(dispatcher, tracker, {}))
    assert events == []
    assert [message["response"] for message in dispatcher.messages] == ["utter_faq/suicidal_thoughts"]
