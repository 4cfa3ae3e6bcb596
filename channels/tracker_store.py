"""Rasa's SQL tracker store, which keeps conversations in memory between turns and never
writes back a conversation the visitor had deleted.

endpoints.yml names it; its options are those of Rasa's `SQL` store.

Per-turn cost independent of the conversation's length. Rasa's store reads every event of the
session each turn, replays them into a tracker, and counts them again before appending the new
ones. Here the tracker saved at the end of a turn is kept (for up to CACHED_CONVERSATIONS
conversations, least recently used first out), with the stored rows' version: their number and
highest id for that conversation. A turn reads only that version: when it matches, the kept
tracker is lent out as it is, and the save writes only the events past those already stored.
Anything else reads the conversation again as Rasa does: another process's turn or a deletion
(forget-me, purge) changes the version; a tracker lent out and never saved (a failed turn) is
no longer kept; a new session is read again so that its tracker holds that session only. (SQLite
may give a deleted row's id to a new row, so a deletion followed by exactly as many new rows of
the same conversation from another process could pass for no change; Rasa's lock store keeps
other processes off a conversation while a turn runs.) SQLite runs in WAL mode with pooled
connections, so readers and the writer do not wait for each other and a connection is not
opened per query.

Forget-me. action_forget_conversation (actions/privacy.py, on the action server) deletes the
conversation's rows while the Rasa server holds the conversation, locked, for the rest of the
turn. At the end of the turn Rasa's `save` would append the tracker's events past those it
finds stored: with none left, the whole session again, the visitor's messages included. So a
save whose new events include that action writes nothing: the conversation stays deleted, and
the next message starts a new one. (When the action could not delete it, the conversation stays
as it was, without that last turn.)

A database that restarts (PostgreSQL in the production topology) is waited for: reads and
writes are tried again for up to RETRY_SECONDS, and pooled connections are checked before use.
Without this, Rasa's fail-safe wrapper answers from an empty in-memory tracker: the visitor
is greeted as new mid-conversation and that turn is never stored.
"""
import asyncio
import itertools
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text, Tuple, TypeVar

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs
from rasa.shared.core.events import ActionExecuted, Event, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from clinic_core.retention import FORGET_CONVERSATION_ACTION

logger = logging.getLogger(__name__)
RETRY_SECONDS = 15.0
CACHED_CONVERSATIONS = 500
Result = TypeVar("Result")
# A conversation's stored rows: how many, and the highest id (None when there are none).
Version = Tuple[int, Optional[int]]


@dataclass
class Kept:
    tracker: DialogueStateTracker
    version: Version
    stored_events: int  # how many of tracker.events are stored


def engine_options(url: sa.engine.URL) -> Dict[Text, Any]:
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        # One pool shared by Rasa's event loop and its thread pool.
        return {"poolclass": QueuePool, "connect_args": {"check_same_thread": False}}
    return create_engine_kwargs(url)


def use_wal(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode a crash of the process loses nothing; a power cut may lose the last turns.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def forgets(events: List[Event]) -> bool:
    return any(isinstance(event, ActionExecuted) and event.action_name == FORGET_CONVERSATION_ACTION
               for event in events)


class ForgettingSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = self.engine.url
        self.engine.dispose()
        options = engine_options(url)
        self.engine = sa.create_engine(url, pool_pre_ping=True, **options)
        if "poolclass" in options:
            sa.event.listen(self.engine, "connect", use_wal)
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        self._kept: "OrderedDict[Text, Kept]" = OrderedDict()
        self._lent: "OrderedDict[Text, Kept]" = OrderedDict()

    async def _patiently(self, attempt: Callable[[], Awaitable[Result]]) -> Result:
        """The attempt, tried again while the database cannot be reached, for up to RETRY_SECONDS."""
        deadline, wait = time.monotonic() + RETRY_SECONDS, 0.2
        while True:
            try:
                return await attempt()
            except OperationalError as error:
                if time.monotonic() + wait > deadline:
                    raise
                logger.warning("Conversation store unavailable (%s); trying again in %.1f s",
                               type(error.orig).__name__, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 2.0)

    def _version(self, session: Any, sender_id: Text) -> Version:
        count, highest = (session.query(sa.func.count(self.SQLEvent.id), sa.func.max(self.SQLEvent.id))
                          .filter(self.SQLEvent.sender_id == sender_id).one())
        return count, highest

    @staticmethod
    def _remember(shelf: "OrderedDict[Text, Kept]", sender_id: Text, kept: Kept) -> None:
        shelf[sender_id] = kept
        shelf.move_to_end(sender_id)
        while len(shelf) > CACHED_CONVERSATIONS:
            shelf.popitem(last=False)

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        return await self._patiently(lambda: self._retrieve_latest_session(sender_id))

    async def _retrieve_latest_session(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        with self.session_scope() as session:
            version = self._version(session, sender_id)
            kept = self._kept.pop(sender_id, None)
            if kept is None or kept.version != version:
                events = [json.loads(row.data) for row in self._event_query(session, sender_id, False)]
                if not events or not self.domain:
                    return None
                tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
                kept = Kept(tracker, version, len(events))
        self._remember(self._lent, sender_id, kept)
        return kept.tracker

    async def retrieve_full_tracker(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        return await self._patiently(lambda: super(ForgettingSQLTrackerStore, self).retrieve_full_tracker(sender_id))

    async def save(self, tracker: DialogueStateTracker) -> None:
        await self._patiently(lambda: self._save(tracker))

    async def _save(self, tracker: DialogueStateTracker) -> None:
        sender_id = tracker.sender_id
        lent = self._lent.pop(sender_id, None)
        self._kept.pop(sender_id, None)
        with self.session_scope() as session:
            version = self._version(session, sender_id)
            # Only a tracker this store lent out is kept: the caller is done with it once saved.
            # (Rasa's create_tracker saves a new tracker, then goes on changing it.)
            was_lent = lent is not None and lent.tracker is tracker
            if was_lent and lent.version == version:
                stored = lent.stored_events
            else:  # as Rasa counts them
                stored = self._event_query(session, sender_id, fetch_events_from_all_sessions=False).count()
            new_events = list(itertools.islice(tracker.events, stored, None))
            if forgets(new_events):
                return
            if self.event_broker:
                await self._stream_new_events(self.event_broker, new_events, sender_id)
            rows = [self._row(sender_id, event) for event in new_events]
            session.add_all(rows)
            session.flush()
            highest = rows[-1].id if rows else version[1]
            session.commit()
        if was_lent and not any(isinstance(event, SessionStarted) for event in new_events):
            self._remember(self._kept, sender_id, Kept(tracker, (version[0] + len(rows), highest),
                                                       len(tracker.events)))

    def _row(self, sender_id: Text, event: Event) -> "SQLTrackerStore.SQLEvent":
        data = event.as_dict()
        return self.SQLEvent(sender_id=sender_id, type_name=event.type_name, timestamp=data.get("timestamp"),
                             intent_name=data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                             action_name=data.get("name"), data=json.dumps(data))
