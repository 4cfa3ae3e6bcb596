"""The staff inbox over real HTTP: the app on a local port, a real SQLite file, a requests session."""
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Dict, Iterator, List, Optional
from zoneinfo import ZoneInfo

import pytest
import requests
from aiohttp import web

from actions.settings import Settings, load_settings
from actions.storage import HandoffRequest, HandoffStore, Notification
from staff.inbox import SECURITY_HEADERS, ConfigError, LoginThrottle, create_app, format_time, staff_password
from tests.conftest import ROOT

PASSWORD = "correct horse battery staple"
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


def no_notifications(handoff_id: int, request: HandoffRequest) -> List[Notification]:
    return []


def add_handoff(store: HandoffStore, name: str, messages: Optional[List[str]] = None, **fields: str) -> int:
    request = HandoffRequest(full_name=name, preferred_time="Weekday mornings", consent=True,
                             conversation_id=f"conversation-{name}", visitor_messages=messages or [], **fields)
    return store.create_handoff(request, no_notifications)


@pytest.fixture
def store(tmp_path: Path) -> HandoffStore:
    return HandoffStore(f"sqlite:///{tmp_path / 'handoffs.db'}")


def settings_for(store: HandoffStore, **environ: str) -> Settings:
    return load_settings({"DATABASE_URL": str(store.engine.url), **environ})


@pytest.fixture
def inbox(store: HandoffStore) -> Iterator[str]:
    app = create_app(settings_for(store, STAFF_INBOX_PASSWORD=PASSWORD), store,
                     throttle=LoginThrottle(delay_seconds=0))
    with serve(app) as url:
        yield url


def signed_in(url: str) -> requests.Session:
    session = requests.Session()
    response = session.post(f"{url}/login", data={"password": PASSWORD}, allow_redirects=False)
    assert response.status_code == 303, response.text
    return session


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


# --- signing in ------------------------------------------------------------------

