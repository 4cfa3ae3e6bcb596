"""`make run`: starts every process the assistant needs, keeps them running, stops them all on Ctrl-C.

A process that exits is restarted with back-off (scripts/services.py); the chat never stops
because the notification sender, the staff inbox, the retention purge or the demo page failed. Exits non-zero,
before starting anything, when a setting is invalid or a port is taken by another program.
"""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clinic_core.clinic import ClinicConfigError, load_clinic  # noqa: E402
from clinic_core.environment import load_env_file  # noqa: E402
from clinic_core.settings import CLINIC_FILE, SETTINGS_ERROR_EXIT, SettingsError, load_settings  # noqa: E402
from scripts.services import (  # noqa: E402
    PortInUse,
    Services,
    demo_site_service,
    purge_service,
    rasa_services,
    staff_services,
)

PORT_SETTINGS = "RASA_PORT, ACTION_PORT, STAFF_INBOX_PORT or DEMO_PORT"
PURGE_EVERY_SECONDS = 24 * 60 * 60


def main() -> int:
    # Files the services create (databases, the password file) are private to this user.
    os.umask(0o077)
    load_env_file()
    try:
        settings = load_settings()  # validated once, before anything starts
        load_clinic(Path(os.environ.get("CLINIC_FILE") or CLINIC_FILE))  # its time zone, hours and website
        rasa_port = int(os.environ.get("RASA_PORT", "5005"))
        action_port = int(os.environ.get("ACTION_PORT", "5055"))
        demo_port = int(os.environ.get("DEMO_PORT", "8080"))
    except (SettingsError, ClinicConfigError, ValueError) as error:
        print(f"Could not start the assistant: {error}", file=sys.stderr)
        return SETTINGS_ERROR_EXIT
    # Browsers may use the assistant from the demo page unless the clinic names its own site.
    os.environ.setdefault("ALLOWED_ORIGINS", f"http://localhost:{demo_port},http://127.0.0.1:{demo_port}")
    inbox_port = settings.staff_inbox_port
    services = Services(rasa_services(
        model=os.environ.get("MODEL", "models/ketamine-assistant.tar.gz"),
        rasa_port=rasa_port, action_port=action_port,
        tracker_db=str(settings.tracker_db),  # the file the staff inbox deletes conversations from
    ) + staff_services(inbox_port)
      + [purge_service(PURGE_EVERY_SECONDS),
         demo_site_service(demo_port, os.environ.get("WIDGET_SERVER_URL", f"http://localhost:{rasa_port}"))])
    # Ctrl-C (even where a parent shell set it to be ignored) and SIGTERM stop every service.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        services.start()
        print(f"\nThe assistant is running (Ctrl-C to stop).\n"
              f"  Demo clinic page with the chat widget: http://localhost:{demo_port}/\n"
              f"  Staff inbox:  http://localhost:{inbox_port}/\n"
              f"  REST:         POST http://localhost:{rasa_port}/webhooks/rest/webhook\n"
              f"  socket.io:    http://localhost:{rasa_port}/socket.io\n", flush=True)
        services.supervise()
    except KeyboardInterrupt:
        return 0
    except PortInUse as error:
        print(f"Could not start the assistant: {error}. Stop that program, or choose other ports with "
              f"{PORT_SETTINGS} (in .env).", file=sys.stderr)
        return 1
    except RuntimeError as error:
        print(f"Could not start the assistant: {error}", file=sys.stderr)
        return 1
    finally:
        services.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
