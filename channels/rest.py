"""Rasa's REST channel with its input checked before anything else runs.

Rasa 3.6's `RestInput` takes a missing `sender` as the shared conversation "default" (one
visitor saw another's booking details), answers a non-string `message` with `200 []` and
an empty body or a JSON array with a 500. Here the body must be a JSON object with a
string `sender` and a string `message`, else 400 with a JSON error; the message goes
through channels/handler.py (length cap, cleaning) and the request size is capped.
credentials.yml names this channel; its URL and reply format are Rasa's.
"""
import logging
import re
from typing import Any, Awaitable, Callable, Dict, Optional, Text, Tuple

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.exceptions import InvalidUsage
from sanic.request import Request
from sanic.response import HTTPResponse

from channels.handler import message_handler
from channels.settings import load_channel_settings

logger = logging.getLogger(__name__)

SENDER = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
BODY_ERROR = 'The body must be a JSON object: {"sender": "<conversation id>", "message": "<text>"}.'
SENDER_ERROR = "sender must be a string of 1-128 letters, digits, '_', '.', ':', '@' or '-'."
MESSAGE_ERROR = "message must be a string."
METADATA_ERROR = "metadata, when given, must be a JSON object."


def bad_request(error: Text) -> HTTPResponse:
    return response.json({"error": error}, status=400)


def read_body(request: Request) -> Tuple[Optional[Dict[Text, Any]], Optional[Text]]:
    """(sender, message, metadata) as a dict, or the error to send back."""
    try:
        body = request.json
    except InvalidUsage:
        return None, BODY_ERROR
    if not isinstance(body, dict):
        return None, BODY_ERROR
    sender, message, metadata = body.get("sender"), body.get("message"), body.get("metadata")
    if not isinstance(sender, str) or not SENDER.fullmatch(sender):
        return None, SENDER_ERROR
    if not isinstance(message, str):
        return None, MESSAGE_ERROR
    if metadata is not None and not isinstance(metadata, dict):
        return None, METADATA_ERROR
    return {"sender": sender, "message": message, "metadata": metadata}, None


class CheckedRestInput(RestInput):
    """`rest` channel that refuses malformed requests with 400 instead of guessing."""

    @classmethod
    def name(cls) -> Text:
        return "rest"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls()

    def __init__(self) -> None:
        # Checked once, at start: a bad setting stops the server with its message.
        self.settings = load_channel_settings()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("checked_rest_webhook", __name__)
        handle = message_handler(webhook, on_new_message, self.settings.max_message_chars,
                                 self.settings.conversation_retention_days)

        @webhook.listener("before_server_start")
        async def limit_request_size(app: Any, _loop: Any) -> None:
            # Sanic refuses larger bodies with 413 before reading them (default 100 MB).
            app.config.REQUEST_MAX_SIZE = self.settings.max_request_bytes

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body, error = read_body(request)
            if error:
                return bad_request(error)
            collector = CollectingOutputChannel()
            try:
                await handle(UserMessage(body["message"], collector, body["sender"],
                                         input_channel=self.name(), metadata=body["metadata"]))
            except Exception as exception:  # the type only: the message may hold personal details
                logger.error("A REST message could not be handled: %s", type(exception).__name__)
                return response.json({"error": "The message could not be handled."}, status=500)
            return response.json(collector.messages)

        return webhook
