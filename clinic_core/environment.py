"""Where settings come from, and which process is given which secret.

A setting is read from the process's environment, or else from a `.env` file in dotenv syntax
(python-dotenv: quotes are honoured, and a `#` or `$` inside a quoted value is kept). ENV_FILE
names the file; the default is `.env` in the project folder. Only the commands a person runs
read it (`make run`, `make migrate`, `make handoffs`, `make purge`). The processes `make run`
starts get what they need from it, each without the secrets it has no use for, and with
ENV_FILE=/dev/null, so they never read the file themselves.
"""
import os
import re
from pathlib import Path
from typing import Dict, Mapping, MutableMapping, Optional, Tuple

from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Each secret, and the processes (scripts/services.py's names) that may see it.
SECRET_USERS: Dict[str, Tuple[str, ...]] = {
    "SMTP_USER": ("sender",),
    "SMTP_PASSWORD": ("sender",),
    "STAFF_WEBHOOK_URL": ("sender",),
    "STAFF_INBOX_SECRET_KEY": ("inbox",),
    "ACTION_SERVER_TOKEN": ("rasa", "actions"),
    "SESSION_SIGNING_KEY": ("rasa",),
    "DATABASE_URL": ("actions", "sender", "inbox", "purge"),  # may carry the database's password
    # The production topology (scripts/run_production.py).
    "TRACKER_DATABASE_URL": ("actions", "inbox", "purge"),
    "TRACKER_DB_PASSWORD": ("rasa",),
    "REDIS_PASSWORD": ("rasa",),
    "SOCKETIO_REDIS_URL": ("rasa",),
    "POSTGRES_PASSWORD": (),
}


def env_file(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("ENV_FILE") or PROJECT_ROOT / ".env")


def load_env_file(environ: MutableMapping[str, str] = os.environ) -> Optional[Path]:
    """Adds the file's settings that the environment does not set already; returns the file
    read, or None when there is none."""
    path = env_file(environ)
    if not path.is_file():
        return None
    for name, value in dotenv_values(path).items():
        if value is not None:
            environ.setdefault(name, value)
    return path


def environment_for(process: str, environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment a process ("rasa", or a replica "rasa-2") is started with: no secret it
    does not use, no .env to read."""
    kind = re.sub(r"-\d+$", "", process)
    given = {name: value for name, value in environ.items() if kind in SECRET_USERS.get(name, (kind,))}
    given["ENV_FILE"] = os.devnull
    return given
