"""Who may do what on a shared instance: logins, admins, and throttled password checks.

One `Access` object lives on SharedState (`state.access`). It knows the UI logins
(--gradio-auth, --gradio-auth-path), the API logins (--api-auth, else the UI's), the admins
(--admin-users) and the login throttle, and every password check (UI /login, HTTP Basic on
the API, /internal and the docs) goes through it.

Roles: with any login set, only admins manage extensions, restart the server and change
server-wide settings; with none, everyone may, as in A1111 (extension management then keeps
A1111's own loopback-only rule, see extensions/manager.py).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from .flags import parse_credentials

log = logging.getLogger(__name__)

# Login throttling: each user name and each client address may fail FREE_FAILURES times;
# every further failure locks that key for a delay that doubles from FIRST_DELAY up to
# MAX_DELAY. A key's record is forgotten FORGET_AFTER seconds after its last failure.
FREE_FAILURES = 5
FIRST_DELAY = 1.0
MAX_DELAY = 300.0
FORGET_AFTER = 3600.0
# At most this many keys are remembered (a few MB). When full, the least recently failed key
# goes first: flushing a victim's record needs thousands of failures, and each of them counts
# against the attacker's own address, which is locked after a few.
MAX_KEYS = 10_000
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


class Throttled(Exception):
    """Too many failed logins for this user name or address; `retry_after` seconds to wait."""

    def __init__(self, retry_after: float):
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"Too many failed logins: try again in {self.retry_after} s")


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failed logins per user name and per client address, in bounded memory. `clock` is
    injectable so tests move time instead of waiting."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS):
        self.clock = clock
        self.max_keys = max_keys
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _user_key(user: str) -> str:
        return f"user:{user[:128]}"  # a bounded key, whatever name was sent

    def _keys(self, user: str | None, address: str | None) -> list[str]:
        return ([self._user_key(user)] if user else []) + ([f"addr:{address}"] if address else [])

    def wait(self, user: str | None, address: str | None) -> float:
        """Seconds before this user name and address may try again; 0 when they may now."""
        with self._lock:
            return self._wait(self._keys(user, address), self.clock())

    def attempt(self, user: str, address: str | None, check: Callable[[], bool]) -> bool:
        """Run the password `check` unless the user or address is locked (then raise Throttled),
        and record its outcome. All under one lock: parallel guesses cannot slip in before the
        failures of the earlier ones are counted (the check itself takes microseconds)."""
        keys = self._keys(user, address)
        with self._lock:
            now = self.clock()
            wait = self._wait(keys, now)
            if wait > 0:
                raise Throttled(wait)
            if check():
                # The user's record is cleared; the address's stays: one account's login must not
                # wipe the failures the same address made guessing other accounts.
                self._records.pop(self._user_key(user), None)
                return True
            self._fail(keys, now)
            return False

    def _wait(self, keys: list[str], now: float) -> float:
        records = [self._records.get(key) for key in keys]
        return max([r.locked_until - now for r in records if r is not None] + [0.0])

    def _fail(self, keys: list[str], now: float) -> None:
        for key in keys:
            record = self._records.pop(key, None)
            if record is None or now - record.last_failure > FORGET_AFTER:
                record = _Record()
            record.failures += 1
            record.last_failure = now
            extra = record.failures - FREE_FAILURES
            if extra > 0:
                record.locked_until = now + min(FIRST_DELAY * 2 ** min(extra - 1, 30), MAX_DELAY)
            self._records[key] = record  # at the end: the most recently failed
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


@dataclass(frozen=True)
class Caller:
    """Who sent a UI event or request: the logged-in user (None: anonymous) and whether it came
    through a reverse proxy (which makes remote users look local)."""

    user: str | None = None
    proxied: bool = False


def ui_caller(request: Any) -> Caller:
    """The Caller of a Gradio event (`gr.Request`); anonymous when there is no request."""
    if request is None:
        return Caller()
    headers = getattr(request, "headers", None) or {}
    return Caller(getattr(request, "username", None) or None, any(h in headers for h in PROXY_HEADERS))


def _pairs(*users: dict[str, str]) -> list[tuple[str, str]]:
    return [pair for entries in users for pair in entries.items()]


@dataclass
class Access:
    ui_users: dict[str, str] = field(default_factory=dict)  # --gradio-auth / --gradio-auth-path
    api_only_users: dict[str, str] = field(default_factory=dict)  # --api-auth
    admins: frozenset[str] = frozenset()  # --admin-users
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # request -> the user name of its UI session cookie, or None; set by app.create_app once the
    # Gradio app exists (only it knows its session tokens).
    session_user: Callable[[Any], str | None] | None = None

    @classmethod
    def from_flags(cls, flags: argparse.Namespace) -> "Access":
        ui = parse_credentials(getattr(flags, "gradio_auth", None), getattr(flags, "gradio_auth_path", None))
        api = parse_credentials(getattr(flags, "api_auth", None))
        admins = frozenset(name.strip() for name in (getattr(flags, "admin_users", None) or "").split(",")
                           if name.strip())
        access = cls(ui, api, admins)
        unknown = sorted(admins - set(ui) - set(api))
        if admins and not access.login_required:
            log.warning("--admin-users has no effect without a login (--gradio-auth or --api-auth)")
        elif unknown:
            log.warning("--admin-users names %s, who cannot log in", ", ".join(unknown))
        return access

    @property
    def login_required(self) -> bool:
        return bool(self.ui_users or self.api_only_users)

    @property
    def api_users(self) -> dict[str, str]:
        """Who may use /sdapi: the --api-auth users; without them, the UI's users (a UI login
        must not leave the API, which changes the same things, open to anyone)."""
        return self.api_only_users or self.ui_users

    def is_admin(self, user: str | None) -> bool:
        """Without a login everyone is (A1111's rule); with one, only the --admin-users."""
        return not self.login_required or (user is not None and user in self.admins)

    def refusal(self, caller: Caller, action: str) -> str | None:
        """Why `caller` may not `action` ("manage extensions", ...) by role, or None if they may."""
        if self.is_admin(caller.user):
            return None
        if not self.admins:
            return (f"Only admins can {action}, and this WebUI names none: start it with "
                    "--admin-users NAME[,NAME2] (users of --gradio-auth or --api-auth).")
        who = f"you are logged in as {caller.user}" if caller.user else "you are not logged in"
        return f"Only admins can {action} ({who}; admins are named by --admin-users)."

    # -- password checks ---------------------------------------------------------------------
    def check_password(self, pairs: list[tuple[str, str]], user: str, password: str) -> bool:
        """Constant-time against every entry, so the time taken does not tell which names exist."""
        ok = False
        for known_user, known_password in pairs:
            same_user = secrets.compare_digest(user.encode(), known_user.encode())
            same_password = secrets.compare_digest(password.encode(), known_password.encode())
            ok |= same_user and same_password
        return ok

    def verify(self, pairs: list[tuple[str, str]], user: str, password: str, address: str | None) -> bool:
        """A throttled password check: raises Throttled while the user or the address is locked."""
        return self.throttle.attempt(user, address, lambda: self.check_password(pairs, user, password))

    def ui_password_ok(self, user: str, password: str) -> bool:
        """Gradio's own /login check. The guard (install_guard) has already run the throttled check
        with the client's address; this one, per user name, backs it up for any path it missed."""
        try:
            return self.verify(_pairs(self.ui_users), user, password, None)
        except Throttled:
            return False

    def request_user(self, request: Any, pairs: list[tuple[str, str]], allow_session: bool = True) -> str | None:
        """The user a request is logged in as: HTTP Basic credentials checked against `pairs`
        (raises Throttled), else (when `allow_session`) the UI session cookie; None if neither."""
        basic = basic_credentials(request.headers.get("authorization", ""))
        if basic is not None:
            user, password = basic
            return user if self.verify(pairs, user, password, client_address(request)) else None
        if allow_session and self.session_user is not None:
            return self.session_user(request)
        return None

    def any_user(self, request: Any) -> str | None:
        """For /internal, the docs and extensions' routes: any UI or API login will do."""
        return self.request_user(request, _pairs(self.ui_users, self.api_only_users))

    def api_user(self, request: Any) -> str | None:
        """For /sdapi: the API logins; a UI session counts only when there is no --api-auth."""
        return self.request_user(request, _pairs(self.api_users), allow_session=not self.api_only_users)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header; None for anything else."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, colon, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if colon else None


def client_address(request: Any) -> str | None:
    client = getattr(request, "client", None)
    return client.host if client else None


# Gradio writes its API description (endpoint names, component values: checkpoint and extension
# names, settings) into every page, even the login page shown to anonymous visitors.
_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
_EMPTY_API_INFO = b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'


def without_api_info(page: bytes) -> bytes:
    return _API_INFO.sub(lambda _: _EMPTY_API_INFO, page)


# -- the guard in front of every route -------------------------------------------------------
MAX_LOGIN_BODY = 64 * 1024  # a login form is a few bytes; more is refused before it is read


def _error(status: int, detail: str, headers: dict | None = None):
    from starlette.responses import JSONResponse

    # The /sdapi error shape, so API clients read every refusal the same way.
    return JSONResponse({"error": "HTTPException", "detail": detail, "body": "", "errors": ""},
                        status_code=status, headers=headers)


def _throttled(error: Throttled):
    return _error(429, str(error), {"Retry-After": str(error.retry_after)})


def _outside_gradio(app, scope: dict) -> bool:
    """Whether a route of our own (the API, /internal, the docs, an extension's) answers this
    path rather than the Gradio app, which has its own login check."""
    from starlette.routing import Match

    gradio = getattr(app.state, "gradio_mount", None)
    return any(route is not gradio and route.matches(scope)[0] != Match.NONE for route in app.router.routes)


def install_guard(app, access: Access) -> None:
    """The middleware that puts every route behind the login when one is set:

    - our own routes (/sdapi, /internal, /docs, /redoc, /openapi.json, extensions' routes) need a
      UI session or HTTP Basic credentials (/sdapi then checks its own users again);
    - Gradio's /login is throttled per user name and client address;
    - Gradio's pages go to anonymous visitors (the login form) without their API description;
    - WebSocket handshakes to our routes (an extension's `@app.websocket`) need a login too (WebSocketGuard).
    """

    @app.middleware("http")
    async def guard(request, call_next):
        # CORS preflights carry no credentials by design, and answer nothing about the instance.
        if not access.login_required or (request.method == "OPTIONS"
                                         and "access-control-request-method" in request.headers):
            return await call_next(request)
        gradio = getattr(app.state, "gradio_mount", None)
        if _outside_gradio(app, request.scope):
            try:
                user = access.any_user(request)
            except Throttled as error:
                return _throttled(error)
            if user is None:
                return _error(401, "Log in first: HTTP Basic credentials or a UI session are required",
                              {"WWW-Authenticate": "Basic"})
            request.state.user = user
            return await call_next(request)
        if gradio is None or not access.ui_users:
            return await call_next(request)
        if request.method == "POST" and request.url.path.rstrip("/") == f"{gradio.path}/login":
            return await _login(request, call_next)
        if request.method in ("GET", "HEAD") and access.session_user(request) is None:
            return await _anonymous_page(await call_next(request))
        return await call_next(request)

    app.add_middleware(WebSocketGuard, site=app, access=access)

    async def _login(request, call_next):
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_LOGIN_BODY:  # the server frames the body by it
            return _error(413, f"a login form needs a Content-Length of at most {MAX_LOGIN_BODY} bytes")
        await request.body()  # cached: Gradio's own handler reads it again
        form = await request.form()
        user, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        try:
            if not access.verify(_pairs(access.ui_users), user, password, client_address(request)):
                return _error(400, "Incorrect credentials.")
        except Throttled as error:
            return _throttled(error)
        return await call_next(request)

    async def _anonymous_page(response):
        if not response.headers.get("content-type", "").startswith("text/html"):
            return response
        from starlette.responses import Response

        body = without_api_info(b"".join([chunk async for chunk in response.body_iterator]))
        page = Response(body, status_code=response.status_code)
        page.raw_headers = [(k, v) for k, v in response.raw_headers if k.lower() != b"content-length"] + [
            (b"content-length", str(len(body)).encode())]
        return page


class WebSocketGuard:
    """The login check for WebSocket handshakes, which an "http" middleware never sees: with a login set,
    a handshake to any route but Gradio's (which has its own login) needs a UI session cookie or HTTP
    Basic credentials, as our HTTP routes do; the route finds the user in `websocket.state.user`."""

    def __init__(self, app, site, access: Access):
        self.app, self.site, self.access = app, site, access

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and self.access.login_required and _outside_gradio(self.site, scope):
            from starlette.requests import HTTPConnection
            from starlette.websockets import WebSocket

            try:
                user, refusal = self.access.any_user(HTTPConnection(scope)), None
            except Throttled as error:
                user, refusal = None, _throttled(error)
            if user is None:
                socket = WebSocket(scope, receive, send)
                if "websocket.http.response" not in scope.get("extensions", {}):
                    return await socket.close(1008)  # the server answers the handshake with a bare 403
                return await socket.send_denial_response(refusal or _error(
                    401, "Log in first: HTTP Basic credentials or a UI session are required",
                    {"WWW-Authenticate": "Basic"}))
            scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)
