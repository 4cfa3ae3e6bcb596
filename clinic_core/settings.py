"""Settings from environment variables, with safe defaults for a local run.

Every setting is documented in .env.example. Secrets (SMTP password, webhook URL, the
inbox's cookie-signing key) have no defaults and are never committed.
"""
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Tuple, TypeVar, Union
from urllib.parse import urlsplit

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Number = TypeVar("Number", int, float)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CLINIC_FILE = Path(os.environ.get("CLINIC_FILE", PROJECT_ROOT / "clinic.yml"))

DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'var' / 'handoffs.db'}"
# Rasa's conversation store (endpoints.yml), relative to the project folder like `make run`'s.
DEFAULT_TRACKER_DB = "var/tracker.db"
# Settings earlier versions read. The inbox refuses to start while one is set rather than ignore it.
RETIRED_SETTINGS = ("STAFF_INBOX_PASSWORD",)
# How long each store keeps what visitors gave, in days (clinic_core/retention.py deletes the rest).
DEFAULT_CONVERSATION_RETENTION_DAYS = 30
DEFAULT_HANDOFF_RETENTION_DAYS = 365
# A hundred years: past this a cut-off date would fall before year 1.
MAX_RETENTION_DAYS = 36500
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
# How the sender talks to SMTP_HOST: STARTTLS, TLS from the first byte (SMTPS), or plain text.
SMTP_SECURITY_MODES = ("starttls", "tls", "none")
SMTP_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
# The exit code of a process that stopped on a wrong setting: the supervisor
# (scripts/services.py) reports it once and does not restart the process.
SETTINGS_ERROR_EXIT = 2


@dataclass(frozen=True)
class Settings:
    database_url: str
    # Conversations are deleted this many days after their last event, handoffs (and their
    # notifications) this many days after they were made.
    conversation_retention_days: int
    handoff_retention_days: int
    # Staff notifications: each channel is on when its setting is present.
    staff_email: Optional[str]
    smtp_host: Optional[str]
    smtp_port: int
    smtp_user: Optional[str]
    smtp_password: Optional[str]
    # starttls (the default), tls or none; none only to this machine or with smtp_allow_plaintext.
    smtp_security: str
    smtp_allow_plaintext: bool
    smtp_from: str
    staff_webhook_url: Optional[str]
    # What the notifications carry: by default only that a request arrived, its id, the
    # preferred time and the inbox link; the visitor's details only when a channel's flag is on.
    notify_email_include_details: bool
    notify_webhook_include_details: bool
    # The staff inbox, and the address notifications link to.
    staff_inbox_host: str
    staff_inbox_port: int
    staff_inbox_url: str
    # Development only: where the first admin account's generated password is kept.
    staff_inbox_password_file: Path
    # The session-cookie signing key.
    staff_inbox_secret_key: Optional[str]
    production: bool
    # Reverse proxies whose X-Forwarded-For the inbox believes; empty: the header is ignored.
    staff_inbox_trusted_proxies: Tuple[Network, ...]
    # Retired settings that are set (RETIRED_SETTINGS).
    retired_settings: Tuple[str, ...]
    # Rasa's conversation store (SQLite): the purge, forget-me and deleting a handoff delete from it.
    tracker_db: Path
    # The same store anywhere else (PostgreSQL in the production topology); None: tracker_db.
    tracker_url: Optional[str]
    # The outbox sender.
    outbox_poll_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float
    # How long a sender owns a claimed notification (longer than one delivery can take).
    outbox_lease_seconds: float
    # How many due notifications a sender claims in one transaction.
    outbox_claim_batch: int
    # After this many failed attempts a notification is marked failed and no longer retried.
    outbox_max_attempts: int

    @property
    def email_enabled(self) -> bool:
        return bool(self.staff_email and self.smtp_host)

    @property
    def tracker_database_url(self) -> str:
        """Rasa's SQL tracker store, where conversations are kept (endpoints.yml: SQLite; the
        production topology's endpoints.production.yml: TRACKER_DATABASE_URL)."""
        return self.tracker_url or f"sqlite:///{self.tracker_db}"

    @property
    def plaintext_to_another_machine(self) -> bool:
        return _plaintext_to_another_machine(self.smtp_security, self.smtp_host)


class SettingsError(ValueError):
    """A setting with a value that cannot work; the message names the variable."""


def _get(environ: Mapping[str, str], name: str) -> Optional[str]:
    value = environ.get(name, "").strip()
    return value or None


def _number(environ: Mapping[str, str], name: str, default: str, kind: Callable[[str], Number],
            minimum: Number) -> Number:
    text = _get(environ, name) or default
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {text!r}") from None
    if not value >= minimum:  # also refuses NaN
        raise SettingsError(f"{name} must be at least {minimum}, not {text!r}")
    return value


def _days(environ: Mapping[str, str], name: str, default: int) -> int:
    text = _get(environ, name) or str(default)
    # Digits only (no "3.5", "1e3", "²"), and few enough for int() to read.
    whole = text.isascii() and text.isdigit() and len(text) <= len(str(MAX_RETENTION_DAYS))
    if not whole or not 1 <= int(text) <= MAX_RETENTION_DAYS:
        raise SettingsError(f"{name} must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, "
                            f"not {text!r}")
    return int(text)


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    text = (_get(environ, name) or "").lower()
    if not text:
        return default
    if text in TRUE_WORDS | FALSE_WORDS:
        return text in TRUE_WORDS
    raise SettingsError(f"{name} must be true or false, not {environ[name].strip()!r}")


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: mail to it never leaves this machine."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plaintext_to_another_machine(security: str, host: Optional[str]) -> bool:
    """Staff email (and any SMTP password) would leave this machine unencrypted."""
    return security == "none" and bool(host) and not is_loopback(host)