def test_signed_out_visitors_are_sent_to_sign_in(inbox: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann")
    assert requests.get(f"{inbox}/health").text == "ok"
    assert requests.get(f"{inbox}/static/inbox.css").headers["Content-Type"].startswith("text/css")
    for path in ("/", f"/handoffs/{handoff_id}", "/?status=new"):
        response = requests.get(inbox + path, allow_redirects=False)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/login")
    response = requests.post(f"{inbox}/handoffs/{handoff_id}/status", data={"status": "closed"}, allow_redirects=False)
    assert (response.status_code, response.headers["Location"]) == (303, "/login")
    assert store.get_handoff(handoff_id)["status"] == "new"
    login_page = requests.get(f"{inbox}/login")
    assert '<label for="password">' in login_page.text


def test_wrong_password_is_refused(inbox: str) -> None:
    session = requests.Session()
    response = session.post(f"{inbox}/login", data={"password": "guess"}, allow_redirects=False)
    assert response.status_code == 401
    assert "That password is not right" in response.text and 'name="password"' in response.text
    assert not session.cookies
    assert session.get(f"{inbox}/", allow_redirects=False).status_code == 303


def test_repeated_wrong_passwords_block_the_address(store: HandoffStore) -> None:
    app = create_app(settings_for(store, STAFF_INBOX_PASSWORD=PASSWORD), store,
                     throttle=LoginThrottle(max_failures=2, delay_seconds=0))
    with serve(app) as url:
        statuses = [requests.post(f"{url}/login", data={"password": "guess"}, allow_redirects=False).status_code
                    for _ in range(2)]
        blocked = requests.post(f"{url}/login", data={"password": PASSWORD}, allow_redirects=False)
    assert statuses == [401, 401]
    assert blocked.status_code == 429 and "Too many wrong passwords" in blocked.text


def test_sign_in_returns_to_the_requested_page_only_within_the_inbox(inbox: str, store: HandoffStore) -> None:
    handoff_id = add_handoff(store, "Ann")
    session = requests.Session()
    login_page = session.get(f"{inbox}/handoffs/{handoff_id}")
    assert login_page.url.startswith(f"{inbox}/login")
    response = session.post(f"{inbox}/login", data={"password": PASSWORD, "next": f"/handoffs/{handoff_id}"},
                            allow_redirects=False)
    assert response.headers["Location"] == f"/handoffs/{handoff_id}"
    response = session.post(f"{inbox}/login", data={"password": PASSWORD, "next": "https://evil.example/"},
                            allow_redirects=False)
    assert response.headers["Location"] == "/"


def test_session_cookie_flags(store: HandoffStore) -> None:
    for environ, secure in (({}, False), ({"APP_ENV": "production"}, True)):
        app = create_app(settings_for(store, STAFF_INBOX_PASSWORD=PASSWORD, **environ), store)
        with serve(app) as url:
            cookie = requests.post(f"{url}/login", data={"password": PASSWORD},
                                   allow_redirects=False).headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=43200" in cookie
        assert ("Secure" in cookie) is secure


def test_tampered_or_signed_out_sessions_are_refused(inbox: str) -> None:
    session = signed_in(inbox)
    cookie = session.cookies["staff_session"]
    flipped = cookie[:-1] + ("1" if cookie.endswith("0") else "0")
    forged = requests.get(f"{inbox}/", cookies={"staff_session": flipped}, allow_redirects=False)
    assert forged.status_code == 303
    expires, nonce, signature = cookie.split(".")
    extended = requests.get(f"{inbox}/", cookies={"staff_session": f"{int(expires) + 3600}.{nonce}.{signature}"},
                            allow_redirects=False)
    assert extended.status_code == 303

    token = csrf_token(session.get(f"{inbox}/").text)
    assert session.post(f"{inbox}/logout", data={"csrf_token": token}, allow_redirects=False).status_code == 303
    replayed = requests.get(f"{inbox}/", cookies={"staff_session": cookie}, allow_redirects=False)
    assert replayed.status_code == 303


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
    store.create_handoff(HandoffRequest("Ann", "Mornings", True, "c-1"),
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


def test_detail_shows_notification_delivery(inbox: str, store: HandoffStore) -> None:
    handoff_id = store.create_handoff(
        HandoffRequest("Ann", "Mornings", True, "c-1"),
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
                 session.get(f"{inbox}/handoffs/999"), session.get(f"{inbox}/no-such-page")]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)


# --- starting ------------------------------------------------------------------------

def inbox_environ(tmp_path: Path, **extra: str) -> Dict[str, str]:
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith("STAFF_INBOX") and key not in ("APP_ENV", "DATABASE_URL")}
    return {**environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'handoffs.db'}",
            "STAFF_INBOX_PASSWORD_FILE": str(tmp_path / "var" / "staff_inbox_password"), **extra}


def test_production_refuses_to_start_without_a_strong_password(tmp_path: Path, store: HandoffStore) -> None:
    result = subprocess.run([sys.executable, "-m", "staff.inbox"], cwd=ROOT, capture_output=True, text=True,
                            env=inbox_environ(tmp_path, APP_ENV="production", STAFF_INBOX_PORT=str(free_port())),
                            timeout=60)
    assert result.returncode == 2
    assert "STAFF_INBOX_PASSWORD" in result.stderr and "at least 12 characters" in result.stderr
    assert not (tmp_path / "var").exists()
    with pytest.raises(ConfigError):
        create_app(settings_for(store, APP_ENV="production", STAFF_INBOX_PASSWORD="short"), store)


def test_development_without_a_password_uses_a_generated_token_file(tmp_path: Path) -> None:
    port = free_port()
    token_file = tmp_path / "var" / "staff_inbox_password"
    process = subprocess.Popen([sys.executable, "-m", "staff.inbox"], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=inbox_environ(tmp_path, STAFF_INBOX_PORT=str(port)))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the inbox did not answer /health"
            try:
                if requests.get(f"{url}/health", timeout=1).text == "ok":
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        token = token_file.read_text().strip()
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert len(token) >= 32
        session = requests.Session()
        assert session.post(f"{url}/login", data={"password": token}, allow_redirects=False).status_code == 303
        assert session.get(f"{url}/").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert f"sign in with the password in {token_file}" in output
    assert token not in output
    assert process.returncode == 0

    # The next start reuses the same token.
    assert staff_password(load_settings({"STAFF_INBOX_PASSWORD_FILE": str(token_file)})) == token
