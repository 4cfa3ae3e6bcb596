"""A dialogue policy that answers a crisis or emergency wherever the conversation is, and adds
the general answer to a question asked in the same message as a safety reply.

The rules in data/rules/safety.yml choose the safety replies in every normal conversation.
Two places no rule can reach: a new conversation whose session start lost its events, and a
form, where RulePolicy would have the form ask its next question. This policy predicts the
safety reply while the latest crisis or emergency message is unanswered, then pauses any active
form (its details are kept, so asking to book again resumes it), then listens. It ranks above
RulePolicy, so nothing the other policies predict can replace that reply.

The answer alongside: after a crisis or personal-medical-advice reply, a question the visitor
asked in the same message ("does ketamine help with suicidal thoughts?", "i'm pregnant, what
are the side effects") gets its general answer, decided here from the message's parse, in the
Rasa server: no action-server round trip on the way (under load a turn waited at every await
behind the queue of other turns). Then the conversation carries on where the rule would have:
listening, or the booking form's next question.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.core.constants import POLICY_PRIORITY
from rasa.core.policies.policy import Policy, PolicyPrediction, confidence_scores_for
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_DEACTIVATE_LOOP_NAME, ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, UserUttered
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker

from components.safety_patterns import CRISIS, MEDICAL_EMERGENCY

PERSONAL_MEDICAL_ADVICE = "ask_personal_medical_advice"
SAFETY_RESPONSES = {CRISIS: "utter_crisis", MEDICAL_EMERGENCY: "utter_medical_emergency"}
SAFETY_REPLIES = {**SAFETY_RESPONSES, PERSONAL_MEDICAL_ADVICE: "utter_personal_medical_advice"}
# How sure the ResponseSelector must be before an FAQ answer follows a safety reply.
FAQ_ALONGSIDE_MIN_CONFIDENCE = 0.6
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


def answer_alongside(parse_data: Dict[Text, Any], min_confidence: float = FAQ_ALONGSIDE_MIN_CONFIDENCE
                     ) -> Optional[Text]:
    """The response to send after the safety reply ("utter_faq/<topic>", "utter_ask_cost"), or
    None when there was no question."""
    intent = parse_data.get("intent", {}).get("name")
    if intent == PERSONAL_MEDICAL_ADVICE:
        return _faq_answer(parse_data, min_confidence)
    if intent == CRISIS:
        # Only when the model heard a question the safety net overrode ("does ketamine help
        # with suicidal thoughts?"), never an FAQ guessed from "i want to die".
        model_intent = parse_data.get("safety_net", {}).get("model_intent", {}).get("name")
        if model_intent == "faq":
            return _faq_answer(parse_data, min_confidence)
        return ANSWERS_BY_INTENT.get(model_intent)
    return None


def answer_action(parse_data: Dict[Text, Any]) -> Optional[Text]:
    """The action that sends answer_alongside's response: utter_faq sends the topic the
    ResponseSelector chose for this message."""
    response = answer_alongside(parse_data)
    return response.split("/")[0] if response else None


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=False
)
class SafetyPolicy(Policy):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        # RulePolicy has priority 6: on a tie in confidence the higher priority wins.
        return {POLICY_PRIORITY: 7}

    def train(
        self, training_trackers: List[TrackerWithCachedStates], domain: Domain, **kwargs: Any
    ) -> Resource:
        return self._resource

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: Optional[Dict[Text, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        action = self._next_action(tracker)
        if action is None:
            return self._prediction(self._default_predictions(domain))
        return self._prediction(confidence_scores_for(action, 1.0, domain))

    @staticmethod
    def _next_action(tracker: DialogueStateTracker) -> Optional[Text]:
        """The safety reply owed to the latest message; then the answer to a question asked
        alongside; then, inside a form, pausing it (or, after a personal medical question, the
        form's next question); then listening."""
        since_user: List[Text] = []
        for event in reversed(tracker.events):
            if isinstance(event, ActionExecuted):
                since_user.insert(0, event.action_name)
            elif isinstance(event, UserUttered):
                return _after(event, since_user, tracker.active_loop_name)
        return None


def _after(message: UserUttered, since_user: List[Text], active_loop: Optional[Text]) -> Optional[Text]:
    reply = SAFETY_REPLIES.get(message.intent_name)
    if reply is None:
        return None
    if not since_user:  # the personal medical reply comes from the rules, even inside a form
        return SAFETY_RESPONSES.get(message.intent_name)
    answer = answer_action(message.parse_data)
    if since_user == [reply] and answer:
        return answer
    done = [reply] + ([answer] if answer else [])
    if message.intent_name == PERSONAL_MEDICAL_ADVICE:
        # Where the rule goes after its reply: the form's next question, or listening.
        return (active_loop or ACTION_LISTEN_NAME) if since_user == done and answer else None
    if since_user == done:
        return ACTION_DEACTIVATE_LOOP_NAME if active_loop else ACTION_LISTEN_NAME
    if since_user == done + [ACTION_DEACTIVATE_LOOP_NAME]:
        return ACTION_LISTEN_NAME
    return None