def _smtp_security(environ: Mapping[str, str], host: Optional[str]) -> Tuple[str, bool]:
    """SMTP_SECURITY and SMTP_ALLOW_PLAINTEXT, checked: plain text only to this machine, or when allowed."""
    allow_plaintext = _flag(environ, "SMTP_ALLOW_PLAINTEXT", False)
    text = (_get(environ, "SMTP_SECURITY") or "").lower()
    if not text:  # a relay on this machine: plain SMTP; anything else: STARTTLS
        return ("none" if host and is_loopback(host) else "starttls"), allow_plaintext
    if text not in SMTP_SECURITY_MODES:
        raise SettingsError(f"SMTP_SECURITY must be one of {', '.join(SMTP_SECURITY_MODES)}, "
                            f"not {environ['SMTP_SECURITY'].strip()!r}")
    if _plaintext_to_another_machine(text, host) and not allow_plaintext:
        raise SettingsError(
            f"SMTP_SECURITY=none would send staff email (and any SMTP password) unencrypted to {host!r}, "
            "which is not this machine: use SMTP_SECURITY=starttls or tls, or set "
            "SMTP_ALLOW_PLAINTEXT=true to allow plain text")
    return text, allow_plaintext


def is_web_address(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in text)


def _web_address(environ: Mapping[str, str], name: str) -> Optional[str]:
    text = _get(environ, name)
    if text is not None and not is_web_address(text):
        raise SettingsError(f"{name} must be an http:// or https:// address, not {text!r}")
    return text


def _networks(environ: Mapping[str, str], name: str) -> Tuple[Network, ...]:
    networks = []
    for item in (_get(environ, name) or "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise SettingsError(f"{name}: {item.strip()!r} is not an IP address or network") from None
    return tuple(networks)


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """Read at the moment of use, so tests and a restarted service see the current values.

    Raises SettingsError for a value that cannot work; `make run` calls this once before
    starting anything, so a bad setting stops it with the variable's name.
    """
    inbox_port = _number(environ, "STAFF_INBOX_PORT", "8000", int, 1)
    smtp_host = _get(environ, "SMTP_HOST")
    smtp_security, smtp_allow_plaintext = _smtp_security(environ, smtp_host)
    return Settings(
        database_url=_get(environ, "DATABASE_URL") or DEFAULT_DATABASE_URL,
        conversation_retention_days=_days(environ, "CONVERSATION_RETENTION_DAYS",
                                          DEFAULT_CONVERSATION_RETENTION_DAYS),
        handoff_retention_days=_days(environ, "HANDOFF_RETENTION_DAYS", DEFAULT_HANDOFF_RETENTION_DAYS),
        staff_email=_get(environ, "STAFF_EMAIL"),
        smtp_host=smtp_host,
        smtp_port=_number(environ, "SMTP_PORT", str(SMTP_DEFAULT_PORTS[smtp_security]), int, 1),
        smtp_user=_get(environ, "SMTP_USER"),
        smtp_password=_get(environ, "SMTP_PASSWORD"),
        smtp_security=smtp_security,
        smtp_allow_plaintext=smtp_allow_plaintext,
        smtp_from=_get(environ, "SMTP_FROM") or "assistant@localhost",
        staff_webhook_url=_web_address(environ, "STAFF_WEBHOOK_URL"),
        notify_email_include_details=_flag(environ, "NOTIFY_EMAIL_INCLUDE_DETAILS", False),
        notify_webhook_include_details=_flag(environ, "NOTIFY_WEBHOOK_INCLUDE_DETAILS", False),
        staff_inbox_host=environ.get("STAFF_INBOX_HOST", "127.0.0.1"),
        staff_inbox_port=inbox_port,
        staff_inbox_url=(_web_address(environ, "STAFF_INBOX_URL") or f"http://localhost:{inbox_port}").rstrip("/"),
        staff_inbox_password_file=Path(_get(environ, "STAFF_INBOX_PASSWORD_FILE")
                                       or PROJECT_ROOT / "var" / "staff_inbox_password"),
        staff_inbox_secret_key=_get(environ, "STAFF_INBOX_SECRET_KEY"),
        production=environ.get("APP_ENV", "development").strip().lower() == "production",
        staff_inbox_trusted_proxies=_networks(environ, "STAFF_INBOX_TRUSTED_PROXIES"),
        retired_settings=tuple(name for name in RETIRED_SETTINGS if _get(environ, name)),
        tracker_db=PROJECT_ROOT / (_get(environ, "TRACKER_DB") or DEFAULT_TRACKER_DB),
        tracker_url=_get(environ, "TRACKER_DATABASE_URL"),
        outbox_poll_seconds=_number(environ, "OUTBOX_POLL_SECONDS", "1", float, 0.05),
        retry_base_seconds=_number(environ, "OUTBOX_RETRY_BASE_SECONDS", "5", float, 0.0),
        retry_max_seconds=_number(environ, "OUTBOX_RETRY_MAX_SECONDS", "600", float, 0.0),
        outbox_lease_seconds=_number(environ, "OUTBOX_LEASE_SECONDS", "120", float, 1.0),
        outbox_claim_batch=_number(environ, "OUTBOX_CLAIM_BATCH", "10", int, 1),
        outbox_max_attempts=_number(environ, "OUTBOX_MAX_ATTEMPTS", "30", int, 1),
    )
