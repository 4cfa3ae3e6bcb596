"""Issue 13, processes and storage: faults against real processes, real SQLite files and real servers.

Item 1: the sender survives a locked database; `make run` starts with the handoff database
unreachable and restarts crashed children while the chat answers. Item 6: no visitor details in
errors or logs; private files. Item 9: inbox lockout. Item 10: notifications claimed one at a
time, a stable Message-ID / Idempotency-Key, a failed state. Item 12: a taken port stops
`make run`; readiness is our own child; tests use their own tracker database.
"""
import asyncio
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest
import requests
from aiosmtpd.controller import Controller

from clinic_core.environment import SECRET_USERS
from clinic_core.notifications import subject_for
from clinic_core.settings import SettingsError, load_settings
from clinic_core.storage import HandoffRequest, HandoffStore, Notification, StorageUnavailable, utcnow
from scripts.services import PortInUse, Service, Services, is_ready, rasa_services
from staff.inbox import create_app
from staff.sender import queue_new_notifications, run_once
from staff.signin import LoginThrottle
from tests.conftest import MODEL, PORT_OFFSET, ROOT, handoff_with_notifications
from tests.local_servers import SmtpServer, WebhookReceiver, free_port
from tests.test_inbox import add_account, serve, sign_in, signed_in
from tests.test_rest import CLINIC, DOMAIN, FRAME, QUESTIONS

FAQ_QUESTION = QUESTIONS["side_effects"]  # vetted against the training data (test_heldout_overlap)
CRISIS_MESSAGE = "i keep thinking about killing myself"  # as in test_rest

NAME, PHONE, EMAIL, MESSAGE = "Dana Whitaker", "+15035550147", "dana@example.com", "i feel so alone lately"
REQUEST = HandoffRequest(full_name=NAME, phone=PHONE, email=EMAIL, preferred_time="weekday afternoons",
                         reason="side effects", consent=True, conversation_id="visitor-7",
                         visitor_messages=[MESSAGE])
VISITOR_DETAILS = (NAME, PHONE, EMAIL, MESSAGE)
# `make run` under test: its own ports, apart from the other suites'.
RUN_PORTS = {name: port + PORT_OFFSET for name, port in
             {"RASA_PORT": 5705, "ACTION_PORT": 5755, "STAFF_INBOX_PORT": 5708, "DEMO_PORT": 5780}.items()}
ENV_FILE_PASSWORD, ENV_FILE_INBOX_KEY = "pa#ss$word", "k3y#with$signs-and-32-characters-or-more"
# A second `make run`, with a bad inbox setting.
BAD_SETTING_PORTS = {name: port + 10 for name, port in RUN_PORTS.items()}


def base_environ(**extra: str) -> Dict[str, str]:
    """The test process's environment without any setting a developer's .env may have exported."""
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("STAFF_", "SMTP_", "OUTBOX_", "NOTIFY_", "DATABASE_URL", "TRACKER_DB"))}
    return {**environ, "STAFF_WEBHOOK_URL": "", **extra}


def email_environ(tmp_path: Path, smtp_port: int, **extra: str) -> Dict[str, str]:
    return base_environ(DATABASE_URL=f"sqlite:///{tmp_path / 'handoffs.db'}", STAFF_EMAIL="team@clinic.test",
                        SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), OUTBOX_POLL_SECONDS="0.2", **extra)


def new_handoff(environ: Dict[str, str], request: HandoffRequest = REQUEST) -> HandoffStore:
    settings = load_settings(environ)
    store = HandoffStore(settings.database_url)
    store.create_handoff(request)
    queue_new_notifications(store, settings)  # as the sender does first
    return store


