"""Starts the assistant's processes, waits until each answers, keeps them running, stops them cleanly.

Used by `make run` (scripts/run_all.py) and by the end-to-end tests, so both run exactly the
same processes. Ready means the process we started is alive, itself listens on its port
(checked in /proc, so Linux only) and answers its health URL: never some other program that
holds the port. A port already in use stops the start before anything is started.

`supervise()` restarts any process that exits, after 1 s, 2 s, 4 s ... up to a minute (the wait
resets once it has run for a minute), and never stops the others: the chat keeps answering
whatever happens to the notification sender, the staff inbox, the retention purge or the demo
page. One of those that exits with SETTINGS_ERROR_EXIT (2) has said which setting is wrong;
starting it again cannot help, so it is reported once and left stopped until `make run` is
restarted. (A required process, the chat's, with a bad setting stops `make run` while it
starts; later it is always restarted.)
"""
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set

from channels.settings import allowed_origins
from clinic_core.environment import environment_for
from clinic_core.settings import SETTINGS_ERROR_EXIT

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RESTART_BASE_SECONDS, RESTART_MAX_SECONDS, STABLE_SECONDS = 1.0, 60.0, 60.0


@dataclass
class Service:
    name: str
    command: Sequence[str]
    health_url: Optional[str]  # None: up once it has run a moment without exiting
    port: Optional[int] = None  # where it listens; must be free before it starts
    # Must be ready for start() to succeed. Others are restarted in the background if they fail.
    required: bool = True
    env: Dict[str, str] = field(default_factory=dict)
    # What asks it to stop (PostgreSQL: SIGINT, a fast shutdown that does not wait for clients).
    stop_signal: int = signal.SIGTERM
    process: Optional[subprocess.Popen] = None
    started_at: float = 0.0
    failures_in_a_row: int = 0
    restart_at: Optional[float] = None
    announced_ready: bool = False
    stopped_for_settings: bool = False  # exited on a bad setting: not restarted


class PortInUse(RuntimeError):
    pass


