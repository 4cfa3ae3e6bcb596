"""The action-reply check built once (channels/action_reply_validation.py) accepts what Rasa's
own check accepts, rejects what it rejects with Rasa's own error, and is what a Rasa server that
loads the project's channels uses."""
import pytest
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction

import channels.rest  # noqa: F401  (what the Rasa server imports from credentials.yml)
from channels.action_reply_validation import RASAS_CHECK, validate_action_result

ACTION = RemoteAction("action_booking_form", None)
VALID = [
    {"events": [], "responses": []},
    {"events": [{"event": "slot", "name": "full_name", "value": "Ana"}],
     "responses": [{"response": "utter_ask_email"}]},
    {"events": [{"event": "active_loop", "name": None}, {"event": "followup", "name": "utter_faq"}]},
]
MALFORMED = [
    {"events": "not a list"},
    {"events": [{"name": "full_name"}]},
    {"events": [{"event": "slot", "name": 3}]},
    {"events": [], "responses": ["utter_ask_email"]},
    ["not", "an", "object"],
]


def test_the_rasa_server_uses_the_check_built_once():
    assert RemoteAction._validate_action_result is validate_action_result
    assert RASAS_CHECK is not validate_action_result


@pytest.mark.parametrize("reply", VALID)
def test_a_valid_reply_passes_as_it_does_in_rasa(reply):
    assert RASAS_CHECK(ACTION, reply) is True
    assert ACTION._validate_action_result(reply) is True


@pytest.mark.parametrize("reply", MALFORMED)
def test_a_malformed_reply_is_refused_with_rasas_own_error(reply):
    with pytest.raises(ValidationError) as rasas:
        RASAS_CHECK(ACTION, reply)
    with pytest.raises(ValidationError) as ours:
        ACTION._validate_action_result(reply)
    assert ours.value.message == rasas.value.message
    assert "Failed to validate Action server response" in ours.value.message
