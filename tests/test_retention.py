"""Retention: the settings, and the purge against real SQLite files (a tracker store Rasa wrote,
and the handoff database), once (`make purge`) and repeated (the process `make run` starts)."""
import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Dict, List

import pytest
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from clinic_core.retention import TrackerDatabase, purge_conversations, purge_handoffs
from clinic_core.settings import (
    DEFAULT_CONVERSATION_RETENTION_DAYS,
    DEFAULT_HANDOFF_RETENTION_DAYS,
    SettingsError,
    load_settings,
)
from clinic_core.storage import HandoffRequest, HandoffStore, Notification, StorageUnavailable, handoffs, utcnow
from scripts.services import purge_service
from tests.conftest import ROOT, handoff_with_notifications

DAY = 24 * 60 * 60
NOW = utcnow()
NOW_EPOCH = time.time()
OLD_MESSAGE, RECENT_MESSAGE = "my husband's name is Carl and he drinks", "is it safe with lithium"


# --- settings -----------------------------------------------------------------------------

def test_the_defaults_keep_conversations_30_days_and_handoffs_a_year():
    settings = load_settings({})
    assert (settings.conversation_retention_days, settings.handoff_retention_days) == (30, 365)
    assert settings.tracker_database_url == f"sqlite:///{ROOT / 'var' / 'tracker.db'}"


def test_the_tracker_database_follows_tracker_db_as_make_run_does(tmp_path):
    relative, absolute = "var/other.db", str(tmp_path / "t.db")
    assert load_settings({"TRACKER_DB": relative}).tracker_database_url == f"sqlite:///{ROOT / relative}"
    assert load_settings({"TRACKER_DB": absolute}).tracker_database_url == f"sqlite:///{absolute}"


def test_retention_days_are_read():
    settings = load_settings({"CONVERSATION_RETENTION_DAYS": "7", "HANDOFF_RETENTION_DAYS": " 90 "})
    assert (settings.conversation_retention_days, settings.handoff_retention_days) == (7, 90)


@pytest.mark.parametrize("name", ["CONVERSATION_RETENTION_DAYS", "HANDOFF_RETENTION_DAYS"])
@pytest.mark.parametrize("value", ["0", "-5", "3.5", "thirty", "1e3", "²", "36501", "9" * 5000])
def test_a_retention_that_is_not_a_whole_number_of_days_is_refused_by_name(name, value):
    with pytest.raises(SettingsError, match=f"{name} must be a whole number of days from 1 to 36500"):
        load_settings({name: value})


def test_the_readme_and_env_example_state_the_defaults_the_settings_use():
    readme, example = (ROOT / "README.md").read_text(), (ROOT / ".env.example").read_text()
    for name, days in (("CONVERSATION_RETENTION_DAYS", DEFAULT_CONVERSATION_RETENTION_DAYS),
                       ("HANDOFF_RETENTION_DAYS", DEFAULT_HANDOFF_RETENTION_DAYS)):
        assert f"\n{name}={days}\n" in example
        assert f"`{name}`, default {days}" in readme


# --- the purge ----------------------------------------------------------------------------

def write_conversation(path: Path, sender: str, days_ago: List[float], text: str = OLD_MESSAGE) -> None:
    """A conversation as Rasa's SQL tracker store writes it, one visitor message and reply per time."""
    events = []
    for days in days_ago:
        stamp = NOW_EPOCH - days * DAY
        events += [ActionExecuted("action_listen", timestamp=stamp), UserUttered(text, timestamp=stamp),
                   BotUttered("an answer", timestamp=stamp)]
    store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(path))
    asyncio.run(store.save(DialogueStateTracker.from_events(sender, events)))
    store.engine.dispose()


def events_by_sender(path: Path) -> Dict[str, int]:
    with sqlite3.connect(path) as connection:
        return dict(connection.execute("SELECT sender_id, count(*) FROM events GROUP BY sender_id"))


