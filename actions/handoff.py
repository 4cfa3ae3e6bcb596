"""Ends the booking form: stores the handoff (the outbox sender notifies staff), or lets it go."""
import logging
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Text, Tuple
from zoneinfo import ZoneInfo

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.booking_form import BOOKING_SLOTS, MAX_NAME_LENGTH, MAX_REASON_LENGTH, MAX_TIME_LENGTH
from actions.contact_details import normalise_email, normalise_us_phone
from clinic_core.clinic import WEEKDAYS, Clinic, format_time, load_clinic
from clinic_core.settings import CLINIC_FILE, load_settings
from clinic_core.storage import HandoffRequest, HandoffStore, known_language

logger = logging.getLogger(__name__)

MAX_VISITOR_MESSAGES, MAX_MESSAGE_LENGTH = 50, 2000
_stores: Dict[str, HandoffStore] = {}


def store_for(url: str) -> HandoffStore:
    if url not in _stores:
        _stores[url] = HandoffStore(url)
    return _stores[url]


def reset_booking() -> List[EventType]:
    return [SlotSet(slot, None) for slot in BOOKING_SLOTS]


def contact_window(clinic: Clinic, now: datetime) -> Tuple[Text, Dict[Text, Text]]:
    """The confirmation to send, by the clinic's hours in its own time zone, and its values."""
    local = now.astimezone(ZoneInfo(clinic.timezone))
    today = local.weekday()
    hours = clinic.hours[WEEKDAYS[today]]
    if hours and hours[0] <= local.time() < hours[1]:
        return "utter_booking_saved_open", {}
    if hours and local.time() < hours[0]:
        return "utter_booking_saved_later_today", {"opening_time": format_time(hours[0])}
    for days_ahead in range(1, 8):
        day = WEEKDAYS[(today + days_ahead) % 7]
        if clinic.hours[day]:
            opening_time = format_time(clinic.hours[day][0])
            if days_ahead == 1:
                return "utter_booking_saved_tomorrow", {"opening_time": opening_time}
            return "utter_booking_saved_later", {"opening_day": day.title(), "opening_time": opening_time}
    return "utter_booking_saved_no_hours", {}


def visitor_messages(tracker: Tracker) -> List[Text]:
    """What the visitor typed since this conversation started (button clicks left out)."""
    messages: List[Text] = []
    for event in tracker.events:
        if event.get("event") == "session_started":
            messages = []
        elif event.get("event") == "user":
            text = (event.get("text") or "").strip()
            if text and not text.startswith("/"):
                messages.append(text[:MAX_MESSAGE_LENGTH])
    return messages[-MAX_VISITOR_MESSAGES:]


def _optional(value: Optional[Text]) -> Optional[Text]:
    return value or None


def _text_up_to(value: Any, max_length: int, required: bool = True) -> bool:
    if value is None or value == "":
        return not required
    return isinstance(value, str) and bool(value.strip()) and len(value) <= max_length


def _normalised_or_empty(value: Any, normalise: Any) -> bool:
    return value is None or (isinstance(value, str) and normalise(value) == value)


def details_are_complete(tracker: Tracker) -> bool:
    """Every detail as the form's validation leaves it. Slots can also be set by crafted
    messages (a correction to a field the form never asked for), so nothing is trusted."""
    phone, email = tracker.get_slot("phone"), tracker.get_slot("email")
    return (tracker.get_slot("consent") is True
            and _text_up_to(tracker.get_slot("full_name"), MAX_NAME_LENGTH)
            and bool(phone or email)
            and _normalised_or_empty(phone, normalise_us_phone)
            and _normalised_or_empty(email, normalise_email)
            and _text_up_to(tracker.get_slot("preferred_time"), MAX_TIME_LENGTH)
            and _text_up_to(tracker.get_slot("reason"), MAX_REASON_LENGTH, required=False))


class ActionSubmitBooking(Action):
    def name(self) -> Text:
        return "action_submit_booking"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        if tracker.get_slot("consent") is not True:
            dispatcher.utter_message(response="utter_consent_declined")
            return reset_booking()
        if tracker.get_slot("booking_confirmed") is not True:
            return []
        if not details_are_complete(tracker):
            logger.warning("Refused an incomplete handoff for conversation %s", tracker.sender_id)
            dispatcher.utter_message(response="utter_booking_incomplete")
            return reset_booking()
        request = HandoffRequest(
            full_name=tracker.get_slot("full_name"),
            phone=_optional(tracker.get_slot("phone")),
            email=_optional(tracker.get_slot("email")),
            preferred_time=tracker.get_slot("preferred_time"),
            reason=_optional(tracker.get_slot("reason")),
            consent=True,
            conversation_id=tracker.sender_id,
            visitor_messages=visitor_messages(tracker),
            language=known_language(tracker.get_slot("language")),
        )
        settings = load_settings()
        try:
            store_for(settings.database_url).create_handoff(request)
        except Exception as error:  # any storage failure: never tell the visitor it worked
            # The type only: a traceback can carry the visitor's details.
            logger.error("Could not store the handoff for conversation %s: %s", tracker.sender_id,
                         type(error).__name__)
            dispatcher.utter_message(response="utter_booking_failed")
            # The details stay: asking to book again shows the summary for another try.
            return [SlotSet("booking_confirmed", None)]
        response, values = contact_window(load_clinic(CLINIC_FILE), datetime.now(timezone.utc))
        dispatcher.utter_message(response=response, full_name=request.full_name, **values)
        return reset_booking()


class ActionCancelBooking(Action):
    """The visitor left the form: what they gave is forgotten."""

    def name(self) -> Text:
        return "action_cancel_booking"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[Text, Any]) -> List[EventType]:
        dispatcher.utter_message(response="utter_booking_cancelled")
        return reset_booking()