def create_private_file(path: Path) -> None:
    """Creates the file (and its folder) readable by its owner only, if it is not there yet."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def rasa_services(model: str, rasa_port: int, action_port: int, tracker_db: str,
                  env: Optional[Dict[str, str]] = None) -> List[Service]:
    """The action server (loopback only, answering only the Rasa server: actions/server.py)
    and the Rasa server (REST and socket.io channels, browsers from ALLOWED_ORIGINS only).

    `tracker_db` is required: tests and panels pass their own file, never `make run`'s store.
    """
    env = env or {}
    rasa = str(VENV_BIN / "rasa")
    action_url = f"http://localhost:{action_port}/webhook"
    create_private_file(PROJECT_ROOT / tracker_db)  # conversations: not world-readable
    # Unset secrets are made here, once, so both servers share them and a restart keeps them.
    secrets_env = {name: env.get(name) or os.environ.get(name) or secrets.token_hex(32)
                   for name in ("ACTION_SERVER_TOKEN", "SESSION_SIGNING_KEY")}
    origins = allowed_origins({**os.environ, **env})
    return [
        Service(
            "actions",
            [sys.executable, "-m", "actions.server"],
            f"http://localhost:{action_port}/health", port=action_port,
            # The same tracker store: the forget-me action deletes from it.
            env={**env, **secrets_env, "ACTION_PORT": str(action_port), "TRACKER_DB": tracker_db},
        ),
        Service(
            "rasa",
            [rasa, "run", "--model", model, "--port", str(rasa_port), "--cors", *origins,
             "--credentials", "credentials.yml", "--endpoints", "endpoints.yml"],
            f"http://localhost:{rasa_port}/", port=rasa_port,
            env={**env, **secrets_env, "ACTION_ENDPOINT_URL": action_url, "TRACKER_DB": tracker_db},
        ),
    ]


def staff_services(inbox_port: int, env: Optional[Dict[str, str]] = None) -> List[Service]:
    """The outbox sender and the staff inbox web page: the chat never waits for them."""
    env = {**(env or {}), "STAFF_INBOX_PORT": str(inbox_port)}
    return [
        Service("sender", [sys.executable, "-m", "staff.sender"], None, required=False, env=env),
        Service("inbox", [sys.executable, "-m", "staff.inbox"], f"http://localhost:{inbox_port}/health",
                port=inbox_port, required=False, env=env),
    ]


def purge_service(every_seconds: float) -> Service:
    """Deletes what is past its retention at once and then every `every_seconds` (scripts/purge.py)."""
    return Service("purge", [sys.executable, "scripts/purge.py", "--every", str(every_seconds)], None,
                   required=False)


def demo_site_service(port: int, assistant_url: str) -> Service:
    """The demo clinic page with the chat widget (scripts/demo_site.py); needs `make widget`."""
    return Service(
        "demo-site",
        [sys.executable, "scripts/demo_site.py", "--port", str(port), "--assistant-url", assistant_url],
        f"http://localhost:{port}/healthz", port=port, required=False,
    )


def _stream(process: subprocess.Popen, name: str, sink) -> None:
    assert process.stdout
    for line in process.stdout:
        sink.write(f"[{name}] {line}")
        sink.flush()


def port_in_use(port: int) -> bool:
    """Whether some program listens on the port (on any address); bind as the servers do."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def _listening_sockets(port: int) -> Set[str]:
    """The kernel's LISTEN sockets on this port, as /proc/<pid>/fd links name them."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                sockets.add(f"socket:[{fields[9]}]")
    return sockets


def _process_group(group: int) -> Iterator[int]:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group:  # after the name: state, parent, process group
            yield int(stat.parent.name)


def listens_on(process: subprocess.Popen, port: int) -> bool:
    """Whether the process, or one it started, holds a listening socket on the port."""
    sockets = _listening_sockets(port)
    for pid in _process_group(process.pid) if sockets else ():
        try:
            if any(os.readlink(fd) in sockets for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return True
        except OSError:  # it exited meanwhile
            continue
    return False


def is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except OSError:
        return False


def is_ready(service: Service) -> bool:
    """Our process is running, listens on its port itself and answers its health URL."""
    if service.process is None or service.process.poll() is not None:
        return False
    if service.port is not None and not listens_on(service.process, service.port):
        return False
    return service.health_url is None or is_up(service.health_url)


def restart_delay(failures_in_a_row: int) -> float:
    return min(RESTART_BASE_SECONDS * 2 ** (failures_in_a_row - 1), RESTART_MAX_SECONDS)


class Services:
    """Starts services in order; each must answer its health URL before the next starts."""

    def __init__(self, services: List[Service], log=sys.stdout, startup_timeout: float = 180) -> None:
        self.services = services
        self.log = log
        self.startup_timeout = startup_timeout

    def say(self, service: Service, text: str) -> None:
        self.log.write(f"[{service.name}] {text}\n")
        self.log.flush()

    def start(self) -> None:
        """Raises PortInUse before starting anything, RuntimeError if a required service fails to start."""
        for service in self.services:
            if service.port is not None and port_in_use(service.port):
                raise PortInUse(f"port {service.port}, which {service.name} needs, is already in use by "
                                f"another program")
        for service in self.services:
            self.start_one(service)

    def spawn(self, service: Service) -> None:
        service.process = subprocess.Popen(
            service.command, cwd=PROJECT_ROOT, text=True,
            # Each process sees only the secrets it uses (clinic_core/environment.py).
            env=environment_for(service.name, {**os.environ, **service.env}),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        service.started_at, service.announced_ready = time.monotonic(), False
        threading.Thread(target=_stream, args=(service.process, service.name, self.log), daemon=True).start()
        self.say(service, f"started (pid {service.process.pid})")

    def start_one(self, service: Service) -> None:
        self.spawn(service)
        deadline = time.monotonic() + self.startup_timeout
        if service.health_url is None:
            time.sleep(1)  # long enough for a bad setting to make it exit
        while not is_ready(service):
            if service.process.poll() is not None:
                if service.required:
                    self.stop()
                    reason = " (a setting is wrong; see its message above)" \
                        if service.process.returncode == SETTINGS_ERROR_EXIT else ""
                    raise RuntimeError(f"{service.name} exited with code {service.process.returncode} "
                                       f"while starting{reason}")
                return  # supervise() restarts it
            if time.monotonic() > deadline:
                if service.required:
                    self.stop()
                    raise RuntimeError(f"{service.name} did not answer {service.health_url} "
                                       f"in {self.startup_timeout:.0f}s")
                self.say(service, "not ready yet; carrying on without it")
                return
            time.sleep(0.5)
        self.announce_ready(service)

    def announce_ready(self, service: Service) -> None:
        service.announced_ready = True
        self.say(service, f"ready{f' at {service.health_url}' if service.health_url else ''}")

    def check(self, service: Service) -> None:
        """One look at a service: restart it when due, schedule a restart when it has exited."""
        now = time.monotonic()
        if service.stopped_for_settings:
            return
        if service.restart_at is not None:
            if now >= service.restart_at:
                service.restart_at = None
                self.spawn(service)
            return
        code = service.process.poll() if service.process else 1
        if code is None:
            if not service.announced_ready and is_ready(service):
                self.announce_ready(service)
            if service.failures_in_a_row and now - service.started_at > STABLE_SECONDS:
                service.failures_in_a_row = 0
            return
        if code == SETTINGS_ERROR_EXIT and not service.required:
            service.stopped_for_settings = True
            self.say(service, f"exited with code {code}: a setting is wrong (its message is above); not "
                              f"restarted. The others keep running; fix the setting and restart `make run`.")
            return
        service.failures_in_a_row += 1
        delay = restart_delay(service.failures_in_a_row)
        service.restart_at = now + delay
        self.say(service, f"exited with code {code}; restarting in {delay:.0f} s")

    def supervise(self, poll_seconds: float = 0.5) -> None:
        """Keeps every service running until interrupted (KeyboardInterrupt, SystemExit)."""
        while True:
            for service in self.services:
                self.check(service)
            time.sleep(poll_seconds)

    def stop_one(self, service: Service) -> None:
        service.restart_at, service.stopped_for_settings = None, False
        if service.process is None or service.process.poll() is not None:
            return
        os.killpg(service.process.pid, service.stop_signal)
        try:
            service.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()

    def stop(self) -> None:
        # A second Ctrl-C or SIGTERM must not cut the stopping short and leave servers behind.
        in_main_thread = threading.current_thread() is threading.main_thread()
        handlers = {number: signal.signal(number, signal.SIG_IGN)
                    for number in (signal.SIGINT, signal.SIGTERM)} if in_main_thread else {}
        try:
            for service in reversed(self.services):
                self.stop_one(service)
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)

    def __enter__(self) -> "Services":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
