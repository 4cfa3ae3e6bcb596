"""A visitor on the socket.io channel, as the widget talks to it (python-socketio's client,
long-polling: the websocket transport would need a package the project does not install)."""
import queue
import time
from typing import Dict, List, Optional

import socketio

QUIET_SECONDS = 0.4  # one message's replies come in one burst; this long without one ends it


class Visitor:
    def __init__(self, port: int, session_id: Optional[str] = None, origin: Optional[str] = None):
        self.client = socketio.Client(reconnection=False)
        self.replies: "queue.Queue[Dict]" = queue.Queue()
        confirmations: "queue.Queue[str]" = queue.Queue()
        self.client.on("bot_uttered", self.replies.put)
        self.client.on("session_confirm", confirmations.put)
        headers = {"Origin": origin} if origin else {}
        self.client.connect(f"http://localhost:{port}", headers=headers, transports=["polling"], wait_timeout=10)
        self.client.emit("session_request", {"session_id": session_id})
        self.session_id = confirmations.get(timeout=10)

    def send(self, message, session_id: Optional[str] = None) -> None:
        self.client.emit("user_uttered", {"message": message, "session_id": session_id or self.session_id})

    def replies_within(self, timeout: float) -> List[str]:
        """The texts of one burst of replies: empty when none came within `timeout`."""
        texts: List[str] = []
        try:
            texts.append(self.replies.get(timeout=timeout).get("text", ""))
            while True:
                texts.append(self.replies.get(timeout=QUIET_SECONDS).get("text", ""))
        except queue.Empty:
            return texts

    def say(self, message, timeout: float = 30) -> List[str]:
        self.send(message)
        return self.replies_within(timeout)

    def timed_say(self, message, timeout: float = 30):
        """(seconds until the first reply, replies)."""
        started = time.monotonic()
        self.send(message)
        first = self.replies.get(timeout=timeout)
        elapsed = time.monotonic() - started
        return elapsed, [first.get("text", "")] + self.replies_within(QUIET_SECONDS)

    def close(self) -> None:
        # Without abort, the client waits for its pending long-poll, up to the 25 s ping interval.
        self.client.eio.disconnect(abort=True)
