"""Crisis and emergency detection by meaning, which no other reading can out-vote.

It runs last in the pipeline and decides, most urgent first:
- crisis: an explicit statement ("kill myself", "suicidal", "end my life": the spaCy patterns
  in components/safety_patterns.py), or the safety classifier's crisis probability at or above
  `crisis_threshold` (a clause of a longer message: `clause_crisis_threshold`), or the mean of
  DIET's and the classifier's crisis probabilities at or above `combined_crisis_threshold`,
  unless its crisis words are only negated or figurative. Suicidal intent phrased as an
  emergency is a crisis: that reply has 911 too.
- medical_emergency: the classifier's emergency probability at or above
  `emergency_threshold`; when the crisis and emergency probabilities together reach
  `danger_threshold`, the larger of the two; or an emergency pattern (happening now) with at least
  `emergency_pattern_support` of it. DIET's emergency reading needs that support as well, so a
  general question about a symptom or a past event is answered, not sent to 911.
- ask_personal_medical_advice: a question about the visitor's own medicines, dose, pregnancy
  or diagnosis (patterns).

The safety classifier compares the pretrained encoder's sentence embedding
(components/sentence_encoder.py; not the tuned one, which reads crisis words more than meaning)
with every training example's: for each class (crisis, medical_emergency, everything else) the mean
cosine similarity of the `neighbours` nearest examples, turned into probabilities by a softmax
(`temperature`). Each clause of a longer message is scored for crisis too, and the highest
counts. On the dev panels it beat logistic regressions, an MLP and an RBF SVM over the same
embedding, with fewer false alarms at the same recall. It reads meaning, so indirect wording
("i've been saving up my sleeping pills") and emergencies told in the past tense ("took too
many pills last night and won't wake up") are caught, and figurative or general wording is
not. What the
model had predicted is kept under "safety_net", so the follow-up action can still answer a
question asked in the same message; the evidence (both probabilities, the pattern, DIET's
reading) is under "safety_evidence".
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text, Tuple

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import SPACY_DOCS
from rasa.nlu.tokenizers.spacy_tokenizer import SpacyTokenizer
from rasa.shared.constants import DEFAULT_NLU_FALLBACK_INTENT_NAME
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from spacy.tokens import Doc

from components.message_embeddings import clauses
from components.minilm import shared_encoder
from components.nearest_examples import ExampleIndex, unit
from components.safety_patterns import CRISIS, MEDICAL_EMERGENCY, SafetyMatcher, told_as_long_past
from components.sentence_encoder import SentenceEncoderFeaturizer, clause_embeddings, pretrained_embedding

logger = logging.getLogger(__name__)

SAFETY_INTENTS = (CRISIS, MEDICAL_EMERGENCY)
SAFETY_NET_KEY = "safety_net"
SAFETY_EVIDENCE_KEY = "safety_evidence"
OTHER = "other"
OUT_OF_SCOPE = "out_of_scope"
CRISIS_CLAUSE = "crisis_clause"
MODEL_CRISIS = "model_crisis"
TREATMENT_WORDS = {"ketamine", "infusion", "dose", "dosing", "treatment", "session", "spravato", "esketamine",
                   "clinic", "therapy", "lozenge", "troche"}
CLASSES = (CRISIS, MEDICAL_EMERGENCY, OTHER)


class NearestExamples:
    """Per class, the mean cosine similarity of the k nearest training examples, softmaxed."""

    def __init__(self, embeddings: Dict[Text, np.ndarray], neighbours: int, temperature: float) -> None:
        self.embeddings = {label: unit(vectors) for label, vectors in embeddings.items()}
        self.neighbours, self.temperature = neighbours, temperature
        # A message and its clauses in one scan of all classes' examples.
        self._index = ExampleIndex([self.embeddings[label] for label in CLASSES])

    def probabilities(self, embedding: np.ndarray) -> Dict[Text, float]:
        return dict(zip(CLASSES, self.probabilities_many(embedding[np.newaxis, :])[0].tolist(), strict=True))

    def probabilities_many(self, embeddings: np.ndarray) -> np.ndarray:
        """One row per embedding, one column per class in CLASSES' order."""
        nearest = self._index.most_similar(embeddings, self.neighbours)
        scores = np.array([[similarities.mean() if len(similarities) else -1.0 for similarities in per_class]
                           for per_class in nearest]).reshape(-1, len(CLASSES))
        scores = np.exp((scores - scores.max(axis=1, keepdims=True)) * self.temperature)
        return scores / scores.sum(axis=1, keepdims=True)


NEXT_READING = "next_reading"


