"""The staff CLI as staff run it: `python -m staff.cli` against real SQLite files."""
import csv
import getpass
import io
import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Sequence
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from clinic_core.storage import HandoffRequest, HandoffStore, Notification, audit_log
from staff import cli
from staff.accounts import Accounts
from staff.audit import CSV_COLUMNS
from staff.inbox import format_time
from tests.conftest import ROOT, handoff_with_notifications
from tests.test_inbox import conversations_file

PASSWORD = "a long enough password"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'handoffs.db'}"


@pytest.fixture
def store(database_url: str) -> HandoffStore:
    return HandoffStore(database_url)


def run_cli(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    # Its own conversations' file, beside the database: a deletion must never reach var/tracker.db.
    tracker_db = Path(database_url.removeprefix("sqlite:///")).parent / "tracker.db"
    return subprocess.run([sys.executable, "-m", "staff.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, env={**os.environ, "DATABASE_URL": database_url, "TRACKER_DB": str(tracker_db)},
                          timeout=60)


def audit_entries(store: HandoffStore) -> List[Dict[str, Any]]:
    with store.reading() as connection:
        return [dict(row._mapping) for row in connection.execute(select(audit_log).order_by(audit_log.c.id))]


def add_handoff(store: HandoffStore, name: str, messages: Sequence[str] = (), with_email: bool = False) -> int:
    request = HandoffRequest(full_name=name, preferred_time="Tuesday after 3pm", consent=True,
                             conversation_id=f"conversation-{name}", phone="(555) 010-0123",
                             email=f"{name.lower()}@example.test", reason="Depression",
                             visitor_messages=list(messages))
    return handoff_with_notifications(
        store, request, lambda handoff_id, _: [Notification("email", "New request", "body")] if with_email else [])


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
                 "Language:          English",
                 "Reason:            Depression", "Agreed to contact: yes", "conversation-Ann",
                 "1. I'd like to book", "email: Sent Jan 15, 2024 9:30 AM PST"):
        assert text in result.stdout
    # Terminal control sequences in visitor text are neutralised, line breaks flattened.
    assert "\x1b" not in result.stdout and "2. evil \N{REPLACEMENT CHARACTER}[2Jescape next line" in result.stdout


def test_show_says_when_the_visitor_prefers_spanish(database_url: str, store: HandoffStore) -> None:
    handoff_id = store.create_handoff(HandoffRequest(full_name="Lucía", preferred_time="mañana", consent=True,
                                                     conversation_id="conversation-Lucía", language="es"))
    result = run_cli(database_url, "show", str(handoff_id))
    assert "Language:          prefers Spanish" in result.stdout


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


def test_viewing_and_changing_handoffs_is_recorded_as_this_system_user(database_url: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann", ["i'd like to book"])
    for args in (["list"], ["show", str(handoff_id)], ["set-status", str(handoff_id), "booked"], ["show", "999"]):
        run_cli(database_url, *args)
    recorded = [(entry["actor"], entry["via"], entry["account_id"], entry["action"], entry["handoff_id"],
                 entry["detail"]) for entry in audit_entries(store)]
    user = getpass.getuser()
    assert recorded == [
        (user, "command line", None, "viewed_list", None, None),
        (user, "command line", None, "viewed_handoff", handoff_id, None),
        (user, "command line", None, "changed_status", handoff_id, "booked"),
    ]


# --- accounts ------------------------------------------------------------------------

def test_account_commands(database_url: str, store: HandoffStore) -> None:
    assert run_cli(database_url, "account", "list").stdout.startswith("No staff accounts yet.")
    created = run_cli(database_url, "account", "create", "Reception", "--password-stdin", stdin=PASSWORD + "\n")
    assert (created.returncode, created.stdout) == (0, "Account reception created (staff).\n")
    assert run_cli(database_url, "account", "create", "manager", "--role", "admin", "--password-stdin",
                   stdin=PASSWORD + "\n").returncode == 0
    accounts = Accounts(store)
    reception = accounts.find("reception")
    assert accounts.password_matches(reception, PASSWORD) and not accounts.password_matches(reception, PASSWORD + "\n")

    taken = run_cli(database_url, "account", "create", "reception", "--password-stdin", stdin=PASSWORD)
    short = run_cli(database_url, "account", "create", "newcomer", "--password-stdin", stdin="too short")
    assert (taken.returncode, taken.stderr) == (1, "Not done: there is already an account called 'reception'.\n")
    assert (short.returncode, short.stderr) == (1, "Not done: a password needs at least 12 characters.\n")
    assert run_cli(database_url, "account", "create", "no spaces", "--password-stdin", stdin=PASSWORD).returncode == 2
    assert run_cli(database_url, "account", "set-role", "reception", "owner").returncode == 2
    unknown = run_cli(database_url, "account", "disable", "nobody")
    assert (unknown.returncode, unknown.stderr) == (1, "No account called nobody.\n")

    assert run_cli(database_url, "account", "set-role", "reception", "admin").stdout == "reception is now admin.\n"
    assert run_cli(database_url, "account", "disable", "reception").returncode == 0
    listed = run_cli(database_url, "account", "list").stdout.splitlines()
    assert listed[0].split() == ["Username", "Role", "State", "Created", "Password", "changed"]
    assert listed[1].split()[:3] == ["manager", "admin", "active"]
    assert listed[2].split()[:3] == ["reception", "admin", "disabled"]
    assert accounts.find("reception").session_generation == 1  # disabling signed it out everywhere
    assert run_cli(database_url, "account", "enable", "reception").stdout == "reception is enabled.\n"

    changed = run_cli(database_url, "account", "set-password", "reception", "--password-stdin",
                      stdin="another long password\n")
    assert changed.stdout == "Password of reception changed; its sessions everywhere are signed out.\n"
    reception = accounts.find("reception")
    assert reception.session_generation == 2 and not reception.disabled
    assert accounts.password_matches(reception, "another long password")
    assert not accounts.password_matches(reception, PASSWORD)

    recorded = [(entry["action"], entry["subject"], entry["detail"], entry["via"]) for entry in audit_entries(store)]
    assert recorded == [
        ("account_created", "reception", "staff", "command line"),
        ("account_created", "manager", "admin", "command line"),
        ("role_changed", "reception", "admin", "command line"),
        ("account_disabled", "reception", None, "command line"),
        ("account_enabled", "reception", None, "command line"),
        ("password_changed", "reception", None, "command line"),
    ]
    assert PASSWORD not in str(audit_entries(store)) and "another long password" not in str(audit_entries(store))


def test_a_typed_password_is_asked_for_twice(database_url: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    typed = iter(["first long password", "not the same password", "first long password", "first long password"])
    prompts = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or next(typed))
    assert cli.main(["account", "create", "reception"]) == 1
    assert capsys.readouterr().err == "Not done: the two passwords are not the same.\n"
    assert Accounts(HandoffStore(database_url)).find("reception") is None
    assert cli.main(["account", "create", "reception"]) == 0
    assert prompts == ["New password: ", "Type it again: "] * 2
    accounts = Accounts(HandoffStore(database_url))
    assert accounts.password_matches(accounts.find("reception"), "first long password")


# --- deleting and the audit log ----------------------------------------------------------

def test_delete_removes_the_handoff_and_its_conversation(database_url: str, store: HandoffStore,
                                                         tmp_path: Path) -> None:
    handoff_id, kept_id = add_handoff(store, "Ann", with_email=True), add_handoff(store, "Bob")
    conversations_file(tmp_path / "tracker.db", {"conversation-Ann": ["hello", "book me in"],
                                                 "conversation-Bob": ["hi"]})
    declined = run_cli(database_url, "delete", str(handoff_id), stdin="n\n")
    assert declined.returncode == 1 and declined.stdout.endswith("[y/N] Nothing deleted.\n")
    assert store.get_handoff(handoff_id) is not None

    deleted = run_cli(database_url, "delete", str(handoff_id), stdin="yes\n")
    assert deleted.returncode == 0
    assert deleted.stdout.endswith(f"[y/N] Handoff {handoff_id} deleted, with 2 events of its conversation.\n")
    assert store.get_handoff(handoff_id) is None and store.get_handoff(kept_id) is not None
    assert store.notifications() == []
    with sqlite3.connect(tmp_path / "tracker.db") as tracker:
        assert tracker.execute("SELECT DISTINCT sender_id FROM events").fetchall() == [("conversation-Bob",)]
    [entry] = [entry for entry in audit_entries(store) if entry["action"] == "deleted_handoff"]
    assert (entry["handoff_id"], entry["via"], entry["detail"]) == (handoff_id, "command line", "2 conversation events")
    assert "Ann" not in str(entry)

    assert run_cli(database_url, "delete", str(kept_id), "--yes").returncode == 0
    assert store.get_handoff(kept_id) is None
    gone = run_cli(database_url, "delete", str(handoff_id), "--yes")
    assert (gone.returncode, gone.stderr) == (1, f"No handoff with id {handoff_id}.\n")


def test_audit_prints_and_exports_the_log(database_url: str, store: HandoffStore, tmp_path: Path) -> None:
    handoff_id = add_handoff(store, "Ann")
    run_cli(database_url, "show", str(handoff_id))
    run_cli(database_url, "set-status", str(handoff_id), "contacted")
    printed = run_cli(database_url, "audit").stdout.splitlines()
    assert printed[0].split()[:3] == ["When", "(UTC)", "Who"]
    user = getpass.getuser()
    assert f"{user} (command line)" in printed[1] and "Viewed the audit log" in printed[1]
    assert "Changed a handoff's status" in printed[2] and "contacted" in printed[2]
    assert "Viewed a handoff" in printed[3] and str(handoff_id) in printed[3]

    export = tmp_path / "audit.csv"
    assert run_cli(database_url, "audit", "--csv", str(export)).stdout == f"Audit log written to {export}.\n"
    assert export.stat().st_mode & 0o777 == 0o600
    header, *rows = list(csv.reader(io.StringIO(export.read_text())))
    assert tuple(header) == CSV_COLUMNS
    assert [row[header.index("action")] for row in rows] == [
        "exported_audit_log", "viewed_audit_log", "changed_status", "viewed_handoff"]
    to_stdout = run_cli(database_url, "audit", "--csv", "-").stdout
    assert to_stdout.startswith(",".join(CSV_COLUMNS)) and to_stdout.count("exported_audit_log") == 2
