"""Delivers the outbox: each staff notification once, retried with back-off until it goes.

Started by `make run` (`python -m staff.sender`). A handoff is stored with one outbox event
in one transaction (actions/handoff.py); the sender renders each event into one notification
per channel switched on in its own settings (SMTP_*, STAFF_WEBHOOK_URL), so only the senders
hold those secrets. An SMTP or webhook outage only delays notifications: they stay
pending, retried after 5 s, 10 s, 20 s ... capped at OUTBOX_RETRY_MAX_SECONDS, and are
delivered when the service returns. After OUTBOX_MAX_ATTEMPTS, or at once when a
notification can never be sent (clinic_core/notifications.py's Undeliverable: a header it cannot
carry, an SMTP 5xx answer to the message, a webhook's 4xx that says the request is wrong),
it is marked `failed` (the staff inbox shows it).

Rows are claimed in batches (OUTBOX_CLAIM_BATCH) with a lease, so two senders never both send
one; past half the lease a sender gives back what it has not sent yet, and a sender that dies
holds back only its batch, for the lease. Every attempt carries the row's
idempotency key (Message-ID, Idempotency-Key), so a repeat after such a death is the same
message. A database error (locked, unreachable) never stops the sender: it waits, doubling
the wait up to OUTBOX_RETRY_MAX_SECONDS, and carries on. Logs name ids and error types only.
"""
import logging
import signal
import sys
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Callable, Dict, Optional

from clinic_core.notifications import Undeliverable, deliver, render_notifications
from clinic_core.settings import SETTINGS_ERROR_EXIT, Settings, SettingsError, load_settings
from clinic_core.storage import HandoffStore, StorageUnavailable, utcnow

logger = logging.getLogger("staff.sender")


def retry_delay(attempts_so_far: int, settings: Settings) -> timedelta:
    seconds = settings.retry_base_seconds * (2 ** min(attempts_so_far, 20))
    return timedelta(seconds=min(seconds, settings.retry_max_seconds))


def database_wait(failures_in_a_row: int, settings: Settings) -> float:
    """Seconds to wait after the database failed this many times in a row: 1 s, 2 s, 4 s ... capped."""
    return min(2.0 ** min(failures_in_a_row - 1, 20), max(settings.retry_max_seconds, settings.outbox_poll_seconds))


def describe(error: BaseException) -> str:
    """The error's type, and its cause's: never its text, which may quote a visitor's details."""
    cause = error.__cause__
    return f"{type(error).__name__} ({type(cause).__name__})" if cause else type(error).__name__


def until_stored(record: Callable[[], None], settings: Settings) -> None:
    """A delivery that went out must be recorded, or it would be sent again: retry while the database is down."""
    failures = 0
    while True:
        try:
            record()
            return
        except StorageUnavailable as error:
            failures += 1
            wait = database_wait(failures, settings)
            logger.warning("Could not record a delivery (%s); retrying in %.0f s", describe(error), wait)
            time.sleep(wait)


def queue_new_notifications(store: HandoffStore, settings: Settings) -> int:
    """Renders new handoffs' events into notifications for the channels this sender has on."""
    return store.queue_notifications(lambda handoff_id, request: render_notifications(handoff_id, request, settings))


def deliver_claimed(store: HandoffStore, settings: Settings, notification: Dict[str, Any], now: datetime) -> bool:
    """One attempt at one claimed notification, recorded; True when it went."""
    notification_id, channel = notification["id"], notification["channel"]
    attempt = notification["attempts"] + 1
    try:
        deliver(settings, notification)
    except Exception as error:  # noqa: BLE001 (any failure: keep it, retry or give up)
        permanent = isinstance(error, Undeliverable)
        next_attempt = None if permanent or attempt >= settings.outbox_max_attempts \
            else now + retry_delay(notification["attempts"], settings)
        store.mark_attempt_failed(notification_id, f"{type(error).__name__}: {error}", next_attempt)
        if next_attempt is None:
            logger.error("%s notification %s failed for good after %d attempt(s) (%s)",
                         channel, notification_id, attempt, describe(error))
        else:
            logger.warning("%s notification %s: attempt %d failed (%s); next try at %s UTC",
                           channel, notification_id, attempt, describe(error), next_attempt)
        return False
    until_stored(partial(store.mark_sent, notification_id, utcnow()), settings)
    logger.info("%s notification %s delivered", channel, notification_id)
    return True


def run_once(store: HandoffStore, settings: Settings, now: Optional[datetime] = None) -> int:
    """Queues new handoffs' notifications, then tries every due notification once, a claimed
    batch at a time; returns how many were delivered.

    Raises StorageUnavailable when the database cannot be read or written.
    """
    now = now or utcnow()
    queue_new_notifications(store, settings)
    lease = timedelta(seconds=settings.outbox_lease_seconds)
    delivered = 0
    while batch := store.claim_notifications(now, lease, settings.outbox_claim_batch):
        claimed_at = time.monotonic()
        for index, notification in enumerate(batch):
            if index and time.monotonic() - claimed_at > lease.total_seconds() / 2:
                # Another sender may take them once the lease ends: give them back before that.
                store.release([row["id"] for row in batch[index:]], notification["claimed_by"])
                break
            delivered += deliver_claimed(store, settings, notification, now)
    return delivered


def serve(store: HandoffStore, settings: Settings) -> None:
    """Runs until stopped; a database error means a longer wait, never an exit."""
    failures_in_a_row = 0
    while True:
        try:
            run_once(store, settings)
        except StorageUnavailable as error:
            failures_in_a_row += 1
            wait = database_wait(failures_in_a_row, settings)
            logger.error("Outbox database unavailable (%s); trying again in %.0f s", describe(error), wait)
        else:
            if failures_in_a_row:
                logger.info("Outbox database available again")
            failures_in_a_row, wait = 0, settings.outbox_poll_seconds
        time.sleep(wait)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = load_settings()
    except SettingsError as error:
        logger.error("Outbox sender not started: %s", error)
        return SETTINGS_ERROR_EXIT
    channels = [name for name, on in (
        (f"email ({settings.smtp_security}{', with details' if settings.notify_email_include_details else ''})",
         settings.email_enabled),
        (f"webhook{' (with details)' if settings.notify_webhook_include_details else ''}",
         bool(settings.staff_webhook_url))) if on]
    logger.info("Outbox sender running; channels on: %s", ", ".join(channels) or "none (staff inbox only)")
    if settings.email_enabled and settings.plaintext_to_another_machine:
        logger.warning("SMTP_ALLOW_PLAINTEXT is on: staff email goes to %s unencrypted", settings.smtp_host)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(HandoffStore(settings.database_url), settings)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