def decide(config: Dict[Text, Any], scores: Dict[Text, float], pattern: Optional[Text], benign_reading: bool,
           model_name: Optional[Text], about_treatment: bool = False,
           long_past: bool = False, unsure_model: bool = False) -> Optional[Tuple[Text, Text]]:
    """(intent, reason) the message must get, NEXT_READING when the model's crisis or emergency
    reading has no backing, or None to leave the model's reading alone.
    pattern: the most urgent pattern found (components/safety_patterns.py), or None.
    long_past: the message tells of something long past ("had a seizure as a kid"), so only a
    sure classifier sends it to 911.
    unsure_model: the model's reading is a danger it put in a near tie that the fallback caught."""
    emergency_supported = scores[MEDICAL_EMERGENCY] >= config["emergency_pattern_support"]
    if pattern == CRISIS:
        return CRISIS, "pattern"
    # Crisis words that are only negated or figurative ("i don't want to die, i want to live
    # better", "dying to try it") need a surer classifier.
    crisis_bar = config["benign_crisis_threshold"] if benign_reading else config["crisis_threshold"]
    if scores[CRISIS] >= crisis_bar:
        return CRISIS, "classifier"
    emergency_bar = config["long_past_emergency_threshold"] if long_past else config["emergency_threshold"]
    # A clause is short, so its score is less diluted and less sure: its own bar. A clause read
    # alone loses to a surer emergency reading of the whole message ("my toddler got into my
    # purse, think he swallowed some pills, now he's floppy": the middle clause reads as an overdose).
    clause_crisis = scores.get(CRISIS_CLAUSE, 0.0)
    # The classifier's crisis reading: the whole message's or its most alarming clause's.
    crisis_reading = max(scores[CRISIS], clause_crisis)
    surer_emergency = scores[MEDICAL_EMERGENCY] >= max(emergency_bar, clause_crisis)
    if not benign_reading and clause_crisis >= config["clause_crisis_threshold"] and not surer_emergency:
        return CRISIS, "classifier:clause"
    # DIET alone over-reads low mood ("i'm sad nothing has worked") and the classifier alone
    # misses some indirect wording: together, the mean of their crisis probabilities.
    combined = (scores.get(MODEL_CRISIS, 0.0) + crisis_reading) / 2
    if not benign_reading and combined >= config["combined_crisis_threshold"]:
        return CRISIS, "model"
    if scores[MEDICAL_EMERGENCY] >= emergency_bar:
        return MEDICAL_EMERGENCY, "classifier"
    # Danger that neither bar catches alone, split between the two readings ("took 30 of my
    # pills on purpose, getting drowsy"): the more likely one wins; the crisis reply has 911 too.
    if scores[CRISIS] + scores[MEDICAL_EMERGENCY] >= config["danger_threshold"]:
        if scores[CRISIS] >= scores[MEDICAL_EMERGENCY]:
            return CRISIS, "classifier:danger"
        if not long_past:
            return MEDICAL_EMERGENCY, "classifier:danger"
    if pattern == MEDICAL_EMERGENCY and emergency_supported:
        return MEDICAL_EMERGENCY, "pattern"
    # An emergency the model only half heard (a fallback in a near tie, as nonsense such as "blorp
    # znak" can get between an emergency and out of scope) is not enough for 911 on its own: on
    # the studied panels every such emergency had the classifier's reading or a pattern too.
    if model_name == MEDICAL_EMERGENCY and emergency_supported and not long_past and not unsure_model:
        # Suicidal intent phrased as an emergency ("tell the doctor thanks for everything, i'm done
        # fighting this"): DIET hears an emergency that the classifier reads more as a crisis. The
        # crisis reply has 911 too; 911 alone would leave out 988.
        if not benign_reading and crisis_reading >= config["intent_crisis_threshold"] \
                and crisis_reading > scores[MEDICAL_EMERGENCY]:
            return CRISIS, "model:intent"
        return MEDICAL_EMERGENCY, "model"
    if model_name in SAFETY_INTENTS:
        # An unbacked danger reading gives way to a question about the visitor's own care
        # ("so i don't have to wean off my prozac for this?") or else to the next reading.
        if pattern and pattern not in SAFETY_INTENTS:
            return pattern, "pattern"
        return NEXT_READING, "benign_reading"
    # An advice pattern ("my prescription") out-votes a reading of out of scope only when the
    # message is about the treatment: "can you refill my adderall" is for a pharmacy, "can i
    # have wine after my home dose" for a clinician.
    if pattern and pattern not in SAFETY_INTENTS and (model_name != OUT_OF_SCOPE or about_treatment):
        return pattern, "pattern"
    return None


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True
)
class SafetyNet(GraphComponent):
    @classmethod
    def required_components(cls) -> List[type]:
        return [SpacyTokenizer, SentenceEncoderFeaturizer]

    @staticmethod
    def required_packages() -> List[Text]:
        return ["spacy"]

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            "crisis_threshold": 0.5,
            "benign_crisis_threshold": 0.95,
            "combined_crisis_threshold": 0.5,
            # DIET's emergency reading is a crisis when the classifier's crisis reading reaches this
            # and outweighs its emergency reading; lower, the classifier is only unsure.
            "intent_crisis_threshold": 0.3,
            "clause_crisis_threshold": 1.0,
            "emergency_threshold": 0.5,
            "emergency_pattern_support": 0.1,
            "danger_threshold": 1.0,
            "long_past_emergency_threshold": 0.9,
            # When the model's crisis or emergency reading has no backing, its next reading stands
            # if it has at least `next_reading_min_share` of what the model gave every reading but
            # those two, and at least `next_reading_min_confidence` of its own; otherwise the
            # visitor is asked to rephrase.
            "next_reading_min_share": 0.5,
            "next_reading_min_confidence": 0.1,
            "neighbours": 5,
            "temperature": 20.0,
        }

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SafetyNet:
        return cls(config, model_storage, resource)

    def __init__(self, config: Optional[Dict[Text, Any]] = None, model_storage: Optional[ModelStorage] = None,
                 resource: Optional[Resource] = None, classifier: Optional[NearestExamples] = None) -> None:
        self.config = {**self.get_default_config(), **(config or {})}
        self._model_storage, self._resource = model_storage, resource
        self.classifier = classifier
        self._matcher: Optional[SafetyMatcher] = None

    def train(self, training_data: TrainingData) -> Resource:
        examples = [(pretrained_embedding(m), m.get(INTENT)) for m in training_data.intent_examples]
        examples = [(e, intent) for e, intent in examples if e is not None]
        label_of = {intent: intent for intent in SAFETY_INTENTS}
        by_class = {label: np.stack([e for e, intent in examples if label_of.get(intent, OTHER) == label])
                    .astype(np.float32) for label in CLASSES}
        self.classifier = NearestExamples(by_class, self.config["neighbours"], self.config["temperature"])
        with self._model_storage.write_to(self._resource) as directory:
            np.savez(directory / "examples.npz", **self.classifier.embeddings)
        return self._resource

    @classmethod
    def load(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> SafetyNet:
        with model_storage.read_from(resource) as directory:
            arrays = np.load(directory / "examples.npz")
            embeddings = {label: arrays[label] for label in CLASSES}
        config = {**cls.get_default_config(), **config}
        return cls(config, model_storage, resource,
                   NearestExamples(embeddings, config["neighbours"], config["temperature"]))

    def _matcher_for(self, doc: Doc) -> SafetyMatcher:
        if self._matcher is None:
            self._matcher = SafetyMatcher(doc.vocab)
        return self._matcher

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            self._process(message)
        return messages

    def _scores(self, message: Message) -> Dict[Text, float]:
        embedding = pretrained_embedding(message)
        if embedding is None or self.classifier is None:
            return {CRISIS: 0.0, CRISIS_CLAUSE: 0.0, MEDICAL_EMERGENCY: 0.0}
        # Each clause of a longer message counts too ("does it work fast? i don't know how much
        # longer i can keep going"): the featurizer embedded them with the message.
        clause_vectors = clause_embeddings(message)
        if clause_vectors is None:
            clause_vectors = shared_encoder().encode_many(clauses(message.get(TEXT) or ""))
        rows = self.classifier.probabilities_many(np.vstack([embedding[np.newaxis, :], clause_vectors]))
        probabilities = dict(zip(CLASSES, rows[0].tolist(), strict=True))
        clause_crisis = float(rows[1:, CLASSES.index(CRISIS)].max(initial=0.0))
        return {CRISIS: probabilities[CRISIS], CRISIS_CLAUSE: clause_crisis,
                MEDICAL_EMERGENCY: probabilities[MEDICAL_EMERGENCY]}

    def _process(self, message: Message) -> None:
        doc = message.get(SPACY_DOCS[TEXT])
        if doc is None:
            return
        model_intent = message.get(INTENT) or {}
        ranking = message.get(INTENT_RANKING_KEY) or []
        scores = {**self._scores(message), MODEL_CRISIS: next(
            (entry.get("confidence", 0.0) for entry in ranking if entry.get(INTENT_NAME_KEY) == CRISIS), 0.0)}
        detection, benign_reading = self._matcher_for(doc).analyse(doc)
        model_name = model_intent.get(INTENT_NAME_KEY)
        unsure_model = False
        if model_name == DEFAULT_NLU_FALLBACK_INTENT_NAME and ranking:
            # A fallback for a near tie with a danger reading ("isn't it a party drug? won't i end
            # up wanting more": an FAQ question at 0.50, a crisis at 0.49) is judged as that
            # reading: backed, it stands; unbacked, the other reading is taken.
            readings = [entry.get(INTENT_NAME_KEY) for entry in ranking
                        if entry.get(INTENT_NAME_KEY) != DEFAULT_NLU_FALLBACK_INTENT_NAME]
            danger = next((name for name in readings[:2] if name in SAFETY_INTENTS), None)
            model_name = danger or ranking[0].get(INTENT_NAME_KEY)
            unsure_model = True
        pattern = detection.kind if detection else None
        about_treatment = any(token.lower_ in TREATMENT_WORDS or token.lemma_ in TREATMENT_WORDS for token in doc)
        long_past = told_as_long_past(doc.text)
        # Everything the decision rests on, so thresholds can be chosen from parses (make eval-safety).
        message.set(SAFETY_EVIDENCE_KEY, {**{name: round(value, 4) for name, value in scores.items()},
                                          "pattern": pattern, "benign_reading": benign_reading,
                                          "model_intent": model_name, "unsure_model": unsure_model,
                                          "about_treatment": about_treatment, "long_past": long_past},
                    add_to_output=True)
        decision = decide(self.config, scores, pattern, benign_reading, model_name, about_treatment, long_past,
                          unsure_model)
        if decision is None:
            return
        reading, reason = decision
        if reading == NEXT_READING:
            self._take_next_reading(message, model_intent, ranking)
            return
        if reason.startswith("pattern"):
            reason = f"pattern:{detection.pattern}"
        if model_intent.get(INTENT_NAME_KEY) == reading:
            return  # the model's own reading stands, with its confidence
        self._override(message, reading, reason, model_intent, ranking)

    def _override(self, message: Message, intent: Text, reason: Text, model_intent: Dict[Text, Any],
                  ranking: List[Dict[Text, Any]]) -> None:
        chosen = {INTENT_NAME_KEY: intent, "confidence": 1.0}
        others = [entry for entry in ranking if entry.get(INTENT_NAME_KEY) != intent]
        self._set(message, chosen, reason, model_intent, [chosen] + others)

    def _take_next_reading(self, message: Message, model_intent: Dict[Text, Any],
                           ranking: List[Dict[Text, Any]]) -> None:
        """The model heard a crisis or emergency that neither the classifier nor a pattern
        backs ("i'm not suicidal, just curious", "can ketamine cause a seizure?"): its next
        reading is used, or a request to rephrase when that reading is weak. Weak is judged by
        its share of what the model gave the other readings: the share it put on a danger that is
        not there says nothing against the next reading ("how long do i have to hang around after
        the infusion ends": a crisis at 0.7, an FAQ question at 0.3 and nothing else)."""
        others = [entry for entry in ranking
                  if entry.get(INTENT_NAME_KEY) not in (*SAFETY_INTENTS, DEFAULT_NLU_FALLBACK_INTENT_NAME)]
        safety_share = sum(entry.get("confidence", 0.0) for entry in ranking
                           if entry.get(INTENT_NAME_KEY) in SAFETY_INTENTS)
        confidence = others[0].get("confidence", 0.0) if others else 0.0
        if confidence >= self.config["next_reading_min_confidence"] \
                and confidence >= self.config["next_reading_min_share"] * (1.0 - safety_share):
            chosen = others[0]
        else:
            chosen = {INTENT_NAME_KEY: DEFAULT_NLU_FALLBACK_INTENT_NAME, "confidence": 1.0}
        self._set(message, chosen, "benign_reading", model_intent, others)

    @staticmethod
    def _set(message: Message, intent: Dict[Text, Any], reason: Text, model_intent: Dict[Text, Any],
             ranking: List[Dict[Text, Any]]) -> None:
        logger.info("Safety net set intent %s (%s)", intent[INTENT_NAME_KEY], reason)
        message.set(
            SAFETY_NET_KEY,
            {"intent": intent[INTENT_NAME_KEY], "reason": reason, "model_intent": model_intent},
            add_to_output=True,
        )
        message.set(INTENT, intent, add_to_output=True)
        message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
