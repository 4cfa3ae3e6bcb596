"""The staff inbox: a small password-protected web page for the handoffs the assistant took.

Run with `python -m staff.inbox` (`make run` starts it); it serves on
STAFF_INBOX_HOST:STAFF_INBOX_PORT, http://localhost:8000 by default, and answers /health.
"""
import asyncio
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from multidict import MultiDictProxy

from actions.clinic import ClinicConfigError, load_clinic
from actions.settings import CLINIC_FILE, SETTINGS_ERROR_EXIT, Network, Settings, SettingsError, load_settings
from actions.storage import HANDOFF_ID_PATTERN, STATUSES, HandoffStore, StorageUnavailable

logger = logging.getLogger("staff.inbox")
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "staff_session"
SESSION_LIFETIME = timedelta(hours=12)
# Set at each sign-in: a browser that has signed in before is never locked out by others' guesses.
DEVICE_COOKIE = "staff_device"
DEVICE_LIFETIME = timedelta(days=90)
MIN_PRODUCTION_PASSWORD_LENGTH = 12
LIST_LIMIT = 200
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
SAFE_NEXT = re.compile(rf"/(handoffs/{HANDOFF_ID_PATTERN})?(\?status=[a-z]+)?")
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


def staff_password(settings: Settings) -> str:
    """The sign-in password. Without one in development, a generated token kept in a private file."""
    password = settings.staff_inbox_password
    if settings.production:
        if not password or len(password) < MIN_PRODUCTION_PASSWORD_LENGTH:
            raise ConfigError(f"APP_ENV=production needs STAFF_INBOX_PASSWORD set to at least "
                              f"{MIN_PRODUCTION_PASSWORD_LENGTH} characters.")
        return password
    if password:
        return password
    path = settings.staff_inbox_password_file
    token = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    if not token:
        token = secrets.token_urlsafe(24)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # also when an empty file was already there
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(token + "\n")
    print(f"Staff inbox: no STAFF_INBOX_PASSWORD set; sign in with the password in {path}", flush=True)
    return token


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int


class Sessions:
    """HMAC-signed session cookies that expire. Only sign-outs are remembered, per process."""

    def __init__(self, secret_key: bytes, password: str) -> None:
        # Keyed on the password too, so changing the password signs everyone out.
        self.key = hmac.new(secret_key, password.encode(), hashlib.sha256).digest()
        self.signed_out: Dict[str, int] = {}

    def _sign(self, message: str) -> str:
        return hmac.new(self.key, message.encode(), hashlib.sha256).hexdigest()

    def create(self) -> str:
        payload = f"{int(time.time() + SESSION_LIFETIME.total_seconds())}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, cookie: Optional[str]) -> Optional[Session]:
        payload, _, signature = (cookie or "").rpartition(".")
        expires, _, nonce = payload.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        if not expires.isdigit() or int(expires) < time.time() or nonce in self.signed_out:
            return None
        return Session(nonce, int(expires))

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def create_device(self) -> str:
        payload = f"device.{int(time.time() + DEVICE_LIFETIME.total_seconds())}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._sign(payload)}"

    def verify_device(self, cookie: Optional[str]) -> Optional[str]:
        """The id of a browser that signed in before, if its cookie is genuine and current."""
        payload, _, signature = (cookie or "").rpartition(".")
        kind, _, rest = payload.partition(".")
        expires, _, device = rest.partition(".")
        if kind != "device" or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        return device if expires.isdigit() and int(expires) >= time.time() else None

    def sign_out(self, session: Session) -> None:
        now = time.time()
        self.signed_out = {nonce: expires for nonce, expires in self.signed_out.items() if expires > now}
        self.signed_out[session.nonce] = session.expires


