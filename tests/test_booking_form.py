"""The booking form's extraction and validation, and its submission into a real SQLite file."""
import asyncio
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.booking_form import ActionAskBookingConfirmed, ValidateBookingForm
from actions.handoff import ActionCancelBooking, ActionSubmitBooking, contact_window
from clinic_core.clinic import load_clinic
from clinic_core.settings import CLINIC_FILE, load_settings
from clinic_core.storage import HandoffStore
from staff.sender import queue_new_notifications
from tests.conftest import ROOT

DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())
CLINIC = load_clinic(CLINIC_FILE)
FILLED = {"full_name": "Dana Whitaker", "contact_details": "+15035550147", "phone": "+15035550147",
          "email": None, "preferred_time": "weekday afternoons", "reason": "", "consent": True}


def tracker(text, intent="inform", requested_slot=None, slots=None, entities=None,
            faq_confidence=0.0, events=None):
    message = {"text": text, "intent": {"name": intent, "confidence": 0.95}, "entities": entities or [],
               "response_selector": {"faq": {"response": {"confidence": faq_confidence}}}}
    user_event = {"event": "user", "text": text, "parse_data": message}
    return Tracker("visitor-1", {"requested_slot": requested_slot, **(slots or {})}, message,
                   (events or []) + [user_event], False, None, {"name": "booking_form"}, "action_listen")


def run(action, tracker_):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker_, DOMAIN))
    slots = {event["name"]: event["value"] for event in events if event.get("event") == "slot"}
    return slots, [message.get("response") for message in dispatcher.messages]


def validate(text, requested_slot, **kwargs):
    return run(ValidateBookingForm(), tracker(text, requested_slot=requested_slot, **kwargs))


# --- names ------------------------------------------------------------------------
@pytest.mark.parametrize("text, name", [
    ("Dana Whitaker", "Dana Whitaker"),
    ("my name is Priya Shah", "Priya Shah"),
    ("  kevin   o'brien. ", "kevin o'brien"),
    ("it's Fatima Al-Hassan", "Fatima Al-Hassan"),
])
def test_a_name_is_taken_and_tidied(text, name):
    slots, responses = validate(text, "full_name")
    assert slots["full_name"] == name
    assert responses == []


def test_a_name_the_model_mistakes_for_a_question_is_still_a_name():
    slots, _ = validate("Will Doe", "full_name", intent="faq", faq_confidence=0.25)
    assert slots["full_name"] == "Will Doe"


@pytest.mark.parametrize("text, intent", [
    ("how long does an infusion take?", "faq"),
    ("what does it cost", "ask_cost"),
    ("never mind", "cancel"),
])
def test_a_question_or_cancel_is_not_taken_as_the_name(text, intent):
    slots, responses = validate(text, "full_name", intent=intent, faq_confidence=0.9)
    assert "full_name" not in slots  # the form is rejected and a rule answers
    assert responses == []


@pytest.mark.parametrize("text", ["yes", "415 555 0132", "maria@example.com", "<b>x</b>", "?!"])
def test_a_reply_that_is_not_a_name_is_asked_again(text):
    slots, responses = validate(text, "full_name")
    assert slots["full_name"] is None
    assert responses == ["utter_invalid_full_name"]


def test_only_the_requested_detail_is_filled():
    slots, _ = validate("Dana Whitaker", "preferred_time")
    assert "full_name" not in slots
    assert slots["preferred_time"] == "Dana Whitaker"


# --- contact details --------------------------------------------------------------
@pytest.mark.parametrize("text, phone, email", [
    ("(503) 555-0147", "+15035550147", None),
    ("+1 312 555 0144", "+13125550144", None),
    ("1-800-555-0199", "+18005550199", None),
    ("email me at Alex.Chen@Example.COM", None, "Alex.Chen@example.com"),
    ("917.555.0123 or jdoe@example.net", "+19175550123", "jdoe@example.net"),
])
def test_phone_and_email_are_normalised(text, phone, email):
    slots, responses = validate(text, "contact_details")
    assert (slots["phone"], slots["email"]) == (phone, email)
    assert slots["contact_details"] == ", ".join(value for value in (phone, email) if value)
    assert responses == []


def test_contact_details_count_whatever_the_intent_model_thought():
    slots, _ = validate("my email is bob@gmail.com", "contact_details", intent="ask_clinic_details")
    assert slots["email"] == "bob@gmail.com"


