"""Settings from environment variables, with safe defaults for a local run.

Every setting is documented in .env.example. Secrets (SMTP password, webhook URL, the
staff inbox password) have no defaults and are never committed.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CLINIC_FILE = Path(os.environ.get("CLINIC_FILE", PROJECT_ROOT / "clinic.yml"))

# How sure the ResponseSelector must be before an FAQ answer follows a safety reply.
FAQ_ALONGSIDE_MIN_CONFIDENCE = float(os.environ.get("FAQ_ALONGSIDE_MIN_CONFIDENCE", "0.6"))

DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'var' / 'handoffs.db'}"
TRUE_WORDS = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str
    # Staff notifications: each channel is on when its setting is present.
    staff_email: Optional[str]
    smtp_host: Optional[str]
    smtp_port: int
    smtp_user: Optional[str]
    smtp_password: Optional[str]
    smtp_starttls: bool
    smtp_from: str
    staff_webhook_url: Optional[str]
    # The staff inbox, and the address notifications link to.
    staff_inbox_host: str
    staff_inbox_port: int
    staff_inbox_url: str
    staff_inbox_password: Optional[str]
    # Where a generated development password is kept, and the session-cookie signing key.
    staff_inbox_password_file: Path
    staff_inbox_secret_key: Optional[str]
    production: bool
    # The outbox sender.
    outbox_poll_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float

    @property
    def email_enabled(self) -> bool:
        return bool(self.staff_email and self.smtp_host)


def _get(environ: Mapping[str, str], name: str) -> Optional[str]:
    value = environ.get(name, "").strip()
    return value or None


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """Read at the moment of use, so tests and a restarted service see the current values."""
    inbox_port = int(environ.get("STAFF_INBOX_PORT", "8000"))
    return Settings(
        database_url=_get(environ, "DATABASE_URL") or DEFAULT_DATABASE_URL,
        staff_email=_get(environ, "STAFF_EMAIL"),
        smtp_host=_get(environ, "SMTP_HOST"),
        smtp_port=int(environ.get("SMTP_PORT", "25")),
        smtp_user=_get(environ, "SMTP_USER"),
        smtp_password=_get(environ, "SMTP_PASSWORD"),
        smtp_starttls=environ.get("SMTP_STARTTLS", "false").strip().lower() in TRUE_WORDS,
        smtp_from=_get(environ, "SMTP_FROM") or "assistant@localhost",
        staff_webhook_url=_get(environ, "STAFF_WEBHOOK_URL"),
        staff_inbox_host=environ.get("STAFF_INBOX_HOST", "127.0.0.1"),
        staff_inbox_port=inbox_port,
        staff_inbox_url=(_get(environ, "STAFF_INBOX_URL") or f"http://localhost:{inbox_port}").rstrip("/"),
        staff_inbox_password=_get(environ, "STAFF_INBOX_PASSWORD"),
        staff_inbox_password_file=Path(_get(environ, "STAFF_INBOX_PASSWORD_FILE")
                                       or PROJECT_ROOT / "var" / "staff_inbox_password"),
        staff_inbox_secret_key=_get(environ, "STAFF_INBOX_SECRET_KEY"),
        production=environ.get("APP_ENV", "development").strip().lower() == "production",
        outbox_poll_seconds=float(environ.get("OUTBOX_POLL_SECONDS", "1")),
        retry_base_seconds=float(environ.get("OUTBOX_RETRY_BASE_SECONDS", "5")),
        retry_max_seconds=float(environ.get("OUTBOX_RETRY_MAX_SECONDS", "600")),
    )