def make_handoff(store: HandoffStore, sender: str, days_ago: float) -> int:
    request = HandoffRequest(full_name="Dana Whitaker", preferred_time="mornings", consent=True,
                             conversation_id=sender, phone="+15035550147", visitor_messages=[OLD_MESSAGE])
    handoff_id = handoff_with_notifications(
        store, request, lambda *_: [Notification("email", "New request", "body"),
                                    Notification("webhook", "New request", "body")])
    with store.engine.begin() as connection:
        connection.execute(handoffs.update().where(handoffs.c.id == handoff_id)
                           .values(created_at=NOW - timedelta(days=days_ago)))
    return handoff_id


@pytest.fixture
def databases(tmp_path):
    """A tracker store and a handoff database, each with old and recent rows."""
    tracker_path = tmp_path / "tracker.db"
    write_conversation(tracker_path, "silent-40-days", [41, 40])
    write_conversation(tracker_path, "back-recently", [45, 2], RECENT_MESSAGE)  # old events, recent last one
    write_conversation(tracker_path, "today", [0], RECENT_MESSAGE)
    store = HandoffStore(f"sqlite:///{tmp_path / 'handoffs.db'}")
    old_id, recent_id = make_handoff(store, "silent-40-days", 400), make_handoff(store, "today", 10)
    return tracker_path, store, old_id, recent_id


def test_what_the_purge_deletes_is_gone_from_the_files_too(databases):
    tracker_path, store, *_ = databases
    write_conversation(tracker_path, "silent-too", [60], "my neighbour Ines Kowalczyk drove me")
    with store.engine.begin() as connection:  # an old handoff with a name no other row has
        connection.execute(handoffs.update().where(handoffs.c.conversation_id == "silent-40-days")
                           .values(full_name="Ottilie Brandvold"))
    assert b"Ines Kowalczyk" in tracker_path.read_bytes()
    purge_conversations(TrackerDatabase(f"sqlite:///{tracker_path}"), 30, NOW)
    purge_handoffs(store, 365, NOW)
    assert b"Ines Kowalczyk" not in tracker_path.read_bytes() and b"Carl" not in tracker_path.read_bytes()
    assert b"Ottilie" not in Path(store.engine.url.database).read_bytes()


def test_old_conversations_go_whole_and_any_with_a_recent_event_stays_whole(databases):
    tracker_path, *_ = databases
    before = events_by_sender(tracker_path)
    tracker = TrackerDatabase(f"sqlite:///{tracker_path}")
    assert purge_conversations(tracker, 30, NOW) == (1, before["silent-40-days"])
    assert events_by_sender(tracker_path) == {"back-recently": before["back-recently"], "today": before["today"]}
    assert purge_conversations(tracker, 30, NOW) == (0, 0)


def test_the_retention_setting_moves_the_cut_off(databases):
    tracker_path, *_ = databases
    assert purge_conversations(TrackerDatabase(f"sqlite:///{tracker_path}"), 50, NOW) == (0, 0)
    assert purge_conversations(TrackerDatabase(f"sqlite:///{tracker_path}"), 1, NOW)[0] == 2  # back-recently's too


def test_old_handoffs_go_with_their_notifications_and_recent_ones_stay(databases):
    _, store, old_id, recent_id = databases
    assert purge_handoffs(store, 365, NOW) == (1, 2)
    assert [handoff["id"] for handoff in store.list_handoffs()] == [recent_id]
    assert {notification["handoff_id"] for notification in store.notifications()} == {recent_id}


def test_a_tracker_store_rasa_has_not_made_yet_is_left_uncreated(tmp_path):
    assert purge_conversations(TrackerDatabase(f"sqlite:///{tmp_path / 'tracker.db'}"), 30, NOW) == (0, 0)
    assert not (tmp_path / "tracker.db").exists()
    sqlite3.connect(tmp_path / "empty.db").close()  # a file without Rasa's table yet
    assert purge_conversations(TrackerDatabase(f"sqlite:///{tmp_path / 'empty.db'}"), 30, NOW) == (0, 0)