@pytest.mark.parametrize("text, response", [
    ("+44 20 7946 0958", "utter_invalid_phone_not_us"),
    ("bob@gmail", "utter_invalid_email"),
    ("555-0100", "utter_invalid_contact_details"),
    ("i'd rather not say", "utter_invalid_contact_details"),
])
def test_bad_contact_details_get_a_clear_answer(text, response):
    slots, responses = validate(text, "contact_details")
    assert slots["contact_details"] is None and slots["phone"] is None and slots["email"] is None
    assert responses == [response]


# --- preferred time and reason ------------------------------------------------------
def test_preferred_time_is_free_text():
    slots, _ = validate("weekday mornings before 10", "preferred_time", intent="greet")
    assert slots["preferred_time"] == "weekday mornings before 10"


def test_an_overlong_preferred_time_is_asked_again():
    slots, responses = validate("mornings " * 40, "preferred_time")
    assert slots["preferred_time"] is None and responses == ["utter_invalid_preferred_time"]


@pytest.mark.parametrize("text, intent", [("skip", "inform"), ("/deny", "deny"), ("nothing", "inform")])
def test_the_reason_can_be_skipped(text, intent):
    slots, _ = validate(text, "reason", intent=intent)
    assert slots["reason"] == ""


def test_a_question_is_a_fine_reason():
    slots, _ = validate("how much does a course cost?", "reason", intent="ask_cost")
    assert slots["reason"] == "how much does a course cost?"


def test_cancel_at_the_reason_step_is_not_a_reason():
    slots, _ = validate("cancel", "reason", intent="cancel")
    assert "reason" not in slots


# --- consent and confirmation ----------------------------------------------------------
def test_consent_yes():
    slots, _ = validate("/affirm", "consent", intent="affirm")
    assert slots["consent"] is True


def test_consent_no_ends_the_form():
    slots, _ = validate("no thanks", "consent", intent="deny")
    assert slots["consent"] is False and slots["requested_slot"] is None


def test_neither_yes_nor_no_is_asked_again():
    slots, responses = validate("maybe later", "consent", intent="out_of_scope")
    assert slots["consent"] is None and responses == ["utter_invalid_yes_no"]


def test_confirming_the_summary():
    slots, _ = validate("yes send it", "booking_confirmed", intent="affirm", slots=FILLED)
    assert slots["booking_confirmed"] is True


def test_a_change_button_clears_that_detail_only():
    slots, _ = validate('/correct_booking_field{"booking_field": "preferred_time"}', "booking_confirmed",
                        intent="correct_booking_field", slots=FILLED,
                        entities=[{"entity": "booking_field", "value": "preferred_time"}])
    assert slots == {"preferred_time": None, "booking_confirmed": None}


def test_a_typed_correction_names_the_detail():
    slots, _ = validate("the email has a typo", "booking_confirmed", intent="correct_booking_field",
                        slots=FILLED)
    assert slots["contact_details"] is None and slots["phone"] is None and slots["email"] is None
    assert slots["booking_confirmed"] is None and "full_name" not in slots


def test_a_plain_no_asks_which_detail_to_change():
    slots, _ = validate("no", "booking_confirmed", intent="deny", slots=FILLED)
    assert slots == {"booking_confirmed": None}
    _, responses = run(ActionAskBookingConfirmed(),
                       tracker("no", intent="deny", requested_slot="booking_confirmed", slots=FILLED))
    assert responses == ["utter_ask_booking_field"]


@pytest.mark.parametrize("reason, response", [("", "utter_booking_summary_no_reason"),
                                              ("side effects", "utter_booking_summary")])
def test_the_summary_shows_what_was_given(reason, response):
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionAskBookingConfirmed().run(
        dispatcher, tracker("/affirm", intent="affirm", requested_slot="booking_confirmed",
                            slots={**FILLED, "reason": reason}), DOMAIN))
    [message] = dispatcher.messages
    assert message["response"] == response
    assert message["full_name"] == "Dana Whitaker" and message["contact_details"] == "+15035550147"


# --- when the team will be in touch ------------------------------------------------------
LA = ZoneInfo(CLINIC.timezone)


