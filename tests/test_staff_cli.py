"""The staff CLI as staff run it: `python -m staff.cli` against a real SQLite file."""
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Sequence
from zoneinfo import ZoneInfo

import pytest

from actions.storage import HandoffRequest, HandoffStore, Notification
from staff.inbox import format_time
from tests.conftest import ROOT


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'handoffs.db'}"


@pytest.fixture
def store(database_url: str) -> HandoffStore:
    return HandoffStore(database_url)


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "staff.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": database_url}, timeout=60)


def add_handoff(store: HandoffStore, name: str, messages: Sequence[str] = (), with_email: bool = False) -> int:
    request = HandoffRequest(full_name=name, preferred_time="Tuesday after 3pm", consent=True,
                             conversation_id=f"conversation-{name}", phone="(555) 010-0123",
                             email=f"{name.lower()}@example.test", reason="Depression",
                             visitor_messages=list(messages))
    return store.create_handoff(
        request, lambda handoff_id, _: [Notification("email", "New request", "body")] if with_email else [])


def test_list_is_friendly_when_empty(database_url: str) -> None:
    result = run_cli(database_url, "list")
    assert (result.returncode, result.stdout) == (0, "No handoffs yet.\n")


def test_list_shows_handoffs_newest_first(database_url: str, store: HandoffStore) -> None:
    ann, bob = add_handoff(store, "Ann"), add_handoff(store, "Bob")
    store.set_status(ann, "contacted")
    result = run_cli(database_url, "list")
    assert result.returncode == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["ID", "Created", "Status", "Name", "Phone", "Email", "Preferred", "time"]
    assert first.startswith(str(bob)) and "Bob" in first and "new" in first
    assert second.startswith(str(ann)) and "contacted" in second and "ann@example.test" in second
    assert format_time(store.get_handoff(ann)["created_at"], ZoneInfo("America/Los_Angeles")) in second
    assert "(555) 010-0123" in first and "Tuesday after 3pm" in first

    filtered = run_cli(database_url, "list", "--status", "contacted").stdout.splitlines()
    assert len(filtered) == 2 and "Ann" in filtered[1]
    assert run_cli(database_url, "list", "--status", "booked").stdout == "No handoffs with status booked.\n"


def test_show_prints_details_messages_and_notifications(database_url: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann", ["I'd like to book", "evil \x1b[2Jescape\nnext line"], with_email=True)
    notification = store.get_handoff(handoff_id)["notifications"][0]
    store.mark_sent(notification["id"], datetime(2024, 1, 15, 17, 30))
    result = run_cli(database_url, "show", str(handoff_id))
    assert result.returncode == 0, result.stderr
    for text in (f"Handoff {handoff_id}", "Status:            new", "Name:              Ann",
                 "Phone:             (555) 010-0123", "Preferred time:    Tuesday after 3pm",
                 "Reason:            Depression", "Agreed to contact: yes", "conversation-Ann",
                 "1. I'd like to book", "email: Sent Jan 15, 2024 9:30 AM PST"):
        assert text in result.stdout
    # Terminal control sequences in visitor text are neutralised, line breaks flattened.
    assert "\x1b" not in result.stdout and "2. evil \N{REPLACEMENT CHARACTER}[2Jescape next line" in result.stdout


def test_set_status_is_saved(database_url: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann")
    result = run_cli(database_url, "set-status", str(handoff_id), "booked")
    assert (result.returncode, result.stdout) == (0, f"Handoff {handoff_id} is now booked.\n")
    assert store.get_handoff(handoff_id)["status"] == "booked"


@pytest.mark.parametrize("args", [["show", "999"], ["set-status", "999", "closed"]])
def test_unknown_id_fails_clearly(database_url: str, store: HandoffStore, args: List[str]) -> None:
    result = run_cli(database_url, *args)
    assert (result.returncode, result.stderr) == (1, "No handoff with id 999.\n")


def test_invalid_status_or_id_is_rejected(database_url: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann")
    result = run_cli(database_url, "set-status", str(handoff_id), "lost")
    assert result.returncode == 2 and "invalid choice: 'lost'" in result.stderr
    assert store.get_handoff(handoff_id)["status"] == "new"
    assert run_cli(database_url, "show", "99999999999999999999").returncode == 2
