"""A message's sentence embeddings, its own and its clauses', and messages embedded together.

The safety net scores each clause of a longer message for crisis as well as the whole message
("does it work fast? i don't know how much longer i can keep going"), with the pretrained
encoder's embeddings; the classifiers read the tuned encoder's. The whole message and its
clauses go through the encoder in one batch: for a short message the pass costs about the
time to read the encoder's 40 MB of weights, so a second pass for the clauses nearly doubled the
encoder's share of such a turn (dev messages with clauses: 34.6 ms -> 25.7 ms).

Under load, while one turn runs on the server's event loop, other visitors' messages queue. The
channel hands each of them to the `EmbeddingBatcher` first, and the ones that arrived together
are embedded in one pass, which reads the weights once for all of them; the featurizer then
takes each message's embeddings instead of encoding it again. A message that arrives alone is
embedded on a worker thread while its turn starts the session and reads the conversation from
the tracker store, which the encoder's pass (ONNX Runtime, which lets go of Python's lock) took
about as long as: on a quiet server the second core does it meanwhile, and the featurizer waits
only for what is left. The batcher encodes with the loaded model's encoder (its tuned layers),
which the featurizer hands it; until then it leaves every message to the featurizer.

No Rasa here: the channel and the components both import it.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, List, Optional, Sequence

import numpy as np

from components.minilm import MiniLMEncoder, shared_encoder

logger = logging.getLogger(__name__)

# Where a crisis hides inside a question: clause breaks are punctuation and the words that
# turn a message from one thought to the next.
CLAUSE_BREAK = re.compile(r"[.?!;,]+|\b(?:because|bc|cause|cuz|but|honestly|tbh|anyway)\b", re.IGNORECASE)
MIN_CLAUSE_WORDS = 3
# Embeddings handed from the channel to the featurizer and not taken yet (a message the server
# dropped): the oldest go first. Each is a few kB.
WAITING_CAPACITY = 256
# How long the featurizer waits for a pass on the worker thread (about 5 ms) before encoding the
# message itself.
LONGEST_WAIT = 5.0


def clauses(text: str) -> List[str]:
    """The message's clauses of three words or more, when it has more than one."""
    parts = [part.strip() for part in CLAUSE_BREAK.split(text) if len(part.split()) >= MIN_CLAUSE_WORDS]
    return parts if len(parts) > 1 else []


@dataclass(frozen=True)
class MessageEmbeddings:
    whole: np.ndarray       # (384,): the encoder's, tuned on the training examples if training tuned it
    pretrained: np.ndarray  # (384,): the pretrained encoder's, which the safety net reads
    clauses: np.ndarray     # (number of clauses, 384), pretrained; no rows for a message of one clause


def embed_messages(texts: Sequence[str], encoder: Optional[MiniLMEncoder] = None) -> List[MessageEmbeddings]:
    """Each text's embeddings and its clauses', all in one encoder pass (the pretrained encoder
    unless another is given)."""
    pieces: List[str] = []
    spans = []
    for text in texts:
        own_clauses = clauses(text)
        spans.append((len(pieces), len(own_clauses)))
        pieces += [text, *own_clauses]
    tuned, pretrained = (encoder or shared_encoder()).encode_with_pretrained(pieces)
    return [MessageEmbeddings(tuned[start], pretrained[start], pretrained[start + 1:start + 1 + count])
            for start, count in spans]


class EmbeddingBatcher:
    """Embeds the messages that reach the server together in one pass, for the featurizer to take."""

    def __init__(self, encoder: Optional[MiniLMEncoder] = None, capacity: int = WAITING_CAPACITY,
                 embed: Callable[[Sequence[str], MiniLMEncoder], List[MessageEmbeddings]] = embed_messages) -> None:
        self.encoder, self._capacity, self._embed = encoder, capacity, embed
        self._queued: List[str] = []
        self._pass: Optional[asyncio.Future] = None
        # text -> (encoder, its MessageEmbeddings, or the Future of a pass on the worker thread)
        self._ready: OrderedDict[str, tuple] = OrderedDict()
        self._worker: Optional[ThreadPoolExecutor] = None

    def use(self, encoder: MiniLMEncoder) -> None:
        """Embeds with this encoder from now on (a model was loaded); earlier embeddings go."""
        if encoder is not self.encoder:
            self.encoder = encoder
            self._ready.clear()

    async def embed_with_others(self, text: str) -> None:
        """Queues the text for the next pass and waits for it. The pass runs once every message
        that arrived with this one has been queued: on the event loop's next round."""
        if self.encoder is None:
            return
        self._queued.append(text)
        if self._pass is None:
            loop = asyncio.get_running_loop()
            self._pass = loop.create_future()
            loop.call_soon(self._run_pass)
        await asyncio.shield(self._pass)

    def _run_pass(self) -> None:
        texts, self._queued = list(dict.fromkeys(self._queued)), []
        done, self._pass = self._pass, None
        encoder = self.encoder
        try:
            for text, embeddings in zip(texts, self._embed(texts, encoder), strict=True):
                self._keep(text, encoder, embeddings)
        except Exception:  # the featurizer embeds the messages itself
            logger.exception("Embedding %d messages together failed", len(texts))
        done.set_result(None)

    def embed_meanwhile(self, text: str) -> None:
        """Starts embedding the text on the worker thread, unless a pass has it already or it is a
        button's payload ("/book_consultation"), which Rasa reads without NLU."""
        if self.encoder is None or text in self._ready or text.startswith("/"):
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedding")
        encoder = self.encoder
        self._keep(text, encoder, self._worker.submit(lambda: self._embed([text], encoder)[0]))

    def _keep(self, text: str, encoder: MiniLMEncoder, embeddings: MessageEmbeddings | Future) -> None:
        self._ready[text] = (encoder, embeddings)
        self._ready.move_to_end(text)
        while len(self._ready) > self._capacity:
            self._ready.popitem(last=False)

    def take(self, text: str, encoder: MiniLMEncoder) -> Optional[MessageEmbeddings]:
        """The text's embeddings from a pass with this encoder, once (waiting for a pass still on
        the worker thread); None if it was not in one, or the pass failed."""
        found = self._ready.pop(text, None)
        if found is None or found[0] is not encoder:
            return None
        if not isinstance(found[1], Future):
            return found[1]
        try:
            return found[1].result(timeout=LONGEST_WAIT)
        except Exception:  # the featurizer embeds the message itself
            logger.exception("Embedding a message on the worker thread failed")
            return None


@lru_cache(maxsize=1)
def shared_batcher() -> EmbeddingBatcher:
    """The one the channel fills and the featurizer takes from, in the Rasa server's process."""
    return EmbeddingBatcher()
