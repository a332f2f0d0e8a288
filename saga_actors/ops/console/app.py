"""The saga console as an ASGI application (Starlette, which Ray Serve itself runs on):
server-rendered pages, a small script of its own for live refresh and confirmations, no
build step. The same app runs in a Ray Serve replica and in ``saga-actors console``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from saga_actors.ops.console import forms, pages
from saga_actors.ops.console.layout import STATUSES, flash, frame
from saga_actors.ops.console.security import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    Guard,
    SecurityHeaders,
)
from saga_actors.ops.console.settings import ConsoleSettings
from saga_actors.ops.console.source import ConsoleError, Source

STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
LONG_POLL_S = 20.0  # the longest a live part's request is held while nothing changes


def build_app(settings: ConsoleSettings, source: Source | None = None) -> Starlette:
    """The console for ``settings`` (``source``: where it reads and acts; by default the
    cluster the settings name)."""
    console = Console(settings, source or Source(settings))
    routes = [
        Route("/", console.overview), Route("/sagas", console.saga_list),
        Route("/sagas/{saga_id:path}", console.saga),
        Route("/live/overview", console.overview_live),
        Route("/live/sagas/{saga_id:path}", console.saga_live),
        Route("/act/{action}/{saga_id:path}", console.act, methods=["POST"]),
        Route("/login", console.login, methods=["GET", "POST"]),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/api/overview", console.api_overview),
        Route("/api/sagas", console.api_list),
        Route("/api/sagas/{saga_id:path}", console.api_saga),
        Route("/static/{name}", console.static),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


class Console:
    """The route handlers; reads and actions run in Starlette's thread pool (each is a
    blocking call to the registry or the supervisor)."""

    def __init__(self, settings: ConsoleSettings, source: Source) -> None:
        self.settings, self.source, self.guard = settings, source, Guard(settings)

    # --- helpers ----------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def _page(self, request: Request, title: str, body: str, active: str = "",
              status: int = 200) -> HTMLResponse:
        html = frame(self._base(request), title, body, active=active,
                     signed_in=self.guard.signed_in(request), can_sign_in=self.guard.has_token)
        return HTMLResponse(html, status_code=status)

    def _must_read(self, request: Request) -> Response | None:
        if self.guard.may_read(request):
            return None
        base = self._base(request)
        if request.url.path.startswith((f"{base}/live/", f"{base}/api/")):
            return JSONResponse({"error": "sign in with the console's token"}, 401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{self._base(request)}/login?next={quote(target, safe='')}", 303)

    async def _ask(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A blocking call to the registry or the supervisor, off the event loop."""
        return await run_in_threadpool(fn, *args, **kwargs)

    def _error(self, request: Request, exc: ConsoleError) -> HTMLResponse:
        return self._page(request, "Error", flash(("error", exc.message)), status=exc.status)

    # --- pages --------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        if (refused := self._must_read(request)) is not None:
            return refused
        try:
            ov = await self._ask(self.source.overview)
        except ConsoleError as exc:
            return self._error(request, exc)
        live = pages.overview_live(self._base(request), ov)
        body = pages.overview(live, self._base(request), self.settings.overview_every_s,
                              tag=tag_of(live))
        return self._page(request, "Overview", body, "overview")

    async def overview_live(self, request: Request) -> Response:
        """The overview's live part, once it differs from the page's copy (long-polled:
        see :meth:`_until_changed`)."""
        if (refused := self._must_read(request)) is not None:
            return refused

        async def current() -> tuple[str, str, bool]:
            html = pages.overview_live(self._base(request), await self._ask(
                self.source.overview))
            return tag_of(html), html, False

        return await self._until_changed(request, current, self.settings.overview_every_s)

    async def saga_list(self, request: Request) -> Response:
        if (refused := self._must_read(request)) is not None:
            return refused
        q = request.query_params
        shown = {k: q.get(k, "").strip() for k in ("q", "status", "type", "version", "within",
                                                   "since", "until")}
        try:
            filters, page = list_filters(q), whole(q, "page", 0, 1_000_000)
        except ValueError as exc:
            body = flash(("error", str(exc))) + pages.saga_list(
                self._base(request), [], shown, page=0, more=False)
            return self._page(request, "Sagas", body, "list", status=400)
        size = self.settings.page_size
        try:
            rows = await self._ask(self.source.sagas, **filters, limit=size + 1,
                                    offset=page * size)
        except ConsoleError as exc:
            return self._error(request, exc)
        body = pages.saga_list(self._base(request), rows[:size], shown, page=page,
                               more=len(rows) > size)
        return self._page(request, "Sagas", body, "list")

    async def saga(self, request: Request, message: tuple[str, str] | None = None,
                   status: int = 200) -> Response:
        if (refused := self._must_read(request)) is not None:
            return refused
        saga_id = request.path_params["saga_id"]
        try:
            info = await self._ask(self.source.saga, saga_id)
        except ConsoleError as exc:
            return self._error(request, exc)
        shown = refusal = None
        if request.query_params.get("input") == "1":
            try:
                shown = await self._ask(self.source.saga_input, saga_id)
            except ConsoleError as exc:
                refusal = exc.message
        base = self._base(request)
        body = flash(message) + pages.saga_page(
            base, info, every_s=self.settings.live_every_s, tag=str(info["seq"]),
            actions=forms.actions(base, info, csrf=self.guard.csrf_token(request),
                                  signed_in=self.guard.signed_in(request),
                                  enabled=self.guard.has_token),
            saga_input=forms.saga_input(base, saga_id, shown, refusal))
        return self._page(request, f"Saga {saga_id}", body, status=status)

    async def saga_live(self, request: Request) -> Response:
        """The saga's live part, once it has moved past the page's copy: its last
        transition's number, a cheap question to the registry, says whether it has."""
        if (refused := self._must_read(request)) is not None:
            return refused
        saga_id, have = request.path_params["saga_id"], request.query_params.get("have")

        async def current() -> tuple[str, str | None, bool]:
            seq = str(await self._ask(self.source.seq, saga_id))
            if seq == have:
                return seq, None, False
            info = await self._ask(self.source.saga, saga_id)
            return (str(info["seq"]), pages.saga_live(self._base(request), info),
                    info["status"] in pages.FINAL)

        return await self._until_changed(request, current, self.settings.live_every_s)

    async def _until_changed(self, request: Request, current: Any, every_s: float) -> Response:
        """Long polling: ``current()`` every ``every_s`` until its tag differs from the
        page's (``have``), for up to ``wait`` seconds (at most ``LONG_POLL_S``); then the
        new content, or nothing (204). A tab watching a saga that waits asks once in
        ``LONG_POLL_S`` instead of every second."""
        have = request.query_params.get("have")
        try:
            wait = float(request.query_params.get("wait") or 0)
        except ValueError:
            wait = 0.0
        wait = min(wait, LONG_POLL_S) if math.isfinite(wait) and wait > 0 else 0.0
        deadline = time.monotonic() + wait
        try:
            while True:
                tag, html, final = await current()
                if tag != have or time.monotonic() >= deadline or \
                        await request.is_disconnected():
                    break
                await asyncio.sleep(min(every_s, max(0.0, deadline - time.monotonic())))
        except ConsoleError as exc:
            return HTMLResponse(flash(("error", exc.message)), exc.status)
        headers = {"x-live-tag": tag, **({"x-saga-final": "1"} if final else {})}
        if tag == have or html is None:
            return Response(status_code=204, headers=headers)
        return HTMLResponse(html, headers=headers)

    # --- actions ------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        action, saga_id = request.path_params["action"], request.path_params["saga_id"]
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"),
                              keep_blank_values=True))
        if action not in forms.ACTIONS:
            return self._page(request, "Error", flash(("error", f"no action {action!r}: "
                              f"the console does {', '.join(forms.ACTIONS)}")), status=404)
        refusal = self.guard.action_refusal(request, form.get("csrf"))
        if refusal is not None:
            code = 403 if self.guard.signed_in(request) or not self.guard.has_token else 401
            if self.guard.bearer(request) or "json" in request.headers.get("accept", ""):
                return JSONResponse({"error": refusal}, code)
            return self._page(request, "Refused", flash(("error", refusal)), status=code)
        api = self.guard.bearer(request)
        if form.get("confirm") != "yes" and not api:
            return self._page(request, "Confirm", forms.confirm(
                self._base(request), action, saga_id, form))
        try:
            fields = action_fields(action, form)
            answer = await self._ask(self.source.act, action, saga_id, **fields)
        except (ConsoleError, ValueError) as exc:
            message, code = (exc.message, exc.status) if isinstance(exc, ConsoleError) \
                else (str(exc), 400)
            if api:
                return JSONResponse({"error": message}, code)
            return await self.saga(request, ("error", message), status=code)
        if api:
            return JSONResponse({"answer": answer})
        return await self.saga(request, ("ok", answer))

    # --- signing in ---------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        base = self._base(request)
        if request.method == "GET":
            return self._page(request, "Sign in", forms.login(
                base, safe_next(base, request.query_params.get("next")), None,
                self.settings.token_source))
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        next_url = safe_next(base, form.get("next"))
        if not self.guard.has_token:
            error = "this console has no token: nobody can sign in (it is read-only)"
        elif not self.guard.token_ok(form.get("token", "").strip()):
            error = "wrong token"
        else:
            done = RedirectResponse(next_url, 303)
            done.set_cookie(SESSION_COOKIE, self.guard.new_session(), max_age=SESSION_MAX_AGE_S,
                            path=base or "/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
            return done
        return self._page(request, "Sign in", forms.login(base, next_url, error,
                                                           self.settings.token_source),
                          status=401)

    async def logout(self, request: Request) -> Response:
        done = RedirectResponse(f"{self._base(request)}/login", 303)
        done.delete_cookie(SESSION_COOKIE, path=self._base(request) or "/")
        return done

    # --- JSON, for scripts (and the pages' numbers, in tests) -----------------------------

    async def api_overview(self, request: Request) -> Response:
        return await self._api(request, self.source.overview)

    async def api_list(self, request: Request) -> Response:
        q = request.query_params
        try:
            filters = list_filters(q)
            limit = whole(q, "limit", 1, 1000, default=self.settings.page_size)
            offset = whole(q, "offset", 0, 100_000_000)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return await self._api(request, self.source.sagas, **filters, limit=limit,
                               offset=offset)

    async def api_saga(self, request: Request) -> Response:
        return await self._api(request, self.source.saga, request.path_params["saga_id"])

    async def _api(self, request: Request, fn: Any, *args: Any, **kwargs: Any) -> Response:
        if (refused := self._must_read(request)) is not None:
            return refused
        try:
            return JSONResponse(await self._ask(fn, *args, **kwargs))
        except ConsoleError as exc:
            return JSONResponse({"error": exc.message}, exc.status)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", 404)
        text = resources.files("saga_actors.ops.console").joinpath("static", name).read_text()
        return Response(text, media_type=STATIC[name],
                        headers={"cache-control": "public, max-age=300"})


def tag_of(html: str) -> str:
    """What a live part's copy is: the same tag, the same content."""
    return hashlib.sha1(html.encode()).hexdigest()[:16]


def list_filters(q: Any) -> dict[str, Any]:
    """The list's query string as registry filters; ValueError says which one is wrong."""
    out: dict[str, Any] = {}
    status = (q.get("status") or "").strip().upper()
    if status:
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        out["status"] = status
    if (saga_type := (q.get("type") or "").strip()):
        out["saga_type"] = saga_type
    if (version := (q.get("version") or "").strip()):
        if not version.isdigit() or int(version) < 1:
            raise ValueError(f"version {version!r} is not a whole number from 1")
        out["version"] = int(version)
    if (prefix := (q.get("q") or "").strip()):
        out["id_prefix"] = prefix
    if (within := (q.get("within") or "").strip()):
        if not within.isdigit():
            raise ValueError(f"created within {within!r}: not a number of seconds")
        out["since"] = time.time() - int(within)
    for key, name in (("since", "from"), ("until", "to")):
        if (text := (q.get(key) or "").strip()):
            try:
                at = datetime.fromisoformat(text).timestamp()
            except ValueError:
                raise ValueError(f"{name} {text!r} is not a date and time "
                                 "(YYYY-MM-DDTHH:MM[:SS])") from None
            out[key] = max(at, out.get(key, at)) if key == "since" else at
    return out


def whole(q: Any, name: str, low: int, high: int, *, default: int = 0) -> int:
    """A whole-number query parameter within [low, high]; ValueError says which."""
    text = (q.get(name) or "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name} {text!r} is not a whole number from {low} to {high:,}")
    return int(text)


def action_fields(action: str, form: dict[str, str]) -> dict[str, Any]:
    """A form's fields as the action's arguments; ValueError for a bad one."""
    if action == "cancel":
        return {"reason": form.get("reason", "").strip() or "cancelled by operator"}
    if action == "resolve":
        return {"note": form.get("note", "")}
    if action == "signal":
        name = form.get("name", "").strip()
        if not name:
            raise ValueError("a signal needs a name")
        try:
            payload = json.loads(form.get("data") or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"the payload is not JSON: {exc}") from None
        return {"name": name, "payload": payload, "signal_id": form.get("signal_id") or None}
    return {}


def safe_next(base: str, target: str | None) -> str:
    """Where to go after signing in: a path of this console only (no open redirect)."""
    if target and target.startswith(f"{base}/") and not target.startswith("//") \
            and "\\" not in target and all(ch >= " " for ch in target):
        return target
    return f"{base}/"
