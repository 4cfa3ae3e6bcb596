"""The handoff database's Alembic migrations, on real SQLite files."""
import os
import re
import sqlite3
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from clinic_core import migrate
from clinic_core.storage import HandoffRequest, HandoffStore, metadata
from tests.conftest import ROOT

REQUEST = HandoffRequest("Ann Lee", "mornings", True, "visitor-1", phone="+15035550147")

# The schema as version 1's first release made it (create_all): no idempotency key, no staff tables.
VERSION_1_SCHEMA = """
CREATE TABLE handoffs (id INTEGER NOT NULL PRIMARY KEY, created_at DATETIME NOT NULL,
  full_name VARCHAR(200) NOT NULL, phone VARCHAR(32), email VARCHAR(254), preferred_time VARCHAR(500) NOT NULL,
  reason TEXT, consent BOOLEAN NOT NULL, status VARCHAR(16) NOT NULL, status_changed_at DATETIME,
  conversation_id VARCHAR(255) NOT NULL, visitor_messages JSON NOT NULL);
CREATE TABLE outbox (id INTEGER NOT NULL PRIMARY KEY, handoff_id INTEGER NOT NULL REFERENCES handoffs (id),
  channel VARCHAR(16) NOT NULL, subject VARCHAR(300) NOT NULL, body TEXT NOT NULL, created_at DATETIME NOT NULL,
  status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, next_attempt_at DATETIME NOT NULL,
  locked_until DATETIME, last_error TEXT, sent_at DATETIME);
INSERT INTO handoffs VALUES (1, '2026-01-05 10:00:00', 'Old Visitor', NULL, 'old@example.com', 'evenings',
  NULL, 1, 'new', NULL, 'visitor-0', '["hello"]');
INSERT INTO outbox VALUES (1, 1, 'email', 'New booking request #1', 'body', '2026-01-05 10:00:00', 'pending',
  0, '2026-01-05 10:00:00', NULL, NULL, NULL);
"""


def schema_differences(store: HandoffStore) -> list:
    with store.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), metadata)


def test_a_new_database_is_made_by_the_migrations_and_matches_the_models(tmp_path):
    store = HandoffStore(f"sqlite:///{tmp_path / 'handoffs.db'}")
    store.create_handoff(REQUEST)
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    assert schema_differences(store) == []


def test_a_version_1_database_is_adopted_and_keeps_its_rows(tmp_path):
    path = tmp_path / "handoffs.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(VERSION_1_SCHEMA)
    store = HandoffStore(f"sqlite:///{path}")
    [old] = store.list_handoffs()
    assert (old["full_name"], old["visitor_messages"]) == ("Old Visitor", ["hello"])
    assert old["language"] == "en"  # handoffs from before the assistant spoke Spanish
    [notification] = store.notifications()
    assert re.fullmatch(r"[0-9a-f]{32}", notification["idempotency_key"])
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    assert schema_differences(store) == []
    assert store.create_handoff(REQUEST) == 2


def test_migrating_twice_changes_nothing(tmp_path):
    store = HandoffStore(f"sqlite:///{tmp_path / 'handoffs.db'}")
    store.create_handoff(REQUEST)
    migrate.upgrade(store.engine)
    assert len(store.list_handoffs()) == 1 and schema_differences(store) == []


def run_migrate(database_url: str, *args: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "clinic_core.migrate", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_the_command_upgrades_and_checks(tmp_path):
    url = f"sqlite:///{tmp_path / 'handoffs.db'}"
    with sqlite3.connect(tmp_path / "handoffs.db") as connection:
        connection.executescript(VERSION_1_SCHEMA)
    check = run_migrate(url, "--check")
    assert check.returncode == 1 and "revision None, the newest is" in check.stdout
    upgraded = run_migrate(url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"revision {migrate.head_revision()}" in upgraded.stdout
    assert run_migrate(url, "--check").returncode == 0


def test_the_command_makes_a_new_database_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "var" / "handoffs.db"
    assert run_migrate(f"sqlite:///{path}").returncode == 0
    assert path.stat().st_mode & 0o777 == 0o600
