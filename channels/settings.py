"""The input channels' settings, from environment variables with safe defaults.

Read and checked once when the Rasa server starts (a bad value stops it with a clear
message); scripts/services.py reads the same allowed origins for REST CORS. No Rasa
import here, so the service runner can use it. Documented in .env.example.
"""
import os
import re
import secrets
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from clinic_core.clinic import ClinicConfigError, load_clinic
from clinic_core.settings import CLINIC_FILE, SettingsError, load_settings

# The local demo page (`make run`); a clinic sets its own site.
DEFAULT_ALLOWED_ORIGINS = "http://localhost:8080,http://127.0.0.1:8080"
ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
MIN_SIGNING_KEY_LENGTH = 32


class ChannelSettingsError(ValueError):
    pass


@dataclass(frozen=True)
class ChannelSettings:
    # Longer messages get a polite reply and never reach NLU.
    max_message_chars: int
    # Larger HTTP bodies and socket.io packets are refused by the servers themselves.
    max_request_bytes: int
    allowed_origins: Tuple[str, ...]
    # Signs socket.io session ids, so a client can only use one the server gave out.
    session_signing_key: bytes
    # Said in the frame message at the start of each session (the purge's setting).
    conversation_retention_days: int
    # Several Rasa replicas: python-socketio's Redis manager carries each reply to the replica
    # that holds the visitor's socket. None: one process, rooms in memory.
    socketio_redis_url: Optional[str] = None


def parse_allowed_origins(value: str) -> Tuple[str, ...]:
    origins = tuple(origin.strip() for origin in value.split(",") if origin.strip())
    for origin in origins:
        if not ORIGIN.match(origin):
            raise ChannelSettingsError(
                f'ALLOWED_ORIGINS: "{origin}" is not an origin like https://www.example-clinic.test '
                "(scheme and host, optional port, no path, no wildcard)")
    return origins


def allowed_origins(environ: Mapping[str, str] = os.environ) -> Tuple[str, ...]:
    return parse_allowed_origins(environ.get("ALLOWED_ORIGINS", DEFAULT_ALLOWED_ORIGINS))


def _int_setting(environ: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ChannelSettingsError(f"{name}: expected a whole number from {minimum} to {maximum}, got {raw!r}")
    return int(raw)


def load_channel_settings(environ: Mapping[str, str] = os.environ) -> ChannelSettings:
    max_message_chars = _int_setting(environ, "MAX_MESSAGE_CHARS", 2000, 100, 100_000)
    # Room for a message over the cap (so it gets the polite reply) in JSON-escaped UTF-8.
    max_request_bytes = _int_setting(environ, "MAX_REQUEST_BYTES", 256 * 1024,
                                     12 * max_message_chars, 100 * 1024 * 1024)
    signing_key = environ.get("SESSION_SIGNING_KEY", "").strip()
    if signing_key and len(signing_key) < MIN_SIGNING_KEY_LENGTH:
        raise ChannelSettingsError(f"SESSION_SIGNING_KEY: use {MIN_SIGNING_KEY_LENGTH} characters or more")
    redis_url = environ.get("SOCKETIO_REDIS_URL", "").strip() or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ChannelSettingsError("SOCKETIO_REDIS_URL: expected redis://[:password@]host:port/db")
    try:
        # The session start reads clinic.yml again for each new session; a broken file stops
        # the server now, with its message, rather than the first visitor's session later.
        load_clinic(CLINIC_FILE)
        retention_days = load_settings(environ).conversation_retention_days
    except (ClinicConfigError, SettingsError) as error:
        raise ChannelSettingsError(str(error)) from error
    return ChannelSettings(
        conversation_retention_days=retention_days,
        socketio_redis_url=redis_url,
        max_message_chars=max_message_chars,
        max_request_bytes=max_request_bytes,
        allowed_origins=allowed_origins(environ),
        # Unset: a new key at each start, so session ids do not outlive the server.
        session_signing_key=(signing_key or secrets.token_hex(32)).encode(),
    )
