"""Answers a question asked in the same message as a crisis or a personal medical question.

The safety reply itself is a domain response chosen by a rule, so it arrives even
when this server is down; this action only adds the general information after it.
"""
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from clinic_core.settings import FAQ_ALONGSIDE_MIN_CONFIDENCE

# Questions whose answer is safe to give alongside the crisis resources.
ANSWERS_BY_INTENT = {
    "ask_cost": "utter_ask_cost",
    "ask_insurance": "utter_ask_insurance",
    "ask_fda_approval": "utter_ask_fda_approval",
    "ask_clinic_details": "utter_clinic_details",
}


def _faq_answer(parse_data: Dict[Text, Any], min_confidence: float) -> Optional[Text]:
    response = parse_data.get("response_selector", {}).get("faq", {}).get("response", {})
    if response.get("intent_response_key") and response.get("confidence", 0.0) >= min_confidence:
        return f"utter_{response['intent_response_key']}"
    return None


def answer_alongside(parse_data: Dict[Text, Any], min_confidence: float) -> Optional[Text]:
    """The response to send after the safety reply, or None when there was no question."""
    intent = parse_data.get("intent", {}).get("name")
    if intent == "ask_personal_medical_advice":
        return _faq_answer(parse_data, min_confidence)
    if intent == "crisis":
        # Only when the model heard a question the safety net overrode ("does ketamine help
        # with suicidal thoughts?"), never an FAQ guessed from "i want to die".
        model_intent = parse_data.get("safety_net", {}).get("model_intent", {}).get("name")
        if model_intent == "faq":
            return _faq_answer(parse_data, min_confidence)
        return ANSWERS_BY_INTENT.get(model_intent)
    return None


class ActionAnswerQuestionAfterSafetyReply(Action):
    def name(self) -> Text:
        return "action_answer_question_after_safety_reply"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        response = answer_alongside(tracker.latest_message, FAQ_ALONGSIDE_MIN_CONFIDENCE)
        if response:
            dispatcher.utter_message(response=response)
        return []
