"""The staff inbox in a terminal, and the staff accounts.

    python -m staff.cli list [--status new]
    python -m staff.cli show ID
    python -m staff.cli set-status ID {new,contacted,booked,closed}
    python -m staff.cli delete ID [--yes]
    python -m staff.cli audit [--limit N] [--csv FILE]
    python -m staff.cli account list
    python -m staff.cli account create NAME [--role {staff,admin}] [--password-stdin]
    python -m staff.cli account set-password NAME [--password-stdin]
    python -m staff.cli account set-role NAME {staff,admin}
    python -m staff.cli account disable NAME
    python -m staff.cli account enable NAME

The audit log records each of these as done by this system user at the command line.
"""
import argparse
import getpass
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence
from zoneinfo import ZoneInfo

from clinic_core.clinic import load_clinic
from clinic_core.environment import load_env_file
from clinic_core.notifications import LANGUAGE_FOR_STAFF
from clinic_core.retention import TrackerDatabase
from clinic_core.settings import CLINIC_FILE, load_settings
from clinic_core.storage import HANDOFF_ID_PATTERN, STATUSES, HandoffStore, known_language
from staff import handoffs
from staff.accounts import ROLES, AccountError, Accounts, normalise_username
from staff.audit import VIA_COMMAND_LINE, VIA_INBOX, Actor, AuditLog
from staff.handoffs import ConversationStoreUnavailable
from staff.inbox import CREATE_ACCOUNT_COMMAND, LIST_LIMIT, delivery_status, format_time, write_private_file

LIST_HEADERS = ("ID", "Created", "Status", "Name", "Phone", "Email", "Preferred time")
ACCOUNT_HEADERS = ("Username", "Role", "State", "Created", "Password changed")
AUDIT_HEADERS = ("When (UTC)", "Who", "What", "Handoff", "Account", "Detail", "From")
MAX_CELL_WIDTH = 32


def handoff_id(text: str) -> int:
    if not re.fullmatch(HANDOFF_ID_PATTERN, text):
        raise argparse.ArgumentTypeError(f"not a handoff id: {text!r}")
    return int(text)


def username(text: str) -> str:
    try:
        return normalise_username(text)
    except AccountError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def clean(value: Any) -> str:
    """Visitor text made safe for a terminal: no escape sequences, no line breaks."""
    text = "" if value is None else str(value)
    return "".join(char if char.isprintable() else " " if char.isspace() else "\N{REPLACEMENT CHARACTER}"
                   for char in text)


