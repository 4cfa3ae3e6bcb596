"""Handoffs and their staff notifications, in any SQL database SQLAlchemy supports.

A handoff and its outbox rows are written in one transaction: a request the visitor was
told about always has its notifications queued, and a failed write queues nothing.
Times are stored as naive UTC.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url

STATUSES = ("new", "contacted", "booked", "closed")
# A handoff id as typed in a URL or a command: more digits would overflow the database's integer.
HANDOFF_ID_PATTERN = r"\d{1,18}"
CHANNELS = ("email", "webhook")

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
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),
    Column("handoff_id", Integer, ForeignKey("handoffs.id"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("status", String(16), nullable=False, default="pending"),  # pending, sent
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime, nullable=False),
    # A sender that claims a row owns it until then, so two senders never send it twice.
    Column("locked_until", DateTime),
    Column("last_error", Text),
    Column("sent_at", DateTime),
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


@dataclass(frozen=True)
class Notification:
    channel: str  # one of CHANNELS
    subject: str
    body: str


# Given the new handoff's id, the notifications to queue with it (they link to it).
RenderNotifications = Callable[[int, HandoffRequest], List[Notification]]


def utcnow() -> datetime:
    return datetime.utcnow().replace(microsecond=0)


def make_engine(url: str) -> Engine:
    database = make_url(url).database
    if url.startswith("sqlite") and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    metadata.create_all(engine)
    return engine


class HandoffStore:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def create_handoff(self, request: HandoffRequest, render: RenderNotifications) -> int:
        now = utcnow()
        with self.engine.begin() as connection:
            handoff_id = connection.execute(insert(handoffs).values(
                created_at=now, full_name=request.full_name, phone=request.phone,
                email=request.email, preferred_time=request.preferred_time,
                reason=request.reason, consent=request.consent, status="new",
                conversation_id=request.conversation_id,
                visitor_messages=list(request.visitor_messages),
            )).inserted_primary_key[0]
            for notification in render(handoff_id, request):
                connection.execute(insert(outbox).values(
                    handoff_id=handoff_id, channel=notification.channel,
                    subject=notification.subject, body=notification.body, created_at=now,
                    status="pending", attempts=0, next_attempt_at=now,
                ))
        return handoff_id

    def list_handoffs(self, status: Optional[str] = None, limit: int = 200) -> List[Dict[str, Any]]:
        query = select(handoffs).order_by(handoffs.c.created_at.desc(), handoffs.c.id.desc()).limit(limit)
        if status:
            query = query.where(handoffs.c.status == status)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def get_handoff(self, handoff_id: int) -> Optional[Dict[str, Any]]:
        with self.engine.connect() as connection:
            row = connection.execute(select(handoffs).where(handoffs.c.id == handoff_id)).first()
            if row is None:
                return None
            notifications = connection.execute(
                select(outbox).where(outbox.c.handoff_id == handoff_id).order_by(outbox.c.id)
            )
            return {**row._mapping, "notifications": [dict(n._mapping) for n in notifications]}

    def set_status(self, handoff_id: int, status: str) -> bool:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        with self.engine.begin() as connection:
            result = connection.execute(
                update(handoffs).where(handoffs.c.id == handoff_id)
                .values(status=status, status_changed_at=utcnow())
            )
            return result.rowcount == 1

    # --- outbox ----------------------------------------------------------------
    def claim_due_notifications(self, now: datetime, lease: timedelta, limit: int = 20) -> List[Dict[str, Any]]:
        """Pending notifications that are due, each claimed for `lease` by this caller."""
        with self.engine.begin() as connection:
            due = connection.execute(
                select(outbox.c.id).where(
                    outbox.c.status == "pending",
                    outbox.c.next_attempt_at <= now,
                    (outbox.c.locked_until.is_(None)) | (outbox.c.locked_until <= now),
                ).order_by(outbox.c.id).limit(limit)
            ).scalars().all()
        claimed = []
        for notification_id in due:
            with self.engine.begin() as connection:
                # Conditional update: only one claimant wins a row.
                won = connection.execute(
                    update(outbox).where(
                        outbox.c.id == notification_id, outbox.c.status == "pending",
                        (outbox.c.locked_until.is_(None)) | (outbox.c.locked_until <= now),
                    ).values(locked_until=now + lease)
                ).rowcount == 1
                if won:
                    row = connection.execute(select(outbox).where(outbox.c.id == notification_id)).first()
                    claimed.append(dict(row._mapping))
        return claimed

    def mark_sent(self, notification_id: int, now: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(outbox).where(outbox.c.id == notification_id).values(
                status="sent", sent_at=now, attempts=outbox.c.attempts + 1,
                locked_until=None, last_error=None,
            ))

    def mark_attempt_failed(self, notification_id: int, error: str, next_attempt_at: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(outbox).where(outbox.c.id == notification_id).values(
                attempts=outbox.c.attempts + 1, next_attempt_at=next_attempt_at,
                locked_until=None, last_error=error[:1000],
            ))

    def undelivered_counts(self) -> Tuple[int, int]:
        """How many notifications are pending, and how many of those have failed an attempt."""
        query = select(func.count(), func.count(outbox.c.last_error)).where(outbox.c.status == "pending")
        with self.engine.connect() as connection:
            pending, failing = connection.execute(query).one()
        return pending, failing

    def notifications(self, status: Optional[str] = None) -> List[Dict[str, Any]]:
        query = select(outbox).order_by(outbox.c.id)
        if status:
            query = query.where(outbox.c.status == status)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