class LoginThrottle:
    """Slows every wrong password and counts them (per process) per address, per trusted browser
    and for the account (the one shared password).

    A browser without a trusted-device cookie is refused while its address, or the account, has
    had too many wrong passwords lately; the account limit stops guessing spread over many
    addresses. A trusted browser is judged on its own wrong passwords only, so nobody else's
    guesses ever lock it out.
    """

    def __init__(self, max_failures: int = 10, max_account_failures: int = 100, window_seconds: float = 900,
                 delay_seconds: float = 1.0) -> None:
        self.max_failures = max_failures
        self.max_account_failures = max_account_failures
        self.window_seconds = window_seconds
        self.delay_seconds = delay_seconds
        self.failures: Dict[str, List[float]] = {}

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - self.window_seconds
        self.failures = {key: recent for key, times in self.failures.items()
                         if (recent := [t for t in times if t > cutoff])}

    def _count(self, key: str) -> int:
        return len(self.failures.get(key, []))

    def blocked(self, address: str, device: Optional[str] = None) -> bool:
        self._forget_old()
        if device is not None:
            return self._count(f"device:{device}") >= self.max_failures
        return (self._count(f"address:{address}") >= self.max_failures
                or self._count("account") >= self.max_account_failures)

    def record_failure(self, address: str, device: Optional[str] = None) -> None:
        keys = [f"device:{device}"] if device is not None else [f"address:{address}", "account"]
        for key in keys:
            self.failures.setdefault(key, []).append(time.monotonic())

    def forget(self, address: str, device: Optional[str] = None) -> None:
        self.failures.pop(f"device:{device}" if device is not None else f"address:{address}", None)


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


