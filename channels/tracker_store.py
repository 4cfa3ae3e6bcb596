"""Rasa's SQL tracker store, which never writes back a conversation the visitor had deleted.

endpoints.yml names it; its options are those of Rasa's `SQL` store. action_forget_conversation
(actions/privacy.py, on the action server) deletes the conversation's rows while the Rasa
server holds the conversation in memory, locked, for the rest of the turn. At the end of the
turn Rasa's `save` appends the tracker's events past the number it finds stored for the
session: with none left it would append the whole session again, the visitor's messages
included. Returning SessionStarted or Restarted from the action would not help, since the
count is of rows, and the rows are gone. So a save whose new events include that action
writes nothing: the conversation stays deleted, and the next message starts a new one. (When
the action could not delete it, the conversation stays as it was, without that last turn.)

A database that restarts (PostgreSQL in the production topology) is waited for: reads and
writes are tried again for up to RETRY_SECONDS, and pooled connections are checked before use.
Without this, Rasa's fail-safe wrapper answers from an empty in-memory tracker: the visitor
is greeted as new mid-conversation and that turn is never stored.
"""
import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Iterator, Optional, Text, TypeVar

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs
from rasa.shared.core.events import ActionExecuted
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy.exc import OperationalError

from clinic_core.retention import FORGET_CONVERSATION_ACTION

logger = logging.getLogger(__name__)
RETRY_SECONDS = 15.0
Result = TypeVar("Result")


class ForgettingSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = self.engine.url
        self.engine.dispose()
        self.engine = sa.create_engine(url, pool_pre_ping=True, **create_engine_kwargs(url))
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)

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

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        return await self._patiently(lambda: super(ForgettingSQLTrackerStore, self).retrieve(sender_id))

    async def retrieve_full_tracker(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        return await self._patiently(lambda: super(ForgettingSQLTrackerStore, self).retrieve_full_tracker(sender_id))

    async def save(self, tracker: DialogueStateTracker) -> None:
        await self._patiently(lambda: super(ForgettingSQLTrackerStore, self).save(tracker))

    def _additional_events(self, session, tracker: DialogueStateTracker) -> Iterator:
        events = list(super()._additional_events(session, tracker))
        if any(isinstance(event, ActionExecuted) and event.action_name == FORGET_CONVERSATION_ACTION
               for event in events):
            return iter(())
        return iter(events)
