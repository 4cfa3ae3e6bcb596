"""Staff accounts: one per person, each with a role and an Argon2id-hashed password.

Accounts are made and changed with the command line (staff/cli.py); every change is recorded
in the audit log in the same transaction. Accounts are disabled, never deleted, so the audit
log's entries keep meaning who acted.
"""
import re
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cached_property
from typing import List, Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from clinic_core.storage import HandoffStore, staff_accounts, utcnow
from staff.audit import Actor, record

ROLES = ("staff", "admin")
USERNAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
MIN_PASSWORD_LENGTH = 12
# A password is hashed with its own salt; hashes made with weaker parameters are redone at sign-in.
HASHER = PasswordHasher()


class AccountError(ValueError):
    """A username, password or role the rules refuse, or a username already taken; says which."""


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    role: str
    disabled: bool
    session_generation: int
    created_at: datetime
    password_changed_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ACCOUNT_COLUMNS = [staff_accounts.c[field.name] for field in fields(Account)]


def normalise_username(text: str) -> str:
    """The username as stored (lower case), or AccountError when it is not one."""
    username = text.strip().lower()
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise AccountError(f"a username is 1 to 64 letters, digits, dots, dashes or underscores, starting with a "
                           f"letter or digit; not {text!r}")
    return username


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise AccountError("a password cannot be only spaces")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"a role is one of {', '.join(ROLES)}, not {role!r}")


class Accounts:
    def __init__(self, store: HandoffStore) -> None:
        self.store = store

    @cached_property
    def _unknown_account_hash(self) -> str:
        """Checked against for unknown usernames, so a wrong username takes as long as a wrong password."""
        return HASHER.hash("not anyone's password")

    def _select(self, connection: Connection, username: str) -> Optional[Account]:
        row = connection.execute(select(*ACCOUNT_COLUMNS).where(staff_accounts.c.username == username)).first()
        return Account(**row._mapping) if row else None

    def count(self) -> int:
        with self.store.reading() as connection:
            return connection.execute(select(func.count()).select_from(staff_accounts)).scalar_one()

    def list(self) -> List[Account]:
        with self.store.reading() as connection:
            rows = connection.execute(select(*ACCOUNT_COLUMNS).order_by(staff_accounts.c.username))
            return [Account(**row._mapping) for row in rows]

    def find(self, username: str) -> Optional[Account]:
        with self.store.reading() as connection:
            return self._select(connection, username)

    def signed_in(self, account_id: int, session_generation: int) -> Optional[Account]:
        """The account a session cookie names, while it is enabled and has not signed out everywhere."""
        with self.store.reading() as connection:
            row = connection.execute(select(*ACCOUNT_COLUMNS).where(
                staff_accounts.c.id == account_id, staff_accounts.c.session_generation == session_generation,
                staff_accounts.c.disabled.is_(False))).first()
        return Account(**row._mapping) if row else None

    def password_matches(self, account: Optional[Account], password: str) -> bool:
        """Whether the password is the account's (never for None or a disabled account).

        Slow on purpose (Argon2id): call it off the event loop.
        """
        with self.store.reading() as connection:
            stored = connection.execute(select(staff_accounts.c.password_hash)
                                        .where(staff_accounts.c.id == account.id)).scalar() if account else None
        try:
            HASHER.verify(stored or self._unknown_account_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        if stored is None or account is None or account.disabled:
            return False
        if HASHER.check_needs_rehash(stored):
            with self.store.transaction() as connection:
                connection.execute(update(staff_accounts).where(staff_accounts.c.id == account.id)
                                   .values(password_hash=HASHER.hash(password)))
        return True

    def create(self, actor: Actor, username: str, password: str, role: str) -> Account:
        username = normalise_username(username)
        check_password_rules(password)
        check_role(role)
        password_hash = HASHER.hash(password)  # slow: outside the transaction
        now = utcnow()
        with self.store.transaction() as connection:
            if self._select(connection, username):
                raise AccountError(f"there is already an account called {username!r}")
            connection.execute(insert(staff_accounts).values(
                username=username, password_hash=password_hash, role=role, disabled=False,
                session_generation=0, created_at=now, password_changed_at=now))
            record(connection, actor, "account_created", subject=username, detail=role)
            return self._select(connection, username)

    def _change(self, actor: Actor, username: str, action: str, detail: Optional[str], **values: object) -> bool:
        """Changes the account and records it; False when there is no such account."""
        with self.store.transaction() as connection:
            changed = connection.execute(update(staff_accounts).where(staff_accounts.c.username == username)
                                         .values(**values)).rowcount == 1
            if changed:
                record(connection, actor, action, subject=username, detail=detail)
            return changed

    def set_password(self, actor: Actor, username: str, password: str) -> bool:
        """A new password also signs the account out everywhere."""
        check_password_rules(password)
        return self._change(actor, username, "password_changed", None, password_hash=HASHER.hash(password),
                            password_changed_at=utcnow(),
                            session_generation=staff_accounts.c.session_generation + 1)

    def set_role(self, actor: Actor, username: str, role: str) -> bool:
        check_role(role)
        return self._change(actor, username, "role_changed", role, role=role)

    def set_disabled(self, actor: Actor, username: str, disabled: bool) -> bool:
        """Disabling also signs the account out everywhere (and it cannot sign in again until enabled)."""
        if disabled:
            return self._change(actor, username, "account_disabled", None, disabled=True,
                                session_generation=staff_accounts.c.session_generation + 1)
        return self._change(actor, username, "account_enabled", None, disabled=False)

    def sign_out_everywhere(self, actor: Actor, account: Account) -> None:
        self._change(actor, account.username, "signed_out_everywhere", None,
                     session_generation=staff_accounts.c.session_generation + 1)