class Output:
    """A child process's output, collected line by line, that a test can wait on."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: List[str] = []
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, "".join(self.lines[after:]))
            if match:
                return match
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in {timeout:.0f}s; output:\n{self.text[-4000:]}")


@contextmanager
def sender_process(environ: Dict[str, str]) -> Iterator[tuple]:
    process = subprocess.Popen([sys.executable, "-m", "staff.sender"], cwd=ROOT, env=environ, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield process, Output(process)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# --- item 1: the sender and a locked database ------------------------------------------

def test_the_sender_survives_a_database_lock_and_delivers_afterwards(tmp_path):
    smtp = SmtpServer(free_port())
    smtp.start()
    try:
        environ = email_environ(tmp_path, smtp.port)
        new_handoff(environ)
        lock = sqlite3.connect(tmp_path / "handoffs.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        with sender_process(environ) as (process, output):
            # Past SQLite's 5 s busy timeout: the sender meets `database is locked` and must live on.
            output.wait_for(r"Outbox database unavailable \(StorageUnavailable \(OperationalError\)\)", 30)
            assert process.poll() is None
            assert smtp.mailbox.messages == []
            lock.execute("ROLLBACK")
            wait_until(lambda: len(smtp.mailbox.messages) == 1, 30, "the email after the lock")
            output.wait_for(r"email notification 1 delivered", 10)
            assert process.poll() is None
        lock.close()
        assert [n["status"] for n in HandoffStore(environ["DATABASE_URL"]).notifications()] == ["sent"]
        assert not any(detail in output.text for detail in VISITOR_DETAILS)
    finally:
        smtp.stop()


def test_storage_raises_storage_unavailable_when_the_database_cannot_be_reached(tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    store = HandoffStore(f"sqlite:///{tmp_path / 'not-a-folder' / 'handoffs.db'}")  # starts anyway
    with pytest.raises(StorageUnavailable):
        store.create_handoff(REQUEST)
    with pytest.raises(StorageUnavailable):
        store.claim_notifications(utcnow(), timedelta(minutes=1), 10)


# --- item 6: no visitor details in errors or logs; private files ----------------------------

def test_a_failed_write_names_no_visitor_details(tmp_path):
    store = HandoffStore(f"sqlite:///{tmp_path / 'handoffs.db'}")
    store.list_handoffs()  # creates the schema
    with sqlite3.connect(tmp_path / "handoffs.db") as connection:
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON handoffs BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(StorageUnavailable) as raised:
        store.create_handoff(REQUEST)
    assert str(raised.value) == "IntegrityError"
    cause = str(raised.value.__cause__)
    assert "INSERT INTO handoffs" in cause and "SQL parameters hidden" in cause
    assert not any(detail in cause for detail in VISITOR_DETAILS)


def test_sender_logs_name_types_and_ids_only(tmp_path, caplog):
    smtp = SmtpServer(free_port())  # never started: every attempt fails
    environ = email_environ(tmp_path, smtp.port, OUTBOX_MAX_ATTEMPTS="2")
    store = new_handoff(environ)
    settings = load_settings(environ)
    with caplog.at_level(logging.DEBUG):
        run_once(store, settings)
        run_once(store, settings, now=utcnow() + timedelta(hours=1))
    levels = {record.levelname for record in caplog.records}
    assert {"WARNING", "ERROR"} <= levels
    for record in caplog.records:
        assert not any(detail in record.getMessage() for detail in VISITOR_DETAILS), record.getMessage()
    assert "ConnectionRefusedError" in caplog.text


def test_database_files_are_created_private(tmp_path):
    previous = os.umask(0o022)
    try:
        HandoffStore(f"sqlite:///{tmp_path / 'var' / 'handoffs.db'}").list_handoffs()
        rasa_services(str(MODEL), 1, 2, str(tmp_path / "tracker" / "tracker.db"))
    finally:
        os.umask(previous)
    assert (tmp_path / "var" / "handoffs.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tracker" / "tracker.db").stat().st_mode & 0o777 == 0o600


# --- item 10: notifications -----------------------------------------------------------------

class StallingMailbox:
    """Keeps the first message's final reply back until released, then refuses it, as an MTA does
    when the client is gone before it could answer; accepts every later message."""

    def __init__(self) -> None:
        self.accepted, self.unacknowledged = [], []
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content)
        if not self.unacknowledged:
            self.unacknowledged.append(message)
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            return "451 Requested action aborted: client gone"
        self.accepted.append(message)
        return "250 Message accepted for delivery"


def test_a_sender_killed_mid_send_gives_exactly_one_delivery_with_a_stable_message_id(tmp_path):
    mailbox = StallingMailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        environ = email_environ(tmp_path, controller.port, OUTBOX_LEASE_SECONDS="2")
        store = new_handoff(environ)
        new_handoff(environ, HandoffRequest("Sam Lee", "mornings", True, "visitor-8", phone="+15035550100"))
        with sender_process(environ) as (process, _):
            wait_until(lambda: mailbox.unacknowledged, 30, "the first email to arrive")
            process.kill()
            process.wait(timeout=10)
        first, second = store.notifications()
        # The killed sender held its claimed batch, both rows, until its lease ends.
        assert first["locked_until"] is not None and first["claimed_by"] == second["claimed_by"] is not None
        mailbox.release.set()
        with sender_process(environ):
            wait_until(lambda: len(mailbox.accepted) == 2, 30, "both emails after the restart")
            wait_until(lambda: [n["status"] for n in store.notifications()] == ["sent", "sent"], 10, "both sent")
        ids = [message["Message-ID"] for message in mailbox.accepted]
        assert sorted(ids) == sorted({ids[0], ids[1]})  # one accepted delivery each
        assert mailbox.unacknowledged[0]["Message-ID"] in ids  # the repeat is the same message
        assert mailbox.unacknowledged[0]["Message-ID"] == f"<{first['idempotency_key']}@localhost>"
    finally:
        controller.stop()


def test_the_webhook_gets_the_same_idempotency_key_on_every_attempt(tmp_path):
    receiver = WebhookReceiver(status=503)
    try:
        environ = base_environ(DATABASE_URL=f"sqlite:///{tmp_path / 'handoffs.db'}", STAFF_WEBHOOK_URL=receiver.url)
        store = new_handoff(environ)
        new_handoff(environ)
        settings = load_settings(environ)
        assert run_once(store, settings) == 0
        receiver.status = 200
        assert run_once(store, settings, now=utcnow() + timedelta(minutes=1)) == 2
        first_try, second_try = receiver.idempotency_keys[:2], receiver.idempotency_keys[2:]
        assert first_try == second_try == [n["idempotency_key"] for n in store.notifications()]
        assert len(set(first_try)) == 2 and all(first_try)
    finally:
        receiver.stop()


def test_a_notification_that_can_never_be_sent_fails_at_once_and_shows_in_the_inbox(tmp_path):
    smtp = SmtpServer(free_port())
    smtp.start()
    try:
        environ = email_environ(tmp_path, smtp.port)
        settings = load_settings(environ)
        store = HandoffStore(settings.database_url)
        add_account(store)
        handoff_id = handoff_with_notifications(
            store, REQUEST,
            lambda *_: [Notification("email", "New booking request: Dana\nBcc: someone@evil.test", "body")])
        assert run_once(store, settings) == 0
        assert run_once(store, settings, now=utcnow() + timedelta(days=1)) == 0
        [failed] = store.notifications()
        assert (failed["status"], failed["attempts"]) == ("failed", 1)
        assert smtp.mailbox.messages == []
        with serve(create_app(settings, store)) as url:
            session = signed_in(url)
            assert "1 staff notification failed and will not be retried" in session.get(f"{url}/").text
            assert "Failed: not sent after 1 attempt" in session.get(f"{url}/handoffs/{handoff_id}").text
    finally:
        smtp.stop()


class AnsweringMailbox:
    """A real SMTP server that answers RCPT TO and DATA with the given replies."""

    def __init__(self, rcpt: str, data: str) -> None:
        self.rcpt, self.data, self.accepted = rcpt, data, []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt

    async def handle_DATA(self, server, session, envelope):
        if self.data.startswith("250"):
            self.accepted.append(message_from_bytes(envelope.content))
        return self.data


@pytest.mark.parametrize("rcpt, data, status", [
    ("550 5.1.1 No such mailbox", "250 OK", "failed"),
    ("250 OK", "554 5.7.1 Message rejected as spam", "failed"),
    ("250 OK", "552 5.3.4 Message too big", "failed"),
    ("450 4.2.1 Mailbox busy, try later", "250 OK", "pending"),
    ("250 OK", "451 4.3.0 Temporary failure", "pending"),
])
def test_an_smtp_5xx_answer_fails_a_notification_at_once_and_a_4xx_one_is_retried(tmp_path, rcpt, data, status):
    mailbox = AnsweringMailbox(rcpt, data)
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        environ = email_environ(tmp_path, controller.port)  # 30 attempts allowed
        store, settings = new_handoff(environ), load_settings(environ)
        assert run_once(store, settings) == 0
        [notification] = store.notifications()
        assert (notification["status"], notification["attempts"]) == (status, 1)
        mailbox.rcpt = mailbox.data = "250 OK"
        expected_sent = 0 if status == "failed" else 1
        assert run_once(store, settings, now=utcnow() + timedelta(days=1)) == expected_sent
        assert len(mailbox.accepted) == expected_sent
    finally:
        controller.stop()


def test_a_name_with_a_line_break_still_gives_a_one_line_subject():
    request = HandoffRequest("Dana\r\nBcc: someone@evil.test", "mornings", True, "visitor-9")
    # The name is in the subject only when the clinic turns NOTIFY_EMAIL_INCLUDE_DETAILS on.
    assert subject_for(7, request, include_details=True) == "New booking request #7: Dana Bcc: someone@evil.test"
    assert subject_for(7, request, include_details=False) == "New booking request #7"


def test_after_the_maximum_attempts_a_notification_is_failed(tmp_path):
    environ = email_environ(tmp_path, free_port(), OUTBOX_MAX_ATTEMPTS="2")  # nothing listens there
    store, settings = new_handoff(environ), load_settings(environ)
    assert run_once(store, settings) == 0
    assert store.notifications()[0]["status"] == "pending"
    assert run_once(store, settings, now=utcnow() + timedelta(hours=1)) == 0
    assert [(n["status"], n["attempts"]) for n in store.notifications()] == [("failed", 2)]
    assert store.undelivered_counts() == (0, 0, 1)


# --- item 9: inbox lockout ------------------------------------------------------------------

def inbox_app(folder: Path, throttle: LoginThrottle, **environ: str):
    """The inbox on a new database in the folder, with one staff account (tests.test_inbox's USERNAME, PASSWORD)."""
    store = HandoffStore(f"sqlite:///{folder / 'handoffs.db'}")
    add_account(store)
    return create_app(load_settings({"DATABASE_URL": str(store.engine.url), **environ}), store, throttle=throttle)


def test_lockout_never_refuses_the_right_password_from_a_trusted_browser(tmp_path):
    with serve(inbox_app(tmp_path, LoginThrottle(max_failures=2, delay_seconds=0))) as url:
        staff = requests.Session()
        assert sign_in(url, staff) == 303
        staff.cookies.pop("staff_session")  # signed out; the browser stays trusted
        attacker = requests.Session()
        assert [sign_in(url, attacker, password="guess") for _ in range(3)] == [401, 401, 429]
        assert sign_in(url, requests.Session()) == 429  # an unknown browser from that address
        assert sign_in(url, staff) == 303


def test_the_account_limit_stops_guesses_spread_over_addresses(tmp_path):
    throttle = LoginThrottle(max_failures=10, max_account_failures=3, delay_seconds=0)
    with serve(inbox_app(tmp_path, throttle, STAFF_INBOX_TRUSTED_PROXIES="127.0.0.1")) as url:
        staff = requests.Session()
        assert sign_in(url, staff, forwarded_for="192.0.2.1") == 303
        assert [sign_in(url, requests.Session(), password="guess", forwarded_for=f"198.51.100.{n}")
                for n in range(3)] == [401, 401, 401]
        assert sign_in(url, requests.Session(), forwarded_for="203.0.113.9") == 429
        assert sign_in(url, staff, forwarded_for="192.0.2.1") == 303


def test_forwarded_for_counts_only_from_a_configured_proxy(tmp_path):
    # Not configured: a forged header does not dodge the address's lockout.
    with serve(inbox_app(tmp_path / "unconfigured", LoginThrottle(max_failures=2, delay_seconds=0))) as url:
        statuses = [sign_in(url, requests.Session(), password="guess", forwarded_for=f"198.51.100.{n}")
                    for n in range(3)]
    assert statuses == [401, 401, 429]
    # Behind the configured proxy, one visitor's guesses do not lock out another.
    throttle = LoginThrottle(max_failures=2, delay_seconds=0)
    with serve(inbox_app(tmp_path / "behind-proxy", throttle, STAFF_INBOX_TRUSTED_PROXIES="127.0.0.0/8")) as url:
        attacker = [sign_in(url, requests.Session(), password="guess", forwarded_for="6.6.6.6, 198.51.100.7")
                    for _ in range(3)]
        staff = sign_in(url, requests.Session(), forwarded_for="192.0.2.1")
    assert attacker == [401, 401, 429] and staff == 303


def test_settings_are_validated_with_the_variable_named():
    with pytest.raises(SettingsError, match="STAFF_INBOX_TRUSTED_PROXIES"):
        load_settings({"STAFF_INBOX_TRUSTED_PROXIES": "proxy.example"})
    with pytest.raises(SettingsError, match="OUTBOX_MAX_ATTEMPTS"):
        load_settings({"OUTBOX_MAX_ATTEMPTS": "0"})
    with pytest.raises(SettingsError, match="OUTBOX_POLL_SECONDS"):
        load_settings({"OUTBOX_POLL_SECONDS": "nan"})
    with pytest.raises(SettingsError, match="STAFF_INBOX_URL must be an http"):
        load_settings({"STAFF_INBOX_URL": "inbox.clinic.test"})
    with pytest.raises(SettingsError, match="STAFF_WEBHOOK_URL must be an http"):
        load_settings({"STAFF_WEBHOOK_URL": "hooks.slack.com/services/T0"})


# --- items 1 and 12: the supervisor ---------------------------------------------------------

def run_all(environ: Dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "scripts/run_all.py"], cwd=ROOT, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_a_bad_setting_stops_make_run_before_anything_starts():
    process = run_all(base_environ(OUTBOX_MAX_ATTEMPTS="zero"))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "OUTBOX_MAX_ATTEMPTS must be a number" in output
    assert "started (pid" not in output


def test_a_broken_clinic_file_stops_make_run_before_anything_starts(tmp_path):
    clinic = tmp_path / "clinic.yml"
    clinic.write_text(re.sub(r"(?m)^timezone: .*$", "timezone: Mars/Olympus_Mons", (ROOT / "clinic.yml").read_text()))
    process = run_all(base_environ(CLINIC_FILE=str(clinic)))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "timezone: unknown time zone 'Mars/Olympus_Mons'" in output
    assert "started (pid" not in output


def test_a_port_taken_by_another_program_stops_make_run_with_a_clear_message(tmp_path):
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        ports = {**{key: str(value) for key, value in RUN_PORTS.items()}, "RASA_PORT": str(port)}
        environ = base_environ(**ports, TRACKER_DB=str(tmp_path / "tracker.db"))
        process = run_all(environ)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"port {port}, which rasa needs, is already in use by another program" in output
    assert "started (pid" not in output and "The assistant is running" not in output


def test_readiness_is_our_own_child_listening_not_whoever_holds_the_port():
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    other_program = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=other_program.serve_forever, daemon=True).start()
    port = other_program.server_address[1]
    idle = Service("idle", [sys.executable, "-c", "import time; time.sleep(60)"], f"http://127.0.0.1:{port}/",
                   port=port)
    services = Services([idle], log=open(os.devnull, "w"))
    try:
        with pytest.raises(PortInUse):
            services.start()
        services.spawn(idle)
        assert requests.get(f"http://127.0.0.1:{port}/").status_code == 200
        assert not is_ready(idle)  # alive, and the URL answers, but not from our child
    finally:
        services.stop()
        other_program.shutdown()
        other_program.server_close()
    port = free_port()
    server = Service("server", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                     f"http://127.0.0.1:{port}/", port=port)
    with Services([server], log=open(os.devnull, "w"), startup_timeout=30):
        assert is_ready(server)


