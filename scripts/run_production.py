"""`make run-production`: the production topology, on this machine's loopback.

PostgreSQL holds conversations (Rasa's SQL tracker store) and handoffs; Redis is Rasa's lock
store and carries socket.io replies between replicas; N Rasa replicas (default 2) and two
action servers sit behind nginx (least connections; socket.io by client address, so the
polling fallback stays on one replica); two outbox senders, the staff inbox, the purge and
the demo page run from the staff install (.venv-staff, no Rasa). Every process is supervised
(scripts/services.py) and gets only the secrets it uses (clinic_core/environment.py).

PostgreSQL, Redis and nginx are Debian's (scripts/install_servers.sh); their data and
configuration live under --data (var/production). Secrets come from the environment or .env;
any left unset is made on the first start and kept in <data>/secrets.env (owner only).

Ports, from --base-port B (default 7000): nginx B for visitors (REST, socket.io), B+1 for
the action servers, PostgreSQL B+2, Redis B+3, the staff inbox B+4, the demo page B+5,
Rasa replicas B+10.., action servers B+30...
"""
import argparse
import os
import pwd
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from string import Template
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels.settings import allowed_origins  # noqa: E402
from clinic_core.clinic import ClinicConfigError, load_clinic  # noqa: E402
from clinic_core.environment import load_env_file  # noqa: E402
from clinic_core.settings import CLINIC_FILE, SETTINGS_ERROR_EXIT, SettingsError, load_settings  # noqa: E402
from scripts.services import PROJECT_ROOT, VENV_BIN, PortInUse, Service, Services, port_in_use  # noqa: E402

STAFF_PYTHON = PROJECT_ROOT / ".venv-staff" / "bin" / "python"
NGINX_TEMPLATE = PROJECT_ROOT / "deploy" / "nginx.conf.template"
DATABASE_USER = "clinic"
CONVERSATIONS_DB, HANDOFFS_DB = "clinic_conversations", "clinic_handoffs"
# Made on the first start when the environment does not set them, then kept.
GENERATED_SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "ACTION_SERVER_TOKEN", "SESSION_SIGNING_KEY",
                     "STAFF_INBOX_SECRET_KEY")
ACTION_SERVERS = 2
SENDERS = 2


class Ports:
    """Every port from the base port (see the module's docstring)."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.public, self.actions_proxy, self.postgres, self.redis, self.inbox, self.demo = range(base, base + 6)

    def rasa(self, replica: int) -> int:
        return self.base + 10 + replica

    def action_server(self, number: int) -> int:
        return self.base + 30 + number


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (make servers installs Debian's)")
    return found[-1].parent


def as_postgres_user(command: List[str]) -> List[str]:
    """PostgreSQL refuses to run as root: as root, its commands run as Debian's postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def private_secrets(data: Path) -> Dict[str, str]:
    """The generated secrets file, made on the first start (owner only); the environment wins."""
    path = data / "secrets.env"
    kept = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line) if path.exists() else {}
    for name in GENERATED_SECRETS:
        kept.setdefault(name, secrets.token_hex(32))
    path.touch(mode=0o600)
    path.write_text("".join(f"{name}={value}\n" for name, value in kept.items()))
    return {name: os.environ.get(name) or value for name, value in kept.items()}


