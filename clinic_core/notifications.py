"""Staff notifications: what a new handoff's email and webhook message say, and sending them.

The outbox sender (staff/sender.py) renders them from each new handoff, per its own
settings, and delivers them. Wording lives in clinic_core/templates/.
"""
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from string import Template
from typing import Any, Dict, List

from clinic_core.settings import Settings
from clinic_core.storage import HandoffRequest, Notification

TEMPLATES = Path(__file__).resolve().parent / "templates"
NOT_GIVEN = "(not given)"
# How a handoff's language reads to staff: a visitor who wrote in Spanish wants a reply in it.
LANGUAGE_FOR_STAFF = {"en": "English", "es": "prefers Spanish"}
TIMEOUT_SECONDS = 15


def _visitor_fields(request: HandoffRequest, bullet: str) -> Dict[str, str]:
    """Who the visitor is and what they wrote: only in a channel whose *_INCLUDE_DETAILS is on."""
    messages = [f"{bullet} {message}" for message in request.visitor_messages] or [f"{bullet} {NOT_GIVEN}"]
    return {
        "full_name": request.full_name,
        "phone": request.phone or NOT_GIVEN,
        "email": request.email or NOT_GIVEN,
        "reason": request.reason or NOT_GIVEN,
        "visitor_messages": "\n".join(messages),
    }


def _fields(handoff_id: int, request: HandoffRequest, include_details: bool, bullet: str) -> Dict[str, str]:
    # The minimal templates get only these, so a detail added to one of them fails loudly (KeyError).
    fields = {"handoff_id": str(handoff_id), "preferred_time": request.preferred_time,
              "language": LANGUAGE_FOR_STAFF[request.language]}
    if include_details:
        fields.update(_visitor_fields(request, bullet))
    return fields


def _render(template: str, include_details: bool, fields: Dict[str, str], **extra: str) -> str:
    name = f"{template}_details.txt" if include_details else f"{template}.txt"
    return Template((TEMPLATES / name).read_text()).substitute(fields, **extra)


def one_line(text: str) -> str:
    """A header is one line: a line break or control character typed by the visitor becomes a space."""
    return " ".join("".join(char if char.isprintable() else " " for char in text).split())


def subject_for(handoff_id: int, request: HandoffRequest, include_details: bool) -> str:
    fields = {"handoff_id": str(handoff_id),
              "language_note": "" if request.language == "en" else f" ({LANGUAGE_FOR_STAFF[request.language]})"}
    if include_details:
        fields["full_name"] = request.full_name
    return one_line(_render("staff_email_subject", include_details, fields))


def render_notifications(handoff_id: int, request: HandoffRequest, settings: Settings) -> List[Notification]:
    """One notification per channel that is switched on; none when neither is.

    By default each says only that a request arrived, its id, the preferred time, the language
    the visitor wrote in and the inbox link; names, contact details, the reason and the
    visitor's messages are added per channel by NOTIFY_EMAIL_INCLUDE_DETAILS /
    NOTIFY_WEBHOOK_INCLUDE_DETAILS.
    """
    notifications = []
    inbox_link = f"{settings.staff_inbox_url}/handoffs/{handoff_id}"
    if settings.email_enabled:
        details = settings.notify_email_include_details
        body = _render("staff_email", details, _fields(handoff_id, request, details, "-"), inbox_link=inbox_link)
        notifications.append(Notification("email", subject_for(handoff_id, request, details), body))
    if settings.staff_webhook_url:
        details = settings.notify_webhook_include_details
        # Slack's mrkdwn treats <, > and & as markup: escape what the visitor typed.
        fields = {key: value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                  for key, value in _fields(handoff_id, request, details, "•").items()}
        body = _render("staff_webhook", details, fields, inbox_link=inbox_link)
        notifications.append(Notification("webhook", subject_for(handoff_id, request, details), body))
    return notifications


class NotConfigured(RuntimeError):
    pass


class Undeliverable(Exception):
    """This notification can never be sent as it is (retrying cannot help); its cause is chained."""


class TlsUnavailable(RuntimeError):
    """The SMTP server does not offer STARTTLS: nothing was sent, never in plain text. Retried,
    like a refused login: the relay's set-up (or SMTP_SECURITY) is for an operator to fix."""


