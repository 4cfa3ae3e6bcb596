"""Deletes what is past its retention (clinic_core/retention.py) and says how much went: counts only.

    .venv/bin/python scripts/purge.py                 once (`make purge`)
    .venv/bin/python scripts/purge.py --every 86400   at once, then daily (`make run` starts it)

Conversations and handoffs are purged apart: one database being down does not keep the other
from being purged. A failed purge is tried again within RETRY_SECONDS, not a day later.
Exits 2 on a bad setting (naming it), 1 when a run found a database unavailable.
"""
import argparse
import logging
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clinic_core.environment import load_env_file  # noqa: E402
from clinic_core.retention import TrackerDatabase, purge_conversations, purge_handoffs  # noqa: E402
from clinic_core.settings import SETTINGS_ERROR_EXIT, Settings, SettingsError, load_settings  # noqa: E402
from clinic_core.storage import HandoffStore, StorageUnavailable, utcnow  # noqa: E402
from staff.sender import describe  # noqa: E402

logger = logging.getLogger("purge")

RETRY_SECONDS = 600.0


def purge_once(settings: Settings, tracker: TrackerDatabase, store: HandoffStore,
               now: Optional[datetime] = None) -> bool:
    """Purges both stores once and logs the counts; False when a database was unavailable."""
    now = now or utcnow()
    succeeded = True
    try:
        conversations, events = purge_conversations(tracker, settings.conversation_retention_days, now)
        logger.info("Deleted %d conversation(s) (%d events) silent for more than %d days",
                    conversations, events, settings.conversation_retention_days)
    except StorageUnavailable as error:
        logger.error("Conversations not purged: tracker database unavailable (%s)", describe(error))
        succeeded = False
    try:
        handoffs, notifications = purge_handoffs(store, settings.handoff_retention_days, now)
        logger.info("Deleted %d handoff(s) (%d notifications) made more than %d days ago",
                    handoffs, notifications, settings.handoff_retention_days)
    except StorageUnavailable as error:
        logger.error("Handoffs not purged: handoff database unavailable (%s)", describe(error))
        succeeded = False
    return succeeded


def purge_every(seconds: float, settings: Settings, tracker: TrackerDatabase, store: HandoffStore) -> None:
    """Runs until stopped; a run that found a database down is retried sooner."""
    while True:
        succeeded = purge_once(settings, tracker, store)
        time.sleep(seconds if succeeded else min(seconds, RETRY_SECONDS))


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, metavar="SECONDS",
                        help="purge at once and then every SECONDS until stopped (default: once)")
    args = parser.parse_args(argv)
    if args.every is not None and not args.every > 0:
        parser.error("--every must be a number of seconds above 0")
    load_env_file()  # `make purge`; under `make run` the file was read already
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = load_settings()
    except SettingsError as error:
        logger.error("Purge not run: %s", error)
        return SETTINGS_ERROR_EXIT
    tracker, store = TrackerDatabase(settings.tracker_database_url), HandoffStore(settings.database_url)
    if args.every is None:
        return 0 if purge_once(settings, tracker, store) else 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        purge_every(args.every, settings, tracker, store)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
