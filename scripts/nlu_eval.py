"""Scores a trained model on the held-out NLU sets (tests/nlu/heldout_*.yml), in process.

The sets were written blind, from the clinic's documents and the label list, by a writer who
never saw data/; `tests/test_heldout_overlap.py` keeps them out of the training data. Each has
a dev part, which may be studied, and a frozen part, scored only when closing an issue.

Figures:
- intent accuracy: the predicted intent equals the label (faq/<topic> counts as faq);
  an out-of-scope message that falls back (nlu_fallback) counts as handled.
- response-selector accuracy: on faq/<topic> messages, the selector picks <topic>.
- FAQ answer accuracy: on faq/<topic> messages, the visitor gets that topic's answer
  (intent faq and the right topic).
- out-of-scope precision and recall, where a message is treated as out of scope when
  the intent is out_of_scope or nlu_fallback.
"""
import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

from scripts.overlap import nlu_examples

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HELDOUT_DIR = PROJECT_ROOT / "tests" / "nlu"
PARTS = ("dev", "frozen")
OUT_OF_SCOPE = {"out_of_scope", "nlu_fallback"}


def heldout_path(part: str) -> Path:
    return HELDOUT_DIR / f"heldout_{part}.yml"


def load_examples(path: Path) -> List[Tuple[str, str]]:
    """(text, label) pairs from a Rasa NLU YAML file."""
    return [(text, label) for label, text in nlu_examples(path)]


def selected_faq(parse: Dict[str, Any]) -> str:
    """The faq/<topic> the response selector chose (a stock pipeline reports it as "default")."""
    selectors = parse.get("response_selector", {})
    selector = selectors.get("faq") or selectors.get("default") or {}
    return selector.get("response", {}).get("intent_response_key") or ""


@dataclass
class Scores:
    intent_accuracy: float
    selector_accuracy: float
    faq_answer_accuracy: float
    oos_precision: float
    oos_recall: float
    n_messages: int
    n_faq: int
    n_oos: int
    median_parse_ms: float
    errors: List[Tuple[str, str, str]]

    def figures(self) -> Dict[str, float]:
        """The headline first: what a visitor gets (the right answer, out of scope caught)."""
        return {
            "FAQ answer accuracy": self.faq_answer_accuracy,
            "out-of-scope precision": self.oos_precision,
            "out-of-scope recall": self.oos_recall,
            "intent accuracy": self.intent_accuracy,
            "response-selector accuracy": self.selector_accuracy,
        }


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def score(parses: List[Tuple[str, str, Dict[str, Any]]], parse_ms: List[float]) -> Scores:
    intent_ok = selector_ok = answer_ok = 0
    n_faq = n_oos = predicted_oos = true_positive_oos = 0
    errors = []
    for text, label, parse in parses:
        predicted = parse["intent"]["name"]
        label_intent = label.split("/")[0]
        is_oos = label_intent == "out_of_scope"
        said_oos = predicted in OUT_OF_SCOPE
        n_oos += is_oos
        predicted_oos += said_oos
        true_positive_oos += is_oos and said_oos
        correct_intent = said_oos if is_oos else label_intent in answered_intents(parse)
        intent_ok += correct_intent
        if label_intent == "faq":
            n_faq += 1
            chosen = selected_faq(parse)
            selector_ok += chosen == label
            answer_ok += correct_intent and chosen == label
            if not (correct_intent and chosen == label):
                errors.append((text, label, f"{predicted} {chosen}"))
        elif not correct_intent:
            errors.append((text, label, predicted))
    return Scores(
        intent_accuracy=_ratio(intent_ok, len(parses)),
        selector_accuracy=_ratio(selector_ok, n_faq),
        faq_answer_accuracy=_ratio(answer_ok, n_faq),
        oos_precision=_ratio(true_positive_oos, predicted_oos),
        oos_recall=_ratio(true_positive_oos, n_oos),
        n_messages=len(parses),
        n_faq=n_faq,
        n_oos=n_oos,
        median_parse_ms=statistics.median(parse_ms) if parse_ms else 0.0,
        errors=errors,
    )


async def parse_all(agent, examples: List[Tuple[str, str]]):
    parses, timings = [], []
    for text, label in examples:
        start = time.perf_counter()
        parse = await agent.parse_message(text)
        timings.append((time.perf_counter() - start) * 1000)
        parses.append((text, label, parse))
    return parses, timings


def load_agent(model_path: str):
    import logging

    from rasa.core.agent import Agent
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)
    return Agent.load(model_path)


def answered_intents(parse: Dict[str, Any]) -> set:
    """Intents the visitor gets a reply for: the final one, plus the question that
    SafetyPolicy answers after a crisis or personal-medical-advice reply."""
    from components.safety_policy import answer_alongside

    extra = answer_alongside(parse)
    if not extra:
        return {parse["intent"]["name"]}
    base = extra[len("utter_"):].split("/")[0]
    return {parse["intent"]["name"], {"clinic_details": "ask_clinic_details"}.get(base, base)}


def evaluate_model(model_path: str, examples: List[Tuple[str, str]]) -> Tuple[Scores, List]:
    agent = load_agent(model_path)
    parses, timings = asyncio.run(parse_all(agent, examples))
    return score(parses, timings), parses
