"""Every placeholder in every response (texts and button payloads) is filled at run time.

Rasa fills `{name}` from slots and from values an action passes; anything else is logged
as an error and sent unfilled. Literal braces (entity payloads) must be doubled: `{{...}}`.
"""
import re

import pytest
import yaml

from tests.conftest import ROOT

DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())
FAQ = yaml.safe_load((ROOT / "data/responses/faq.yml").read_text())
# Passed by actions: the booking summary (booking_form.py) and confirmation (handoff.py), the
# frame's retention (session.py).
ACTION_VALUES = {"opening_time", "opening_day", "conversation_retention_days"}
KNOWN = set(DOMAIN["slots"]) | ACTION_VALUES


def strings(responses):
    for name, variants in responses.items():
        for variant in variants:
            yield name, variant.get("text", "")
            for button in variant.get("buttons", []):
                yield name, button["title"]
                yield name, button["payload"]


@pytest.mark.parametrize("name, text", list(strings({**DOMAIN["responses"], **FAQ["responses"]})))
def test_every_placeholder_is_a_slot_or_an_action_value(name, text):
    # Rasa's own substitution (rasa.core.nlg.interpolator), without its error fallback.
    template = re.sub(r"{([^\n{}]+?)}", r"{0[\1]}", text)
    template.format({key: "x" for key in KNOWN})
