"""A visitor's "forget me": the action deletes the conversation from a real SQLite tracker store,
and the Rasa server's tracker store (channels/tracker_store.py) writes none of it back when it
saves the turn. Without a trained model: the turn is played on the store as Rasa plays it
(retrieve, the turn's events, the action on the action server, save). The same over REST
against the real model: tests/test_forget_me_rest.py."""
import asyncio
import sqlite3
from pathlib import Path
from typing import Dict, List

import pytest
import yaml
from rasa.core.tracker_store import SQLTrackerStore, TrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, Event, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import read_endpoint_config
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.privacy import ActionForgetConversation
from channels.socketio import CustomPayloadSocketIOOutput
from channels.tracker_store import ForgettingSQLTrackerStore
from clinic_core.retention import FORGET_CONVERSATION_ACTION
from components.safety_policy import answer_alongside
from tests.conftest import ROOT

DOMAIN = Domain.load(str(ROOT / "domain.yml"))
RESPONSES = yaml.safe_load((ROOT / "domain.yml").read_text())["responses"]
VISITOR, OTHER = "visitor-forgets", "visitor-stays"
TOLD = "my daughter found my pills and i told my ex about the clinic"


def session(text: str) -> List[Event]:
    """One session as Rasa logs it: its start, the clinic slots, a question and its answer."""
    return [ActionExecuted("action_session_start"), SessionStarted(), SlotSet("clinic_name", "Example"),
            ActionExecuted("action_listen"), UserUttered(text, {"name": "faq"}),
            ActionExecuted("utter_faq"), BotUttered("an answer"), ActionExecuted("action_listen")]


def new_store(path: Path, kind=ForgettingSQLTrackerStore) -> SQLTrackerStore:
    return kind(DOMAIN, dialect="sqlite", db=str(path))


def save(store: SQLTrackerStore, tracker: DialogueStateTracker) -> None:
    asyncio.run(store.save(tracker))


def rows(path: Path) -> Dict[str, List[str]]:
    """Each conversation's stored events, as the text of each row."""
    found: Dict[str, List[str]] = {}
    with sqlite3.connect(path) as connection:
        for sender, data in connection.execute("SELECT sender_id, data FROM events ORDER BY id"):
            found.setdefault(sender, []).append(data)
    return found


@pytest.fixture
def tracker_db(tmp_path, monkeypatch):
    """A tracker store with two sessions of VISITOR's conversation and one of OTHER's, where the
    action server looks for it (TRACKER_DB)."""
    path = tmp_path / "tracker.db"
    store = new_store(path)
    save(store, DialogueStateTracker.from_events(VISITOR, session(TOLD) + session("and the side effects?"),
                                                 DOMAIN.slots))
    save(store, DialogueStateTracker.from_events(OTHER, session("how long does a session take"), DOMAIN.slots))
    monkeypatch.setenv("TRACKER_DB", str(path))
    return path


def run_action(sender: str) -> CollectingDispatcher:
    dispatcher = CollectingDispatcher()
    tracker = Tracker(sender, {}, {}, [], False, None, None, "action_listen")
    assert asyncio.run(ActionForgetConversation().run(dispatcher, tracker, {})) == []
    return dispatcher


def test_the_action_deletes_every_session_of_the_conversation_and_nothing_else(tracker_db):
    other_before = rows(tracker_db)[OTHER]
    dispatcher = run_action(VISITOR)
    assert [message["response"] for message in dispatcher.messages] == ["utter_conversation_forgotten"]
    assert rows(tracker_db) == {OTHER: other_before}


def test_the_action_says_so_when_the_tracker_database_is_unavailable(tmp_path, monkeypatch):
    (tmp_path / "tracker.db").mkdir()  # a folder where the file should be
    monkeypatch.setenv("TRACKER_DB", str(tmp_path / "tracker.db"))
    monkeypatch.setenv("CONVERSATION_RETENTION_DAYS", "21")
    dispatcher = run_action(VISITOR)
    assert [message["response"] for message in dispatcher.messages] == ["utter_forget_failed"]
    assert dispatcher.messages[0]["conversation_retention_days"] == 21


