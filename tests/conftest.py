import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import spacy

# Hermetic: no developer's .env reaches the tests (clinic_core/environment.py).
os.environ["ENV_FILE"] = os.devnull


from clinic_core.storage import HandoffRequest, HandoffStore, RenderNotifications
from scripts.services import Services, rasa_services, staff_services
from staff.accounts import Accounts
from staff.audit import VIA_COMMAND_LINE, Actor
from tests.local_servers import SmtpServer, free_port

ROOT = Path(__file__).resolve().parent.parent
INBOX_USERNAME, INBOX_PASSWORD = "reception", "test-inbox-password"
SPACY_PIPELINE = ROOT / "build" / "spacy_en_lookup_lemmas"
MODEL = ROOT / "models" / "ketamine-assistant.tar.gz"
# TEST_PORT_OFFSET moves every test server's port, so two checkouts can run the tests at once.
PORT_OFFSET = int(os.environ.get("TEST_PORT_OFFSET", "0"))
RASA_PORT, ACTION_PORT, INBOX_PORT = (port + PORT_OFFSET for port in (5205, 5255, 5208))


@pytest.fixture(scope="session")
def nlp():
    assert SPACY_PIPELINE.is_dir(), "run `make install` first: it builds the spaCy pipeline"
    return spacy.load(SPACY_PIPELINE)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """Every process `make run` starts, on test ports and a fresh database, with staff email
    going to a real SMTP server run by the test."""
    assert MODEL.is_file(), "run `make train` first"
    directory = tmp_path_factory.mktemp("stack")
    smtp = SmtpServer(free_port())
    smtp.start()
    env = {
        "DATABASE_URL": f"sqlite:///{directory / 'handoffs.db'}",
        "STAFF_INBOX_URL": f"http://localhost:{INBOX_PORT}", "TRACKER_DB": str(directory / "tracker.db"),
    }
    # Only the sender has the notification settings: it renders and sends, the action server only stores.
    sender_env = {
        "STAFF_EMAIL": "team@clinic.test", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port),
        "STAFF_WEBHOOK_URL": "",  # never a developer's real channel
        # The defaults (minimal notifications, plain SMTP to this machine), whatever a developer's .env says.
        "NOTIFY_EMAIL_INCLUDE_DETAILS": "", "SMTP_SECURITY": "", "SMTP_ALLOW_PLAINTEXT": "",
        "OUTBOX_POLL_SECONDS": "0.5",
    }
    add_inbox_account(env["DATABASE_URL"], INBOX_USERNAME, INBOX_PASSWORD)
    blank_notifications = {name: "" for name in sender_env}
    services = (rasa_services(str(MODEL), RASA_PORT, ACTION_PORT, str(directory / "tracker.db"),
                              {**env, **blank_notifications})
                + staff_services(INBOX_PORT, {**env, **sender_env}))
    log_path = directory / "services.log"  # every process's output, as `make run` prints it
    try:
        with log_path.open("a", encoding="utf-8") as log, Services(services, log=Tee(sys.stdout, log)):
            yield SimpleNamespace(rasa_port=RASA_PORT, inbox_url=env["STAFF_INBOX_URL"],
                                  inbox_username=INBOX_USERNAME, inbox_password=INBOX_PASSWORD,
                                  tracker_db=directory / "tracker.db",
                                  database_url=env["DATABASE_URL"], mailbox=smtp.mailbox, log_path=log_path)
    finally:
        smtp.stop()


def add_inbox_account(database_url: str, username: str, password: str) -> None:
    """The staff account tests sign in to the inbox with, made as `python -m staff.cli account create` does."""
    Accounts(HandoffStore(database_url)).create(Actor.system_user(VIA_COMMAND_LINE), username, password, "staff")


class Tee:
    def __init__(self, *sinks):
        self.sinks, self.lock = sinks, threading.Lock()

    def write(self, text):
        with self.lock:
            for sink in self.sinks:
                if not sink.closed:  # a process's last lines may come after the test's end
                    sink.write(text)

    def flush(self):
        with self.lock:
            for sink in self.sinks:
                if not sink.closed:
                    sink.flush()


def handoff_with_notifications(store: HandoffStore, request: HandoffRequest, render: RenderNotifications) -> int:
    """A stored handoff whose outbox event a sender has already rendered with `render`."""
    handoff_id = store.create_handoff(request)
    store.queue_notifications(render)
    return handoff_id
