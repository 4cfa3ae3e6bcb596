"""What visitors gave is kept no longer than the retention settings allow, and a visitor can
have their conversation deleted at once.

Conversations live in Rasa's SQL tracker store (endpoints.yml): one row per event in its
`events` table, with the conversation's `sender_id` and the event's `timestamp` in epoch
seconds (rasa/core/tracker_store.py, SQLTrackerStore.SQLEvent). A conversation is deleted
whole, once its last event is older than CONVERSATION_RETENTION_DAYS: Rasa reads and appends
a session by counting its rows, so a partial event list (a session without its start) would
confuse it. Handoffs go with their notifications (clinic_core/storage.py) HANDOFF_RETENTION_DAYS
after they were made.

No Rasa import: `make purge`, the purge process `make run` starts (scripts/purge.py) and the
forget-me action (actions/privacy.py) use it. SQLAlchemy, so PostgreSQL works as SQLite does.
Every database failure is raised as StorageUnavailable, naming only the error's type.
"""
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Optional, Tuple

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, delete, func, inspect, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from clinic_core.storage import HandoffStore, StorageUnavailable, make_engine

# Deletes the visitor's conversation once they confirm (actions/privacy.py); the Rasa server's
# tracker store then writes none of it back (channels/tracker_store.py).
FORGET_CONVERSATION_ACTION = "action_forget_conversation"

# The columns of Rasa's table this module reads; Rasa creates and owns the table.
tracker_events = Table(
    "events", MetaData(),
    Column("id", Integer, primary_key=True),
    Column("sender_id", String(255), nullable=False),
    Column("timestamp", Float),
)


class TrackerDatabase:
    """Deletes conversations from Rasa's SQL tracker store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def _not_created_yet(self) -> bool:
        """A SQLite file Rasa has not made yet holds nothing; connecting would create it."""
        parsed = make_url(self.url)
        return (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
                and not Path(parsed.database).exists())

    @contextmanager
    def _events(self) -> Iterator[Optional[Connection]]:
        """A transaction on the events table, or None when there is no table yet."""
        try:
            if self._not_created_yet():
                yield None
                return
            with self.engine.begin() as connection:
                yield connection if inspect(connection).has_table(tracker_events.name) else None
        except (SQLAlchemyError, OSError) as error:
            raise StorageUnavailable(type(error).__name__) from error

    def delete_conversation(self, sender_id: str) -> int:
        """Deletes every event of the conversation, in all its sessions; returns how many."""
        with self._events() as connection:
            if connection is None:
                return 0
            return connection.execute(delete(tracker_events).where(tracker_events.c.sender_id == sender_id)).rowcount

    def delete_conversations_last_active_before(self, cutoff: datetime) -> Tuple[int, int]:
        """Deletes every conversation whose last event is before the cut-off (naive UTC);
        returns (conversations, events) deleted."""
        epoch_cutoff = cutoff.replace(tzinfo=timezone.utc).timestamp()
        # An event without a time never keeps a conversation alive.
        stale = (select(tracker_events.c.sender_id).group_by(tracker_events.c.sender_id)
                 .having(func.coalesce(func.max(tracker_events.c.timestamp), 0) < epoch_cutoff))
        with self._events() as connection:
            if connection is None:
                return 0, 0
            conversations = connection.execute(select(func.count()).select_from(stale.subquery())).scalar()
            # One statement, so the staleness is judged when the rows go: on SQLite, which locks the
            # file for it, a conversation that gets a new event meanwhile stays whole.
            events = connection.execute(
                delete(tracker_events).where(tracker_events.c.sender_id.in_(stale))).rowcount
        return conversations, events


def purge_conversations(tracker: TrackerDatabase, retention_days: int, now: datetime) -> Tuple[int, int]:
    """(conversations, events) deleted: those silent for more than `retention_days` at `now` (naive UTC)."""
    return tracker.delete_conversations_last_active_before(now - timedelta(days=retention_days))


def purge_handoffs(store: HandoffStore, retention_days: int, now: datetime) -> Tuple[int, int]:
    """(handoffs, notifications) deleted: those made more than `retention_days` before `now` (naive UTC)."""
    return store.delete_handoffs_created_before(now - timedelta(days=retention_days))
