"""A booking end to end over REST: the real model and servers, the outbox sender, a real SMTP
server and the staff inbox, exactly as `make run` starts them."""
import time
import uuid

import pytest
import requests
import yaml

from clinic_core.storage import HandoffStore
from tests.conftest import ROOT
from tests.test_rest import CLINIC, say, texts

DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())["responses"]
FAQ_ANSWERS = [variants[0] for variants in
               yaml.safe_load((ROOT / "data/responses/faq.yml").read_text())["responses"].values()]


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return False


def test_a_booking_is_stored_emailed_and_listed_in_the_inbox(stack):
    sender = f"booking-{uuid.uuid4()}"

    def ask(message):
        return " ".join(texts(say(stack.rasa_port, sender, message)))

    assert DOMAIN["utter_ask_full_name"][0]["text"] in ask("hi, i'd like to book a consultation")
    assert DOMAIN["utter_ask_contact_details"][0]["text"] in ask("Dana Whitaker")
    assert DOMAIN["utter_ask_preferred_time"][0]["text"] in ask("(503) 555-0147 or Dana.W@Example.com")
    assert DOMAIN["utter_ask_reason"][0]["text"] in ask("weekday afternoons")
    assert CLINIC.fill(DOMAIN["utter_ask_consent"][0]["text"]) in ask("i'd like to know more about the side effects")
    summary = ask("yep, looks right")
    assert "Dana Whitaker" in summary and "+15035550147, Dana.W@example.com" in summary
    confirmation = ask("yes, send it")
    assert "Thank you, Dana Whitaker" in confirmation and CLINIC.name in confirmation

    [row] = [row for row in HandoffStore(stack.database_url).list_handoffs() if row["conversation_id"] == sender]
    assert (row["phone"], row["email"], row["preferred_time"], row["status"]) == (
        "+15035550147", "Dana.W@example.com", "weekday afternoons", "new")
    assert row["reason"] == "i'd like to know more about the side effects"
    assert row["visitor_messages"][0] == "hi, i'd like to book a consultation"

    subject = f"New booking request #{row['id']}"

    def email_arrived():
        return any(message["Subject"] == subject for _, message in stack.mailbox.messages)

    assert wait_for(email_arrived), "the sender did not deliver the staff email"
    [(_, email)] = [(to, message) for to, message in stack.mailbox.messages if message["Subject"] == subject]
    assert f"{stack.inbox_url}/handoffs/{row['id']}" in email.get_payload()
    assert "weekday afternoons" in email.get_payload()
    # Minimal by default (NOTIFY_EMAIL_INCLUDE_DETAILS off): nothing of who the visitor is or what
    # they wrote leaves in the email, headers included; staff read it in the inbox.
    raw = email.as_string().lower()
    assert [detail for detail in ("dana", "whitaker", "5035550147", "555-0147", "dana.w@example.com",
                                  "side effects", "book a consultation") if detail in raw] == []

    inbox = requests.Session()
    assert "Dana Whitaker" not in inbox.get(f"{stack.inbox_url}/", timeout=10).text  # signed out
    signed_in = inbox.post(f"{stack.inbox_url}/login", timeout=10,
                           data={"username": stack.inbox_username, "password": stack.inbox_password})
    assert signed_in.status_code == 200 and "Dana Whitaker" in signed_in.text
    details = inbox.get(f"{stack.inbox_url}/handoffs/{row['id']}", timeout=10).text
    assert "know more about the side effects" in details and "weekday afternoons" in details


# Names the intent model reads as an FAQ, a "no", a greeting or nothing at all.
@pytest.mark.parametrize("name", ["Rose Hill", "Will Doe", "Sam Rivera", "Kate Sessions", "Noah Kim",
                                  "Aisha Bello", "Jordan Ellis", "my name is Luis Ortega", "ok. it's Priya Shah"])
def test_the_form_takes_any_name_whatever_the_intent_model_thinks(stack, name):
    sender = f"name-{uuid.uuid4()}"
    say(stack.rasa_port, sender, "i'd like to book a consultation")
    replies = " ".join(texts(say(stack.rasa_port, sender, name)))
    assert DOMAIN["utter_ask_contact_details"][0]["text"] in replies
    assert not any(CLINIC.fill(answer["text"]) in replies for answer in FAQ_ANSWERS)


def test_cancelling_stores_nothing(stack):
    sender = f"cancel-{uuid.uuid4()}"
    say(stack.rasa_port, sender, "could a person from the clinic ring me")
    say(stack.rasa_port, sender, "Sam Rivera")
    replies = texts(say(stack.rasa_port, sender, "actually never mind, forget it"))
    assert CLINIC.fill(DOMAIN["utter_booking_cancelled"][0]["text"]) in replies
    assert not [row for row in HandoffStore(stack.database_url).list_handoffs() if row["conversation_id"] == sender]


def test_a_crisis_inside_the_form_pauses_it_and_keeps_the_details(stack):
    sender = f"crisis-form-{uuid.uuid4()}"
    say(stack.rasa_port, sender, "id like to get on the schedule please")
    say(stack.rasa_port, sender, "Jordan Ellis")
    replies = texts(say(stack.rasa_port, sender, "i can't do this anymore, i want to kill myself"))
    assert DOMAIN["utter_crisis"][0]["text"] in replies
    assert DOMAIN["utter_ask_contact_details"][0]["text"] not in " ".join(replies)  # no form question now
    resumed = " ".join(texts(say(stack.rasa_port, sender, "/talk_to_human")))
    assert DOMAIN["utter_ask_contact_details"][0]["text"] in resumed  # the name was kept