def test_an_unreachable_tracker_database_raises_storage_unavailable(tmp_path):
    (tmp_path / "tracker.db").mkdir()  # a folder where the file should be
    with pytest.raises(StorageUnavailable):
        purge_conversations(TrackerDatabase(f"sqlite:///{tmp_path / 'tracker.db'}"), 30, NOW)


# --- `make purge` and the process `make run` starts -------------------------------------------

def purge_environ(tmp_path: Path, **extra: str) -> Dict[str, str]:
    environ = {key: value for key, value in os.environ.items()
               if not key.endswith("_RETENTION_DAYS") and key not in ("TRACKER_DB", "DATABASE_URL")}
    return {**environ, "TRACKER_DB": str(tmp_path / "tracker.db"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'handoffs.db'}", **extra}


def run_purge(environ: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/purge.py", *args], cwd=ROOT, env=environ, text=True,
                          capture_output=True, timeout=60)


def test_make_purge_deletes_once_and_prints_counts_never_content(databases, tmp_path):
    tracker_path, store, _, recent_id = databases
    events = events_by_sender(tracker_path)["silent-40-days"]
    purge = run_purge(purge_environ(tmp_path))
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert f"Deleted 1 conversation(s) ({events} events) silent for more than 30 days" in purge.stdout
    assert "Deleted 1 handoff(s) (2 notifications) made more than 365 days ago" in purge.stdout
    for content in ("silent-40-days", OLD_MESSAGE, "Carl", "Dana", "5035550147", "mornings"):
        assert content not in purge.stdout + purge.stderr
    assert set(events_by_sender(tracker_path)) == {"back-recently", "today"}
    assert [handoff["id"] for handoff in store.list_handoffs()] == [recent_id]


def test_make_purge_follows_the_settings(databases, tmp_path):
    purge = run_purge(purge_environ(tmp_path, CONVERSATION_RETENTION_DAYS="60", HANDOFF_RETENTION_DAYS="5"))
    assert "Deleted 0 conversation(s) (0 events) silent for more than 60 days" in purge.stdout
    assert "Deleted 2 handoff(s) (4 notifications) made more than 5 days ago" in purge.stdout


def test_make_purge_refuses_a_bad_setting_by_name(tmp_path):
    purge = run_purge(purge_environ(tmp_path, HANDOFF_RETENTION_DAYS="a year"))
    assert purge.returncode == 2
    assert "HANDOFF_RETENTION_DAYS must be a whole number of days" in purge.stdout
    assert not (tmp_path / "tracker.db").exists() and not (tmp_path / "handoffs.db").exists()


def test_a_database_down_does_not_stop_the_other_being_purged(databases, tmp_path):
    tracker_path, *_ = databases
    (tmp_path / "not-a-folder").write_text("")
    purge = run_purge(purge_environ(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'not-a-folder' / 'h.db'}"))
    assert purge.returncode == 1
    assert "Deleted 1 conversation(s)" in purge.stdout
    assert "Handoffs not purged: handoff database unavailable (StorageUnavailable (" in purge.stdout
    assert "silent-40-days" not in events_by_sender(tracker_path)


def test_the_purge_make_run_starts_runs_at_once_and_again_after_its_interval(tmp_path):
    """scripts/purge.py --every, as `make run` starts it (here every 2 s instead of daily)."""
    assert purge_service(86400).command[-3:] == ["scripts/purge.py", "--every", "86400"]
    tracker_path = tmp_path / "tracker.db"
    write_conversation(tracker_path, "first", [40])
    process = subprocess.Popen([sys.executable, "scripts/purge.py", "--every", "2"], cwd=ROOT,
                               env=purge_environ(tmp_path), text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        runs = []
        for line in process.stdout:
            if "conversation(s)" in line:
                runs.append(line)
                if len(runs) == 1:  # the first run is done: an old conversation appears meanwhile
                    write_conversation(tracker_path, "second", [40])
                else:
                    break
        assert [re.search(r"Deleted (\d+) conversation", run).group(1) for run in runs] == ["1", "1"]
        assert not tracker_path.exists() or events_by_sender(tracker_path) == {}
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert process.returncode == 0  # SIGTERM is a clean stop
