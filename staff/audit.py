"""The audit log: who did what, to which handoff or account, when (UTC) and from where.

Entries name a handoff by its number only. They never hold what a visitor wrote, their name
or their contact details, nor a password: `detail` is a status, a role, a reason or a count.
Changes are recorded in the same transaction as the change itself, so neither exists without
the other; a page or command shows handoffs only once its view has been recorded.
"""
import csv
import getpass
import io
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from clinic_core.storage import HandoffStore, audit_log, utcnow

# What an entry records, and how pages, the command line and exports describe it.
ACTIONS = {
    "signed_in": "Signed in",
    "sign_in_failed": "Sign-in failed",
    "signed_out": "Signed out",
    "signed_out_everywhere": "Signed out everywhere",
    "viewed_list": "Viewed the handoff list",
    "viewed_handoff": "Viewed a handoff",
    "changed_status": "Changed a handoff's status",
    "deleted_handoff": "Deleted a handoff",
    "account_created": "Created an account",
    "password_changed": "Changed an account's password",
    "role_changed": "Changed an account's role",
    "account_disabled": "Disabled an account",
    "account_enabled": "Enabled an account",
    "viewed_audit_log": "Viewed the audit log",
    "exported_audit_log": "Exported the audit log",
}
VIA_INBOX, VIA_COMMAND_LINE, VIA_START_UP = "inbox", "command line", "start-up"
CSV_COLUMNS = ("id", "time_utc", "actor", "account_id", "via", "action", "description", "handoff_id",
               "account_changed", "detail", "address")
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in account, or the system user at the command line or starting the inbox."""
    name: Optional[str]  # None: a sign-in to an account that does not exist (the typed name is not kept)
    via: str
    account_id: Optional[int] = None
    address: Optional[str] = None

    @classmethod
    def system_user(cls, via: str) -> "Actor":
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # a user id with no name (some containers)
            name = f"uid {os.getuid()}"
        return cls(name, via)


def record(connection: Connection, actor: Actor, action: str, *, handoff_id: Optional[int] = None,
           subject: Optional[str] = None, detail: Optional[str] = None) -> None:
    """Adds an entry in the caller's transaction."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    connection.execute(insert(audit_log).values(
        at=utcnow(), actor=actor.name, account_id=actor.account_id, via=actor.via, action=action,
        handoff_id=handoff_id, subject=subject, detail=detail,
        address=actor.address[:64] if actor.address else None,
    ))


def _entries(connection: Connection, limit: Optional[int]) -> List[Dict[str, Any]]:
    query = select(audit_log).order_by(audit_log.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return [{**row._mapping, "description": ACTIONS[row.action]} for row in connection.execute(query)]


class AuditLog:
    def __init__(self, store: HandoffStore) -> None:
        self.store = store

    def record(self, actor: Actor, action: str, **fields: Any) -> None:
        with self.store.transaction() as connection:
            record(connection, actor, action, **fields)

    def read(self, actor: Actor, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The newest entries first, this reading's own entry included."""
        with self.store.transaction() as connection:
            record(connection, actor, "viewed_audit_log")
            return _entries(connection, limit)

    def export_csv(self, actor: Actor) -> str:
        """Every entry, newest first, as CSV; the export is itself recorded."""
        with self.store.transaction() as connection:
            record(connection, actor, "exported_audit_log")
            entries = _entries(connection, None)
        output = io.StringIO()
        writer = csv.writer(output, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for entry in entries:
            writer.writerow(_csv_cell(value) for value in (
                entry["id"], f"{entry['at'].isoformat()}Z", entry["actor"], entry["account_id"], entry["via"],
                entry["action"], entry["description"], entry["handoff_id"], entry["subject"], entry["detail"],
                entry["address"],
            ))
        return output.getvalue()


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text