@pytest.mark.parametrize("local_time, response, values", [
    (datetime(2026, 11, 23, 10, 0, tzinfo=LA), "utter_booking_saved_open", {}),  # Monday, open
    (datetime(2026, 11, 23, 7, 30, tzinfo=LA), "utter_booking_saved_later_today", {"opening_time": "9:00 AM"}),
    (datetime(2026, 11, 23, 18, 0, tzinfo=LA), "utter_booking_saved_tomorrow", {"opening_time": "9:00 AM"}),
    (datetime(2026, 11, 27, 16, 30, tzinfo=LA), "utter_booking_saved_later",  # Friday after closing
     {"opening_day": "Monday", "opening_time": "9:00 AM"}),
    (datetime(2026, 11, 29, 12, 0, tzinfo=LA), "utter_booking_saved_tomorrow", {"opening_time": "9:00 AM"}),
])
def test_contact_window_follows_the_clinic_hours(local_time, response, values):
    assert contact_window(CLINIC, local_time) == (response, values)


def test_contact_window_uses_the_clinic_time_zone():
    # 17:30 UTC on a Monday is 9:30 AM in Los Angeles: open.
    monday_utc = datetime(2026, 11, 23, 17, 30, tzinfo=ZoneInfo("UTC"))
    assert contact_window(CLINIC, monday_utc)[0] == "utter_booking_saved_open"


def test_a_clinic_with_no_opening_hours_still_confirms():
    closed = replace(CLINIC, hours={day: None for day in CLINIC.hours})
    assert contact_window(closed, datetime(2026, 11, 23, 10, tzinfo=LA)) == ("utter_booking_saved_no_hours", {})


# --- submission ---------------------------------------------------------------------------
CONVERSATION = [
    {"event": "user", "text": "an earlier session", "parse_data": {}},
    {"event": "session_started"},
    {"event": "user", "text": "does ketamine help with anxiety?", "parse_data": {}},
    {"event": "user", "text": "/book_consultation", "parse_data": {}},
    {"event": "user", "text": "Dana Whitaker", "parse_data": {}},
]


@pytest.fixture
def database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'handoffs.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    for name in ("STAFF_EMAIL", "SMTP_HOST", "SMTP_SECURITY", "STAFF_WEBHOOK_URL", "NOTIFY_EMAIL_INCLUDE_DETAILS",
                 "NOTIFY_WEBHOOK_INCLUDE_DETAILS"):
        monkeypatch.delenv(name, raising=False)
    return url


def submit(slots):
    return run(ActionSubmitBooking(), tracker("/affirm", intent="affirm", slots=slots, events=CONVERSATION))


def test_a_confirmed_booking_is_stored_and_the_form_reset(database, monkeypatch):
    monkeypatch.setenv("STAFF_EMAIL", "team@clinic.test")  # the action server ignores these now
    monkeypatch.setenv("SMTP_HOST", "localhost")
    slots, responses = submit({**FILLED, "reason": "anxiety", "booking_confirmed": True})
    [row] = HandoffStore(database).list_handoffs()
    assert (row["full_name"], row["phone"], row["email"], row["preferred_time"], row["reason"]) == (
        "Dana Whitaker", "+15035550147", None, "weekday afternoons", "anxiety")
    assert row["consent"] is True and row["status"] == "new" and row["conversation_id"] == "visitor-1"
    # This conversation's typed messages only: no earlier session, no button payloads.
    assert row["visitor_messages"] == ["does ketamine help with anxiety?", "Dana Whitaker"]
    # One outbox event; the sender renders it, from its own settings.
    store = HandoffStore(database)
    assert store.notifications() == [] and store.unqueued_event_count() == 1
    sender_settings = load_settings({"DATABASE_URL": database, "STAFF_EMAIL": "team@clinic.test",
                                     "SMTP_HOST": "localhost"})
    assert queue_new_notifications(store, sender_settings) == 1
    [notification] = store.notifications()
    assert notification["channel"] == "email" and notification["status"] == "pending"
    assert notification["subject"] == f"New booking request #{row['id']}"
    assert f"/handoffs/{row['id']}" in notification["body"] and "weekday afternoons" in notification["body"]
    # By default staff notifications say nothing about who the visitor is (NOTIFY_EMAIL_INCLUDE_DETAILS).
    assert not any(detail in notification["subject"] + notification["body"]
                   for detail in ("Dana", "Whitaker", "5035550147", "anxiety"))
    assert responses[0].startswith("utter_booking_saved_")
    assert all(value is None for value in slots.values()) and "full_name" in slots


