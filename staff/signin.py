"""Signing in to the staff inbox: signed session cookies, trusted-browser cookies and the lockout."""
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Dict, List, Optional, Tuple

from staff.accounts import Account

SESSION_COOKIE = "staff_session"
SESSION_LIFETIME = timedelta(hours=12)
# Set at each sign-in, one per account: a browser that has signed in to an account before is never
# locked out of that account by others' guesses.
DEVICE_COOKIE_PREFIX = "staff_device_"
DEVICE_LIFETIME = timedelta(days=90)


@dataclass(frozen=True)
class Session:
    account_id: int
    session_generation: int
    expires: int
    nonce: str


def device_cookie_name(account: Account) -> str:
    return f"{DEVICE_COOKIE_PREFIX}{account.id}"


class Sessions:
    """HMAC-signed cookies that expire. Both kinds carry the account's session generation, so raising
    it (signing out everywhere, a new password, disabling) ends them all; signing out of one session
    is remembered per process."""

    def __init__(self, secret_key: bytes) -> None:
        self.key = secret_key
        self.signed_out: Dict[str, int] = {}

    def _sign(self, message: str) -> str:
        return hmac.new(self.key, message.encode(), hashlib.sha256).hexdigest()

    def _signed(self, kind: str, account: Account, lifetime: timedelta) -> str:
        expires = int(time.time() + lifetime.total_seconds())
        payload = f"{kind}.{account.id}.{account.session_generation}.{expires}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._sign(payload)}"

    def _verified(self, kind: str, cookie: Optional[str]) -> Optional[List[str]]:
        """The cookie's account id, generation, expiry and nonce if it is genuine, of this kind and current."""
        payload, _, signature = (cookie or "").rpartition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        cookie_kind, *fields = payload.split(".")
        if cookie_kind != kind or len(fields) != 4 or not all(field.isdigit() for field in fields[:3]):
            return None
        return fields if int(fields[2]) >= time.time() else None

    def create(self, account: Account) -> str:
        return self._signed("session", account, SESSION_LIFETIME)

    def verify(self, cookie: Optional[str]) -> Optional[Session]:
        """A genuine, current session not signed out here; whether its account still accepts it is
        for the caller to check against the database."""
        fields = self._verified("session", cookie)
        if fields is None or fields[3] in self.signed_out:
            return None
        account_id, generation, expires, nonce = fields
        return Session(int(account_id), int(generation), int(expires), nonce)

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def create_device(self, account: Account) -> str:
        return self._signed("device", account, DEVICE_LIFETIME)

    def verify_device(self, cookie: Optional[str], account: Account) -> Optional[str]:
        """The id of a browser that signed in to this account before (since it last signed out everywhere)."""
        fields = self._verified("device", cookie)
        if fields is None or fields[:2] != [str(account.id), str(account.session_generation)]:
            return None
        return fields[3]

    def sign_out(self, session: Session) -> None:
        now = time.time()
        self.signed_out = {nonce: expires for nonce, expires in self.signed_out.items() if expires > now}
        self.signed_out[session.nonce] = session.expires


@dataclass(frozen=True)
class Attempt:
    keys: Tuple[str, ...]  # the first is the address's, or the trusted browser's
    started: float


class LoginThrottle:
    """Slows every wrong password and counts them (per process) per address, per account and per
    trusted browser.

    A browser without a trusted-browser cookie for the account is refused while its address, or the
    account, has had too many wrong passwords lately; the account limit stops guessing spread over
    many addresses. A trusted browser is judged on its own wrong passwords for that account only, so
    nobody else's guesses ever lock it out. A sign-in to an unknown username counts for its address.
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

    def _limits(self, address: str, account_id: Optional[int], device: Optional[str]) -> Dict[str, int]:
        if device is not None:
            return {f"device:{device}": self.max_failures}
        limits = {f"address:{address}": self.max_failures}
        if account_id is not None:
            limits[f"account:{account_id}"] = self.max_account_failures
        return limits

    def begin(self, address: str, account_id: Optional[int], device: Optional[str]) -> Optional[Attempt]:
        """None when the sign-in is refused. Otherwise the attempt, counted as a wrong password until
        `succeeded`: parallel guesses all count, however long checking each password takes."""
        self._forget_old()
        limits = self._limits(address, account_id, device)
        if any(len(self.failures.get(key, [])) >= limit for key, limit in limits.items()):
            return None
        started = time.monotonic()
        for key in limits:
            self.failures.setdefault(key, []).append(started)
        return Attempt(tuple(limits), started)

    def succeeded(self, attempt: Attempt) -> None:
        """The right password: the attempt is no failure, and its address's (or browser's) count starts again."""
        first, *others = attempt.keys
        self.failures.pop(first, None)
        for key in others:
            times = self.failures.get(key, [])
            if attempt.started in times:
                times.remove(attempt.started)