def test_a_crashing_child_is_restarted_with_back_off_and_the_others_keep_running():
    log_lines: List[str] = []

    class Log:
        def write(self, text):
            log_lines.append(text)

        def flush(self):
            pass

    crashing = Service("crashing", [sys.executable, "-c", "import sys; sys.exit(3)"], None, required=False)
    steady = Service("steady", [sys.executable, "-c", "import time; time.sleep(60)"], None)
    services = Services([crashing, steady], log=Log())
    services.start()
    try:
        steady_pid = steady.process.pid
        deadline = time.monotonic() + 20
        while sum("restarting in" in line for line in log_lines) < 3:
            assert time.monotonic() < deadline, log_lines
            for service in services.services:
                services.check(service)
            time.sleep(0.1)
        delays = re.findall(r"\[crashing\] exited with code 3; restarting in (\d+) s", "".join(log_lines))
        assert delays == ["1", "2", "4"]
        assert steady.process.pid == steady_pid and steady.process.poll() is None
    finally:
        services.stop()


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    """`make run` itself (scripts/run_all.py) with the handoff database unreachable at start."""
    assert MODEL.is_file(), "run `make train` first"
    directory = tmp_path_factory.mktemp("make-run")
    (directory / "not-a-folder").write_text("")
    # Secrets with a `#` and a `$`, which Make syntax used to cut short.
    (directory / ".env").write_text(f"SMTP_USER=relay-user\nSMTP_PASSWORD='{ENV_FILE_PASSWORD}'\n"
                                    f'STAFF_INBOX_SECRET_KEY="{ENV_FILE_INBOX_KEY}"  # a comment\n')
    environ = base_environ(
        ENV_FILE=str(directory / ".env"),
        **{key: str(value) for key, value in RUN_PORTS.items()},
        DATABASE_URL=f"sqlite:///{directory / 'not-a-folder' / 'handoffs.db'}",
        TRACKER_DB=str(directory / "tracker.db"), STAFF_INBOX_PASSWORD_FILE=str(directory / "staff_inbox_password"),
        STAFF_INBOX_URL=f"http://localhost:{RUN_PORTS['STAFF_INBOX_PORT']}",
    )
    process = run_all(environ, start_new_session=True)
    output = Output(process)
    try:
        output.wait_for(r"The assistant is running", 400)
        yield process, output, directory
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def ask(question: str, sender: str, rasa_port: int = RUN_PORTS["RASA_PORT"]) -> List[str]:
    response = requests.post(f"http://localhost:{rasa_port}/webhooks/rest/webhook",
                             json={"sender": sender, "message": question}, timeout=30)
    response.raise_for_status()
    return [reply.get("text", "") for reply in response.json()]


