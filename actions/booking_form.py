"""The booking form: which answer fills which detail, and what counts as a valid answer.

Each detail is extracted here (custom slot mappings) rather than by intent conditions,
because the intent model was never trained on names and times ("Will Doe" looks like an
FAQ to it). A message fills the detail the form asked for unless it is an interruption:
cancel, an emergency, or a question the assistant can answer, which the form rejects
so that a rule answers it and the form asks again.
"""
import re
from typing import Any, Callable, Dict, List, Optional, Set, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.contact_details import (
    EMAIL_INVALID,
    PHONE_NOT_US,
    has_contact_candidate,
    parse_contact_details,
)

FORM = "booking_form"
BOOKING_SLOTS = ("full_name", "contact_details", "phone", "email", "preferred_time",
                 "reason", "consent", "booking_confirmed")

# Always leave the requested detail unfilled: rules answer these.
HARD_INTERRUPTIONS = {"cancel", "crisis", "medical_emergency", "forget_me"}
# Interrupt only when the message reads as a question (or a confident FAQ match), so
# that a name the model mistakes for a question is still taken as a name.
ANSWERABLE = {"faq", "ask_cost", "ask_insurance", "ask_fda_approval", "ask_clinic_details",
              "ask_personal_medical_advice", "bot_challenge", "book_consultation", "talk_to_human"}
FAQ_MATCH_MIN_CONFIDENCE = 0.5
QUESTION_START = re.compile(
    r"^(what|what's|whats|how|why|when|where|who|which|can|could|is|are|does|do|did|will|"
    r"would|should|may|might|am|tell me|explain)\b", re.IGNORECASE)
NAME_PREFIX = re.compile(r"^(my name is|my name's|name is|name:|i am|i'm|im|it's|its|this is|call me)\s+",
                         re.IGNORECASE)
SKIP_WORDS = {"skip", "no", "nope", "none", "nothing", "n/a", "na", "no thanks", "not really",
              "prefer not to say", "rather not say", "i'd rather not say", "nothing specific"}
NOT_A_NAME = {"yes", "no", "ok", "okay", "sure", "yeah", "yep", "nope", "hi", "hello", "hey",
              "thanks", "thank you", "skip"}
# The details the summary's "Change ..." buttons name. A correction naming any other slot
# (phone, consent ...) is typed by hand, not clicked, and changes nothing.
CORRECTABLE_FIELDS = ("full_name", "contact_details", "preferred_time", "reason")
# A visitor correcting the summary in words: which detail they mean.
FIELD_KEYWORDS = (
    ("full_name", re.compile(r"\bname\b", re.IGNORECASE)),
    ("contact_details", re.compile(r"\b(phone|number|e-?mail|contact|mail|call)\b", re.IGNORECASE)),
    ("preferred_time", re.compile(r"\b(time|when|morning|afternoon|evening|day|hours?)\b", re.IGNORECASE)),
    ("reason", re.compile(r"\b(reason|help|about|question)\b", re.IGNORECASE)),
)
MAX_NAME_LENGTH, MAX_TIME_LENGTH, MAX_REASON_LENGTH = 100, 200, 1000


def is_question(text: Text) -> bool:
    text = text.strip()
    # Three words at least: "Will Doe" and "May Chen" are names.
    return text.endswith("?") or (bool(QUESTION_START.match(text)) and len(text.split()) >= 3)


def is_hard_interruption(message: Dict[Text, Any]) -> bool:
    return message.get("intent", {}).get("name") in HARD_INTERRUPTIONS


def is_interruption(message: Dict[Text, Any]) -> bool:
    if is_hard_interruption(message):
        return True
    intent = message.get("intent", {}).get("name")
    if intent not in ANSWERABLE:
        return False
    faq_confidence = (message.get("response_selector", {}).get("faq", {})
                      .get("response", {}).get("confidence", 0.0))
    return is_question(message.get("text", "")) or (intent == "faq" and faq_confidence >= FAQ_MATCH_MIN_CONFIDENCE)


def field_to_correct(message: Dict[Text, Any]) -> Optional[Text]:
    """The detail a correction names: the button's entity, else a keyword in the text."""
    for entity in message.get("entities", []):
        if entity.get("entity") == "booking_field" and entity.get("value") in CORRECTABLE_FIELDS:
            return entity["value"]
    text = message.get("text", "")
    return next((slot for slot, pattern in FIELD_KEYWORDS if pattern.search(text)), None)


def _normalised(text: Text) -> Text:
    return re.sub(r"\s+", " ", text).strip().strip(".!").strip()


