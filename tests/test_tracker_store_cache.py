"""The tracker store keeps conversations between turns (channels/tracker_store.py), on real
SQLite: what it stores is what Rasa's own SQL store stores for the same turns; a kept turn reads
no events; anything another process or a deletion changed, a turn that was never saved, and a
new session are read again."""
import asyncio
import sqlite3
from pathlib import Path
from typing import List

import pytest
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, Event, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

import channels.tracker_store
from channels.tracker_store import ForgettingSQLTrackerStore
from tests.conftest import ROOT

DOMAIN = Domain.load(str(ROOT / "domain.yml"))
VISITOR = "visitor-kept"


def start() -> List[Event]:
    return [ActionExecuted("action_session_start"), SessionStarted(), SlotSet("clinic_name", "Example"),
            ActionExecuted("action_listen")]


def turn(text: str) -> List[Event]:
    return [UserUttered(text, {"name": "faq"}), ActionExecuted("utter_faq"), BotUttered(f"about {text}"),
            ActionExecuted("action_listen")]


def play(store: SQLTrackerStore, events: List[Event], sender: str = VISITOR) -> DialogueStateTracker:
    """One turn as Rasa plays it: retrieve (or create), the turn's events, save."""
    tracker = asyncio.run(store.retrieve(sender)) or DialogueStateTracker(sender, DOMAIN.slots)
    for event in events:
        tracker.update(event)
    asyncio.run(store.save(tracker))
    return tracker


def stored(path: Path, sender: str = VISITOR) -> List[str]:
    with sqlite3.connect(path) as connection:
        return [data for (data,) in connection.execute(
            "SELECT data FROM events WHERE sender_id = ? ORDER BY id", (sender,))]


def kept(store: SQLTrackerStore, question: str, sender: str = VISITOR) -> DialogueStateTracker:
    """A conversation the store keeps: one saved turn after its session's start."""
    play(store, start(), sender)
    return play(store, turn(question), sender)


def statements(store: SQLTrackerStore) -> List[str]:
    """The SQL the store runs from now on."""
    seen: List[str] = []
    channels.tracker_store.sa.event.listen(
        store.engine, "before_cursor_execute", lambda _c, _cur, statement, *rest: seen.append(statement))
    return seen


@pytest.fixture
def store(tmp_path) -> ForgettingSQLTrackerStore:
    return ForgettingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "tracker.db"))


def test_it_stores_what_rasas_own_store_stores_for_the_same_turns(tmp_path, store):
    rasas = SQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "rasa.db"))
    turns = [start() + turn("what is ketamine")] + [turn(f"question {n}") for n in range(5)]
    turns.append(start() + turn("back again"))  # a second session
    turns.append(turn("and the side effects?"))
    for events in turns:
        play(store, events)
        play(rasas, events)
    assert stored(tmp_path / "tracker.db") == stored(tmp_path / "rasa.db")
    ours, theirs = asyncio.run(store.retrieve(VISITOR)), asyncio.run(rasas.retrieve(VISITOR))
    assert ours.current_state() == theirs.current_state()


def test_a_kept_conversation_is_lent_as_it_is_and_reads_no_events(store):
    kept(store, "what is ketamine")
    for n in range(30):
        saved = play(store, turn(f"question {n}"))
    sql = statements(store)
    lent = asyncio.run(store.retrieve(VISITOR))
    assert lent is saved
    assert len(sql) == 1 and "events.data" not in sql[0]


def test_another_process_turn_is_read_again(tmp_path, store):
    kept(store, "what is ketamine")
    other = ForgettingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "tracker.db"))
    play(other, turn("how long does it last"))
    tracker = play(store, turn("is it safe"))
    texts = [event.text for event in tracker.events if isinstance(event, UserUttered)]
    assert texts == ["what is ketamine", "how long does it last", "is it safe"]
    rows = stored(tmp_path / "tracker.db")
    assert [sum(f'"text": "{text}"' in row for row in rows) for text in texts] == [1, 1, 1]


def test_a_deleted_conversation_is_not_lent_again(tmp_path, store):
    kept(store, "my private question")
    with sqlite3.connect(tmp_path / "tracker.db") as connection:  # as forget-me and the purge do
        connection.execute("DELETE FROM events WHERE sender_id = ?", (VISITOR,))
    assert asyncio.run(store.retrieve(VISITOR)) is None


def test_a_turn_that_was_never_saved_is_not_lent_again(store):
    kept(store, "what is ketamine")
    failed = asyncio.run(store.retrieve(VISITOR))
    failed.update(UserUttered("a turn that failed", {"name": "faq"}))
    again = asyncio.run(store.retrieve(VISITOR))
    assert again is not failed
    assert [event.text for event in again.events if isinstance(event, UserUttered)] == ["what is ketamine"]


def test_a_new_session_is_read_again_with_that_session_only(tmp_path, store):
    kept(store, "what is ketamine")
    saved = play(store, start() + turn("back again"))
    again = asyncio.run(store.retrieve(VISITOR))
    assert again is not saved
    assert [event.text for event in again.events if isinstance(event, UserUttered)] == ["back again"]


def test_the_least_recently_used_conversation_is_dropped_first(monkeypatch, store):
    monkeypatch.setattr(channels.tracker_store, "CACHED_CONVERSATIONS", 2)
    first, second, third = (kept(store, "hello", sender) for sender in ("a", "b", "c"))
    assert asyncio.run(store.retrieve("a")) is not first
    assert asyncio.run(store.retrieve("b")) is second
    assert asyncio.run(store.retrieve("c")) is third


def test_sqlite_runs_in_wal_mode(tmp_path, store):
    play(store, start())
    with sqlite3.connect(tmp_path / "tracker.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_tracker_it_did_not_lend_is_not_kept(store):
    # Rasa's create_tracker saves a new tracker, then goes on changing it before the next save.
    kept(store, "what is ketamine")
    own = DialogueStateTracker.from_events(VISITOR, start() + turn("what is ketamine"), DOMAIN.slots)
    asyncio.run(store.save(own))
    own.update(UserUttered("not saved", {"name": "faq"}))
    assert asyncio.run(store.retrieve(VISITOR)) is not own