def pid_of(output: Output, name: str) -> int:
    return int(re.findall(rf"\[{name}\] started \(pid (\d+)\)", output.text)[-1])


def environment_of(pid: int) -> Dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def test_each_child_gets_only_the_secrets_it_uses_from_a_dotenv_file(make_run):
    _, output, _ = make_run
    seen = {name: environment_of(pid_of(output, name))
            for name in ("rasa", "actions", "sender", "inbox", "purge")}  # the demo page stops unless built
    assert (seen["sender"]["SMTP_USER"], seen["sender"]["SMTP_PASSWORD"]) == ("relay-user", ENV_FILE_PASSWORD)
    assert seen["inbox"]["STAFF_INBOX_SECRET_KEY"] == ENV_FILE_INBOX_KEY
    assert seen["rasa"]["ACTION_SERVER_TOKEN"] == seen["actions"]["ACTION_SERVER_TOKEN"]
    for name, environment in seen.items():
        assert environment["ENV_FILE"] == os.devnull  # a child never reads the file itself
        held = {secret for secret in SECRET_USERS if secret in environment}
        assert held <= {secret for secret, users in SECRET_USERS.items() if name in users}, name
    assert "SMTP_PASSWORD" not in seen["inbox"] and "STAFF_INBOX_SECRET_KEY" not in seen["sender"]
    assert not {"SMTP_PASSWORD", "DATABASE_URL", "STAFF_INBOX_SECRET_KEY"} & set(seen["rasa"])


