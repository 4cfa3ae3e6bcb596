"""`make test-production`: the production topology under load and under faults, through nginx.

Figures are printed and written to results/production.md (README "Deploying" quotes them).
Timing is reported, not asserted: what is asserted is that nothing is lost.
"""
import os
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple

import pytest
import requests
from sqlalchemy import create_engine, text

from clinic_core.storage import HandoffStore
from tests.conftest import ROOT
from tests.production.conftest import reload_nginx
from tests.socketio_visitor import Visitor
from tests.test_rest import CLINIC, DOMAIN, FRAME, QUESTIONS

pytestmark = pytest.mark.production

CLIENTS = 8
LOAD_SECONDS = 20
RESULTS = ROOT / "results" / "production.md"


@dataclass
class Turn:
    sender: str
    ok: bool
    seconds: float
    started: float
    replies: List[str] = field(default_factory=list)


@dataclass
class Load:
    turns: List[Turn]
    seconds: float

    @property
    def answered(self) -> List[Turn]:
        return [turn for turn in self.turns if turn.ok]

    @property
    def per_second(self) -> float:
        return len(self.answered) / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(turn.seconds for turn in self.answered)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    def row(self, name: str) -> str:
        return (f"| {name} | {len(self.answered)} | {self.per_second:.1f} | {self.percentile(0.5):.0f} | "
                f"{self.percentile(0.95):.0f} | {len(self.turns) - len(self.answered)} |")


def run_load(url: str, prefix: str, seconds: float = LOAD_SECONDS, clients: int = CLIENTS,
             during: Optional[Callable[[], None]] = None, after_seconds: float = 0) -> Load:
    """`clients` visitors, each continuing one conversation as fast as replies come."""
    questions = list(QUESTIONS.values())
    turns: List[Turn] = []
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + seconds

    def visitor(number: int) -> None:
        session, sender = requests.Session(), f"{prefix}-{number}"
        turn = 0
        while time.monotonic() < stop:
            began = time.monotonic()
            try:
                response = session.post(f"{url}/webhooks/rest/webhook", timeout=30,
                                        json={"sender": sender, "message": questions[(number + turn) % len(questions)]})
                replies = [reply.get("text", "") for reply in response.json()] if response.status_code == 200 else []
                ok = bool(replies)
            except (requests.RequestException, ValueError):
                ok, replies = False, []
            with lock:
                turns.append(Turn(sender, ok, time.monotonic() - began, began - start, replies))
            turn += 1

    with ThreadPoolExecutor(clients + 1) as pool:
        futures = [pool.submit(visitor, number) for number in range(clients)]
        if during:
            time.sleep(after_seconds)
            during()
        for future in futures:
            future.result()
    return Load(turns, time.monotonic() - start)


def answered_by(production, run: Callable[[], Load]) -> Tuple[Load, Counter]:
    """The run, and how many of its requests each replica answered (nginx's upstream log)."""
    log = production.nginx_prefix / "logs" / "upstream.log"
    time.sleep(1.5)  # nginx flushes its log buffer every second
    before = len(log.read_text().splitlines())
    load = run()
    time.sleep(1.5)
    shares = Counter(line.split()[1] for line in log.read_text().splitlines()[before:])
    return load, shares


def report(lines: List[str]) -> None:
    print("\n" + "\n".join(lines))
    with RESULTS.open("a", encoding="utf-8") as sink:
        sink.write("\n".join(lines) + "\n\n")


def stored_events(production, sender: str) -> List[str]:
    engine = create_engine(production.conversations_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT type_name, action_name, data FROM events WHERE sender_id = :s ORDER BY id"),
            {"s": sender}).all()
    engine.dispose()
    return rows


