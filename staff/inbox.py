"""The staff inbox: a small web page, for signed-in staff accounts, for the handoffs the assistant took.

Run with `python -m staff.inbox` (`make run` starts it); it serves on
STAFF_INBOX_HOST:STAFF_INBOX_PORT, http://localhost:8000 by default, and answers /health.
Accounts are made with `python -m staff.cli account create`; in development the first start
makes an admin account itself (see announce_accounts).
"""
import asyncio
import hmac
import ipaddress
import logging
import os
import re
import secrets
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from multidict import MultiDictProxy

from clinic_core.clinic import ClinicConfigError, load_clinic
from clinic_core.retention import TrackerDatabase
from clinic_core.settings import CLINIC_FILE, SETTINGS_ERROR_EXIT, Network, Settings, SettingsError, load_settings
from clinic_core.storage import HANDOFF_ID_PATTERN, STATUSES, HandoffStore, StorageUnavailable
from staff import handoffs
from staff.accounts import AccountError, Accounts, check_password_rules, normalise_username
from staff.audit import VIA_INBOX, VIA_START_UP, Actor, AuditLog
from staff.handoffs import ConversationStoreUnavailable
from staff.signin import (
    DEVICE_LIFETIME,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    LoginThrottle,
    Sessions,
    device_cookie_name,
)

logger = logging.getLogger("staff.inbox")
HERE = Path(__file__).resolve().parent
LIST_LIMIT = 200
AUDIT_PAGE_LIMIT = 500
# The account a development inbox makes for itself when the database has none.
DEVELOPMENT_ADMIN = "admin"
CREATE_ACCOUNT_COMMAND = ".venv/bin/python -m staff.cli account create NAME --role admin"
PUBLIC_PATHS = ("/health", "/login")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # pages hold health information: keep them out of caches
}
STATUS_ACTIONS = {"new": "Reopen as new", "contacted": "Mark contacted", "booked": "Mark booked",
                  "closed": "Mark closed"}
# Where signing in may lead: only the inbox's own pages, so a crafted link cannot redirect elsewhere.
SAFE_NEXT = re.compile(rf"/(handoffs/{HANDOFF_ID_PATTERN}|audit)?(\?status=[a-z]+)?")
ERRORS = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
          503: web.HTTPServiceUnavailable}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConfigError(Exception):
    """A setting that makes starting the inbox unsafe or impossible."""


def format_time(value: Optional[datetime], tz: ZoneInfo) -> str:
    """A stored naive-UTC time in the clinic's time zone, e.g. "Jun 3, 2024 9:05 AM PDT"."""
    if value is None:
        return ""
    local = value.replace(tzinfo=timezone.utc).astimezone(tz)
    return f"{local:%b} {local.day}, {local.year} {local.hour % 12 or 12}:{local:%M %p %Z}"


def delivery_status(notification: Dict[str, Any], tz: ZoneInfo) -> str:
    if notification["status"] == "sent":
        return f"Sent {format_time(notification['sent_at'], tz)}"
    if not notification["attempts"]:
        return "Waiting to be sent"
    attempts = f"{notification['attempts']} attempt{'s' if notification['attempts'] > 1 else ''}"
    last_error = f". Last error: {notification['last_error']}" if notification["last_error"] else ""
    if notification["status"] == "failed":
        return f"Failed: not sent after {attempts}, and no longer retried{last_error}"
    next_try = format_time(notification["next_attempt_at"], tz)
    return f"Not delivered yet after {attempts}{last_error}. Next try {next_try}"


