"""Visitors' turns taken one at a time, in arrival order, in each Rasa server process.

A turn is mostly CPU on the server's one event loop (NLU, then the policies), with awaits in
between: the tracker store, and the action server for the booking form. Left alone, every
message that arrives starts its turn at once, and a turn that awaits the action server goes back
to the end of the loop's queue at each await, behind every other turn in progress: under 16
clients, the visitor in the booking form got a tenth of the turns of another. Here a turn waits
for one of TURNS_AT_ONCE places, strictly in arrival order (a freed place goes to the longest
waiting turn; asyncio's semaphore in Python 3.10 lets a newcomer take it first). While a
message waits, it is embedded together with the others that arrived with it; a message that
has not been is embedded on a worker thread as its turn starts (components/message_embeddings.py).

A turn keeps its place for at most LONGEST_HOLD seconds: an action server that hangs slows the
others by that much, never stops them.
"""
import asyncio
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Deque

from components.message_embeddings import shared_batcher

# One: each await of a turn costs a round of the event loop, and with a second turn in progress
# a round lasts as long as that turn's NLU. The booking form's call to the action server takes
# a dozen rounds: with two turns at once it took 1-3 s under 16 clients, with one 5-190 ms, and
# the visitor in the form got as many turns as the others (28 against 29 in 25 s) instead of a
# fifth. The CPU is not left idle meanwhile: arriving messages are embedded.
TURNS_AT_ONCE = 1
# A turn takes 30-50 ms of CPU; one that takes seconds is waiting on something else.
LONGEST_HOLD = 1.0


class TurnQueue:
    def __init__(self, at_once: int = TURNS_AT_ONCE, longest_hold: float = LONGEST_HOLD) -> None:
        self._free = at_once
        self._waiting: Deque[asyncio.Future] = deque()
        self._longest_hold = longest_hold
        self._in_flight = 0  # messages between arrival and the end of their turn

    async def _take_place(self) -> None:
        if self._free and not self._waiting:
            self._free -= 1
            return
        place = asyncio.get_running_loop().create_future()
        self._waiting.append(place)
        try:
            await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():
                self._give_place()  # handed over just as the turn was cancelled: pass it on
            else:
                self._waiting.remove(place)
            raise

    def _give_place(self) -> None:
        """To the longest waiting turn, directly, so nobody can take it on the way."""
        while self._waiting:
            place = self._waiting.popleft()
            if not place.done():
                place.set_result(None)
                return
        self._free += 1

    @asynccontextmanager
    async def turn(self, text: str) -> AsyncIterator[None]:
        """Holds a place for the turn of the message with this text, once it is its turn."""
        self._in_flight += 1
        try:
            if self._in_flight > 1:
                await shared_batcher().embed_with_others(text)
            await self._take_place()
            # Alone: embedded on the worker thread while the turn starts the session.
            shared_batcher().embed_meanwhile(text)
            released = False

            def release() -> None:
                nonlocal released
                if not released:
                    released = True
                    self._give_place()
            timer = asyncio.get_running_loop().call_later(self._longest_hold, release)
            try:
                yield
            finally:
                timer.cancel()
                release()
        finally:
            self._in_flight -= 1


# One per process: the turns of every channel share its CPU.
TURNS = TurnQueue()
