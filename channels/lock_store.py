"""Rasa's Redis lock store, with every change to a conversation's lock made atomically.

Rasa 3.6's RedisLockStore reads a conversation's lock, changes it in Python and writes it
back. Two replicas that take a ticket for one conversation at the same moment both read no
lock and both get ticket 0, so both process the conversation at once and one turn's events
are lost (tests/production found it). Here each read-change-write runs under Redis's WATCH
and MULTI, and is tried again when another process changed the lock in between. The lock's
format and keys are Rasa's own. endpoints.production.yml names it.
"""
import json
from typing import Callable, Optional, Text, Tuple, TypeVar

import redis
from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

Result = TypeVar("Result")
# What a change does to a lock: the lock to store (None: delete it) and what to return.
Change = Callable[[Optional[TicketLock]], Tuple[Optional[TicketLock], Result]]


class AtomicRedisLockStore(RedisLockStore):
    def __init__(self, endpoint_config: EndpointConfig) -> None:
        super().__init__(host=endpoint_config.url, **endpoint_config.kwargs)

    def _change(self, conversation_id: Text, change: Change) -> Result:
        key = self.key_prefix + conversation_id
        with self.red.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    stored = pipe.get(key)
                    lock, result = change(TicketLock.from_dict(json.loads(stored)) if stored else None)
                    pipe.multi()
                    if lock is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, lock.dumps())
                    pipe.execute()
                    return result
                except redis.WatchError:  # another process changed the lock first: again, from its state
                    continue

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def issue(lock: Optional[TicketLock]) -> Tuple[TicketLock, int]:
            lock = lock or self.create_lock(conversation_id)
            return lock, lock.issue_ticket(lock_lifetime)

        try:
            return self._change(conversation_id, issue)
        except redis.RedisError as error:
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def update_lock(self, conversation_id: Text) -> None:
        def drop_expired(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock:
                lock.remove_expired_tickets()
            return lock, None

        self._change(conversation_id, drop_expired)

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        self.cleanup(conversation_id, ticket_number)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Removes the ticket, and the lock with it when no one else holds one, in one step
        (Rasa's two steps could delete a lock another replica had just taken a ticket on)."""
        def finish(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock is None:
                return None, None
            lock.remove_ticket_for(ticket_number)
            return (lock if lock.is_someone_waiting() else None), None

        self._change(conversation_id, finish)
