"""channels/lock_store.py against a real Redis server (Debian's, from make servers)."""
import subprocess
import threading
import time
from functools import partial

import pytest
import redis
from rasa.core.lock_store import RedisLockStore
from rasa.utils.endpoints import EndpointConfig

from channels.lock_store import AtomicRedisLockStore
from tests.local_servers import free_port

pytestmark = pytest.mark.production
TAKERS = 16


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    port = free_port()
    server = subprocess.Popen(["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--dir", str(tmp_path_factory.mktemp("redis"))], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield port
    server.terminate()
    server.wait(10)


def tickets_taken_at_once(make_store) -> list:
    """Each taker (a replica) with its own connection takes a ticket at the same moment."""
    stores = [make_store() for _ in range(TAKERS)]
    barrier, tickets = threading.Barrier(TAKERS), []

    def take(store) -> None:
        barrier.wait()
        tickets.append(store.issue_ticket("visitor-1"))

    threads = [threading.Thread(target=take, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return tickets


def test_replicas_taking_tickets_at_once_each_get_their_own(redis_port):
    config = EndpointConfig(url="127.0.0.1", port=redis_port, db=1, key_prefix="atomic")
    tickets = tickets_taken_at_once(lambda: AtomicRedisLockStore(config))
    assert sorted(tickets) == list(range(TAKERS))
    store = AtomicRedisLockStore(config)
    for ticket in tickets:
        store.cleanup("visitor-1", ticket)
    assert store.get_lock("visitor-1") is None  # the last one out deleted it


def test_rasas_own_redis_lock_store_hands_out_one_ticket_twice(redis_port):
    """Why channels/lock_store.py exists: the stock store's read-then-write races."""
    duplicates = 0
    for attempt in range(5):
        tickets = tickets_taken_at_once(partial(RedisLockStore, host="127.0.0.1", port=redis_port, db=2,
                                                key_prefix=f"stock{attempt}"))
        duplicates += len(tickets) - len(set(tickets))
    assert duplicates > 0


def test_a_ticket_left_behind_by_a_killed_replica_expires(redis_port):
    store = AtomicRedisLockStore(EndpointConfig(url="127.0.0.1", port=redis_port, db=3))
    store.issue_ticket("visitor-2", lock_lifetime=0.2)  # its holder died without cleaning up
    time.sleep(0.3)
    ticket = store.issue_ticket("visitor-2")
    assert not store.get_lock("visitor-2").is_locked(ticket)