class Inbox:
    def __init__(self, settings: Settings, store: HandoffStore, password: str, clinic_file: Path,
                 throttle: LoginThrottle) -> None:
        clinic = load_clinic(clinic_file)
        try:
            self.tz = ZoneInfo(clinic.timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ConfigError(f"{clinic_file}: unknown timezone {clinic.timezone!r}") from error
        self.clinic_name = clinic.name
        self.store = store
        self.password = password
        self.secure_cookie = settings.production
        self.throttle = throttle
        self.trusted_proxies = settings.staff_inbox_trusted_proxies
        secret_key = (settings.staff_inbox_secret_key or "").encode() or secrets.token_bytes(32)
        self.sessions = Sessions(secret_key, password)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                                     undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.filters["local_time"] = lambda value: format_time(value, self.tz)
        self.templates.filters["delivery_status"] = lambda value: delivery_status(value, self.tz)

    def render(self, request: web.Request, template: str, http_status: int = 200, **context: Any) -> web.Response:
        session = request.get("session")
        html = self.templates.get_template(template).render(
            clinic_name=self.clinic_name, timezone=self.tz.key,
            csrf_token=self.sessions.csrf_token(session) if session else None, **context,
        )
        return web.Response(text=html, status=http_status, content_type="text/html")

    def error(self, request: web.Request, status: int, message: str) -> web.HTTPException:
        page = self.render(request, "error.html", http_status=status, message=message)
        return ERRORS[status](text=page.text, content_type="text/html")

    @web.middleware
    async def database_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except StorageUnavailable as error:
            logger.error("Handoff database unavailable for %s %s (%s)", request.method, request.path,
                         type(error.__cause__).__name__)
            raise self.error(request, 503, "The handoff database cannot be reached right now. "
                                           "Try again in a minute.") from None

    @web.middleware
    async def require_session(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request["session"] = self.sessions.verify(request.cookies.get(SESSION_COOKIE))
        if request["session"] is None and request.path not in PUBLIC_PATHS and not request.path.startswith("/static/"):
            query = {"next": request.path_qs} if request.method == "GET" else {}
            raise web.HTTPSeeOther(f"/login?{urlencode(query)}" if query else "/login")
        return await handler(request)

    async def check_csrf(self, request: web.Request) -> MultiDictProxy:
        form = await request.post()
        expected = self.sessions.csrf_token(request["session"])
        if not hmac.compare_digest(str(form.get("csrf_token", "")).encode(), expected.encode()):
            raise self.error(request, 403, "This form has expired. Go back, reload the page and try again.")
        return form

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def login_page(self, request: web.Request) -> web.Response:
        next_page = safe_next(request.query.get("next"))
        if request["session"]:
            raise web.HTTPSeeOther(next_page)
        return self.render(request, "login.html", next=next_page, error=None)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        next_page = safe_next(form.get("next"))
        address = client_address(request, self.trusted_proxies)
        device = self.sessions.verify_device(request.cookies.get(DEVICE_COOKIE))
        # No await between the check and recording a failure: parallel guesses all count.
        if self.throttle.blocked(address, device):
            return self.render(request, "login.html", http_status=429, next=next_page,
                               error=f"Too many wrong passwords. Wait {self.throttle.window_seconds / 60:.0f} "
                                     "minutes, then try again.")
        if not hmac.compare_digest(str(form.get("password", "")).encode(), self.password.encode()):
            self.throttle.record_failure(address, device)
            await asyncio.sleep(self.throttle.delay_seconds)
            return self.render(request, "login.html", http_status=401, next=next_page,
                               error="That password is not right. Please try again.")
        self.throttle.forget(address, device)
        response = web.HTTPSeeOther(next_page)
        response.set_cookie(SESSION_COOKIE, self.sessions.create(), max_age=int(SESSION_LIFETIME.total_seconds()),
                            path="/", httponly=True, samesite="Strict", secure=self.secure_cookie)
        response.set_cookie(DEVICE_COOKIE, self.sessions.create_device(),
                            max_age=int(DEVICE_LIFETIME.total_seconds()), path="/login", httponly=True,
                            samesite="Strict", secure=self.secure_cookie)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        await self.check_csrf(request)
        self.sessions.sign_out(request["session"])
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    async def handoff_list(self, request: web.Request) -> web.Response:
        status = request.query.get("status") or None
        if status is not None and status not in STATUSES:
            raise self.error(request, 400, f"There is no status called “{status}”.")
        # The store is synchronous: keep database calls off the event loop.
        handoffs = await asyncio.to_thread(self.store.list_handoffs, status, LIST_LIMIT)
        undelivered, failing, failed = await asyncio.to_thread(self.store.undelivered_counts)
        return self.render(request, "list.html", handoffs=handoffs, filter_status=status, statuses=STATUSES,
                           limited=len(handoffs) == LIST_LIMIT, undelivered=undelivered, failing=failing,
                           failed=failed)

    async def handoff_detail(self, request: web.Request) -> web.Response:
        handoff = await asyncio.to_thread(self.store.get_handoff, int(request.match_info["id"]))
        if handoff is None:
            raise self.error(request, 404, "There is no handoff with this number.")
        return self.render(request, "detail.html", handoff=handoff, actions=STATUS_ACTIONS)

    async def change_status(self, request: web.Request) -> web.Response:
        form = await self.check_csrf(request)
        status = form.get("status")
        if status not in STATUSES:
            raise self.error(request, 400, "Choose one of the status buttons.")
        handoff_id = int(request.match_info["id"])
        if not await asyncio.to_thread(self.store.set_status, handoff_id, status):
            raise self.error(request, 404, "There is no handoff with this number.")
        raise web.HTTPSeeOther(f"/handoffs/{handoff_id}")


def create_app(settings: Settings, store: Optional[HandoffStore] = None, *, clinic_file: Path = CLINIC_FILE,
               throttle: Optional[LoginThrottle] = None) -> web.Application:
    """Raises ConfigError (or ClinicConfigError) when the settings make it unsafe to start."""
    password = staff_password(settings)  # first: a refused start touches nothing
    inbox = Inbox(settings, store or HandoffStore(settings.database_url), password, clinic_file,
                  throttle or LoginThrottle())
    app = web.Application(middlewares=[inbox.database_errors, inbox.require_session])
    app.on_response_prepare.append(add_security_headers)
    app.add_routes([
        web.get("/health", inbox.health),
        web.get("/login", inbox.login_page),
        web.post("/login", inbox.login),
        web.post("/logout", inbox.logout),
        web.get("/", inbox.handoff_list),
        web.get(f"/handoffs/{{id:{HANDOFF_ID_PATTERN}}}", inbox.handoff_detail),
        web.post(f"/handoffs/{{id:{HANDOFF_ID_PATTERN}}}/status", inbox.change_status),
        web.static("/static", HERE / "static"),
    ])
    return app


def main() -> int:
    try:
        settings = load_settings()
        app = create_app(settings)
    except (ConfigError, ClinicConfigError, SettingsError) as error:
        print(f"Staff inbox not started: {error}", file=sys.stderr)
        return SETTINGS_ERROR_EXIT
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
