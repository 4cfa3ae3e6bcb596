"""`make run`: starts every process the assistant needs and stops them all on Ctrl-C."""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.services import Services, demo_site_service, rasa_services, staff_services  # noqa: E402


def main() -> int:
    rasa_port = int(os.environ.get("RASA_PORT", "5005"))
    inbox_port = int(os.environ.get("STAFF_INBOX_PORT", "8000"))
    demo_port = int(os.environ.get("DEMO_PORT", "8080"))
    services = Services(rasa_services(
        model=os.environ.get("MODEL", "models/ketamine-assistant.tar.gz"),
        rasa_port=rasa_port,
        action_port=int(os.environ.get("ACTION_PORT", "5055")),
    ) + staff_services(inbox_port)
      + [demo_site_service(demo_port, os.environ.get("WIDGET_SERVER_URL", f"http://localhost:{rasa_port}"))])
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
        return services.wait()
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:
        print(f"Could not start the assistant: {error}", file=sys.stderr)
        return 1
    finally:
        services.stop()


if __name__ == "__main__":
    sys.exit(main())