def _is_trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: web.Request, trusted_proxies: Sequence[Network]) -> str:
    """The visitor's address: the connection's, or, from a configured trusted proxy, the nearest
    X-Forwarded-For hop that is not itself a trusted proxy (hops further left can be forged)."""
    peer = request.remote or "unknown"
    if not _is_trusted(peer, trusted_proxies):
        return peer
    hops = [hop.strip() for header in request.headers.getall("X-Forwarded-For", []) for hop in header.split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _is_trusted(hop, trusted_proxies):
            return hop
    return peer


def safe_next(value: Any) -> str:
    return value if isinstance(value, str) and SAFE_NEXT.fullmatch(value) else "/"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


def write_private_file(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also when an empty file was already there
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _development_password(path: Path) -> str:
    """The password kept in the file (an earlier version's shared password too), or a new one saved there."""
    password = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    try:
        check_password_rules(password)
    except AccountError:
        password = secrets.token_urlsafe(24)
        write_private_file(path, password + "\n")
    return password


def announce_accounts(settings: Settings, accounts: Accounts) -> None:
    """Says at start how to sign in. Without any account, development makes an admin account whose
    password is kept in a private file; production never makes one and says how to."""
    try:
        count = accounts.count()
    except StorageUnavailable:
        print("Staff inbox: the handoff database cannot be reached, so staff accounts were not checked.", flush=True)
        return
    path = settings.staff_inbox_password_file
    if count:
        if not settings.production and path.exists() and accounts.find(DEVELOPMENT_ADMIN):
            print(f"Staff inbox: the development account {DEVELOPMENT_ADMIN!r} was made with the password in "
                  f"{path}.", flush=True)
        return
    if settings.production:
        print(f"Staff inbox: there are no staff accounts yet. Create the first with: {CREATE_ACCOUNT_COMMAND}",
              flush=True)
        return
    accounts.create(Actor.system_user(VIA_START_UP), DEVELOPMENT_ADMIN, _development_password(path), "admin")
    print(f"Staff inbox: no staff accounts yet, so this development inbox made the admin account "
          f"{DEVELOPMENT_ADMIN!r}; sign in with the password in {path}. Give each person their own account: "
          f"{CREATE_ACCOUNT_COMMAND}", flush=True)


class Inbox:
    def __init__(self, settings: Settings, store: HandoffStore, clinic_file: Path, throttle: LoginThrottle) -> None:
        clinic = load_clinic(clinic_file)
        try:
            self.tz = ZoneInfo(clinic.timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ConfigError(f"{clinic_file}: unknown timezone {clinic.timezone!r}") from error
        self.clinic_name = clinic.name
        self.store = store
        self.accounts = Accounts(store)
        self.audit = AuditLog(store)
        self.tracker = TrackerDatabase(settings.tracker_database_url)
        self.secure_cookie = settings.production
        self.throttle = throttle
        self.trusted_proxies = settings.staff_inbox_trusted_proxies
        self.sessions = Sessions((settings.staff_inbox_secret_key or "").encode() or secrets.token_bytes(32))
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                                     undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.filters["local_time"] = lambda value: format_time(value, self.tz)
        self.templates.filters["delivery_status"] = lambda value: delivery_status(value, self.tz)

    def render(self, request: web.Request, template: str, http_status: int = 200, **context: Any) -> web.Response:
        session = request.get("session")
        html = self.templates.get_template(template).render(
            clinic_name=self.clinic_name, timezone=self.tz.key, account=request.get("account"),
            csrf_token=self.sessions.csrf_token(session) if session else None, **context,
        )
        return web.Response(text=html, status=http_status, content_type="text/html")

    def error(self, request: web.Request, http_status: int, problem: str, **details: Any) -> web.HTTPException:
        """An error page; `problem` names its sentence in templates/messages.html."""
        page = self.render(request, "error.html", http_status=http_status, problem=problem, details=details)
        return ERRORS[http_status](text=page.text, content_type="text/html")

    def actor(self, request: web.Request) -> Actor:
        account = request["account"]
        return Actor(account.username, VIA_INBOX, account.id, client_address(request, self.trusted_proxies))

    @web.middleware
    async def database_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except StorageUnavailable as error:
            logger.error("Handoff database unavailable for %s %s (%s)", request.method, request.path,
                         type(error.__cause__).__name__)
            raise self.error(request, 503, "database_unavailable") from None

    @web.middleware
    async def require_session(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every page but /health, /login and the stylesheet needs a session whose account still accepts it."""
        if request.path == "/health" or request.path.startswith("/static/"):
            return await handler(request)
        session = self.sessions.verify(request.cookies.get(SESSION_COOKIE))
        account = session and await asyncio.to_thread(
            self.accounts.signed_in, session.account_id, session.session_generation)
        request["session"], request["account"] = (session, account) if account else (None, None)
        if account is None and request.path != "/login":
            query = {"next": request.path_qs} if request.method == "GET" else {}
            raise web.HTTPSeeOther(f"/login?{urlencode(query)}" if query else "/login")
        return await handler(request)

    async def check_csrf(self, request: web.Request) -> MultiDictProxy:
        form = await request.post()
        expected = self.sessions.csrf_token(request["session"])
        if not hmac.compare_digest(str(form.get("csrf_token", "")).encode(), expected.encode()):
            raise self.error(request, 403, "form_expired")
        return form

    def require_admin(self, request: web.Request) -> None:
        if not request["account"].is_admin:
            raise self.error(request, 403, "admins_only")

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def login_page(self, request: web.Request) -> web.Response:
        next_page = safe_next(request.query.get("next"))
        if request["account"]:
            raise web.HTTPSeeOther(next_page)
        return self.render(request, "login.html", next=next_page, problem=None, details={})

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        next_page = safe_next(form.get("next"))
        address = client_address(request, self.trusted_proxies)
        try:
            username: Optional[str] = normalise_username(str(form.get("username", "")))
        except AccountError:
            username = None
        account = username and await asyncio.to_thread(self.accounts.find, username)
        device = account and self.sessions.verify_device(request.cookies.get(device_cookie_name(account)), account)
        # For an unknown username, the name typed is not kept: it may be a password typed in the wrong box.
        actor = (Actor(account.username, VIA_INBOX, account.id, address) if account
                 else Actor(None, VIA_INBOX, address=address))
        attempt = self.throttle.begin(address, actor.account_id, device)
        if attempt is None:
            return self.render(request, "login.html", http_status=429, next=next_page, problem="locked_out",
                               details={"minutes": round(self.throttle.window_seconds / 60)})
        password = str(form.get("password", ""))
        if not await asyncio.to_thread(self.accounts.password_matches, account, password):
            reason = "unknown account" if not account else "account disabled" if account.disabled else "wrong password"
            await asyncio.to_thread(self.audit.record, actor, "sign_in_failed", detail=reason)
            await asyncio.sleep(self.throttle.delay_seconds)
            return self.render(request, "login.html", http_status=401, next=next_page, problem="wrong_password",
                               details={})
        self.throttle.succeeded(attempt)
        await asyncio.to_thread(self.audit.record, actor, "signed_in")
        response = web.HTTPSeeOther(next_page)
        response.set_cookie(SESSION_COOKIE, self.sessions.create(account),
                            max_age=int(SESSION_LIFETIME.total_seconds()), path="/", httponly=True,
                            samesite="Strict", secure=self.secure_cookie)
        response.set_cookie(device_cookie_name(account), self.sessions.create_device(account),
                            max_age=int(DEVICE_LIFETIME.total_seconds()), path="/login", httponly=True,
                            samesite="Strict", secure=self.secure_cookie)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        await self.check_csrf(request)
        self.sessions.sign_out(request["session"])
        await asyncio.to_thread(self.audit.record, self.actor(request), "signed_out")
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    async def logout_everywhere(self, request: web.Request) -> web.Response:
        """Ends every session of this account, in every browser, and their trusted-browser cookies."""
        await self.check_csrf(request)
        await asyncio.to_thread(self.accounts.sign_out_everywhere, self.actor(request), request["account"])
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    async def handoff_list(self, request: web.Request) -> web.Response:
        status = request.query.get("status") or None
        if status is not None and status not in STATUSES:
            raise self.error(request, 400, "unknown_status", status=status)
        deleted = request.query.get("deleted", "")
        # The store is synchronous: keep database calls off the event loop.
        found = await asyncio.to_thread(handoffs.list_handoffs, self.store, self.actor(request), status, LIST_LIMIT)
        undelivered, failing, failed = await asyncio.to_thread(self.store.undelivered_counts)
        return self.render(request, "list.html", handoffs=found, filter_status=status, statuses=STATUSES,
                           limited=len(found) == LIST_LIMIT, undelivered=undelivered, failing=failing,
                           failed=failed, deleted=deleted if deleted.isdigit() else None)

    async def handoff_detail(self, request: web.Request) -> web.Response:
        handoff = await asyncio.to_thread(handoffs.view_handoff, self.store, self.actor(request),
                                          int(request.match_info["id"]))
        if handoff is None:
            raise self.error(request, 404, "no_handoff")
        return self.render(request, "detail.html", handoff=handoff, actions=STATUS_ACTIONS)

    async def change_status(self, request: web.Request) -> web.Response:
        form = await self.check_csrf(request)
        status = form.get("status")
        if status not in STATUSES:
            raise self.error(request, 400, "choose_status")
        handoff_id = int(request.match_info["id"])
        if not await asyncio.to_thread(handoffs.change_status, self.store, self.actor(request), handoff_id, status):
            raise self.error(request, 404, "no_handoff")
        raise web.HTTPSeeOther(f"/handoffs/{handoff_id}")

    async def delete_page(self, request: web.Request) -> web.Response:
        """Asks before deleting; shows the handoff's number and time only, so it is no view to record."""
        handoff = await asyncio.to_thread(self.store.get_handoff, int(request.match_info["id"]))
        if handoff is None:
            raise self.error(request, 404, "no_handoff")
        return self.render(request, "delete.html", handoff_id=handoff["id"], received=handoff["created_at"])

    async def delete(self, request: web.Request) -> web.Response:
        await self.check_csrf(request)
        handoff_id = int(request.match_info["id"])
        try:
            events = await asyncio.to_thread(handoffs.delete_handoff, self.store, self.actor(request), handoff_id,
                                             self.tracker)
        except ConversationStoreUnavailable as error:
            logger.error("Conversation database unavailable for deleting handoff %s (%s)", handoff_id,
                         type(error.__cause__).__name__)
            raise self.error(request, 503, "conversation_store_unavailable") from None
        if events is None:
            raise self.error(request, 404, "no_handoff")
        raise web.HTTPSeeOther(f"/?deleted={handoff_id}")

    async def audit_page(self, request: web.Request) -> web.Response:
        self.require_admin(request)
        entries = await asyncio.to_thread(self.audit.read, self.actor(request), AUDIT_PAGE_LIMIT)
        return self.render(request, "audit.html", entries=entries, limited=len(entries) == AUDIT_PAGE_LIMIT)

    async def audit_csv(self, request: web.Request) -> web.Response:
        self.require_admin(request)
        text = await asyncio.to_thread(self.audit.export_csv, self.actor(request))
        filename = f"audit-log-{datetime.now(timezone.utc):%Y-%m-%d}.csv"
        return web.Response(text=text, content_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def create_app(settings: Settings, store: Optional[HandoffStore] = None, *, clinic_file: Path = CLINIC_FILE,
               throttle: Optional[LoginThrottle] = None) -> web.Application:
    """Raises ConfigError (or ClinicConfigError) when the settings make it unsafe to start."""
    if settings.retired_settings:  # first: a refused start touches nothing
        names = " and ".join(settings.retired_settings)
        raise ConfigError(f"{names} is no longer read: each person signs in with their own account, made with "
                          f"{CREATE_ACCOUNT_COMMAND} (see README, Staff inbox). Remove {names} from .env.")
    inbox = Inbox(settings, store or HandoffStore(settings.database_url), clinic_file, throttle or LoginThrottle())
    app = web.Application(middlewares=[inbox.database_errors, inbox.require_session])
    app.on_response_prepare.append(add_security_headers)
    handoff = f"/handoffs/{{id:{HANDOFF_ID_PATTERN}}}"
    app.add_routes([
        web.get("/health", inbox.health),
        web.get("/login", inbox.login_page),
        web.post("/login", inbox.login),
        web.post("/logout", inbox.logout),
        web.post("/logout-everywhere", inbox.logout_everywhere),
        web.get("/", inbox.handoff_list),
        web.get(handoff, inbox.handoff_detail),
        web.post(f"{handoff}/status", inbox.change_status),
        web.get(f"{handoff}/delete", inbox.delete_page),
        web.post(f"{handoff}/delete", inbox.delete),
        web.get("/audit", inbox.audit_page),
        web.get("/audit.csv", inbox.audit_csv),
        web.static("/static", HERE / "static"),
    ])
    return app


def main() -> int:
    try:
        settings = load_settings()
        store = HandoffStore(settings.database_url)
        app = create_app(settings, store)
    except (ConfigError, ClinicConfigError, SettingsError) as error:
        print(f"Staff inbox not started: {error}", file=sys.stderr)
        return SETTINGS_ERROR_EXIT
    announce_accounts(settings, Accounts(store))
    host, port = settings.staff_inbox_host, settings.staff_inbox_port
    try:
        web.run_app(app, host=host, port=port, access_log=None,
                    print=lambda _: print(f"Staff inbox: {settings.staff_inbox_url} (listening on {host}:{port})",
                                          flush=True))
    except OSError as error:
        print(f"Staff inbox not started: cannot listen on {host}:{port}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
