"""The staff inbox over real HTTP: the app on a local port, real SQLite files, requests sessions."""
import asyncio
import csv
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional
from zoneinfo import ZoneInfo

import pytest
import requests
from aiohttp import web
from argon2 import PasswordHasher
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from clinic_core.settings import Settings, load_settings
from clinic_core.storage import HandoffRequest, HandoffStore, Notification, audit_log
from staff.accounts import Accounts
from staff.audit import CSV_COLUMNS, VIA_COMMAND_LINE, Actor
from staff.inbox import SECURITY_HEADERS, ConfigError, announce_accounts, create_app, format_time
from staff.signin import LoginThrottle
from tests.conftest import ROOT, handoff_with_notifications

USERNAME, PASSWORD = "reception", "correct horse battery staple"
ADMIN, ADMIN_PASSWORD = "manager", "manager's own long password"
PORTS = range(5600, 5700)
CLINIC_TZ = ZoneInfo("America/Los_Angeles")  # clinic.yml


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 5600-5699")


@contextmanager
def serve(app: web.Application) -> Iterator[str]:
    """Runs the app on a free local port in a background thread with its own event loop."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    for port in PORTS:
        try:
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
            break
        except OSError:
            continue
    else:
        raise RuntimeError("no free port in 5600-5699")
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def add_handoff(store: HandoffStore, name: str, messages: Optional[List[str]] = None, **fields: str) -> int:
    request = HandoffRequest(full_name=name, preferred_time="Weekday mornings", consent=True,
                             conversation_id=f"conversation-{name}", visitor_messages=messages or [], **fields)
    return store.create_handoff(request)


def add_account(store: HandoffStore, username: str = USERNAME, password: str = PASSWORD, role: str = "staff") -> None:
    Accounts(store).create(Actor("test", VIA_COMMAND_LINE), username, password, role)


def add_admin(store: HandoffStore) -> None:
    add_account(store, ADMIN, ADMIN_PASSWORD, "admin")


def audit_entries(store: HandoffStore) -> List[Dict[str, Any]]:
    """The whole audit log, oldest first, as stored."""
    with store.reading() as connection:
        return [dict(row._mapping) for row in connection.execute(select(audit_log).order_by(audit_log.c.id))]


@pytest.fixture
def store(tmp_path: Path) -> HandoffStore:
    return HandoffStore(f"sqlite:///{tmp_path / 'handoffs.db'}")


def settings_for(store: HandoffStore, **environ: str) -> Settings:
    # Its own conversations' file: deleting a handoff must never reach var/tracker.db.
    tracker_db = Path(store.engine.url.database).parent / "tracker.db"
    return load_settings({"DATABASE_URL": str(store.engine.url), "TRACKER_DB": str(tracker_db), **environ})


def inbox_app(store: HandoffStore, throttle: Optional[LoginThrottle] = None, **environ: str) -> web.Application:
    return create_app(settings_for(store, **environ), store, throttle=throttle or LoginThrottle(delay_seconds=0))


@pytest.fixture
def inbox(store: HandoffStore) -> Iterator[str]:
    add_account(store)
    with serve(inbox_app(store)) as url:
        yield url


def sign_in(url: str, session: requests.Session, username: str = USERNAME, password: str = PASSWORD,
            forwarded_for: str = "") -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return session.post(f"{url}/login", data={"username": username, "password": password}, headers=headers,
                        allow_redirects=False).status_code


def signed_in(url: str, username: str = USERNAME, password: str = PASSWORD,
              forwarded_for: str = "") -> requests.Session:
    session = requests.Session()
    assert sign_in(url, session, username, password, forwarded_for) == 303
    return session


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def post_form(session: requests.Session, url: str, page: str, **data: str) -> requests.Response:
    """Posts a form the way the page's own form would, with the page's CSRF token."""
    token = csrf_token(session.get(page).text)
    return session.post(url, data={"csrf_token": token, **data}, allow_redirects=False)


# --- signing in ------------------------------------------------------------------

def test_signed_out_visitors_are_sent_to_sign_in(inbox: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann")
    assert requests.get(f"{inbox}/health").text == "ok"
    assert requests.get(f"{inbox}/static/inbox.css").headers["Content-Type"].startswith("text/css")
    for path in ("/", f"/handoffs/{handoff_id}", "/?status=new", f"/handoffs/{handoff_id}/delete", "/audit",
                 "/audit.csv"):
        response = requests.get(inbox + path, allow_redirects=False)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/login")
    for path, data in ((f"/handoffs/{handoff_id}/status", {"status": "closed"}), (f"/handoffs/{handoff_id}/delete", {}),
                       ("/logout-everywhere", {})):
        response = requests.post(inbox + path, data=data, allow_redirects=False)
        assert (response.status_code, response.headers["Location"]) == (303, "/login")
    assert store.get_handoff(handoff_id)["status"] == "new"
    login_page = requests.get(f"{inbox}/login")
    assert '<label for="username">' in login_page.text and '<label for="password">' in login_page.text
    assert audit_entries(store)[1:] == []  # only the account's creation: nobody signed in, nothing viewed


def test_a_wrong_password_or_unknown_username_is_refused_alike_and_recorded(inbox: str, store: HandoffStore) -> None:
    session = requests.Session()
    wrong_password = session.post(f"{inbox}/login", data={"username": USERNAME, "password": "guess"},
                                  allow_redirects=False)
    unknown = session.post(f"{inbox}/login", data={"username": "nobody-here", "password": PASSWORD},
                           allow_redirects=False)
    for response in (wrong_password, unknown):
        assert response.status_code == 401
        assert "That username and password do not match an account" in response.text
        assert 'name="password"' in response.text
    assert not session.cookies
    assert session.get(f"{inbox}/", allow_redirects=False).status_code == 303
    [created, failed, failed_unknown] = audit_entries(store)
    assert (failed["action"], failed["actor"], failed["detail"], failed["address"]) == (
        "sign_in_failed", USERNAME, "wrong password", "127.0.0.1")
    assert failed["account_id"] == Accounts(store).find(USERNAME).id
    # A name typed for no account is not kept: it could be someone's password typed in the wrong box.
    assert (failed_unknown["action"], failed_unknown["actor"], failed_unknown["account_id"],
            failed_unknown["detail"]) == ("sign_in_failed", None, None, "unknown account")
    assert "nobody-here" not in str(audit_entries(store))


def test_repeated_wrong_passwords_block_the_address(store: HandoffStore) -> None:
    add_account(store)
    with serve(inbox_app(store, LoginThrottle(max_failures=2, delay_seconds=0))) as url:
        statuses = [sign_in(url, requests.Session(), password="guess") for _ in range(2)]
        blocked = requests.post(f"{url}/login", data={"username": USERNAME, "password": PASSWORD},
                                allow_redirects=False)
    assert statuses == [401, 401]
    assert blocked.status_code == 429 and "Too many wrong passwords. Wait 15 minutes" in blocked.text


def test_sign_in_returns_to_the_requested_page_only_within_the_inbox(inbox: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann")
    session = requests.Session()
    login_page = session.get(f"{inbox}/handoffs/{handoff_id}")
    assert login_page.url.startswith(f"{inbox}/login")
    for next_page, location in ((f"/handoffs/{handoff_id}", f"/handoffs/{handoff_id}"), ("/audit", "/audit"),
                                ("https://evil.example/", "/"), ("//evil.example/", "/")):
        response = session.post(f"{inbox}/login", data={"username": USERNAME, "password": PASSWORD,
                                                        "next": next_page}, allow_redirects=False)
        assert response.headers["Location"] == location


def test_usernames_are_not_case_sensitive(inbox: str) -> None:
    assert sign_in(inbox, requests.Session(), username=f" {USERNAME.upper()} ") == 303


def test_session_cookie_flags(store: HandoffStore) -> None:
    add_account(store)
    for environ, secure in (({}, False), ({"APP_ENV": "production"}, True)):
        with serve(inbox_app(store, **environ)) as url:
            response = requests.post(f"{url}/login", data={"username": USERNAME, "password": PASSWORD},
                                     allow_redirects=False)
        session_cookie, device_cookie = response.raw.headers.getlist("Set-Cookie")
        assert session_cookie.startswith("staff_session=") and "Max-Age=43200" in session_cookie
        assert device_cookie.startswith("staff_device_1=") and "Path=/login" in device_cookie
        for cookie in (session_cookie, device_cookie):
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert ("Secure" in cookie) is secure


def test_tampered_or_signed_out_sessions_are_refused(inbox: str, store: HandoffStore) -> None:
    session = signed_in(inbox)
    cookie = session.cookies["staff_session"]
    flipped = cookie[:-1] + ("1" if cookie.endswith("0") else "0")
    forged = requests.get(f"{inbox}/", cookies={"staff_session": flipped}, allow_redirects=False)
    assert forged.status_code == 303
    kind, account_id, generation, expires, nonce, signature = cookie.split(".")
    for payload in (f"{kind}.{account_id}.{generation}.{int(expires) + 3600}.{nonce}",  # extended
                    f"{kind}.{int(account_id) + 1}.{generation}.{expires}.{nonce}"):  # another account
        changed = requests.get(f"{inbox}/", cookies={"staff_session": f"{payload}.{signature}"}, allow_redirects=False)
        assert changed.status_code == 303
    device = session.cookies["staff_device_1"]  # signed by the same key, but not a session
    assert requests.get(f"{inbox}/", cookies={"staff_session": device}, allow_redirects=False).status_code == 303

    assert post_form(session, f"{inbox}/logout", f"{inbox}/").status_code == 303
    replayed = requests.get(f"{inbox}/", cookies={"staff_session": cookie}, allow_redirects=False)
    assert replayed.status_code == 303
    assert [entry["action"] for entry in audit_entries(store)][-1] == "signed_out"


def test_sign_out_everywhere_ends_every_session_of_that_account_only(inbox: str, store: HandoffStore) -> None:
    add_admin(store)
    laptop, phone, colleague = signed_in(inbox), signed_in(inbox), signed_in(inbox, ADMIN, ADMIN_PASSWORD)
    old_cookie = phone.cookies["staff_session"]
    assert "Sign out everywhere" in laptop.get(f"{inbox}/").text
    response = post_form(laptop, f"{inbox}/logout-everywhere", f"{inbox}/")
    assert (response.status_code, response.headers["Location"]) == (303, "/login")
    for session in (laptop, phone):
        assert session.get(f"{inbox}/", allow_redirects=False).status_code == 303
    assert requests.get(f"{inbox}/", cookies={"staff_session": old_cookie}, allow_redirects=False).status_code == 303
    assert colleague.get(f"{inbox}/", allow_redirects=False).status_code == 200
    assert signed_in(inbox).get(f"{inbox}/", allow_redirects=False).status_code == 200  # a new sign-in works
    everywhere = [entry for entry in audit_entries(store) if entry["action"] == "signed_out_everywhere"]
    assert [(entry["actor"], entry["subject"]) for entry in everywhere] == [(USERNAME, USERNAME)]


def test_a_new_password_or_disabling_ends_the_accounts_sessions(inbox: str, store: HandoffStore) -> None:
    accounts, admin = Accounts(store), Actor("it-admin", VIA_COMMAND_LINE)
    session = signed_in(inbox)
    assert accounts.set_password(admin, USERNAME, "a brand new password")
    assert session.get(f"{inbox}/", allow_redirects=False).status_code == 303
    assert sign_in(inbox, requests.Session()) == 401  # the old password
    session = signed_in(inbox, password="a brand new password")

    assert accounts.set_disabled(admin, USERNAME, True)
    assert session.get(f"{inbox}/", allow_redirects=False).status_code == 303
    assert sign_in(inbox, requests.Session(), password="a brand new password") == 401
    assert audit_entries(store)[-1]["detail"] == "account disabled"
    assert accounts.set_disabled(admin, USERNAME, False)
    assert sign_in(inbox, requests.Session(), password="a brand new password") == 303


def test_lockout_per_account_never_locks_the_right_password_out_of_a_trusted_browser(store: HandoffStore) -> None:
    add_account(store)
    add_admin(store)
    throttle = LoginThrottle(max_failures=10, max_account_failures=3, delay_seconds=0)
    with serve(inbox_app(store, throttle, STAFF_INBOX_TRUSTED_PROXIES="127.0.0.1")) as url:
        staff_browser, admin_browser = requests.Session(), requests.Session()
        assert sign_in(url, staff_browser, forwarded_for="192.0.2.1") == 303
        assert sign_in(url, admin_browser, ADMIN, ADMIN_PASSWORD, forwarded_for="192.0.2.2") == 303
        # Guesses at the staff account from many addresses lock it for every browser it does not trust.
        assert [sign_in(url, requests.Session(), password="guess", forwarded_for=f"198.51.100.{n}")
                for n in range(3)] == [401, 401, 401]
        assert sign_in(url, requests.Session(), forwarded_for="203.0.113.9") == 429
        # The admin's browser is trusted for the admin account only.
        assert sign_in(url, admin_browser, forwarded_for="192.0.2.2") == 429
        # The staff member's own browser still gets in, and the other account was never locked.
        assert sign_in(url, staff_browser, forwarded_for="192.0.2.1") == 303
        assert sign_in(url, requests.Session(), ADMIN, ADMIN_PASSWORD, forwarded_for="203.0.113.9") == 303
        # Signing out everywhere also ends the browser's trust (a thief's browser would keep it otherwise).
        assert post_form(staff_browser, f"{url}/logout-everywhere", f"{url}/").status_code == 303
        assert sign_in(url, staff_browser, forwarded_for="192.0.2.1") == 429


def test_password_hashes_are_argon2_and_no_password_is_stored(inbox: str, store: HandoffStore, tmp_path: Path) -> None:
    add_admin(store)
    sign_in(inbox, requests.Session(), password="a wrong guess at it")
    signed_in(inbox)
    with sqlite3.connect(tmp_path / "handoffs.db") as database:
        hashes = dict(database.execute("SELECT username, password_hash FROM staff_accounts"))
    assert set(hashes) == {USERNAME, ADMIN}
    assert all(password_hash.startswith("$argon2id$v=19$") for password_hash in hashes.values())
    assert hashes[USERNAME] != hashes[ADMIN]
    assert PasswordHasher().verify(hashes[USERNAME], PASSWORD)
    database_bytes = (tmp_path / "handoffs.db").read_bytes()
    for password in (PASSWORD, ADMIN_PASSWORD, "a wrong guess at it"):
        assert password.encode() not in database_bytes


# --- the audit log -----------------------------------------------------------------

def test_two_accounts_leave_distinguishable_audit_entries(store: HandoffStore) -> None:
    add_account(store)
    add_admin(store)
    handoff_id = add_handoff(store, "Ann", ["please call me"], phone="(555) 010-0199", email="ann@example.test")
    with serve(inbox_app(store, STAFF_INBOX_TRUSTED_PROXIES="127.0.0.1")) as url:
        staff = signed_in(url, forwarded_for="192.0.2.10")
        admin = signed_in(url, ADMIN, ADMIN_PASSWORD, forwarded_for="192.0.2.20")
        staff.get(f"{url}/handoffs/{handoff_id}", headers={"X-Forwarded-For": "192.0.2.10"})
        admin.get(f"{url}/?status=new", headers={"X-Forwarded-For": "192.0.2.20"})
        token = csrf_token(staff.get(f"{url}/handoffs/{handoff_id}", headers={"X-Forwarded-For": "192.0.2.10"}).text)
        staff.post(f"{url}/handoffs/{handoff_id}/status", data={"status": "contacted", "csrf_token": token},
                   headers={"X-Forwarded-For": "192.0.2.10"})
    accounts = Accounts(store)
    staff_id, admin_id = accounts.find(USERNAME).id, accounts.find(ADMIN).id
    made = [(entry["actor"], entry["account_id"], entry["address"], entry["action"], entry["handoff_id"],
             entry["detail"]) for entry in audit_entries(store)[2:]]
    assert made == [
        (USERNAME, staff_id, "192.0.2.10", "signed_in", None, None),
        (ADMIN, admin_id, "192.0.2.20", "signed_in", None, None),
        (USERNAME, staff_id, "192.0.2.10", "viewed_handoff", handoff_id, None),
        (ADMIN, admin_id, "192.0.2.20", "viewed_list", None, "new"),
        (USERNAME, staff_id, "192.0.2.10", "viewed_handoff", handoff_id, None),
        (USERNAME, staff_id, "192.0.2.10", "changed_status", handoff_id, "contacted"),
        (USERNAME, staff_id, "192.0.2.10", "viewed_handoff", handoff_id, None),  # the page after the change
    ]
    assert all(entry["via"] == "inbox" for entry in audit_entries(store)[2:])
    times = [entry["at"] for entry in audit_entries(store)]
    assert all(abs(time - datetime.utcnow()) < timedelta(minutes=1) for time in times)  # UTC


def test_only_admins_see_and_export_the_audit_log(store: HandoffStore) -> None:
    add_account(store)
    add_admin(store)
    with serve(inbox_app(store, STAFF_INBOX_TRUSTED_PROXIES="127.0.0.1")) as url:
        staff = signed_in(url, forwarded_for="=HYPERLINK(\"http://evil.example\")")
        assert "/audit" not in staff.get(f"{url}/").text
        for path in ("/audit", "/audit.csv"):
            refused = staff.get(url + path)
            assert refused.status_code == 403 and "Only administrators can see the audit log." in refused.text
        admin = signed_in(url, ADMIN, ADMIN_PASSWORD)
        assert 'href="/audit"' in admin.get(f"{url}/").text
        page = admin.get(f"{url}/audit")
        export = admin.get(f"{url}/audit.csv")
    assert page.status_code == 200
    assert "<td>Signed in</td>" in page.text and f"<td>{USERNAME}</td>" in page.text
    assert "<td>Viewed the audit log</td>" in page.text
    assert export.status_code == 200 and export.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="audit-log-\d{4}-\d{2}-\d{2}\.csv"',
                        export.headers["Content-Disposition"])
    header, *rows = list(csv.reader(io.StringIO(export.text)))
    assert tuple(header) == CSV_COLUMNS
    rows = [dict(zip(header, row, strict=True)) for row in rows]
    assert rows[0]["action"] == "exported_audit_log" and rows[0]["actor"] == ADMIN  # newest first, itself included
    assert [row["action"] for row in rows if row["actor"] == USERNAME] == ["viewed_list", "signed_in"]
    assert {row["via"] for row in rows} == {"inbox", "command line"}
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", row["time_utc"]) for row in rows)
    # A cell a spreadsheet would run as a formula is written as text.
    assert rows[-3]["address"] == "'=HYPERLINK(\"http://evil.example\")"


# --- deleting ----------------------------------------------------------------------

def conversations_file(path: Path, conversations: Dict[str, List[str]]) -> None:
    """A tracker database as Rasa's SQL tracker store writes it, one user event per message."""
    with sqlite3.connect(path) as tracker:
        tracker.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id VARCHAR(255) NOT NULL, "
                        "type_name VARCHAR(255), timestamp FLOAT, data TEXT)")
        tracker.execute("CREATE INDEX ix_events_sender_id ON events (sender_id)")
        for sender_id, messages in conversations.items():
            for message in messages:
                tracker.execute("INSERT INTO events (sender_id, type_name, data) VALUES (?, 'user', ?)",
                                (sender_id, json.dumps({"text": message})))


