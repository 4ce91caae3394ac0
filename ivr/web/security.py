"""Admin sign-in: the install's admin password, server-side sessions, CSRF tokens, and a limit
on failed sign-ins per IP.

* The password is `WEB_ADMIN_PASSWORD` in VAR_DIR/secrets.json, generated once per install
  (ivr.telephony.asterisk.load_secrets); it is compared in constant time.
* A successful sign-in creates a session: a random 256-bit token in an HttpOnly,
  SameSite=Strict cookie; the server keeps only its sha256, with an idle expiry
  (`web.session_minutes`) and an absolute one (12 h). Sessions live in memory: a restart signs
  everyone out.
* CSRF: the sign-in form carries an HMAC of a random pre-session cookie (double submit, keyed
  with a per-process secret); every form of a signed-in admin carries the session's own token.
  A POST that the browser marks as cross-site (Sec-Fetch-Site, Origin) is refused too.
* A client IP with `web.login_attempts` failed sign-ins within `web.login_window` seconds is
  refused (429) until the oldest failure leaves the window, whatever the password.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

from ivr.web.sessions import AttemptLimit, Sessions

_LOGGER = logging.getLogger(__name__)

SESSION_COOKIE = "ivr_admin"
LOGIN_COOKIE = "ivr_login"
MAX_SESSIONS = 1000
MAX_TRACKED_IPS = 10000
ABSOLUTE_SESSION = 12 * 3600.0


@dataclass
class Session:
    csrf: str


@dataclass
class AdminAuth:
    password: str
    session_seconds: float = 1800.0
    max_failures: int = 5
    window: float = 300.0
    clock: Callable[[], float] = time.monotonic  # tests move it; the tables below read it through
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def __post_init__(self) -> None:
        if len(self.password) < 12:
            raise ValueError("the admin password must have 12 characters or more")
        now = lambda: self.clock()  # noqa: E731
        self._sessions: Sessions[Session] = Sessions(idle=self.session_seconds, absolute=ABSOLUTE_SESSION,
                                                     limit=MAX_SESSIONS, clock=now)
        self._failures = AttemptLimit(self.max_failures, self.window, clock=now, tracked=MAX_TRACKED_IPS)

    # ---- sign-in ---------------------------------------------------------------------

    def login_csrf(self, nonce: str) -> str:
        return hmac.new(self._key, f"login:{nonce}".encode(), hashlib.sha256).hexdigest()

    def check_login_csrf(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.login_csrf(nonce), str(token))

    def retry_after(self, ip: str) -> int:
        """Seconds this IP must wait before another try (0: it may try now)."""
        return self._failures.retry_after(ip)

    def check_password(self, ip: str, password: str) -> bool:
        """True when right; a wrong one counts against `ip`."""
        given = hashlib.sha256(str(password).encode()).digest()
        want = hashlib.sha256(self.password.encode()).digest()
        if hmac.compare_digest(given, want):
            self._failures.succeeded(ip)
            return True
        tries = self._failures.failed(ip)
        _LOGGER.warning("admin sign-in failed from %s (%d in the window)", ip, tries)
        return False

    # ---- sessions --------------------------------------------------------------------

    def open_session(self) -> str:
        return self._sessions.open(Session(csrf=secrets.token_urlsafe(32)))

    def session(self, token: str | None) -> Session | None:
        """The live session for a cookie value (its idle time restarts), else None."""
        return self._sessions.get(token)

    def close_session(self, token: str | None) -> None:
        self._sessions.close(token)


def client_ip(request: web.Request) -> str:
    """The peer address (no proxy headers are trusted: the app binds to loopback)."""
    return request.remote or "unknown"


def same_origin(request: web.Request) -> bool:
    """A POST comes from this site's own pages, as far as the browser says: Sec-Fetch-Site,
    when sent, is same-origin (or none: typed by the user), and Origin, when sent, names this
    host. With `Referrer-Policy: no-referrer` browsers send `Origin: null` for form posts, so
    "null" says nothing; the CSRF token is the check that always applies."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    return origin == f"{request.scheme}://{request.host}"


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", path="/",
                        secure=request.secure, max_age=max_age)
