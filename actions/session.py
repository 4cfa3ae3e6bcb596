"""Starts each conversation: fills the clinic details and shows the frame message once."""
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.clinic import load_clinic
from actions.settings import CLINIC_FILE


class ActionSessionStart(Action):
    def name(self) -> Text:
        return "action_session_start"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        # Read on every new session so an edited clinic.yml applies without a restart.
        clinic = load_clinic(CLINIC_FILE)
        events: List[EventType] = [SessionStarted()]
        events += [SlotSet(name, value) for name, value in clinic.slots().items()]
        dispatcher.utter_message(response="utter_frame", **clinic.slots())
        events.append(ActionExecuted("action_listen"))
        return events
