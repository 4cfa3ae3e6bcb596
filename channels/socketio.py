"""Rasa's socket.io channel, fixed and locked down. credentials.yml names it; the events and
options are Rasa's `socketio` ones.

The fix: Rasa 3.6's `SocketIOInput` answers `session_request` with `sio.enter_room(...)`
without `await`. Since python-socketio 5.10, `AsyncServer.enter_room` is a coroutine, so with
the python-socketio 5.18 that Rasa 3.6.21 installs the socket never joins its session's room:
the client gets `session_confirm`, but every bot reply is emitted to an empty room and is
lost. This channel awaits it.

The locks: a session id is the conversation's only key, and Rasa lets a client name any id
("default", 100,000 characters, another visitor's) and join its room. Here ids are made and
signed by the server (HMAC with SESSION_SIGNING_KEY): a client keeps using the id it was
given (reloads, other tabs), and any other id is replaced by a new one, which the client
learns from `session_confirm`. A message is taken only for the session its socket was
confirmed in. Messages go through channels/handler.py (length cap, cleaning); origins and
packet size are limited by channels/settings.py.
"""
import hashlib
import hmac
import inspect
import logging
import secrets
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from sanic import Blueprint
from socketio import AsyncRedisManager

from channels.handler import message_handler
from channels.settings import load_channel_settings

logger = logging.getLogger(__name__)

NONCE_HEX, SIGNATURE_HEX = 32, 32  # 128 random bits, 128 bits of HMAC-SHA256


class SessionIds:
    """Session ids of the form <nonce><signature>, 64 hex characters."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _signature(self, nonce: Text) -> Text:
        return hmac.new(self.key, nonce.encode(), hashlib.sha256).hexdigest()[:SIGNATURE_HEX]

    def issue(self) -> Text:
        nonce = secrets.token_hex(NONCE_HEX // 2)
        return nonce + self._signature(nonce)

    def verified(self, data: Any) -> Optional[Text]:
        """The client's session id when this server signed it, else None."""
        session_id = data.get("session_id") if isinstance(data, dict) else None
        if not isinstance(session_id, str) or len(session_id) != NONCE_HEX + SIGNATURE_HEX:
            return None
        nonce, signature = session_id[:NONCE_HEX], session_id[NONCE_HEX:]
        if hmac.compare_digest(signature, self._signature(nonce)):
            return session_id
        return None


class CustomPayloadSocketIOOutput(SocketIOOutput):
    """Rasa 3.6 hands a response's custom payload to `sio.emit` as keyword arguments, so any
    payload but {"data": ...} raised TypeError. Here it goes as {"custom": payload}, the shape
    REST replies have (the forget-me reply tells the widget to wipe its transcript this way)."""

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        await self._send_message(recipient_id, {"custom": json_message})


class PersistentSocketIOInput(SocketIOInput):
    """`socketio` channel whose sockets really join their session's room, and only their own."""

    @classmethod
    def name(cls) -> Text:
        return "socketio"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        channel = super().from_credentials(credentials)
        # Checked once, at start: a bad setting stops the server with its message.
        channel.settings = load_channel_settings()
        channel.session_ids = SessionIds(channel.settings.session_signing_key)
        return channel

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        socketio_webhook = super().blueprint(on_new_message)
        sio = self.sio
        assert sio is not None
        handle = message_handler(socketio_webhook, on_new_message, self.settings.max_message_chars,
                                 self.settings.conversation_retention_days)
        # Rasa's empty list turns Engine.IO's origin check off; browsers elsewhere are refused.
        sio.eio.cors_allowed_origins = list(self.settings.allowed_origins)
        sio.eio.max_http_buffer_size = self.settings.max_request_bytes
        if self.settings.socketio_redis_url:
            # Before any socket connects: the manager is initialised on the first connection.
            sio.manager = AsyncRedisManager(self.settings.socketio_redis_url)
            sio.manager.set_server(sio)

        # Registering an event again replaces Rasa's handler.
        @sio.on("session_request", namespace=self.namespace)
        async def session_request(sid: Text, data: Any) -> None:
            session_id = self.session_ids.verified(data) or self.session_ids.issue()
            if self.session_persistence:
                entered = sio.enter_room(sid, session_id, namespace=self.namespace)
                if inspect.isawaitable(entered):
                    await entered
            await sio.save_session(sid, {"session_id": session_id}, namespace=self.namespace)
            await sio.emit("session_confirm", session_id, room=sid, namespace=self.namespace)

        @sio.on(self.user_message_evt, namespace=self.namespace)
        async def handle_message(sid: Text, data: Any) -> None:
            if not isinstance(data, dict) or not isinstance(data.get("message"), str):
                logger.debug("Ignored a socket.io message without a string message.")
                return
            if self.session_persistence:
                confirmed = (await sio.get_session(sid, namespace=self.namespace)).get("session_id")
                if confirmed is None or data.get("session_id") != confirmed:
                    logger.debug("Ignored a socket.io message for a session its socket was not confirmed in.")
                    return
                sender_id = confirmed
            else:
                sender_id = sid
            metadata = data.get(self.metadata_key)
            await handle(UserMessage(
                data["message"], CustomPayloadSocketIOOutput(sio, self.bot_message_evt), sender_id,
                input_channel=self.name(), metadata=metadata if isinstance(metadata, dict) else None,
            ))

        return socketio_webhook
