"""Untrained nearest-neighbour peers for `make eval`, on the same training data as the model.

Each peer labels a message with the label of its most similar training example (FAQ
examples carry `faq/<topic>`), and calls it out of scope when that similarity is below a
threshold chosen on the dev part of the held-out set (never on the frozen part). They return
parses shaped like Rasa's, so `scripts/nlu_eval.score` scores them the same way.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import numpy as np

OUT_OF_SCOPE = "out_of_scope"
THRESHOLDS = np.arange(0.0, 0.95, 0.025)


def as_parse(label: str, similarity: float, threshold: float) -> Dict:
    if similarity < threshold:
        label = OUT_OF_SCOPE
    intent, _, topic = label.partition("/")
    parse = {"intent": {"name": intent, "confidence": similarity}, "intent_ranking": []}
    if topic:
        parse["response_selector"] = {"faq": {"response": {"intent_response_key": label}}}
    return parse


class NearestNeighbour:
    def __init__(self, name: str, embed: Callable[[List[str]], np.ndarray],
                 training: List[Tuple[str, str]]) -> None:
        self.name = name
        self.embed = embed
        self.labels = [label for _, label in training]
        self.matrix = embed([text for text, _ in training])
        self.threshold = 0.0

    def nearest(self, texts: List[str]) -> List[Tuple[str, float]]:
        similarities = self.embed(texts) @ self.matrix.T
        best = similarities.argmax(axis=1)
        return [(self.labels[i], float(similarities[row, i])) for row, i in enumerate(best)]

    def tune_threshold(self, dev: List[Tuple[str, str]]) -> float:
        """The threshold with the most dev messages right (FAQ by topic, others by intent)."""
        found = self.nearest([text for text, _ in dev])

        def correct(threshold: float) -> int:
            return sum(
                (OUT_OF_SCOPE if similarity < threshold else label) == gold
                for (label, similarity), (_, gold) in zip(found, dev, strict=True)
            )
        self.threshold = float(max(THRESHOLDS, key=correct))
        return self.threshold

    def parse_all(self, examples: List[Tuple[str, str]]) -> List[Tuple[str, str, Dict]]:
        found = self.nearest([text for text, _ in examples])
        return [(text, gold, as_parse(label, similarity, self.threshold))
                for (text, gold), (label, similarity) in zip(examples, found, strict=True)]


def tfidf_peer(training: List[Tuple[str, str]]) -> NearestNeighbour:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True).fit([text for text, _ in training])
    return NearestNeighbour("TF-IDF nearest neighbour", lambda texts: vectorizer.transform(texts).toarray(),
                            training)


def sentence_embedding_peer(training: List[Tuple[str, str]]) -> NearestNeighbour:
    from components.minilm import shared_encoder

    encoder = shared_encoder()
    return NearestNeighbour("MiniLM nearest neighbour", encoder.encode_many, training)
