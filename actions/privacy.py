"""A visitor's "forget me": their conversation is deleted from the tracker store at once.

The rules (data/rules/privacy.yml) ask first; on yes this action deletes every event of the
conversation, all its sessions, and says so with a response whose custom payload tells the
widget to wipe its copy of the transcript and start a new conversation (web/widget/).
Rasa holds the conversation in memory meanwhile and would append it again when it saves
the turn; its tracker store (channels/tracker_store.py) writes nothing of a turn that ran
this action. A booking request already sent is not touched: it is the clinic's record, kept
HANDOFF_RETENTION_DAYS, and the question tells the visitor how to have it removed.
"""
import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from clinic_core.retention import FORGET_CONVERSATION_ACTION, TrackerDatabase
from clinic_core.settings import load_settings
from clinic_core.storage import StorageUnavailable

logger = logging.getLogger(__name__)

_databases: Dict[str, TrackerDatabase] = {}


def tracker_database(url: str) -> TrackerDatabase:
    if url not in _databases:
        _databases[url] = TrackerDatabase(url)
    return _databases[url]


class ActionForgetConversation(Action):
    def name(self) -> Text:
        return FORGET_CONVERSATION_ACTION

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        settings = load_settings()
        try:
            deleted = tracker_database(settings.tracker_database_url).delete_conversation(tracker.sender_id)
        except StorageUnavailable as error:
            # The error names its type only, and the conversation's id is left out: the log of a
            # conversation to be forgotten should not point back to it.
            logger.error("Could not forget a conversation: %s", error)
            dispatcher.utter_message(response="utter_forget_failed",
                                     conversation_retention_days=settings.conversation_retention_days)
            return []
        logger.info("Forgot a conversation (%d events)", deleted)
        dispatcher.utter_message(response="utter_conversation_forgotten")
        return []
