"""The staff processes run from their own install (make install-staff: requirements-staff.lock),
which has no Rasa, rasa-sdk, TensorFlow or spaCy, against a real SQLite file and real ports."""
import re
import subprocess
import time

import pytest
import requests

from tests.conftest import ROOT
from tests.local_servers import WebhookReceiver, free_port

STAFF_PYTHON = ROOT / ".venv-staff" / "bin" / "python"
NOT_IN_THE_STAFF_INSTALL = ("rasa", "rasa_sdk", "tensorflow", "spacy")


@pytest.fixture(scope="module")
def staff_python():
    assert STAFF_PYTHON.is_file(), "run `make install-staff` first"
    return str(STAFF_PYTHON)


def pins(path):
    return {line.split("==")[0].lower(): line.strip() for line in path.read_text().splitlines()
            if re.match(r"^[A-Za-z0-9]", line)}


def test_the_staff_pins_are_the_main_installs_pins():
    staff, main = pins(ROOT / "requirements-staff.lock"), pins(ROOT / "requirements.lock")
    assert staff and {name: main.get(name) for name in staff} == staff


def test_the_staff_install_has_no_rasa(staff_python):
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])" % (NOT_IN_THE_STAFF_INSTALL,)
    assert subprocess.run([staff_python, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def staff_run(staff_python, environ, *command, timeout=60):
    return subprocess.run([staff_python, *command], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=timeout)


def test_the_staff_processes_work_from_the_staff_install(staff_python, tmp_path):
    database = f"sqlite:///{tmp_path / 'handoffs.db'}"
    receiver = WebhookReceiver()
    inbox_port = free_port()
    environ = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database, "STAFF_WEBHOOK_URL": receiver.url,
               "STAFF_INBOX_PORT": str(inbox_port), "OUTBOX_POLL_SECONDS": "0.2", "ENV_FILE": "/dev/null",
               "TRACKER_DB": str(tmp_path / "tracker.db"),
               "STAFF_INBOX_PASSWORD_FILE": str(tmp_path / "staff_inbox_password")}
    try:
        migrated = staff_run(staff_python, environ, "-m", "clinic_core.migrate")
        assert migrated.returncode == 0, migrated.stderr
        # A handoff as the action server stores it, then the sender renders and delivers it.
        stored = staff_run(staff_python, environ, "-c", (
            "from clinic_core.storage import HandoffRequest, HandoffStore; import os;"
            "store = HandoffStore(os.environ['DATABASE_URL']);"
            "print(store.create_handoff(HandoffRequest('Ann', 'mornings', True, 'c')))"))
        assert stored.stdout.strip() == "1", stored.stderr
        sender = subprocess.Popen([staff_python, "-m", "staff.sender"], cwd=ROOT, env=environ,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        inbox = subprocess.Popen([staff_python, "-m", "staff.inbox"], cwd=ROOT, env=environ,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not receiver.received:
                time.sleep(0.1)
            assert len(receiver.received) == 1 and "#1" in receiver.received[0][1]["text"]
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"http://127.0.0.1:{inbox_port}/health", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    time.sleep(0.2)
            assert requests.get(f"http://127.0.0.1:{inbox_port}/health", timeout=2).ok
        finally:
            for process in (sender, inbox):
                process.terminate()
                process.wait(timeout=10)
        listed = staff_run(staff_python, environ, "-m", "staff.cli", "list")
        assert listed.returncode == 0 and "Ann" in listed.stdout, listed.stderr
        for process_output in (sender.stdout.read(), inbox.stdout.read()):
            assert "ModuleNotFoundError" not in process_output
    finally:
        receiver.stop()