def test_make_run_answers_with_the_handoff_database_unreachable(make_run):
    process, output, directory = make_run
    var_tracker = ROOT / "var" / "tracker.db"
    before = var_tracker.stat().st_mtime_ns if var_tracker.exists() else None
    assert "988" in " ".join(ask(CRISIS_MESSAGE, "unreachable-db-crisis"))
    assert any("side effect" in reply.lower() for reply in ask(FAQ_QUESTION, "unreachable-db-faq"))
    inbox = f"http://localhost:{RUN_PORTS['STAFF_INBOX_PORT']}"
    assert requests.get(f"{inbox}/health").text == "ok"
    assert sign_in(inbox, requests.Session()) == 503  # the accounts are in that database
    assert process.poll() is None and "[sender] exited" not in output.text and "[inbox] exited" not in output.text
    # The conversations went to this run's own tracker database, private, not var/tracker.db.
    with sqlite3.connect(directory / "tracker.db") as tracker:
        assert tracker.execute("SELECT count(*) FROM events WHERE sender_id = 'unreachable-db-faq'").fetchone()[0]
    assert (directory / "tracker.db").stat().st_mode & 0o777 == 0o600
    assert (var_tracker.stat().st_mtime_ns if var_tracker.exists() else None) == before


def test_a_booking_with_the_handoff_database_unreachable_asks_the_visitor_to_call(make_run):
    sender = "unreachable-db-booking"
    assert DOMAIN["utter_ask_full_name"][0]["text"] in ask("hi, i'd like to book a consultation", sender)
    assert DOMAIN["utter_ask_contact_details"][0]["text"] in ask("Dana Whitaker", sender)
    assert DOMAIN["utter_ask_preferred_time"][0]["text"] in ask("(503) 555-0147 or Dana.W@Example.com", sender)
    assert DOMAIN["utter_ask_reason"][0]["text"] in ask("weekday afternoons", sender)
    assert CLINIC.fill(DOMAIN["utter_ask_consent"][0]["text"]) in ask(
        "i'd like to know more about the side effects", sender)
    assert any("Dana Whitaker" in reply for reply in ask("yep, looks right", sender))
    replies = ask("yes, send it", sender)
    assert CLINIC.fill(DOMAIN["utter_booking_failed"][0]["text"]) in replies  # "please call us at ..."
    assert not any("Thank you, Dana Whitaker" in reply for reply in replies)


