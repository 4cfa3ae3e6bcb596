"""Starts each conversation: fills the clinic details and shows the frame message once, with
how long the conversation is kept (CONVERSATION_RETENTION_DAYS, the setting the purge uses)."""
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from clinic_core.clinic import load_clinic
from clinic_core.settings import CLINIC_FILE, load_settings

# The metadata channels/handler.py gives the SessionStarted it logs when this action could not
# run (the action server was down); the session then starts again on the next message.
STARTED_WITHOUT_ACTION_SERVER = "started_without_action_server"
# Never carried over from a session that began without the action server: the form's and Rasa's.
NOT_CARRIED_OVER = {"requested_slot", "session_started_metadata"}


def began_without_action_server(tracker: Tracker) -> bool:
    for event in reversed(tracker.events):
        if event.get("event") == "session_started":
            return bool((event.get("metadata") or {}).get(STARTED_WITHOUT_ACTION_SERVER))
    return False


class ActionSessionStart(Action):
    def name(self) -> Text:
        return "action_session_start"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        # Read on every new session so an edited clinic.yml applies without a restart.
        clinic = load_clinic(CLINIC_FILE)
        events: List[EventType] = [SessionStarted()]
        if began_without_action_server(tracker):
            # The same visitor, moments later: keep what the conversation set meanwhile (a crisis
            # reply's crisis_support_shown keeps the 988 line on later answers).
            events += [SlotSet(name, value) for name, value in tracker.slots.items()
                       if value is not None and name not in NOT_CARRIED_OVER and name not in clinic.slots()]
        events += [SlotSet(name, value) for name, value in clinic.slots().items()]
        dispatcher.utter_message(response="utter_frame", **clinic.slots(),
                                 conversation_retention_days=load_settings().conversation_retention_days)
        events.append(ActionExecuted("action_listen"))
        return events
