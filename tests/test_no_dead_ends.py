"""Every reply that is not an answer leaves a way out: the clinic's phone number and 988.

A visitor who gets "sorry, I can't help with that" may be the one in crisis whose words were
missed, so these replies end with the number to call and a one-line 988 reminder, in every
variation (language or state).
"""
import pytest
import yaml

from tests.conftest import ROOT

DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())
RULES = [rule for path in sorted((ROOT / "data/rules").glob("*.yml"))
         for rule in yaml.safe_load(path.read_text())["rules"]]
# Out of scope, fallback (first and second), "no problem", the clinician deferral, the
# reply to a message over the length cap, and a conversation that could not be deleted.
NOT_ANSWERS = ["utter_out_of_scope", "utter_default", "utter_offer_handoff", "utter_no_problem",
               "utter_personal_medical_advice", "utter_message_too_long", "utter_forget_failed"]


def variations(name):
    return [variation["text"] for variation in DOMAIN["responses"][name]]


@pytest.mark.parametrize("name", NOT_ANSWERS)
def test_reply_ends_with_the_phone_number_and_988(name):
    for text in variations(name):
        last_sentences = text.rsplit(". ", 2)[-2:]
        assert "{clinic_phone}" in text
        assert any("988" in sentence for sentence in last_sentences), text


@pytest.mark.parametrize("intent", ["out_of_scope", "nlu_fallback", "deny", "ask_personal_medical_advice"])
def test_the_rules_answer_these_intents_with_a_reply_that_has_a_way_out(intent):
    replies = [step["action"] for rule in RULES if rule["steps"][0].get("intent") == intent
               for step in rule["steps"][1:2]]
    assert replies and set(replies) <= set(NOT_ANSWERS)


def test_the_988_line_follows_every_answer_rule_after_a_crisis():
    answers = {rule["steps"][0]["intent"]: rule["steps"][1]["action"] for rule in RULES
               if "condition" not in rule and rule["steps"][0].get("intent")
               and rule["steps"][1]["action"] in ("utter_faq", "utter_ask_cost", "utter_ask_insurance",
                                                  "utter_ask_fda_approval", "utter_clinic_details")}
    after_crisis = {rule["steps"][0]["intent"]: [step["action"] for step in rule["steps"][1:]] for rule in RULES
                    if {"slot_was_set": [{"crisis_support_shown": True}]} in rule.get("condition", [])}
    assert answers
    for intent, answer in answers.items():
        assert after_crisis.get(intent) == [answer, "utter_crisis_line"], intent