def message_id(idempotency_key: str, sender_address: str) -> str:
    """The same Message-ID on every attempt, so a repeated delivery is recognisably the same email."""
    try:
        domain = Address(addr_spec=sender_address).domain or "localhost"
    except (ValueError, IndexError):
        domain = "localhost"
    return f"<{idempotency_key}@{domain}>"


def send_email(settings: Settings, subject: str, body: str, idempotency_key: str) -> None:
    if not settings.email_enabled:
        raise NotConfigured("STAFF_EMAIL and SMTP_HOST are not both set")
    message = EmailMessage()
    try:
        message["From"] = settings.smtp_from
        message["To"] = settings.staff_email
        message["Subject"] = subject
        message["Message-ID"] = message_id(idempotency_key, settings.smtp_from)
        message.set_content(body)
    except ValueError as error:  # e.g. a line break in a header
        raise Undeliverable(type(error).__name__) from error
    if settings.plaintext_to_another_machine and not settings.smtp_allow_plaintext:
        # load_settings refuses this already; a Settings made some other way is refused here too.
        raise NotConfigured("SMTP_SECURITY=none to another machine needs SMTP_ALLOW_PLAINTEXT=true")
    # Certificates are checked against the system's trusted authorities and SMTP_HOST's name.
    context = ssl.create_default_context()
    if settings.smtp_security == "tls":
        connection = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_SECONDS,
                                      context=context)
    else:
        connection = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_SECONDS)
    with connection as smtp:
        if settings.smtp_security == "starttls":
            try:
                smtp.starttls(context=context)
            except smtplib.SMTPNotSupportedError as error:
                raise TlsUnavailable("the SMTP server does not offer STARTTLS (SMTP_SECURITY=starttls); "
                                     "nothing was sent") from error
        # A login only with both set (a local relay needs none).
        if settings.smtp_user and settings.smtp_password:
            smtp.login(settings.smtp_user, settings.smtp_password)
        try:
            smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            if all(permanent_smtp_code(code) for code, _ in error.recipients.values()):
                raise Undeliverable("SMTP refused the recipient") from error
            raise
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            if permanent_smtp_code(error.smtp_code):
                raise Undeliverable(f"SMTP {error.smtp_code}") from error
            raise


def permanent_smtp_code(code: int) -> bool:
    """A 5xx answer to the message (sender, recipient, content) is final (RFC 5321); a 4xx
    one is temporary. Failures before the message (connecting, STARTTLS, logging in) are the
    relay's set-up, which an operator can fix: those are retried like an outage."""
    return 500 <= code < 600


# Answers that say the request itself is wrong: sending it again cannot succeed.
PERMANENT_HTTP_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 413, 415, 422})


def send_webhook(settings: Settings, body: str, idempotency_key: str) -> None:
    """A Slack incoming-webhook message (Mattermost and others accept the same JSON).

    The Idempotency-Key header is the same on every attempt, for receivers that deduplicate.
    """
    if not settings.staff_webhook_url:
        raise NotConfigured("STAFF_WEBHOOK_URL is not set")
    request = urllib.request.Request(
        settings.staff_webhook_url, data=json.dumps({"text": body}).encode("utf-8"),
        headers={"Content-Type": "application/json", "Idempotency-Key": idempotency_key}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            if not 200 <= response.status < 300:
                raise RuntimeError(f"webhook answered HTTP {response.status}")
    except urllib.error.HTTPError as error:
        if error.code in PERMANENT_HTTP_STATUSES:
            raise Undeliverable(f"HTTP {error.code}") from error
        raise


def deliver(settings: Settings, notification: Dict[str, Any]) -> None:
    """Sends one outbox row. Raises Undeliverable when retrying cannot help, anything else when it may."""
    channel, key = notification["channel"], notification["idempotency_key"]
    if channel == "email":
        send_email(settings, notification["subject"], notification["body"], key)
    elif channel == "webhook":
        send_webhook(settings, notification["body"], key)
    else:
        raise Undeliverable(f"unknown channel {channel!r}")
