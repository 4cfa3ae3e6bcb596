"""Starts the assistant's processes, waits until each answers, and stops them cleanly.

Used by `make run` (scripts/run_all.py) and by the end-to-end tests, so both
run exactly the same processes.
"""
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from channels.settings import allowed_origins

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@dataclass
class Service:
    name: str
    command: Sequence[str]
    health_url: Optional[str]  # None: up once it has run a moment without exiting
    env: Dict[str, str] = field(default_factory=dict)
    process: Optional[subprocess.Popen] = None


def rasa_services(model: str, rasa_port: int, action_port: int, tracker_db: Optional[str] = None,
                  env: Optional[Dict[str, str]] = None) -> List[Service]:
    """The action server (loopback only, answering only the Rasa server: actions/server.py)
    and the Rasa server (REST and socket.io channels, browsers from ALLOWED_ORIGINS only)."""
    env = env or {}
    rasa = str(VENV_BIN / "rasa")
    action_url = f"http://localhost:{action_port}/webhook"
    tracker_db = tracker_db or os.environ.get("TRACKER_DB", "var/tracker.db")
    (PROJECT_ROOT / tracker_db).parent.mkdir(parents=True, exist_ok=True)
    # Unset secrets are made here, once, so both servers share them and a restart keeps them.
    secrets_env = {name: env.get(name) or os.environ.get(name) or secrets.token_hex(32)
                   for name in ("ACTION_SERVER_TOKEN", "SESSION_SIGNING_KEY")}
    origins = allowed_origins({**os.environ, **env})
    return [
        Service(
            "actions",
            [sys.executable, "-m", "actions.server"],
            f"http://localhost:{action_port}/health",
            env={**env, **secrets_env, "ACTION_PORT": str(action_port)},
        ),
        Service(
            "rasa",
            [rasa, "run", "--model", model, "--port", str(rasa_port), "--cors", *origins,
             "--credentials", "credentials.yml", "--endpoints", "endpoints.yml"],
            f"http://localhost:{rasa_port}/",
            env={**env, **secrets_env, "ACTION_ENDPOINT_URL": action_url, "TRACKER_DB": tracker_db},
        ),
    ]


def staff_services(inbox_port: int, env: Optional[Dict[str, str]] = None) -> List[Service]:
    """The outbox sender and the staff inbox web page."""
    env = {**(env or {}), "STAFF_INBOX_PORT": str(inbox_port)}
    return [
        Service("sender", [sys.executable, "-m", "staff.sender"], None, env=env),
        Service("inbox", [sys.executable, "-m", "staff.inbox"], f"http://localhost:{inbox_port}/health", env=env),
    ]


def demo_site_service(port: int, assistant_url: str) -> Service:
    """The demo clinic page with the chat widget (scripts/demo_site.py); needs `make widget`."""
    return Service(
        "demo-site",
        [sys.executable, "scripts/demo_site.py", "--port", str(port), "--assistant-url", assistant_url],
        f"http://localhost:{port}/healthz",
    )


def _stream(service: Service, sink) -> None:
    assert service.process and service.process.stdout
    for line in service.process.stdout:
        sink.write(f"[{service.name}] {line}")
        sink.flush()


def is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except OSError:
        return False


def is_ready(service: Service) -> bool:
    """It answers its health URL; a service without one is ready while it keeps running."""
    if service.health_url is None:
        return service.process is not None and service.process.poll() is None
    return is_up(service.health_url)


class Services:
    """Starts services in order; each must answer its health URL before the next starts."""

    def __init__(self, services: List[Service], log=sys.stdout, startup_timeout: float = 180) -> None:
        self.services = services
        self.log = log
        self.startup_timeout = startup_timeout

    def start(self) -> None:
        for service in self.services:
            self.start_one(service)

    def start_one(self, service: Service) -> None:
        env = {**os.environ, **service.env}
        service.process = subprocess.Popen(
            service.command, cwd=PROJECT_ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        threading.Thread(target=_stream, args=(service, self.log), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        if service.health_url is None:
            time.sleep(1)  # long enough for a bad setting to make it exit
        while not is_ready(service):
            if service.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{service.name} exited with code {service.process.returncode} while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{service.name} did not answer {service.health_url} in {self.startup_timeout:.0f}s")
            time.sleep(0.5)
        self.log.write(f"[{service.name}] ready{f' at {service.health_url}' if service.health_url else ''}\n")

    def stop_one(self, service: Service) -> None:
        if service.process is None or service.process.poll() is not None:
            return
        os.killpg(service.process.pid, signal.SIGTERM)
        try:
            service.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()

    def stop(self) -> None:
        for service in reversed(self.services):
            self.stop_one(service)

    def wait(self) -> int:
        """Blocks until one service exits; returns its exit code."""
        while True:
            for service in self.services:
                if service.process and service.process.poll() is not None:
                    self.log.write(f"[{service.name}] exited with code {service.process.returncode}\n")
                    return service.process.returncode or 1
            time.sleep(0.5)

    def __enter__(self) -> "Services":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
