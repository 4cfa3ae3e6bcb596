"""A Rasa NLU component that no learned model can out-vote on safety.

It runs last in the pipeline. When the spaCy patterns find crisis or emergency
wording it sets that intent with confidence 1.0, whatever DIET or the
FallbackClassifier decided. A question about the visitor's own medicines, dose,
pregnancy or diagnosis becomes ask_personal_medical_advice, unless the model
itself heard a crisis or emergency. It also rescues a crisis or emergency intent that
DIET ranked first but the FallbackClassifier replaced for low confidence.
What the model had predicted is kept under "safety_net" so the follow-up
action can still answer a question asked in the same message.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import SPACY_DOCS
from rasa.nlu.tokenizers.spacy_tokenizer import SpacyTokenizer
from rasa.shared.constants import DEFAULT_NLU_FALLBACK_INTENT_NAME
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from spacy.tokens import Doc

from components.safety_patterns import CRISIS, MEDICAL_EMERGENCY, SafetyMatcher

logger = logging.getLogger(__name__)

SAFETY_INTENTS = (CRISIS, MEDICAL_EMERGENCY)
SAFETY_NET_KEY = "safety_net"


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False
)
class SafetyNet(GraphComponent):
    @classmethod
    def required_components(cls) -> List[type]:
        return [SpacyTokenizer]

    @staticmethod
    def required_packages() -> List[Text]:
        return ["spacy"]

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        # Below this, a negated "crisis" reading falls back to asking the visitor to rephrase.
        return {"negated_min_confidence": 0.3}

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SafetyNet:
        return cls(config)

    def __init__(self, config: Optional[Dict[Text, Any]] = None) -> None:
        config = {**self.get_default_config(), **(config or {})}
        self._min_confidence = float(config["negated_min_confidence"])
        self._matcher: Optional[SafetyMatcher] = None

    def _matcher_for(self, doc: Doc) -> SafetyMatcher:
        if self._matcher is None:
            self._matcher = SafetyMatcher(doc.vocab)
        return self._matcher

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            self._process(message)
        return messages

    def _process(self, message: Message) -> None:
        doc = message.get(SPACY_DOCS[TEXT])
        if doc is None:
            return
        model_intent = message.get(INTENT) or {}
        ranking = message.get(INTENT_RANKING_KEY) or []
        detection, benign_reading = self._matcher_for(doc).analyse(doc)
        model_name = model_intent.get(INTENT_NAME_KEY)
        top_ranked = ranking[0].get(INTENT_NAME_KEY) if ranking else None
        if detection and detection.kind in SAFETY_INTENTS:
            self._override(message, detection.kind, f"pattern:{detection.pattern}", model_intent, ranking)
        elif model_name == CRISIS and benign_reading:
            self._take_next_reading(message, model_intent, ranking)
        elif model_name in SAFETY_INTENTS:
            return  # the model's own crisis or emergency reading stands
        elif model_name == DEFAULT_NLU_FALLBACK_INTENT_NAME and top_ranked in SAFETY_INTENTS:
            self._override(message, top_ranked, "model_below_threshold", model_intent, ranking)
        elif detection:
            self._override(message, detection.kind, f"pattern:{detection.pattern}", model_intent, ranking)

    def _override(self, message: Message, intent: Text, reason: Text,
                  model_intent: Dict[Text, Any], ranking: List[Dict[Text, Any]]) -> None:
        chosen = {INTENT_NAME_KEY: intent, "confidence": 1.0}
        others = [entry for entry in ranking if entry.get(INTENT_NAME_KEY) != intent]
        self._set(message, chosen, reason, model_intent, [chosen] + others)

    def _take_next_reading(self, message: Message, model_intent: Dict[Text, Any],
                           ranking: List[Dict[Text, Any]]) -> None:
        """Bag-of-words reads "i'm not suicidal, just curious" or "needles kill me" as a crisis.
        Its crisis words are negated or figurative and no crisis pattern matched, so the model's
        next reading is used, or a request to rephrase when that reading is weak."""
        others = [entry for entry in ranking if entry.get(INTENT_NAME_KEY) != CRISIS]
        if others and others[0].get("confidence", 0.0) >= self._min_confidence:
            chosen = others[0]
        else:
            chosen = {INTENT_NAME_KEY: DEFAULT_NLU_FALLBACK_INTENT_NAME, "confidence": 1.0}
        self._set(message, chosen, "benign_reading", model_intent, others)

    @staticmethod
    def _set(message: Message, intent: Dict[Text, Any], reason: Text,
             model_intent: Dict[Text, Any], ranking: List[Dict[Text, Any]]) -> None:
        logger.info("Safety net set intent %s (%s)", intent[INTENT_NAME_KEY], reason)
        message.set(
            SAFETY_NET_KEY,
            {"intent": intent[INTENT_NAME_KEY], "reason": reason, "model_intent": model_intent},
            add_to_output=True,
        )
        message.set(INTENT, intent, add_to_output=True)
        message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