@pytest.fixture
def sqlite_keeping_deleted_bytes() -> Iterator[None]:
    """Every SQLite connection starts as in builds without SQLITE_SECURE_DELETE (Debian's has it):
    deleted rows' bytes stay in the file unless the deletion asks for them to be overwritten."""
    def secure_delete_off(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA secure_delete = OFF")

    event.listen(Engine, "connect", secure_delete_off)
    yield
    event.remove(Engine, "connect", secure_delete_off)


def test_deleting_removes_the_handoff_its_notifications_and_conversation_and_records_no_content(
        sqlite_keeping_deleted_bytes: None, inbox: str, store: HandoffStore, tmp_path: Path) -> None:
    visitor = HandoffRequest(full_name="Zebulon Quartermaine", phone="+15550100188", email="zebulon@example.test",
                             preferred_time="weekday mornings", reason="chronic pain", consent=True,
                             conversation_id="visitor-zq-1", visitor_messages=["Zebulon here, please phone 555-0188"])
    handoff_id = handoff_with_notifications(
        store, visitor, lambda *_: [Notification("email", "New", "Zebulon Quartermaine")])
    kept_id = add_handoff(store, "Ann")
    conversations_file(tmp_path / "tracker.db", {
        "visitor-zq-1": ["Zebulon here, please phone 555-0188", "chronic pain"],
        "conversation-Ann": ["hello", "i'd like to book"],
    })
    session = signed_in(inbox)
    assert f'href="/handoffs/{handoff_id}/delete"' in session.get(f"{inbox}/handoffs/{handoff_id}").text
    confirm = session.get(f"{inbox}/handoffs/{handoff_id}/delete")
    assert "It cannot be undone" in confirm.text and "Zebulon" not in confirm.text
    assert session.post(f"{inbox}/handoffs/{handoff_id}/delete", data={"csrf_token": "forged"}).status_code == 403
    assert store.get_handoff(handoff_id) is not None

    response = session.post(f"{inbox}/handoffs/{handoff_id}/delete", data={"csrf_token": csrf_token(confirm.text)},
                            allow_redirects=False)
    assert (response.status_code, response.headers["Location"]) == (303, f"/?deleted={handoff_id}")
    assert f"Handoff {handoff_id} was deleted" in session.get(f"{inbox}/?deleted={handoff_id}").text
    assert store.get_handoff(handoff_id) is None and store.get_handoff(kept_id) is not None
    assert store.notifications() == []
    with sqlite3.connect(tmp_path / "tracker.db") as tracker:
        assert tracker.execute("SELECT DISTINCT sender_id FROM events").fetchall() == [("conversation-Ann",)]
    assert post_form(session, f"{inbox}/handoffs/{handoff_id}/delete", f"{inbox}/").status_code == 404

    [deleted] = [entry for entry in audit_entries(store) if entry["action"] == "deleted_handoff"]
    assert (deleted["actor"], deleted["handoff_id"], deleted["detail"]) == (USERNAME, handoff_id,
                                                                          "2 conversation events")
    # Nothing of the visitor is left: not in the audit log, nor in either file's free pages.
    for trace in (b"Zebulon", b"Quartermaine", b"555-0188", b"5550100188", b"zebulon@", b"chronic pain",
                  b"visitor-zq-1"):
        assert trace not in (tmp_path / "handoffs.db").read_bytes()
        assert trace not in (tmp_path / "tracker.db").read_bytes()


def test_deleting_without_a_conversations_file_deletes_the_handoff(inbox: str, store: HandoffStore,
                                                                  tmp_path: Path) -> None:
    handoff_id = add_handoff(store, "Ann")
    session = signed_in(inbox)
    page = f"{inbox}/handoffs/{handoff_id}/delete"
    assert post_form(session, page, page).status_code == 303
    assert store.get_handoff(handoff_id) is None
    assert not (tmp_path / "tracker.db").exists()  # never created by a deletion
    assert audit_entries(store)[-1]["detail"] == "0 conversation events"


def test_an_unreachable_conversations_file_deletes_nothing(store: HandoffStore, tmp_path: Path) -> None:
    add_account(store)
    handoff_id = add_handoff(store, "Ann")
    (tmp_path / "tracker.db").write_bytes(b"not a database")
    with serve(inbox_app(store)) as url:
        session = signed_in(url)
        page = f"{url}/handoffs/{handoff_id}/delete"
        response = post_form(session, page, page)
    assert response.status_code == 503 and "so nothing was deleted" in response.text
    assert store.get_handoff(handoff_id) is not None
    assert "deleted_handoff" not in [entry["action"] for entry in audit_entries(store)]


# --- pages -----------------------------------------------------------------------

def test_list_shows_handoffs_newest_first_in_clinic_time(inbox: str, store: HandoffStore) -> None:
    ids = [add_handoff(store, name, phone="(555) 010-0199", email=f"{name.lower()}@example.test")
           for name in ("Ann", "Bob", "Cy")]
    store.set_status(ids[1], "booked")
    session = signed_in(inbox)
    page = session.get(f"{inbox}/").text
    assert page.index(">Cy</a>") < page.index(">Bob</a>") < page.index(">Ann</a>")
    assert format_time(store.get_handoff(ids[0])["created_at"], CLINIC_TZ) in page
    assert "bob@example.test" in page and "(555) 010-0199" in page and "Weekday mornings" in page
    assert f'href="/handoffs/{ids[2]}"' in page
    assert "<caption>" in page

    booked = session.get(f"{inbox}/?status=booked").text
    assert ">Bob</a>" in booked and ">Ann</a>" not in booked and ">Cy</a>" not in booked
    assert session.get(f"{inbox}/?status=lost").status_code == 400


def test_empty_list_and_undelivered_notifications(inbox: str, store: HandoffStore) -> None:
    session = signed_in(inbox)
    assert "No handoffs yet." in session.get(f"{inbox}/").text
    handoff_with_notifications(store, HandoffRequest("Ann", "Mornings", True, "c-1"),
                               lambda handoff_id, request: [Notification("email", "New request", "body")])
    assert "1 staff notification not delivered yet" in session.get(f"{inbox}/").text


def test_detail_shows_fields_and_escapes_visitor_text(inbox: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(
        store, "Dana <b>Bold</b>", ["I'd like to book", "<script>alert(1)</script>"],
        phone="(555) 010-0123", email="dana@example.test", reason="Depression <img src=x onerror=alert(1)>",
    )
    page = signed_in(inbox).get(f"{inbox}/handoffs/{handoff_id}").text
    for text in ("(555) 010-0123", "dana@example.test", "Weekday mornings", "conversation-Dana",
                 "I&#39;d like to book", "Agreed to be contacted"):
        assert text in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "Dana &lt;b&gt;Bold&lt;/b&gt;" in page and "<b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img" not in page
    assert 'style=' not in page and "<style" not in page  # the CSP allows only the stylesheet


def test_list_and_detail_show_which_visitors_prefer_spanish(inbox: str, store: HandoffStore) -> None:
    spanish = add_handoff(store, "Lucía Ortega", language="es")
    english = add_handoff(store, "Ann Lee")
    session = signed_in(inbox)
    listing = session.get(f"{inbox}/").text
    row_of = {name: row for row in listing.split("<tr>") for name in ("Lucía Ortega", "Ann Lee") if name in row}
    assert "Prefers Spanish" in row_of["Lucía Ortega"] and "Prefers Spanish" not in row_of["Ann Lee"]
    assert "Prefers Spanish" in session.get(f"{inbox}/handoffs/{spanish}").text
    detail = session.get(f"{inbox}/handoffs/{english}").text
    assert "Prefers Spanish" not in detail and "<dt>Language</dt><dd>English</dd>" in detail


def test_detail_shows_notification_delivery(inbox: str, store: HandoffStore) -> None:
    handoff_id = handoff_with_notifications(
        store, HandoffRequest("Ann", "Mornings", True, "c-1"),
        lambda handoff_id, request: [Notification("email", "s", "b"), Notification("webhook", "s", "b")],
    )
    email, webhook = store.get_handoff(handoff_id)["notifications"]
    sent_at = datetime(2024, 6, 3, 16, 5)
    store.mark_sent(email["id"], sent_at)
    store.mark_attempt_failed(webhook["id"], "ConnectionError: <refused>", sent_at + timedelta(minutes=5))
    page = signed_in(inbox).get(f"{inbox}/handoffs/{handoff_id}").text
    assert "Sent Jun 3, 2024 9:05 AM PDT" in page
    assert "Not delivered yet after 1 attempt. Last error: ConnectionError: &lt;refused&gt;" in page
    assert "Next try Jun 3, 2024 9:10 AM PDT" in page


def test_unknown_handoff_is_404(inbox: str) -> None:
    response = signed_in(inbox).get(f"{inbox}/handoffs/999")
    assert response.status_code == 404 and "There is no handoff with this number." in response.text
    assert signed_in(inbox).get(f"{inbox}/handoffs/99999999999999999999").status_code == 404


def test_status_change_with_csrf_token_is_saved(inbox: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann")
    session = signed_in(inbox)
    page = session.get(f"{inbox}/handoffs/{handoff_id}").text
    for label in ("Mark contacted", "Mark booked", "Mark closed"):
        assert label in page
    response = session.post(f"{inbox}/handoffs/{handoff_id}/status",
                            data={"status": "booked", "csrf_token": csrf_token(page)}, allow_redirects=False)
    assert (response.status_code, response.headers["Location"]) == (303, f"/handoffs/{handoff_id}")
    assert store.get_handoff(handoff_id)["status"] == "booked"
    page = session.get(f"{inbox}/handoffs/{handoff_id}").text
    assert "Mark booked" not in page and "Reopen as new" in page


def test_status_change_is_refused_without_a_valid_csrf_token_or_status(inbox: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann")
    session = signed_in(inbox)
    url = f"{inbox}/handoffs/{handoff_id}/status"
    assert session.post(url, data={"status": "closed"}).status_code == 403
    assert session.post(url, data={"status": "closed", "csrf_token": "forged"}).status_code == 403
    other_session_token = csrf_token(signed_in(inbox).get(f"{inbox}/").text)
    assert session.post(url, data={"status": "closed", "csrf_token": other_session_token}).status_code == 403
    assert store.get_handoff(handoff_id)["status"] == "new"

    token = csrf_token(session.get(f"{inbox}/").text)
    assert session.post(url, data={"status": "lost", "csrf_token": token}).status_code == 400
    assert session.post(f"{inbox}/handoffs/999/status",
                        data={"status": "closed", "csrf_token": token}).status_code == 404
    assert session.post(f"{inbox}/logout", data={}).status_code == 403
    assert store.get_handoff(handoff_id)["status"] == "new"


def test_security_headers_on_every_response(inbox: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann")
    session = signed_in(inbox)
    responses = [requests.get(f"{inbox}/health"), requests.get(f"{inbox}/login"),
                 requests.get(f"{inbox}/static/inbox.css"), requests.get(f"{inbox}/", allow_redirects=False),
                 session.get(f"{inbox}/"), session.get(f"{inbox}/handoffs/{handoff_id}"),
                 session.get(f"{inbox}/handoffs/999"), session.get(f"{inbox}/no-such-page"),
                 session.get(f"{inbox}/handoffs/{handoff_id}/delete"), session.get(f"{inbox}/audit")]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)


# --- starting ------------------------------------------------------------------------

def inbox_environ(tmp_path: Path, **extra: str) -> Dict[str, str]:
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith("STAFF_INBOX") and key not in ("APP_ENV", "DATABASE_URL", "TRACKER_DB")}
    return {**environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'handoffs.db'}",
            "TRACKER_DB": str(tmp_path / "tracker.db"),
            "STAFF_INBOX_PASSWORD_FILE": str(tmp_path / "var" / "staff_inbox_password"), **extra}


def test_the_retired_shared_password_setting_stops_the_inbox_with_what_to_do(tmp_path: Path,
                                                                             store: HandoffStore) -> None:
    result = subprocess.run([sys.executable, "-m", "staff.inbox"], cwd=ROOT, capture_output=True, text=True,
                            env=inbox_environ(tmp_path, STAFF_INBOX_PASSWORD="the old shared password",
                                              STAFF_INBOX_PORT=str(free_port())), timeout=60)
    assert result.returncode == 2
    assert "STAFF_INBOX_PASSWORD is no longer read" in result.stderr and "staff.cli account create" in result.stderr
    assert "the old shared password" not in result.stderr
    assert not (tmp_path / "var").exists() and not (tmp_path / "handoffs.db").exists()
    with pytest.raises(ConfigError):
        create_app(settings_for(store, APP_ENV="production", STAFF_INBOX_PASSWORD="the old shared password"), store)


def wait_for_health(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the inbox did not answer /health"
        try:
            if requests.get(f"{url}/health", timeout=1).text == "ok":
                return
        except requests.ConnectionError:
            time.sleep(0.2)


def test_a_first_development_start_makes_an_admin_account_with_a_private_generated_password(
        tmp_path: Path, store: HandoffStore, capsys: pytest.CaptureFixture) -> None:
    port = free_port()
    password_file = tmp_path / "var" / "staff_inbox_password"
    process = subprocess.Popen([sys.executable, "-m", "staff.inbox"], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=inbox_environ(tmp_path, STAFF_INBOX_PORT=str(port)))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process)
        password = password_file.read_text().strip()
        assert password_file.stat().st_mode & 0o777 == 0o600
        assert len(password) >= 32
        session = signed_in(url, "admin", password)
        assert 'href="/audit"' in session.get(f"{url}/").text
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert f"made the admin account 'admin'; sign in with the password in {password_file}" in output
    assert "staff.cli account create" in output
    assert password not in output
    assert process.returncode == 0
    [account] = Accounts(store).list()
    assert (account.username, account.role) == ("admin", "admin")
    assert audit_entries(store)[0]["via"] == "start-up"

    # Later starts make no other account, and say where that password was kept.
    announce_accounts(settings_for(store, STAFF_INBOX_PASSWORD_FILE=str(password_file)), Accounts(store))
    assert f"was made with the password in {password_file}" in capsys.readouterr().out
    assert len(Accounts(store).list()) == 1


def test_an_earlier_shared_password_file_becomes_the_development_admins_password(
        tmp_path: Path, store: HandoffStore) -> None:
    password_file = tmp_path / "staff_inbox_password"
    password_file.write_text("an earlier generated token\n")
    announce_accounts(settings_for(store, STAFF_INBOX_PASSWORD_FILE=str(password_file)), Accounts(store))
    accounts = Accounts(store)
    assert accounts.password_matches(accounts.find("admin"), "an earlier generated token")


def test_production_never_makes_an_account_and_says_how_to(tmp_path: Path, store: HandoffStore,
                                                           capsys: pytest.CaptureFixture) -> None:
    password_file = tmp_path / "staff_inbox_password"
    announce_accounts(settings_for(store, APP_ENV="production", STAFF_INBOX_PASSWORD_FILE=str(password_file)),
                      Accounts(store))
    assert "no staff accounts yet. Create the first with: .venv/bin/python -m staff.cli account create" in \
        capsys.readouterr().out
    assert Accounts(store).count() == 0 and not password_file.exists()
