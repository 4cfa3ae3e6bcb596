"""Handoffs and their staff notifications, in any SQL database SQLAlchemy supports; the staff
inbox's accounts and audit log are tables in the same database. The schema is versioned with
Alembic (clinic_core/migrate.py).

A handoff and one outbox event are written in one transaction: a request the visitor was told
about is always announced. The outbox sender renders each event into one notification per
channel it has switched on (staff/sender.py), again in one transaction, and delivers those.
Times are stored as naive UTC.

Every database failure (unreachable, locked, refused) surfaces as StorageUnavailable, whose
text names only the error's type: statements' parameters (visitors' details) are never
logged. The schema is brought up to date on first use, so a process starts with the database
down and works once it is back.
"""
import os
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from alembic.util import CommandError
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from clinic_core import migrate

STATUSES = ("new", "contacted", "booked", "closed")
# A handoff id as typed in a URL or a command: more digits would overflow the database's integer.
HANDOFF_ID_PATTERN = r"\d{1,18}"
CHANNELS = ("email", "webhook")
# The languages the assistant speaks; a handoff records the one the visitor wrote in.
LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"
# pending: to be sent; sent; failed: given up (too many attempts, or it can never be sent).
NOTIFICATION_STATUSES = ("pending", "sent", "failed")

metadata = MetaData()

handoffs = Table(
    "handoffs", metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Column("full_name", String(200), nullable=False),
    Column("phone", String(32)),
    Column("email", String(254)),
    Column("preferred_time", String(500), nullable=False),
    Column("reason", Text),
    Column("consent", Boolean, nullable=False),
    Column("status", String(16), nullable=False, default="new"),
    Column("status_changed_at", DateTime),
    Column("conversation_id", String(255), nullable=False),
    Column("visitor_messages", JSON, nullable=False),
    Column("language", String(8), nullable=False, server_default=DEFAULT_LANGUAGE),  # LANGUAGES
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),
    Column("handoff_id", Integer, ForeignKey("handoffs.id"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("status", String(16), nullable=False, default="pending"),  # NOTIFICATION_STATUSES
    # Stable across retries and senders: the email's Message-ID and the webhook's Idempotency-Key,
    # so a delivery repeated after a sender died mid-send can be recognised as the same one.
    Column("idempotency_key", String(64)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime, nullable=False),
    # A sender that claims a row owns it until then, so two senders never send it twice; the
    # claim's own token tells the sender which rows of a batch it won.
    Column("locked_until", DateTime),
    Column("claimed_by", String(32)),
    Column("last_error", Text),
    Column("sent_at", DateTime),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)

# What the action server writes with a handoff; a sender turns it into the outbox rows above.
HANDOFF_CREATED = "handoff_created"
outbox_events = Table(
    "outbox_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("handoff_id", Integer, ForeignKey("handoffs.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("processed_at", DateTime),  # when a sender queued its notifications
    Index("ix_outbox_events_unprocessed", "processed_at", "id"),
)

# The staff inbox's accounts and audit log live in the same database (staff/accounts.py, staff/audit.py).
staff_accounts = Table(
    "staff_accounts", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),  # Argon2id, with its own salt and parameters
    Column("role", String(16), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # In every session cookie and trusted-browser cookie: raising it signs the account out everywhere.
    Column("session_generation", Integer, nullable=False, default=0),
    Column("created_at", DateTime, nullable=False),
    Column("password_changed_at", DateTime, nullable=False),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime, nullable=False),
    Column("actor", String(64)),  # the account's username, or the system user at the command line
    Column("account_id", Integer),  # None at the command line, or for a sign-in to an unknown account
    Column("via", String(16), nullable=False),
    Column("action", String(32), nullable=False),
    Column("handoff_id", Integer),  # no foreign key: the entry outlives a deleted handoff
    Column("subject", String(64)),  # the account an account change is about
    Column("detail", String(64)),  # a status, a role, a reason, a count: never what a visitor wrote
    Column("address", String(64)),
)


@dataclass(frozen=True)
class HandoffRequest:
    full_name: str
    preferred_time: str
    consent: bool
    conversation_id: str
    phone: Optional[str] = None
    email: Optional[str] = None
    reason: Optional[str] = None
    visitor_messages: List[str] = field(default_factory=list)
    language: str = DEFAULT_LANGUAGE  # one of LANGUAGES