def test_load_through_nginx_at_one_replica_and_at_every_replica(production):
    RESULTS.write_text("# make test-production\n\n")
    config = production.nginx_config.read_text()
    second = f"server 127.0.0.1:{production.replica_ports[1]} "
    one_replica = config.replace(second, f"server 127.0.0.1:{production.replica_ports[1]} down ", 1)
    reload_nginx(production, one_replica)
    try:
        run_load(production.url, "warm-up", seconds=5)
        single, single_shares = answered_by(production, lambda: run_load(production.url, "one-replica"))
    finally:
        reload_nginx(production, config)
    run_load(production.url, "warm-up-all", seconds=5)
    every, every_shares = answered_by(production, lambda: run_load(production.url, "all-replicas"))
    ratio = every.per_second / single.per_second
    report([f"Load through nginx: {CLIENTS} visitors continuing conversations for {LOAD_SECONDS} s each run.", "",
            "| replicas | replies | messages/s | p50 ms | p95 ms | failed |", "|---|---|---|---|---|---|",
            single.row("1"), every.row(str(len(production.replica_ports))), "",
            f"Messages per second, {len(production.replica_ports)} replicas over 1: {ratio:.2f}; "
            f"p95 {every.percentile(0.95):.0f} ms against {single.percentile(0.95):.0f} ms."])
    assert len(single.answered) == len(single.turns) and len(every.answered) == len(every.turns)
    first, second = (f"127.0.0.1:{port}" for port in production.replica_ports)
    assert set(single_shares) == {first}
    # Least connections: every replica took a real share of the same visitors' messages.
    assert set(every_shares) == {first, second} and min(every_shares.values()) > 0.25 * sum(every_shares.values())


def send_at_once(barrier: threading.Barrier, sender: str, port: int, message: str) -> int:
    """Straight to one replica, the moment the other sender is ready too."""
    barrier.wait()
    return requests.post(f"http://localhost:{port}/webhooks/rest/webhook", timeout=60,
                         json={"sender": sender, "message": message}).status_code


def test_two_messages_of_one_conversation_at_two_replicas_are_processed_in_order(production):
    first, second = list(QUESTIONS.values())[:2]
    for attempt in range(5):
        sender = f"lock-{attempt}-{uuid.uuid4().hex[:8]}"
        requests.post(f"{production.url}/webhooks/rest/webhook", json={"sender": sender, "message": "hello"},
                      timeout=30).raise_for_status()
        with ThreadPoolExecutor(2) as pool:
            codes = list(pool.map(partial(send_at_once, threading.Barrier(2), sender),
                                  production.replica_ports, (first, second)))
        assert codes == [200, 200]
        events = stored_events(production, sender)
        kinds = [(kind, action) for kind, action, _ in events]
        users = [index for index, (kind, _) in enumerate(kinds) if kind == "user"]
        assert len(users) == 3, kinds  # hello and both messages: none lost, none written twice
        # Each turn ends (the bot listens again) before the next message's turn begins.
        for this, following in zip(users, users[1:], strict=False):
            assert ("action", "action_listen") in kinds[this + 1:following], kinds


def test_a_booking_over_socketio_through_nginx_is_stored_in_postgres_and_notified_once(production):
    visitor = Visitor(production.public_port, origin=f"http://localhost:{production.public_port + 5}")
    try:
        assert DOMAIN["utter_ask_full_name"][0]["text"] in " ".join(visitor.say("hi, i'd like to book a consultation"))
        visitor.say("Dana Whitaker")
        visitor.say("(503) 555-0147")
        visitor.say("weekday afternoons")
        assert CLINIC.fill(DOMAIN["utter_ask_consent"][0]["text"]) in visitor.say("questions about side effects")
        assert any("Dana Whitaker" in reply for reply in visitor.say("yep, looks right"))
        assert any("Thank you, Dana Whitaker" in reply for reply in visitor.say("yes, send it"))
    finally:
        visitor.close()
    [row] = [row for row in HandoffStore(production.handoffs_url).list_handoffs()
             if row["conversation_id"] == visitor.session_id]
    mark = f"#{row['id']}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(mark in body["text"] for _, body in production.receiver.received):
        time.sleep(0.2)
    time.sleep(3)  # long enough for a second sender to send it again, were it claimed twice
    assert sum(mark in body["text"] for _, body in production.receiver.received) == 1
    assert [n["status"] for n in HandoffStore(production.handoffs_url).get_handoff(row["id"])["notifications"]] \
        == ["sent"]