def forget_turn(store: SQLTrackerStore, tracker_db: Path, action_succeeds: bool = True) -> None:
    """The turn in which the visitor says yes, as the Rasa server plays it: the latest session
    is read and held, the action runs on the action server, the turn is saved at its end."""
    tracker = asyncio.run(store.retrieve(VISITOR))
    tracker.update(UserUttered("/affirm", {"name": "affirm"}))
    if action_succeeds:
        run_action(VISITOR)  # deletes the rows while the Rasa server holds the tracker
    for event in (ActionExecuted(FORGET_CONVERSATION_ACTION), BotUttered("Done: I've deleted this conversation."),
                  ActionExecuted("action_listen")):
        tracker.update(event)
    save(store, tracker)


def test_the_turn_that_forgot_the_conversation_writes_none_of_it_back(tracker_db):
    other_before = rows(tracker_db)[OTHER]
    store = new_store(tracker_db)
    forget_turn(store, tracker_db)
    assert rows(tracker_db) == {OTHER: other_before}
    assert asyncio.run(store.retrieve(VISITOR)) is None  # the next message starts a new conversation
    assert TOLD.encode() not in tracker_db.read_bytes()  # overwritten, not left in the file's free pages


def test_rasas_own_sql_store_would_write_the_forgotten_session_back(tracker_db):
    """Why the project's store is needed: Rasa appends what it counts as not yet stored."""
    forget_turn(new_store(tracker_db, SQLTrackerStore), tracker_db)
    assert any("and the side effects?" in data for data in rows(tracker_db)[VISITOR])


def test_when_the_action_could_not_delete_the_conversation_stays_as_it_was(tracker_db):
    before = rows(tracker_db)
    forget_turn(new_store(tracker_db), tracker_db, action_succeeds=False)
    assert rows(tracker_db) == before  # that turn's yes and apology are not kept either


def test_other_turns_are_saved_as_rasas_store_saves_them(tracker_db):
    store = new_store(tracker_db)
    tracker = asyncio.run(store.retrieve(VISITOR))
    before = len(rows(tracker_db)[VISITOR])
    for event in (UserUttered("does it help anxiety", {"name": "faq"}), ActionExecuted("utter_faq"),
                  BotUttered("an answer"), ActionExecuted("action_listen")):
        tracker.update(event)
    save(store, tracker)
    assert len(rows(tracker_db)[VISITOR]) == before + 4


def test_the_rasa_server_loads_the_forgetting_store_from_endpoints_yml(tmp_path, monkeypatch):
    # A tracker store type Rasa cannot import would silently become an in-memory store.
    for name, value in {"TRACKER_DB": str(tmp_path / "tracker.db"), "ACTION_SERVER_TOKEN": "t" * 32,
                        "ACTION_ENDPOINT_URL": "http://localhost:5055/webhook"}.items():
        monkeypatch.setenv(name, value)  # endpoints.yml names them all
    store = TrackerStore.create(read_endpoint_config(str(ROOT / "endpoints.yml"), "tracker_store"), DOMAIN)
    assert isinstance(store, ForgettingSQLTrackerStore)
    assert str(store.engine.url) == f"sqlite:///{tmp_path / 'tracker.db'}"


def test_the_confirmation_carries_the_payload_the_widget_reads():
    assert RESPONSES["utter_conversation_forgotten"][0]["custom"] == {"clear_transcript": True}
    assert "custom.clear_transcript === true" in (ROOT / "web/widget/forget.js").read_text()


def test_socketio_sends_the_custom_payload_after_the_text():
    emitted = []

    class Server:
        async def emit(self, event, data=None, room=None, **kwargs):
            emitted.append((event, data, room))

    output = CustomPayloadSocketIOOutput(Server(), "bot_uttered")
    asyncio.run(output.send_response("session-1", {"text": "Done.", "custom": {"clear_transcript": True}}))
    assert emitted == [("bot_uttered", {"text": "Done."}, "session-1"),
                       ("bot_uttered", {"custom": {"clear_transcript": True}}, "session-1")]


def test_a_crisis_that_also_asks_to_forget_gets_the_crisis_reply_alone():
    # The safety net makes the message a crisis; the answer added after the crisis reply never
    # starts the forget-me question (nor deletes anything while the visitor may need help).
    parse_data = {"intent": {"name": "crisis"}, "safety_net": {"model_intent": {"name": "forget_me"}}}
    assert answer_alongside(parse_data, 0.6) is None