def known_language(value: Any) -> str:
    """The conversation's language if the assistant speaks it, else the default."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Notification:
    channel: str  # one of CHANNELS
    subject: str
    body: str


# Given the new handoff's id, the notifications to queue with it (they link to it).
RenderNotifications = Callable[[int, HandoffRequest], List[Notification]]
# Work done in the same transaction as a change, such as its audit-log entry.
AlsoInTransaction = Callable[[Connection], None]


def utcnow() -> datetime:
    return datetime.utcnow().replace(microsecond=0)


class StorageUnavailable(Exception):
    """The handoff database could not be reached, read or written (its cause is chained)."""


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


def make_engine(url: str) -> Engine:
    # Statement parameters hold visitors' details: keep them out of errors and logs.
    engine = create_engine(url, future=True, hide_parameters=True)
    if engine.url.get_backend_name() == "sqlite":
        # What this engine deletes (the purge, forget-me) is overwritten with zeros, not left
        # readable in the file's free pages.
        event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA secure_delete = ON"))
    return engine


def prepare_sqlite_file(url: str) -> None:
    """A new SQLite file is made readable by its owner only (SQLite's journals copy the mode)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def request_from_row(row: Dict[str, Any]) -> HandoffRequest:
    return HandoffRequest(
        full_name=row["full_name"], preferred_time=row["preferred_time"], consent=row["consent"],
        conversation_id=row["conversation_id"], phone=row["phone"], email=row["email"],
        reason=row["reason"], visitor_messages=list(row["visitor_messages"] or []),
        language=known_language(row["language"]))


class HandoffStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @contextmanager
    def _database(self) -> Iterator[None]:
        """Ensures the schema, and turns any database failure into StorageUnavailable."""
        try:
            with self._schema_lock:
                if not self._schema_ready:
                    prepare_sqlite_file(self.url)
                    migrate.upgrade(self.engine)
                    self._schema_ready = True
            yield
        except (SQLAlchemyError, OSError, CommandError) as error:
            raise StorageUnavailable(type(error).__name__) from error

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction, committed when the block ends; any database failure is StorageUnavailable."""
        with self._database(), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self._database(), self.engine.connect() as connection:
            yield connection

    def create_handoff(self, request: HandoffRequest) -> int:
        """Stores the handoff with the one event that has the senders announce it."""
        now = utcnow()
        with self._database(), self.engine.begin() as connection:
            handoff_id = connection.execute(insert(handoffs).values(
                created_at=now, full_name=request.full_name, phone=request.phone,
                email=request.email, preferred_time=request.preferred_time,
                reason=request.reason, consent=request.consent, status="new",
                conversation_id=request.conversation_id,
                visitor_messages=list(request.visitor_messages),
                language=known_language(request.language),
            )).inserted_primary_key[0]
            connection.execute(insert(outbox_events).values(
                handoff_id=handoff_id, kind=HANDOFF_CREATED, created_at=now))
        return handoff_id

    def queue_notifications(self, render: RenderNotifications, limit: int = 50) -> int:
        """Renders the oldest unprocessed events into outbox rows, each event with its rows in
        one transaction; returns how many rows were queued.

        An event is processed once however many senders run: PostgreSQL hands each event to
        one sender (FOR UPDATE SKIP LOCKED); everywhere, only the sender whose conditional
        update marks it processed queues its rows.
        """
        queued = 0
        with self._database(), self.engine.begin() as connection:
            events = connection.execute(
                select(outbox_events.c.id, outbox_events.c.handoff_id)
                .where(outbox_events.c.processed_at.is_(None)).order_by(outbox_events.c.id).limit(limit)
                .with_for_update(skip_locked=True)).all()
            now = utcnow()
            for event_id, handoff_id in events:
                won = connection.execute(
                    update(outbox_events).where(outbox_events.c.id == event_id, outbox_events.c.processed_at.is_(None))
                    .values(processed_at=now)).rowcount == 1
                if not won:  # another sender has it
                    continue
                row = connection.execute(select(handoffs).where(handoffs.c.id == handoff_id)).first()
                if row is None:
                    continue
                for notification in render(handoff_id, request_from_row(row._mapping)):
                    connection.execute(insert(outbox).values(
                        handoff_id=handoff_id, channel=notification.channel,
                        subject=notification.subject, body=notification.body, created_at=now,
                        status="pending", attempts=0, next_attempt_at=now, idempotency_key=new_idempotency_key(),
                    ))
                    queued += 1
        return queued

    def list_handoffs(self, status: Optional[str] = None, limit: int = 200) -> List[Dict[str, Any]]:
        query = select(handoffs).order_by(handoffs.c.created_at.desc(), handoffs.c.id.desc()).limit(limit)
        if status:
            query = query.where(handoffs.c.status == status)
        with self._database(), self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def get_handoff(self, handoff_id: int) -> Optional[Dict[str, Any]]:
        with self._database(), self.engine.connect() as connection:
            row = connection.execute(select(handoffs).where(handoffs.c.id == handoff_id)).first()
            if row is None:
                return None
            notifications = connection.execute(
                select(outbox).where(outbox.c.handoff_id == handoff_id).order_by(outbox.c.id)
            )
            unprocessed = connection.execute(select(func.count()).where(
                outbox_events.c.handoff_id == handoff_id, outbox_events.c.processed_at.is_(None))).scalar()
            return {**row._mapping, "notifications": [dict(n._mapping) for n in notifications],
                    "notifications_to_queue": bool(unprocessed)}

    def set_status(self, handoff_id: int, status: str, also: Optional[AlsoInTransaction] = None) -> bool:
        """False when there is no such handoff; `also` runs in the same transaction after the change."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        with self.transaction() as connection:
            result = connection.execute(
                update(handoffs).where(handoffs.c.id == handoff_id)
                .values(status=status, status_changed_at=utcnow())
            )
            if result.rowcount != 1:
                return False
            if also:
                also(connection)
            return True

    def delete_handoff(self, handoff_id: int, also: Optional[AlsoInTransaction] = None) -> bool:
        """Deletes a handoff and its notifications; False when there is no such handoff.

        `also` runs in the same transaction after the deletion.
        """
        with self.transaction() as connection:
            connection.execute(delete(outbox).where(outbox.c.handoff_id == handoff_id))
            connection.execute(delete(outbox_events).where(outbox_events.c.handoff_id == handoff_id))
            if connection.execute(delete(handoffs).where(handoffs.c.id == handoff_id)).rowcount != 1:
                return False
            if also:
                also(connection)
            return True

    def delete_handoffs_created_before(self, cutoff: datetime) -> Tuple[int, int]:
        """Deletes the handoffs made before the cut-off with their notifications; returns how
        many of each went (clinic_core/retention.py)."""
        old = select(handoffs.c.id).where(handoffs.c.created_at < cutoff)
        with self._database(), self.engine.begin() as connection:
            notifications = connection.execute(delete(outbox).where(outbox.c.handoff_id.in_(old))).rowcount
            connection.execute(delete(outbox_events).where(outbox_events.c.handoff_id.in_(old)))
            deleted = connection.execute(delete(handoffs).where(handoffs.c.created_at < cutoff)).rowcount
        return deleted, notifications

    # --- outbox ----------------------------------------------------------------
    def claim_notifications(self, now: datetime, lease: timedelta, limit: int) -> List[Dict[str, Any]]:
        """Up to `limit` due pending notifications, oldest first, claimed in one transaction for
        `lease` by this caller; empty when none is due.

        PostgreSQL skips rows another sender holds (FOR UPDATE SKIP LOCKED); on every database
        the conditional update claims only rows still free, under this claim's own token, so
        two senders never hold one row.
        """
        claimable = (outbox.c.status == "pending") & (
            outbox.c.locked_until.is_(None) | (outbox.c.locked_until <= now))
        token = uuid.uuid4().hex
        with self._database(), self.engine.begin() as connection:
            ids = connection.execute(
                select(outbox.c.id).where(claimable, outbox.c.next_attempt_at <= now)
                .order_by(outbox.c.id).limit(limit).with_for_update(skip_locked=True)
            ).scalars().all()
            if not ids:
                return []
            connection.execute(update(outbox).where(outbox.c.id.in_(ids), claimable)
                               .values(locked_until=now + lease, claimed_by=token))
            rows = connection.execute(select(outbox).where(outbox.c.id.in_(ids), outbox.c.claimed_by == token)
                                      .order_by(outbox.c.id))
            return [dict(row._mapping) for row in rows]

    def release(self, notification_ids: List[int], claimed_by: str) -> None:
        """Gives back claimed notifications this caller will not send now."""
        with self._database(), self.engine.begin() as connection:
            connection.execute(update(outbox).values(locked_until=None, claimed_by=None)
                               .where(outbox.c.id.in_(notification_ids), outbox.c.claimed_by == claimed_by))

    def mark_sent(self, notification_id: int, now: datetime) -> None:
        with self._database(), self.engine.begin() as connection:
            connection.execute(update(outbox).where(outbox.c.id == notification_id).values(
                status="sent", sent_at=now, attempts=outbox.c.attempts + 1,
                locked_until=None, claimed_by=None, last_error=None,
            ))

    def mark_attempt_failed(self, notification_id: int, error: str, next_attempt_at: Optional[datetime]) -> None:
        """Records a failed attempt; with no next attempt the notification is given up as failed."""
        values: Dict[str, Any] = {"attempts": outbox.c.attempts + 1, "locked_until": None, "claimed_by": None,
                                  "last_error": error[:1000]}
        if next_attempt_at is None:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = next_attempt_at
        with self._database(), self.engine.begin() as connection:
            connection.execute(update(outbox).where(outbox.c.id == notification_id).values(**values))

    def unqueued_event_count(self) -> int:
        with self._database(), self.engine.connect() as connection:
            return connection.execute(select(func.count()).where(outbox_events.c.processed_at.is_(None))).scalar()

    def undelivered_counts(self) -> Tuple[int, int, int]:
        """Pending notifications, those of them that have failed an attempt, and those given up as failed."""
        query = select(
            func.count().filter(outbox.c.status == "pending"),
            func.count(outbox.c.last_error).filter(outbox.c.status == "pending"),
            func.count().filter(outbox.c.status == "failed"),
        )
        with self._database(), self.engine.connect() as connection:
            pending, failing, failed = connection.execute(query).one()
        return pending, failing, failed

    def notifications(self, status: Optional[str] = None) -> List[Dict[str, Any]]:
        query = select(outbox).order_by(outbox.c.id)
        if status:
            query = query.where(outbox.c.status == status)
        with self._database(), self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
