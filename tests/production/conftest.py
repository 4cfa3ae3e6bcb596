"""The production topology (scripts/run_production.py) on loopback, started once for the stage:
Debian's PostgreSQL, Redis and nginx, two Rasa replicas, two action servers, two senders."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import List

import pytest

from tests.conftest import MODEL, PORT_OFFSET, ROOT
from tests.local_servers import WebhookReceiver

BASE_PORT = 7600 + PORT_OFFSET
REPLICAS = 2


class Output:
    """The supervisor's output, line by line, kept for the tests to read and in a log file."""

    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.lines: List[str] = []
        threading.Thread(target=self._read, args=(process, log), daemon=True).start()

    def _read(self, process: subprocess.Popen, log: Path) -> None:
        with log.open("a", encoding="utf-8") as sink:
            for line in process.stdout:
                self.lines.append(line)
                sink.write(line)
                sink.flush()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text):
                return
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout:.0f} s")

    def pid_of(self, name: str) -> int:
        return int(re.findall(rf"\[{name}\] started \(pid (\d+)\)", self.text)[-1])


@pytest.fixture(scope="session")
def production(tmp_path_factory):
    assert MODEL.is_file(), "run `make train` first"
    data = tmp_path_factory.mktemp("production")
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "production.log").write_text("")
    receiver = WebhookReceiver()
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("STAFF_", "SMTP_", "NOTIFY_", "OUTBOX_", "DATABASE_URL", "TRACKER_"))}
    environ.update(STAFF_WEBHOOK_URL=receiver.url, OUTBOX_POLL_SECONDS="0.2", ENV_FILE=os.devnull,
                   ALLOWED_ORIGINS=f"http://localhost:{BASE_PORT + 5}")
    process = subprocess.Popen(
        [sys.executable, "scripts/run_production.py", "--replicas", str(REPLICAS), "--base-port", str(BASE_PORT),
         "--data", str(data), "--model", str(MODEL)],
        cwd=ROOT, env=environ, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    output = Output(process, ROOT / "results" / "production.log")
    try:
        output.wait_for(r"The production topology is running", 600)
        secrets = dict(line.split("=", 1) for line in (data / "secrets.env").read_text().split())
        database = f"postgresql://clinic:{secrets['POSTGRES_PASSWORD']}@127.0.0.1:{BASE_PORT + 2}"
        yield SimpleNamespace(
            process=process, output=output, data=data, receiver=receiver,
            url=f"http://localhost:{BASE_PORT}", public_port=BASE_PORT,
            replica_ports=[BASE_PORT + 10 + i for i in range(1, REPLICAS + 1)],
            handoffs_url=f"{database}/clinic_handoffs", conversations_url=f"{database}/clinic_conversations",
            nginx_config=data / "nginx" / "nginx.conf", nginx_prefix=data / "nginx")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        finally:
            receiver.stop()


def reload_nginx(production, config_text: str) -> None:
    """Rewrites nginx's configuration and has it load the new one without dropping connections."""
    Path(production.nginx_config).write_text(config_text)
    subprocess.run(["/usr/sbin/nginx", "-e", "stderr", "-p", str(production.nginx_prefix),
                    "-c", str(production.nginx_config), "-s", "reload"], check=True)
    time.sleep(1.0)  # the old workers finish, the new ones take over