class ValidateBookingForm(FormValidationAction):
    def name(self) -> Text:
        return f"validate_{FORM}"

    # --- extraction: only the detail that was asked for -----------------------------
    @staticmethod
    def _answer(slot: Text, tracker: Tracker,
                interrupted: Callable[[Dict[Text, Any]], bool] = is_interruption) -> Dict[Text, Any]:
        """{slot: the visitor's message} when it answers the form's question for `slot`."""
        message = tracker.latest_message
        text = message.get("text") or ""
        if tracker.get_slot("requested_slot") != slot or not text.strip() or interrupted(message):
            return {}
        return {slot: text}

    async def extract_full_name(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                domain: DomainDict) -> Dict[Text, Any]:
        return self._answer("full_name", tracker)

    async def extract_contact_details(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                      domain: DomainDict) -> Dict[Text, Any]:
        # A number or an address is an answer whatever the intent model thought of it.
        return self._answer("contact_details", tracker, lambda message: (
            not has_contact_candidate(message.get("text") or "") and is_interruption(message)))

    async def extract_preferred_time(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                     domain: DomainDict) -> Dict[Text, Any]:
        return self._answer("preferred_time", tracker)

    async def extract_reason(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> Dict[Text, Any]:
        # "What would you like help with?" invites questions: any answer but a cancel or
        # an emergency is the reason, for the team to answer.
        return self._answer("reason", tracker, is_hard_interruption)

    def _yes_or_no(self, slot: Text, tracker: Tracker, no_intents: Set[Text]) -> Dict[Text, Any]:
        answer = self._answer(slot, tracker)
        intent = tracker.latest_message.get("intent", {}).get("name")
        if answer and intent == "affirm":
            return {slot: True}
        if answer and intent in no_intents:
            return {slot: False}
        return answer  # neither yes nor no: validation asks again

    async def extract_consent(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                              domain: DomainDict) -> Dict[Text, Any]:
        return self._yes_or_no("consent", tracker, {"deny"})

    async def extract_booking_confirmed(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                        domain: DomainDict) -> Dict[Text, Any]:
        return self._yes_or_no("booking_confirmed", tracker, {"deny", "correct_booking_field"})

    # --- validation ------------------------------------------------------------------
    def validate_full_name(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                           domain: DomainDict) -> Dict[Text, Any]:
        name = _normalised(NAME_PREFIX.sub("", _normalised(str(value))))
        valid = (0 < len(name) <= MAX_NAME_LENGTH and re.search(r"[^\W\d_]", name)
                 and not re.search(r"[\d@<>{}\[\]]", name) and len(name.split()) <= 8
                 and name.lower() not in NOT_A_NAME)
        if not valid:
            dispatcher.utter_message(response="utter_invalid_full_name")
            return {"full_name": None}
        return {"full_name": name}

    def validate_contact_details(self, value: Any, dispatcher: CollectingDispatcher,
                                 tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        details = parse_contact_details(str(value))
        if details.found:
            return {"contact_details": details.summary(), "phone": details.phone, "email": details.email}
        if PHONE_NOT_US in details.problems:
            dispatcher.utter_message(response="utter_invalid_phone_not_us")
        elif EMAIL_INVALID in details.problems:
            dispatcher.utter_message(response="utter_invalid_email")
        else:
            dispatcher.utter_message(response="utter_invalid_contact_details")
        return {"contact_details": None, "phone": None, "email": None}

    def validate_preferred_time(self, value: Any, dispatcher: CollectingDispatcher,
                                tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        preferred_time = _normalised(str(value))
        if not preferred_time or len(preferred_time) > MAX_TIME_LENGTH:
            dispatcher.utter_message(response="utter_invalid_preferred_time")
            return {"preferred_time": None}
        return {"preferred_time": preferred_time}

    def validate_reason(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                        domain: DomainDict) -> Dict[Text, Any]:
        reason = _normalised(str(value))
        # The "Skip" button sends /deny.
        if reason.lower() in SKIP_WORDS or tracker.latest_message.get("intent", {}).get("name") == "deny":
            return {"reason": ""}  # given as "nothing": filled, so the form moves on
        return {"reason": reason[:MAX_REASON_LENGTH]}

    def validate_consent(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                         domain: DomainDict) -> Dict[Text, Any]:
        if value is True:
            return {"consent": True}
        if value is False:
            # Without consent there is nothing to confirm: end the form here.
            return {"consent": False, "requested_slot": None}
        dispatcher.utter_message(response="utter_invalid_yes_no")
        return {"consent": None}

    def validate_booking_confirmed(self, value: Any, dispatcher: CollectingDispatcher,
                                   tracker: Tracker, domain: DomainDict) -> Dict[Text, Any]:
        if value is True:
            return {"booking_confirmed": True}
        if value is not False:
            dispatcher.utter_message(response="utter_invalid_yes_no")
            return {"booking_confirmed": None}
        field = field_to_correct(tracker.latest_message)
        if field is None:
            return {"booking_confirmed": None}  # the question that follows asks which detail
        cleared = {field: None, "booking_confirmed": None}
        if field == "contact_details":
            cleared.update(phone=None, email=None)
        return cleared


class ActionAskBookingConfirmed(Action):
    """Shows the summary to confirm, or asks which detail to change after a plain "no"."""

    def name(self) -> Text:
        return "action_ask_booking_confirmed"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        message = tracker.latest_message
        if (tracker.get_slot("requested_slot") == "booking_confirmed"
                and message.get("intent", {}).get("name") in ("deny", "correct_booking_field")
                and field_to_correct(message) is None):
            dispatcher.utter_message(response="utter_ask_booking_field")
            return []
        reason = tracker.get_slot("reason")
        dispatcher.utter_message(
            response="utter_booking_summary" if reason else "utter_booking_summary_no_reason",
            full_name=tracker.get_slot("full_name"),
            contact_details=tracker.get_slot("contact_details"),
            preferred_time=tracker.get_slot("preferred_time"),
            reason=reason,
        )
        return []
