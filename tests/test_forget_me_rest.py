"""A visitor's "forget me" end to end over REST: the real model and servers, the tracker database
they write (the stack's own file)."""
import sqlite3
import uuid

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_rest import CLINIC, FRAME, say, texts

DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())["responses"]
ASK = CLINIC.fill(DOMAIN["utter_ask_forget_conversation"][0]["text"])
FORGOTTEN = DOMAIN["utter_conversation_forgotten"][0]["text"]
CANCELLED = DOMAIN["utter_forget_cancelled"][0]["text"]
YES_OR_NO = DOMAIN["utter_invalid_yes_no"][0]["text"]


def button(replies, title):
    """The payload of the button the widget shows with this title."""
    [payload] = [choice["payload"] for reply in replies for choice in reply.get("buttons", [])
                 if choice["title"] == title]
    return payload


def stored(stack, sender):
    """The conversation's events as stored, each row's JSON text."""
    with sqlite3.connect(stack.tracker_db) as connection:
        return [data for (data,) in connection.execute("SELECT data FROM events WHERE sender_id = ?", (sender,))]


@pytest.fixture
def sender():
    return f"forget-{uuid.uuid4()}"


def test_forget_me_asks_first_and_a_yes_deletes_the_whole_conversation(stack, sender):
    other = f"stays-{uuid.uuid4()}"
    say(stack.rasa_port, other, "what does a typical infusion feel like")
    say(stack.rasa_port, sender, "can it make my blood pressure go up")
    asked = say(stack.rasa_port, sender, "could you erase everything we've talked about so far")
    assert ASK in texts(asked)
    assert any("blood pressure" in data for data in stored(stack, sender))

    done = say(stack.rasa_port, sender, button(asked, "Yes, delete it"))
    assert FORGOTTEN in texts(done)
    assert {"clear_transcript": True} in [reply.get("custom") for reply in done]  # the widget wipes its copy
    assert stored(stack, sender) == []  # every event, the turn that deleted them included
    assert stored(stack, other)

    # The same id again is a new conversation, with nothing of the old one.
    again = texts(say(stack.rasa_port, sender, "one more thing, how long is each appointment"))
    assert again[0] == FRAME
    assert not any("blood pressure" in data or "erase everything" in data for data in stored(stack, sender))


def test_a_no_keeps_the_conversation(stack, sender):
    asked = say(stack.rasa_port, sender, "hmm can you wipe what i typed in this chat")
    assert ASK in texts(asked)
    assert CANCELLED in texts(say(stack.rasa_port, sender, button(asked, "No, keep it")))
    assert any("wipe what i typed" in data for data in stored(stack, sender))


def test_details_typed_at_the_question_get_a_polite_request_for_a_yes_or_no(stack, sender):
    assert ASK in texts(say(stack.rasa_port, sender, "i'd want my messages here removed please"))
    replies = say(stack.rasa_port, sender, "my number's 971 555 0122")
    assert texts(replies)[-2:] == [YES_OR_NO, ASK]
    assert CANCELLED in texts(say(stack.rasa_port, sender, button(replies, "No, keep it")))
    assert stored(stack, sender)


def test_a_crisis_message_never_gets_the_forget_question(stack, sender):
    replies = texts(say(stack.rasa_port, sender, "wipe this chat, i'm going to end my life tonight"))
    assert DOMAIN["utter_crisis"][0]["text"] in replies and ASK not in replies


def test_a_crisis_at_the_question_gets_the_crisis_reply_and_deletes_nothing(stack, sender):
    assert ASK in texts(say(stack.rasa_port, sender, "is it possible to clear out our conversation"))
    replies = texts(say(stack.rasa_port, sender, "honestly i just want to kill myself"))
    assert DOMAIN["utter_crisis"][0]["text"] in replies and FORGOTTEN not in replies
    assert stored(stack, sender)


def test_forget_me_inside_the_booking_form_stops_the_form_first(stack, sender):
    assert DOMAIN["utter_ask_full_name"][0]["text"] in texts(
        say(stack.rasa_port, sender, "hi, i'd like to book a consultation"))
    replies = texts(say(stack.rasa_port, sender, "actually no, please erase this conversation instead"))
    assert replies[-2:] == [CLINIC.fill(DOMAIN["utter_booking_cancelled"][0]["text"]), ASK]
