"""A dialogue policy that answers a crisis or emergency wherever the conversation is.

The rules in data/rules/safety.yml choose these replies in every normal conversation.
Two places no rule can reach: a new conversation whose action_session_start failed (the
action server is down), and a form, where RulePolicy would have the form ask its next
question. This policy predicts the safety reply while the latest crisis or emergency
message is unanswered, then pauses any active form (its details are kept, so asking to
book again resumes it), then listens. It ranks above RulePolicy, so nothing the other
policies predict can replace that reply.
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

SAFETY_RESPONSES = {CRISIS: "utter_crisis", MEDICAL_EMERGENCY: "utter_medical_emergency"}


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
        """The safety reply owed to the latest message; then, inside a form, pausing it;
        then, where no rule can carry on, listening instead of a fallback or the form."""
        since_user: List[Text] = []
        events = list(tracker.events)
        for index in range(len(events) - 1, -1, -1):
            event = events[index]
            if isinstance(event, ActionExecuted):
                since_user.insert(0, event.action_name)
            elif isinstance(event, UserUttered):
                response = SAFETY_RESPONSES.get(event.intent_name)
                if response is None:
                    return None
                if not since_user:
                    return response
                if since_user == [response] and tracker.active_loop_name:
                    return ACTION_DEACTIVATE_LOOP_NAME
                if since_user == [response, ACTION_DEACTIVATE_LOOP_NAME]:
                    return ACTION_LISTEN_NAME
                if since_user == [response] and not _follows_listen(events[:index]):
                    return ACTION_LISTEN_NAME
                return None
        return None


def _follows_listen(events: List[Any]) -> bool:
    actions = [event.action_name for event in events if isinstance(event, ActionExecuted)]
    return bool(actions) and actions[-1] == ACTION_LISTEN_NAME
