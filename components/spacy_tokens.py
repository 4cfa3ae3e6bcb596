"""Rasa's SpacyTokenizer, with tokens that work out their fingerprint once.

Rasa fingerprints every message after every training step, even with its cache off, and a
message's fingerprint takes each of its tokens' (the FAQ examples carry their answer's too),
which Rasa's Token works out again each time: a seventh of the training's time, measured with
py-spy in session 22. These tokens keep theirs until their data changes. Otherwise the same
tokens as Rasa's SpacyTokenizer.
"""
from __future__ import annotations

from typing import Any, List, Optional, Text

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.tokenizers.spacy_tokenizer import SpacyTokenizer
from rasa.nlu.tokenizers.tokenizer import Token
from rasa.shared.nlu.training_data.message import Message


class FingerprintedToken(Token):
    _fingerprint: Optional[Text] = None

    @classmethod
    def of(cls, token: Token) -> FingerprintedToken:
        return cls(token.text, token.start, token.end, token.data, token.lemma)

    def set(self, prop: Text, info: Any) -> None:
        super().set(prop, info)
        self._fingerprint = None

    def fingerprint(self) -> Text:
        if self._fingerprint is None:
            self._fingerprint = super().fingerprint()
        return self._fingerprint


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=False)
class FingerprintedSpacyTokenizer(SpacyTokenizer):
    def tokenize(self, message: Message, attribute: Text) -> List[Token]:
        return [FingerprintedToken.of(token) for token in super().tokenize(message, attribute)]
