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
"""
from typing import Iterator

from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import ActionExecuted
from rasa.shared.core.trackers import DialogueStateTracker

from clinic_core.retention import FORGET_CONVERSATION_ACTION


class ForgettingSQLTrackerStore(SQLTrackerStore):
    def _additional_events(self, session, tracker: DialogueStateTracker) -> Iterator:
        events = list(super()._additional_events(session, tracker))
        if any(isinstance(event, ActionExecuted) and event.action_name == FORGET_CONVERSATION_ACTION
               for event in events):
            return iter(())
        return iter(events)