def clip(text: str) -> str:
    return text if len(text) <= MAX_CELL_WIDTH else text[:MAX_CELL_WIDTH - 1] + "…"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells: List[Sequence[str]] = [headers] + [[clip(clean(value)) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def clinic_timezone() -> ZoneInfo:
    return ZoneInfo(load_clinic(CLINIC_FILE).timezone)


def list_handoffs(store: HandoffStore, actor: Actor, status: Optional[str]) -> int:
    found = handoffs.list_handoffs(store, actor, status, LIST_LIMIT)
    if not found:
        print("No handoffs yet." if status is None else f"No handoffs with status {status}.")
        return 0
    tz = clinic_timezone()
    print_table(LIST_HEADERS, [
        (handoff["id"], format_time(handoff["created_at"], tz), handoff["status"], handoff["full_name"],
         handoff["phone"], handoff["email"], handoff["preferred_time"])
        for handoff in found
    ])
    return 0


def show_handoff(store: HandoffStore, actor: Actor, handoff_id: int) -> int:
    handoff = handoffs.view_handoff(store, actor, handoff_id)
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
        ("Language", LANGUAGE_FOR_STAFF[known_language(handoff["language"])]),
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


def set_status(store: HandoffStore, actor: Actor, handoff_id: int, status: str) -> int:
    if not handoffs.change_status(store, actor, handoff_id, status):
        print(f"No handoff with id {handoff_id}.", file=sys.stderr)
        return 1
    print(f"Handoff {handoff_id} is now {status}.")
    return 0


def delete_handoff(store: HandoffStore, actor: Actor, handoff_id: int, tracker: TrackerDatabase,
                   confirmed: bool) -> int:
    if store.get_handoff(handoff_id) is None:
        print(f"No handoff with id {handoff_id}.", file=sys.stderr)
        return 1
    if not confirmed:
        answer = input(f"Delete handoff {handoff_id}, its notifications and the visitor's conversation? "
                       "This cannot be undone. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return 1
    try:
        events = handoffs.delete_handoff(store, actor, handoff_id, tracker)
    except ConversationStoreUnavailable as error:
        print(f"Nothing deleted: the conversation database {tracker.url} could not be changed ({error}).",
              file=sys.stderr)
        return 1
    if events is None:
        print(f"No handoff with id {handoff_id}.", file=sys.stderr)
        return 1
    print(f"Handoff {handoff_id} deleted, with {events} events of its conversation.")
    return 0


def who(entry: Dict[str, Any]) -> str:
    name = entry["actor"] or "unknown account"
    return name if entry["via"] == VIA_INBOX else f"{name} ({entry['via']})"


def show_audit(store: HandoffStore, actor: Actor, limit: int, csv_file: Optional[str]) -> int:
    audit = AuditLog(store)
    if csv_file == "-":
        sys.stdout.write(audit.export_csv(actor))
        return 0
    if csv_file:
        write_private_file(Path(csv_file), audit.export_csv(actor))  # names and addresses: not for everyone
        print(f"Audit log written to {csv_file}.")
        return 0
    print_table(AUDIT_HEADERS, [
        (entry["at"].isoformat(" "), who(entry), entry["description"], entry["handoff_id"], entry["subject"],
         entry["detail"], entry["address"])
        for entry in audit.read(actor, limit)
    ])
    return 0


def new_password(from_stdin: bool) -> str:
    """Typed twice without echo, or one line from stdin for scripts."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("New password: ")
    if getpass.getpass("Type it again: ") != password:
        raise AccountError("the two passwords are not the same")
    return password


def list_accounts(accounts: Accounts) -> int:
    found = accounts.list()
    if not found:
        print(f"No staff accounts yet. Create one with: {CREATE_ACCOUNT_COMMAND}")
        return 0
    tz = clinic_timezone()
    print_table(ACCOUNT_HEADERS, [
        (account.username, account.role, "disabled" if account.disabled else "active",
         format_time(account.created_at, tz), format_time(account.password_changed_at, tz))
        for account in found
    ])
    return 0


def account_command(store: HandoffStore, actor: Actor, args: argparse.Namespace) -> int:
    accounts = Accounts(store)
    if args.account_command == "list":
        return list_accounts(accounts)
    if args.account_command == "create":
        account = accounts.create(actor, args.username, new_password(args.password_stdin), args.role)
        print(f"Account {account.username} created ({account.role}).")
        return 0
    if accounts.find(args.username) is None:  # before asking for a new password
        print(f"No account called {args.username}.", file=sys.stderr)
        return 1
    if args.account_command == "set-password":
        accounts.set_password(actor, args.username, new_password(args.password_stdin))
        print(f"Password of {args.username} changed; its sessions everywhere are signed out.")
    elif args.account_command == "set-role":
        accounts.set_role(actor, args.username, args.role)
        print(f"{args.username} is now {args.role}.")
    elif args.account_command == "disable":
        accounts.set_disabled(actor, args.username, True)
        print(f"{args.username} is disabled and signed out everywhere.")
    else:
        accounts.set_disabled(actor, args.username, False)
        print(f"{args.username} is enabled.")
    return 0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m staff.cli", description="Handoffs and accounts for clinic staff.")
    commands = parser.add_subparsers(dest="command", required=True)
    list_command = commands.add_parser("list", help="handoffs, newest first")
    list_command.add_argument("--status", choices=STATUSES, help="only handoffs with this status")
    show_command = commands.add_parser("show", help="one handoff in full")
    show_command.add_argument("id", type=handoff_id)
    status_command = commands.add_parser("set-status", help="change a handoff's status")
    status_command.add_argument("id", type=handoff_id)
    status_command.add_argument("status", choices=STATUSES)
    delete_command = commands.add_parser("delete", help="delete a handoff, its notifications and its conversation")
    delete_command.add_argument("id", type=handoff_id)
    delete_command.add_argument("--yes", action="store_true", help="do not ask first")
    audit_command = commands.add_parser("audit", help="the audit log, newest first")
    audit_command.add_argument("--limit", type=int, default=50, help="how many entries to print (default 50)")
    audit_command.add_argument("--csv", metavar="FILE", help="write every entry as CSV to FILE (- for stdout)")

    account = commands.add_parser("account", help="staff accounts").add_subparsers(dest="account_command",
                                                                                      required=True)
    account.add_parser("list", help="every account")
    create = account.add_parser("create", help="a new account; asks for its password twice")
    create.add_argument("username", type=username)
    create.add_argument("--role", choices=ROLES, default="staff")
    set_password_command = account.add_parser("set-password", help="a new password; signs the account out everywhere")
    set_password_command.add_argument("username", type=username)
    for command in (create, set_password_command):
        command.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    role = account.add_parser("set-role", help="make an account staff or admin")
    role.add_argument("username", type=username)
    role.add_argument("role", choices=ROLES)
    for name, text in (("disable", "stop an account signing in; signs it out everywhere"),
                       ("enable", "let a disabled account sign in again")):
        account.add_parser(name, help=text).add_argument("username", type=username)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    load_env_file()
    settings = load_settings()
    store = HandoffStore(settings.database_url)
    actor = Actor.system_user(VIA_COMMAND_LINE)
    try:
        if args.command == "list":
            return list_handoffs(store, actor, args.status)
        if args.command == "show":
            return show_handoff(store, actor, args.id)
        if args.command == "set-status":
            return set_status(store, actor, args.id, args.status)
        if args.command == "delete":
            return delete_handoff(store, actor, args.id, TrackerDatabase(settings.tracker_database_url), args.yes)
        if args.command == "audit":
            return show_audit(store, actor, args.limit, args.csv)
        return account_command(store, actor, args)
    except AccountError as error:
        print(f"Not done: {error}.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