def test_a_reply_reaches_the_visitors_socket_on_another_replica(production):
    """Two tabs of one conversation, their sockets on different replicas: what one tab says is
    answered on its replica, and the reply reaches the other tab through Redis."""
    origin = f"http://localhost:{production.public_port + 5}"
    first_tab = Visitor(production.replica_ports[0], origin=origin)
    second_tab = Visitor(production.replica_ports[1], session_id=first_tab.session_id, origin=origin)
    try:
        assert second_tab.session_id == first_tab.session_id
        assert second_tab.say(QUESTIONS["side_effects"])
        assert any("side effect" in reply.lower() for reply in first_tab.replies_within(10))
    finally:
        first_tab.close()
        second_tab.close()


def test_kill_9_of_a_replica_under_load_loses_no_conversation(production):
    victim = production.output.pid_of("rasa-2")
    killed_at: Dict[str, float] = {}

    def kill() -> None:
        killed_at["t"] = time.monotonic()
        os.kill(victim, signal.SIGKILL)

    load = run_load(production.url, "kill", seconds=25, during=kill, after_seconds=8)
    failed = [turn for turn in load.turns if not turn.ok]
    report([f"kill -9 of one Rasa replica after 8 s of a 25 s load ({CLIENTS} visitors): "
            f"{len(load.answered)} replies, {len(failed)} failed (at most one in flight per visitor), "
            f"p95 {load.percentile(0.95):.0f} ms."])
    assert len(failed) <= CLIENTS
    assert all(turn.ok for turn in load.turns if turn.started > load.seconds - 12)  # routed around it
    for number in range(CLIENTS):
        sender = f"kill-{number}"
        mine = [turn for turn in load.turns if turn.sender == sender]
        stored = sum(kind == "user" for kind, _, _ in stored_events(production, sender))
        answered = sum(turn.ok for turn in mine)
        assert answered <= stored <= len(mine), sender
        # State kept: the conversation went on; only its first reply starts a session.
        assert not any(FRAME in reply for turn in mine[1:] for reply in turn.replies), sender
    production.output.wait_for(r"\[rasa-2\] ready", 300)


def test_postgresql_restarted_under_load_the_assistant_recovers_without_a_restart(production):
    rasa_pids = {name: production.output.pid_of(name) for name in ("rasa-1", "rasa-2")}
    postgres = production.output.pid_of("postgres")

    def restart_postgres() -> None:
        os.killpg(postgres, signal.SIGINT)  # a fast shutdown; the supervisor starts it again

    load = run_load(production.url, "postgres-restart", seconds=30, during=restart_postgres, after_seconds=5)
    failed = [turn for turn in load.turns if not turn.ok]
    recovered = [turn for turn in load.turns if turn.started > load.seconds - 10]
    slowest = max(turn.seconds for turn in load.turns)
    report([f"PostgreSQL stopped (fast shutdown) after 5 s of a 30 s load and started again by the supervisor: "
            f"{len(load.answered)} replies, {len(failed)} failed, the slowest reply {slowest:.1f} s "
            f"(the conversation store waits for the database), the last 10 s "
            f"{sum(turn.ok for turn in recovered)}/{len(recovered)} answered."])
    assert production.output.pid_of("postgres") != postgres
    assert {name: production.output.pid_of(name) for name in rasa_pids} == rasa_pids  # no restart of its own
    assert recovered and all(turn.ok for turn in recovered)
    assert failed == []
    for number in range(CLIENTS):
        sender = f"postgres-restart-{number}"
        mine = [turn for turn in load.turns if turn.sender == sender]
        stored = sum(kind == "user" for kind, _, _ in stored_events(production, sender))
        assert stored == len(mine), sender  # every turn stored, none twice
        # No visitor was greeted as new mid-conversation from an empty tracker.
        assert not any(FRAME in reply for turn in mine[1:] for reply in turn.replies), sender