@pytest.mark.parametrize("name", ["sender", "inbox", "actions"])
def test_a_killed_child_is_restarted_while_the_chat_keeps_answering(make_run, name):
    process, output, _ = make_run
    old_pid, mark = pid_of(output, name), len(output.lines)
    os.kill(old_pid, signal.SIGKILL)
    output.wait_for(rf"\[{name}\] exited with code -9; restarting in \d+ s", 10, after=mark)
    assert any("side effect" in reply.lower() for reply in ask(FAQ_QUESTION, f"during-{name}-restart"))
    output.wait_for(rf"\[{name}\] started \(pid \d+\)", 70, after=mark)
    assert pid_of(output, name) != old_pid
    if name == "actions":  # back: a new conversation starts with the first message again
        output.wait_for(r"\[actions\] ready", 60, after=mark)
        assert ask(FAQ_QUESTION, f"after-{name}-restart")[0] == FRAME
    if name == "inbox":
        output.wait_for(r"\[inbox\] ready", 60, after=mark)
        assert requests.get(f"http://localhost:{RUN_PORTS['STAFF_INBOX_PORT']}/health").text == "ok"
    assert process.poll() is None


def test_a_child_with_a_bad_setting_is_reported_once_and_not_restarted_while_the_chat_answers(tmp_path):
    # The inbox refuses to start while the retired shared password is set (exit 2, naming the
    # setting); run_all.py does not check that one, so the supervisor meets it.
    environ = base_environ(
        **{key: str(value) for key, value in BAD_SETTING_PORTS.items()}, APP_ENV="production",
        STAFF_INBOX_PASSWORD="short", DATABASE_URL=f"sqlite:///{tmp_path / 'handoffs.db'}",
        TRACKER_DB=str(tmp_path / "tracker.db"))
    process = run_all(environ, start_new_session=True)
    output = Output(process)
    try:
        output.wait_for(r"The assistant is running", 400)
        output.wait_for(r"\[inbox\] exited with code 2: a setting is wrong", 30)
        assert "STAFF_INBOX_PASSWORD" in output.text  # the inbox's own message names the setting
        assert any("side effect" in reply.lower()
                   for reply in ask(FAQ_QUESTION, "bad-setting-faq", BAD_SETTING_PORTS["RASA_PORT"]))
        time.sleep(8)  # the back-off would have started it again after 1 s, 2 s and 4 s
        assert output.text.count("[inbox] started (pid") == 1
        assert output.text.count("[inbox] exited") == 1 and "[inbox] exited with code 2; restarting" not in output.text
        # Not built, the demo page also exits 2 (a set-up error) and is left stopped; built, it runs.
        assert output.text.count("[demo-site] started (pid") == 1
        assert "[sender] exited" not in output.text and process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
