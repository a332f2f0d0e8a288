"""What keeps the console safe to expose: the token (a header, or a session cookie made by
signing in with it), a CSRF token on every form, a same-origin check on every action, and
security headers on every response."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saga_actors.ops.console.settings import ConsoleSettings, token_hash

SESSION_COOKIE = "saga_console_session"
SESSION_MAX_AGE_S = 12 * 3600

HEADERS = {
    # no inline script or style may run: everything the page runs is the console's own file
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # (no-referrer makes Chromium send Origin: null)
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """ASGI middleware: the headers above on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *(
                    (k.encode(), v.encode()) for k, v in HEADERS.items()
                    if k.encode() not in have)]
            await send(message)

        await self.app(scope, receive, with_headers)


class Guard:
    """Who may read and who may act. Keeps only the token's hash; a session cookie is a
    random nonce signed with it, and the CSRF token is derived from the same nonce."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self._key = bytes.fromhex(settings.token_sha256) if settings.token_sha256 else None
        self.open_read = settings.open_read

    @property
    def has_token(self) -> bool:
        return self._key is not None

    def _sign(self, what: str, nonce: str) -> str:
        assert self._key is not None
        return hmac.new(self._key, f"{what}:{nonce}".encode(), hashlib.sha256).hexdigest()

    def token_ok(self, token: str) -> bool:
        return self._key is not None and hmac.compare_digest(
            bytes.fromhex(token_hash(token)), self._key)

    def new_session(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._sign('session', nonce)}"

    def _nonce(self, request: Request) -> str | None:
        value = request.cookies.get(SESSION_COOKIE, "")
        nonce, _, mac = value.partition(".")
        if self._key is None or not nonce or not same(mac, self._sign("session", nonce)):
            return None
        return nonce

    def bearer(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(token.strip())

    def signed_in(self, request: Request) -> bool:
        return self.bearer(request) or self._nonce(request) is not None

    def may_read(self, request: Request) -> bool:
        return self.open_read or self.signed_in(request)

    def csrf_token(self, request: Request) -> str:
        nonce = self._nonce(request)
        return self._sign("csrf", nonce)[:32] if nonce else ""

    def action_refusal(self, request: Request, form_csrf: str | None) -> str | None:
        """Why this POST may not act (None: it may). A bearer token is enough; a browser
        session also needs the form's CSRF token and a same-origin request."""
        if self._key is None:
            return ("actions are off: the console has no token (start it with --token, "
                    "or with Ray's token authentication on)")
        if self.bearer(request):
            return None
        if self._nonce(request) is None:
            return "refused: sign in with the console's token to act on sagas"
        if not same_origin(request):
            return "refused: the request came from another site"
        if not form_csrf or not same(form_csrf, self.csrf_token(request)):
            return "refused: the form's CSRF token is missing or wrong (reload the page)"
        return None


def same(given: str, expected: str) -> bool:
    """Constant-time equality of what a client sent (any text) and what we expect."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def same_origin(request: Request) -> bool:
    """The browser says the request comes from this site (or says nothing of where it comes
    from: not a browser; the CSRF token is checked all the same)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", request.url.netloc)
