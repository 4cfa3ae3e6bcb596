"""The staff inbox in a terminal.

    python -m staff.cli list [--status new]
    python -m staff.cli show ID
    python -m staff.cli set-status ID {new,contacted,booked,closed}
"""
import argparse
import re
import sys
from typing import Any, List, Optional, Sequence
from zoneinfo import ZoneInfo

from actions.clinic import load_clinic
from actions.settings import CLINIC_FILE, load_settings
from actions.storage import HANDOFF_ID_PATTERN, STATUSES, HandoffStore
from staff.inbox import delivery_status, format_time

LIST_HEADERS = ("ID", "Created", "Status", "Name", "Phone", "Email", "Preferred time")
MAX_CELL_WIDTH = 32


def handoff_id(text: str) -> int:
    if not re.fullmatch(HANDOFF_ID_PATTERN, text):
        raise argparse.ArgumentTypeError(f"not a handoff id: {text!r}")
    return int(text)


def clean(value: Any) -> str:
    """Visitor text made safe for a terminal: no escape sequences, no line breaks."""
    text = "" if value is None else str(value)
    return "".join(char if char.isprintable() else " " if char.isspace() else "\N{REPLACEMENT CHARACTER}"
                   for char in text)


def clip(text: str) -> str:
    return text if len(text) <= MAX_CELL_WIDTH else text[:MAX_CELL_WIDTH - 1] + "…"


def clinic_timezone() -> ZoneInfo:
    return ZoneInfo(load_clinic(CLINIC_FILE).timezone)


def list_handoffs(store: HandoffStore, status: Optional[str]) -> int:
    handoffs = store.list_handoffs(status)
    if not handoffs:
        print("No handoffs yet." if status is None else f"No handoffs with status {status}.")
        return 0
    tz = clinic_timezone()
    rows: List[Sequence[str]] = [LIST_HEADERS] + [
        [clip(clean(value)) for value in (
            handoff["id"], format_time(handoff["created_at"], tz), handoff["status"], handoff["full_name"],
            handoff["phone"], handoff["email"], handoff["preferred_time"],
        )]
        for handoff in handoffs
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(LIST_HEADERS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def show_handoff(store: HandoffStore, handoff_id: int) -> int:
    handoff = store.get_handoff(handoff_id)
    if handoff is None:
        print(f"No handoff with id {handoff_id}.", file=sys.stderr)
        return 1
    tz = clinic_timezone()
    fields = (
        ("Status", handoff["status"]),
        ("Status changed", format_time(handoff["status_changed_at"], tz) or "never"),
        ("Received", format_time(handoff["created_at"], tz)),
        ("Name", handoff["full_name"]),
        ("Phone", handoff["phone"] or "not given"),
        ("Email", handoff["email"] or "not given"),
        ("Preferred time", handoff["preferred_time"]),
        ("Reason", handoff["reason"] or "not given"),
        ("Agreed to contact", "yes" if handoff["consent"] else "no"),
        ("Conversation ID", handoff["conversation_id"]),
    )
    print(f"Handoff {handoff_id}")
    for label, value in fields:
        print(f"  {label + ':':<19}{clean(value)}")
    print("What the visitor wrote:")
    for number, message in enumerate(handoff["visitor_messages"], 1):
        print(f"  {number}. {clean(message)}")
    if not handoff["visitor_messages"]:
        print("  (no messages kept)")
    print("Notifications:")
    for notification in handoff["notifications"]:
        print(f"  {notification['channel']}: {clean(delivery_status(notification, tz))}")
    if not handoff["notifications"]:
        print("  (none queued)")
    return 0


def set_status(store: HandoffStore, handoff_id: int, status: str) -> int:
    if not store.set_status(handoff_id, status):
        print(f"No handoff with id {handoff_id}.", file=sys.stderr)
        return 1
    print(f"Handoff {handoff_id} is now {status}.")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m staff.cli", description="Handoffs for clinic staff.")
    commands = parser.add_subparsers(dest="command", required=True)
    list_command = commands.add_parser("list", help="handoffs, newest first")
    list_command.add_argument("--status", choices=STATUSES, help="only handoffs with this status")
    show_command = commands.add_parser("show", help="one handoff in full")
    show_command.add_argument("id", type=handoff_id)
    status_command = commands.add_parser("set-status", help="change a handoff's status")
    status_command.add_argument("id", type=handoff_id)
    status_command.add_argument("status", choices=STATUSES)
    args = parser.parse_args(argv)

    store = HandoffStore(load_settings().database_url)
    if args.command == "list":
        return list_handoffs(store, args.status)
    if args.command == "show":
        return show_handoff(store, args.id)
    return set_status(store, args.id, args.status)


if __name__ == "__main__":
    sys.exit(main())
