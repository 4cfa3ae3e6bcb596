"""Rasa's check of an action server's reply, with its JSON-schema validator built once (one of
the project's two patches of Rasa, with channels/model_loading.py).

Rasa 3.6 checks every reply with `jsonschema.validate(reply, spec)`, and jsonschema 4.17 checks
the fixed spec against its meta-schema on every call: about 40 ms of CPU per action-server reply,
most of a new conversation's cost. Here a validator built once from the same spec decides; a
reply it rejects goes to Rasa's own check, so the error raised is Rasa's, word for word.
channels/handler.py, which both input channels use, installs it in the Rasa server; processes
that only read the channels' settings (the service runners) do not load Rasa for it.
"""
from typing import Any, Dict, Text

from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction

SPEC = RemoteAction.action_response_format_spec()
VALIDATOR_CLASS = validator_for(SPEC)
VALIDATOR_CLASS.check_schema(SPEC)
VALIDATOR = VALIDATOR_CLASS(SPEC)
RASAS_CHECK = RemoteAction._validate_action_result


def validate_action_result(self: RemoteAction, result: Dict[Text, Any]) -> bool:
    if VALIDATOR.is_valid(result):
        return True
    return RASAS_CHECK(self, result)  # raises Rasa's ValidationError


RemoteAction._validate_action_result = validate_action_result
