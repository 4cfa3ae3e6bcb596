"""The handoff database's schema, versioned with Alembic (revisions in clinic_core/migrations/).

`make migrate` (run by `make run` before anything starts) brings DATABASE_URL to the newest
revision; a process also does so on its first use of a database, so a new SQLite file needs
no step. A database made before migrations existed (version 1's tables, no alembic_version)
is adopted: completed as version 1 completed it, stamped 0001, then upgraded.

    python -m clinic_core.migrate            # upgrade DATABASE_URL, print its revision
    python -m clinic_core.migrate --check    # exit 1 unless it is at the newest revision
"""
import argparse
import logging
import sys
import threading
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Alembic announces its dialect at INFO on every start; only problems are worth a line.
logging.getLogger("alembic").setLevel(logging.WARNING)
VERSION_1_REVISION = "0001"
# Any fixed number: processes migrating one PostgreSQL database at the same moment take turns.
POSTGRES_LOCK_KEY = 7340511
# Alembic's migration context is global to the process: threads take turns too.
_PROCESS_LOCK = threading.Lock()


def _config(connection: Optional[Connection] = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=None)
def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> Optional[str]:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _adopt_version_1(connection: Connection) -> None:
    """Version 1 made its tables with create_all and added the idempotency key by hand."""
    from clinic_core.storage import audit_log, staff_accounts  # as version 1 left them

    for table in (staff_accounts, audit_log):  # added to version 1 after its first handoffs
        table.create(connection, checkfirst=True)
    if "idempotency_key" not in {column["name"] for column in inspect(connection).get_columns("outbox")}:
        connection.execute(text("ALTER TABLE outbox ADD COLUMN idempotency_key VARCHAR(64)"))
    for notification_id in connection.execute(
            text("SELECT id FROM outbox WHERE idempotency_key IS NULL")).scalars().all():
        connection.execute(text("UPDATE outbox SET idempotency_key = :key WHERE id = :id"),
                           {"key": uuid.uuid4().hex, "id": notification_id})
    command.stamp(_config(connection), VERSION_1_REVISION)


def upgrade(engine: Engine) -> None:
    """Brings the database to the newest revision, in one transaction where the database allows."""
    with _PROCESS_LOCK, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_LOCK_KEY})
        if MigrationContext.configure(connection).get_current_revision() == head_revision():
            return
        tables = set(inspect(connection).get_table_names())
        if "handoffs" in tables and "alembic_version" not in tables:
            _adopt_version_1(connection)
        command.upgrade(_config(connection), "head")


def main(argv: Optional[list] = None) -> int:
    from clinic_core.environment import load_env_file
    from clinic_core.settings import SETTINGS_ERROR_EXIT, SettingsError, load_settings
    from clinic_core.storage import make_engine, prepare_sqlite_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the database is at the newest revision")
    args = parser.parse_args(argv)
    load_env_file()
    try:
        url = load_settings().database_url
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return SETTINGS_ERROR_EXIT
    engine = make_engine(url)
    if not args.check:
        prepare_sqlite_file(url)
        upgrade(engine)
    revision, head = current_revision(engine), head_revision()
    print(f"Handoff database ({engine.url.render_as_string(hide_password=True)}): revision {revision}"
          f"{'' if revision == head else f', the newest is {head}'}")
    return 0 if revision == head else 1


if __name__ == "__main__":
    sys.exit(main())
