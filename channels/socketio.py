"""Rasa's socket.io channel with session persistence that works on python-socketio 5.10+.

Rasa 3.6's `SocketIOInput` answers `session_request` with `sio.enter_room(...)` without
`await`. Since python-socketio 5.10, `AsyncServer.enter_room` is a coroutine, so with the
python-socketio 5.18 that Rasa 3.6.21 installs the socket never joins its session's room:
the client gets `session_confirm`, but every bot reply is emitted to an empty room and is
lost (seen on this project's pinned tree: "coroutine 'AsyncServer.enter_room' was never
awaited", no `bot_uttered`). This subclass replaces only that handler; everything else
(events, `session_persistence`, metadata, JWT) is Rasa's own. credentials.yml names it.

A session id is the conversation's only key, so it must be unguessable: the widget makes a
random 128-bit one. Ids that are not 16-64 URL-safe characters are replaced by a new random
one, which the client learns from `session_confirm`.
"""
import inspect
import logging
import re
import uuid
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketIOInput
from sanic import Blueprint

logger = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def valid_session_id(data: Any) -> Optional[Text]:
    """The client's session id when it is well formed, else None."""
    session_id = data.get("session_id") if isinstance(data, dict) else None
    if isinstance(session_id, str) and SESSION_ID.match(session_id):
        return session_id
    return None


class PersistentSocketIOInput(SocketIOInput):
    """`socketio` channel whose sockets really join their session's room."""

    @classmethod
    def name(cls) -> Text:
        return "socketio"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        socketio_webhook = super().blueprint(on_new_message)
        sio = self.sio
        assert sio is not None

        # Registering the event again replaces Rasa's handler.
        @sio.on("session_request", namespace=self.namespace)
        async def session_request(sid: Text, data: Optional[Dict]) -> None:
            session_id = valid_session_id(data) or uuid.uuid4().hex
            if self.session_persistence:
                entered = sio.enter_room(sid, session_id, namespace=self.namespace)
                if inspect.isawaitable(entered):
                    await entered
            await sio.emit("session_confirm", session_id, room=sid, namespace=self.namespace)
            logger.debug(f"Socket {sid} joined session {session_id}.")

        return socketio_webhook