def prepare_postgres(data: Path, ports: Ports, password: str) -> None:
    """A new cluster under data/postgres on the first start; a superuser over its private
    socket folder only, and the application's role with a password over TCP."""
    cluster, sockets = data / "postgres", data / "run"
    sockets.mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        data.chmod(0o711)  # the postgres user may pass through to its own folders, and read nothing else
        for folder in (data.parent, *data.parent.parents):
            if not folder.stat().st_mode & 0o001:
                folder.chmod(folder.stat().st_mode | 0o001)
        os.chown(sockets, postgres.pw_uid, postgres.pw_gid)
    if (cluster / "PG_VERSION").exists():
        return
    cluster.mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(cluster, postgres.pw_uid, postgres.pw_gid)
    subprocess.run(as_postgres_user([str(postgres_bin() / "initdb"), "-D", str(cluster), "-U", "postgres",
                                     "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                                     "--locale=C.UTF-8"]),
                   check=True, stdout=subprocess.DEVNULL)


def create_databases(data: Path, ports: Ports, password: str) -> None:
    """The role and the two databases, once; the role's password follows POSTGRES_PASSWORD."""
    def psql(sql: str, database: str = "postgres") -> str:
        return subprocess.run(as_postgres_user(["psql", "-h", str(data / "run"), "-p", str(ports.postgres),
                                                "-U", "postgres", "-d", database, "-tA", "-v", "ON_ERROR_STOP=1",
                                                "-c", sql]),
                              check=True, capture_output=True, text=True).stdout.strip()

    role_exists = psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{DATABASE_USER}'") == "1"
    psql(f"{'ALTER' if role_exists else 'CREATE'} ROLE {DATABASE_USER} LOGIN PASSWORD '{password}'")
    for database in (CONVERSATIONS_DB, HANDOFFS_DB):
        if psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'") != "1":
            psql(f"CREATE DATABASE {database} OWNER {DATABASE_USER}")


def write_redis_config(data: Path, ports: Ports, password: str) -> Path:
    folder = data / "redis"
    folder.mkdir(mode=0o700, exist_ok=True)
    config = folder / "redis.conf"
    config.touch(mode=0o600)
    # In memory only: locks and socket.io messages do not outlive a restart.
    config.write_text(f"port {ports.redis}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n"
                      f"save \"\"\nappendonly no\ndir {folder}\n")
    return config


def write_nginx_config(data: Path, ports: Ports, replicas: int) -> Path:
    folder = data / "nginx"
    folder.mkdir(mode=0o711, exist_ok=True)
    (folder / "temp").mkdir(mode=0o700, exist_ok=True)
    (folder / "logs").mkdir(mode=0o700, exist_ok=True)
    worker_user = ""
    if os.geteuid() == 0:  # the workers drop root; their temporary files are theirs alone
        worker_user = "user nobody nogroup;"
        nobody = pwd.getpwnam("nobody")
        os.chown(folder / "temp", nobody.pw_uid, nobody.pw_gid)
    config = folder / "nginx.conf"
    config.write_text(Template(NGINX_TEMPLATE.read_text()).substitute(
        worker_user=worker_user, temp=folder / "temp", logs=folder / "logs", public_port=ports.public,
        actions_port=ports.actions_proxy,
        rasa_servers="".join(f"    server 127.0.0.1:{ports.rasa(i)} max_fails=1 fail_timeout=10s;\n"
                             for i in range(1, replicas + 1)),
        action_servers="".join(f"    server 127.0.0.1:{ports.action_server(i)} max_fails=1 fail_timeout=10s;\n"
                               for i in range(1, ACTION_SERVERS + 1)),
    ))
    return config


def topology(data: Path, ports: Ports, replicas: int, model: str, secret: Dict[str, str]) -> Dict[str, List[Service]]:
    """The processes in start order: the servers, then what uses them."""
    database = f"postgresql://{DATABASE_USER}:{secret['POSTGRES_PASSWORD']}@127.0.0.1:{ports.postgres}"
    shared = {
        "DATABASE_URL": f"{database}/{HANDOFFS_DB}",
        "TRACKER_DATABASE_URL": f"{database}/{CONVERSATIONS_DB}",
        "ACTION_SERVER_TOKEN": secret["ACTION_SERVER_TOKEN"],
        "STAFF_INBOX_SECRET_KEY": secret["STAFF_INBOX_SECRET_KEY"],
        "STAFF_INBOX_PORT": str(ports.inbox),
        "STAFF_INBOX_PASSWORD_FILE": str(data / "staff_inbox_password"),  # development mode only
    }
    rasa_env = {
        **shared,
        "TRACKER_DB_HOST": "127.0.0.1", "TRACKER_DB_PORT": str(ports.postgres), "TRACKER_DB_NAME": CONVERSATIONS_DB,
        "TRACKER_DB_USER": DATABASE_USER, "TRACKER_DB_PASSWORD": secret["POSTGRES_PASSWORD"],
        "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(ports.redis), "REDIS_PASSWORD": secret["REDIS_PASSWORD"],
        "REDIS_LOCK_DB": "1",
        "SOCKETIO_REDIS_URL": f"redis://:{secret['REDIS_PASSWORD']}@127.0.0.1:{ports.redis}/2",
        "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{ports.actions_proxy}/webhook",
        "SESSION_SIGNING_KEY": secret["SESSION_SIGNING_KEY"],
    }
    origins = allowed_origins()
    servers = [
        Service("postgres", as_postgres_user([str(postgres_bin() / "postgres"), "-D", str(data / "postgres"),
                                              "-p", str(ports.postgres), "-k", str(data / "run"),
                                              "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"]),
                None, port=ports.postgres, stop_signal=signal.SIGINT),
        Service("redis", ["/usr/bin/redis-server", str(write_redis_config(data, ports, secret["REDIS_PASSWORD"]))],
                None, port=ports.redis),
    ]
    assistant = [
        *(Service(f"actions-{i}", [sys.executable, "-m", "actions.server"],
                  f"http://127.0.0.1:{ports.action_server(i)}/health", port=ports.action_server(i),
                  env={**shared, "ACTION_PORT": str(ports.action_server(i))})
          for i in range(1, ACTION_SERVERS + 1)),
        *(Service(f"rasa-{i}", [str(VENV_BIN / "rasa"), "run", "--model", model, "--port", str(ports.rasa(i)),
                                "--cors", *origins, "--credentials", "credentials.yml",
                                "--endpoints", "endpoints.production.yml"],
                  f"http://127.0.0.1:{ports.rasa(i)}/", port=ports.rasa(i), env=rasa_env)
          for i in range(1, replicas + 1)),
        Service("nginx", ["/usr/sbin/nginx", "-e", "stderr", "-p", str(data / "nginx"),
                          "-c", str(write_nginx_config(data, ports, replicas)), "-g", "daemon off;"],
                f"http://127.0.0.1:{ports.public}/", port=ports.public),
    ]
    staff = [
        *(Service(f"sender-{i}", [str(STAFF_PYTHON), "-m", "staff.sender"], None, required=False, env=shared)
          for i in range(1, SENDERS + 1)),
        Service("inbox", [str(STAFF_PYTHON), "-m", "staff.inbox"], f"http://127.0.0.1:{ports.inbox}/health",
                port=ports.inbox, required=False, env=shared),
        Service("purge", [str(STAFF_PYTHON), "scripts/purge.py", "--every", str(24 * 60 * 60)], None,
                required=False, env=shared),
        Service("demo-site", [str(STAFF_PYTHON), "scripts/demo_site.py", "--port", str(ports.demo),
                              "--assistant-url", f"http://localhost:{ports.public}"],
                f"http://127.0.0.1:{ports.demo}/healthz", port=ports.demo, required=False),
    ]
    return {"servers": servers, "assistant": assistant, "staff": staff}


def migrate_handoffs(database_url: str) -> None:
    subprocess.run([str(STAFF_PYTHON), "-m", "clinic_core.migrate"], cwd=PROJECT_ROOT, check=True,
                   env={**os.environ, "DATABASE_URL": database_url, "ENV_FILE": os.devnull})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="Rasa replicas behind nginx (default 2)")
    parser.add_argument("--base-port", type=int, default=7000)
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT / "var" / "production")
    parser.add_argument("--model", default="models/ketamine-assistant.tar.gz")
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be 1 or more")
    os.umask(0o077)
    load_env_file()
    try:
        load_settings()
        load_clinic(Path(os.environ.get("CLINIC_FILE") or CLINIC_FILE))
    except (SettingsError, ClinicConfigError) as error:
        print(f"Could not start the production topology: {error}", file=sys.stderr)
        return SETTINGS_ERROR_EXIT
    for needed in (STAFF_PYTHON, Path("/usr/bin/redis-server"), Path("/usr/sbin/nginx")):
        if not needed.exists():
            print(f"Could not start: {needed} is missing (make run-production installs it)", file=sys.stderr)
            return 1
    data, ports = args.data.resolve(), Ports(args.base_port)
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = private_secrets(data)
    prepare_postgres(data, ports, secret["POSTGRES_PASSWORD"])
    groups = topology(data, ports, args.replicas, args.model, secret)
    everything = [service for group in groups.values() for service in group]
    services = Services(everything, startup_timeout=300)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        taken = [service for service in everything if service.port is not None and port_in_use(service.port)]
        if taken:
            raise PortInUse(f"port {taken[0].port}, which {taken[0].name} needs, is already in use")
        for service in groups["servers"]:
            services.start_one(service)
        create_databases(data, ports, secret["POSTGRES_PASSWORD"])
        migrate_handoffs(groups["staff"][0].env["DATABASE_URL"])
        for service in groups["assistant"] + groups["staff"]:
            services.start_one(service)
        print(f"\nThe production topology is running ({args.replicas} Rasa replicas; Ctrl-C to stop).\n"
              f"  Visitors (nginx): http://localhost:{ports.public}/webhooks/rest/webhook and /socket.io\n"
              f"  Demo page:        http://localhost:{ports.demo}/\n"
              f"  Staff inbox:      http://localhost:{ports.inbox}/\n", flush=True)
        services.supervise()
    except KeyboardInterrupt:
        return 0
    except (PortInUse, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"Could not start the production topology: {error}", file=sys.stderr)
        return 1
    finally:
        services.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
