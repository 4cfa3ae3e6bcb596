"""Delivers the outbox: each staff notification once, retried with back-off until it goes.

Started by `make run` (`python -m staff.sender`). A handoff's notifications are written
with it in one transaction, so an SMTP or webhook outage only delays them: they stay
pending, retried after 5 s, 10 s, 20 s ... capped at OUTBOX_RETRY_MAX_SECONDS, and are
delivered when the service returns. Claims are leased, so two senders never both send.
"""
import logging
import signal
import sys
import time
from datetime import datetime, timedelta
from typing import Optional

from actions.notifications import deliver
from actions.settings import Settings, load_settings
from actions.storage import HandoffStore, utcnow

logger = logging.getLogger("staff.sender")
LEASE = timedelta(minutes=2)  # longer than one delivery's timeouts


def retry_delay(attempts_so_far: int, settings: Settings) -> timedelta:
    seconds = settings.retry_base_seconds * (2 ** min(attempts_so_far, 20))
    return timedelta(seconds=min(seconds, settings.retry_max_seconds))


def run_once(store: HandoffStore, settings: Settings, now: Optional[datetime] = None) -> int:
    """Tries every due notification once; returns how many were delivered."""
    now = now or utcnow()
    delivered = 0
    for notification in store.claim_due_notifications(now, LEASE):
        try:
            deliver(settings, notification["channel"], notification["subject"], notification["body"])
        except Exception as error:  # any failure: keep it pending and try again later
            next_attempt = now + retry_delay(notification["attempts"], settings)
            store.mark_attempt_failed(notification["id"], f"{type(error).__name__}: {error}", next_attempt)
            logger.warning("%s notification %s failed (%s); next try at %s UTC",
                           notification["channel"], notification["id"], error, next_attempt)
        else:
            store.mark_sent(notification["id"], utcnow())
            delivered += 1
            logger.info("%s notification %s delivered", notification["channel"], notification["id"])
    return delivered


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings()
    store = HandoffStore(settings.database_url)
    channels = [name for name, on in (("email", settings.email_enabled),
                                      ("webhook", bool(settings.staff_webhook_url))) if on]
    logger.info("Outbox sender running; channels on: %s", ", ".join(channels) or "none (staff inbox only)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            run_once(store, settings)
            time.sleep(settings.outbox_poll_seconds)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