@pytest.mark.parametrize("language, stored", [("es", "es"), (None, "en"), ("fr", "en"), ("<es>", "en")])
def test_the_handoff_records_the_conversations_language_if_the_assistant_speaks_it(database, language, stored):
    submit({**FILLED, "booking_confirmed": True, "language": language})
    [row] = HandoffStore(database).list_handoffs()
    assert row["language"] == stored


def test_with_no_channel_configured_the_handoff_is_still_stored(database):
    submit({**FILLED, "booking_confirmed": True})
    assert len(HandoffStore(database).list_handoffs()) == 1
    assert HandoffStore(database).notifications() == []


def test_a_sender_with_a_webhook_gives_it_its_own_notification(database):
    submit({**FILLED, "booking_confirmed": True})
    store = HandoffStore(database)
    queue_new_notifications(store, load_settings({"DATABASE_URL": database, "STAFF_WEBHOOK_URL": "http://localhost:9/hook"}))
    assert [n["channel"] for n in store.notifications()] == ["webhook"]


def test_without_consent_nothing_is_stored(database):
    slots, responses = submit({**FILLED, "consent": False})
    assert responses == ["utter_consent_declined"]
    assert HandoffStore(database).list_handoffs() == []
    assert slots["full_name"] is None


def test_a_failed_write_tells_the_visitor_to_call_and_logs_no_details(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database's folder should be")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{blocker / 'handoffs.db'}")
    slots, responses = submit({**FILLED, "booking_confirmed": True})
    assert responses == ["utter_booking_failed"]
    assert slots == {"booking_confirmed": None}  # the details stay for another try
    assert "Could not store the handoff" in caplog.text
    assert "Traceback" not in caplog.text  # a traceback can carry the SQL and its values
    for detail in (FILLED["full_name"], FILLED["contact_details"]):
        assert detail not in caplog.text


def test_cancel_forgets_the_details():
    slots, responses = run(ActionCancelBooking(), tracker("never mind", intent="cancel", slots=FILLED))
    assert responses == ["utter_booking_cancelled"]
    assert set(slots) >= set(FILLED) and all(value is None for value in slots.values())


# --- issue 13, item 11: the submission trusts no slot -----------------------------------------
@pytest.mark.parametrize("changed", [
    {"phone": None, "email": None},  # what a crafted correction of "phone" left behind
    {"phone": "12345"}, {"phone": "+15035550147", "email": "not-an-email"}, {"email": ["a@b.co"]},
    {"full_name": None}, {"full_name": "x" * 101}, {"preferred_time": ""}, {"preferred_time": None},
    {"reason": "r" * 1001}, {"consent": None}, {"consent": "yes"},
])
def test_a_submission_with_any_detail_invalid_stores_nothing(database, changed):
    slots, responses = submit({**FILLED, "booking_confirmed": True, **changed})
    assert responses in (["utter_booking_incomplete"], ["utter_consent_declined"])
    assert HandoffStore(database).list_handoffs() == []
    assert all(value is None for value in slots.values()) and "phone" in slots


def test_an_email_only_booking_is_still_stored(database):
    submit({**FILLED, "phone": None, "contact_details": "dana@example.com", "email": "dana@example.com",
            "booking_confirmed": True})
    [row] = HandoffStore(database).list_handoffs()
    assert (row["phone"], row["email"]) == (None, "dana@example.com")


def crafted_correction(field):
    return tracker(f'/correct_booking_field{{"booking_field":"{field}"}}', intent="correct_booking_field",
                   requested_slot="booking_confirmed", slots=FILLED,
                   entities=[{"entity": "booking_field", "value": field}])


@pytest.mark.parametrize("field", ["consent", "booking_confirmed", "requested_slot"])
def test_a_correction_naming_a_slot_without_a_button_changes_nothing(field):
    changes = ValidateBookingForm().validate_booking_confirmed(
        False, CollectingDispatcher(), crafted_correction(field), DOMAIN)
    assert changes == {"booking_confirmed": None}


@pytest.mark.parametrize("field", ["phone", "email"])
def test_a_crafted_phone_or_email_correction_asks_for_the_contact_details_again(field):
    # "phone" in the payload reads as the contact details: all three are cleared together,
    # so the form asks for them again (it never leaves a contact detail without the others).
    changes = ValidateBookingForm().validate_booking_confirmed(
        False, CollectingDispatcher(), crafted_correction(field), DOMAIN)
    assert changes == {"contact_details": None, "phone": None, "email": None, "booking_confirmed": None}
