"""The request pipeline and the aiohttp front end.

Order of a Graph request: fault rules (as sent) -> path normalisation -> token check -> `/me`
rewrite -> route -> permission -> per (app, mailbox) throttle -> handler. `$batch` feeds inner
requests back through `dispatch_graph`, so they get the same checks and limits.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import logging
import time
import uuid
from urllib.parse import unquote
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from . import control, mail, users
from .http import GraphError, Prefer, Request, Response, Router, normalise_path
from .identity import IdentityService
from .state import EmulatorState, FaultRule

log = logging.getLogger("connector.emulator")

RouteModule = Any  # a module with register(router, control, state) and optionally seed(state, mailbox, spec)


def route_modules() -> list[RouteModule]:
    """Every module that contributes routes, in registration order."""
    mods: list[RouteModule] = [users, mail, control]
    for name in ("calendar", "contacts", "todo", "batch", "subscriptions"):
        try:
            mods.append(__import__(f"{__package__}.{name}", fromlist=["register"]))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
    return mods


class Dispatcher:
    """Routes identity, control and Graph requests to their handlers."""

    def __init__(self, state: EmulatorState, modules: Iterable[RouteModule] | None = None) -> None:
        self.state = state
        self.graph = Router()
        self.control = Router()
        self.identity = IdentityService(state)
        state.extensions["identity"] = self.identity
        state.extensions["dispatcher"] = self
        for mod in modules if modules is not None else route_modules():
            mod.register(self.graph, self.control, state)

    # faults ---------------------------------------------------------------------------------
    def _fault(self, method: str, target: str, path: str) -> FaultRule | None:
        # Match the target as sent and its normalised, decoded form, so "/v1.0/users/*" also catches the
        # SDK's "/v1.0//users/adele%40contoso.com/...delta()" (graph-v1.md §7.2).
        if not self.state.faults:
            return None
        qs = target.partition("?")[2]
        norm = unquote(normalise_path(path))
        targets = (target, path, f"{norm}?{qs}" if qs else norm, norm)
        for rule in self.state.faults:
            m = rule.spec.match
            if m.method and m.method.upper() != method:
                continue
            if not any(fnmatch.fnmatchcase(t, m.path) for t in targets):
                continue
            if m.user:
                mb = self.state.tenant.find(m.user)
                ids = {m.user.lower()} | ({mb.id.lower(), mb.upn.lower()} if mb else set())
                segs = unquote(path).lower().split("/")
                if "users" not in segs or segs.index("users") + 1 >= len(segs) or segs[segs.index("users") + 1] not in ids:
                    continue
            if rule.consider():
                return rule
        return None

    def fault_for(self, method: str, target: str) -> FaultRule | None:
        """The fault rule that fires for `method target` ("/v1.0/..." as sent), counting it; `$batch` applies it to inner requests."""
        return self._fault(method, target, target.split("?", 1)[0])

    def fault_response(self, rule: FaultRule) -> Response:
        """The canned response of a `respond` fault rule."""
        return self._fault_response(rule)

    @staticmethod
    def _fault_response(rule: FaultRule) -> Response:
        r = rule.spec.respond
        assert r is not None
        headers = {}
        if r.retry_after is not None:
            # The scenario model reads `retry_after: 1` as 1.0; "1.0" would defeat kiota's int() parse (graph-v1.md §7.6).
            ra = r.retry_after
            headers["Retry-After"] = str(int(ra)) if isinstance(ra, float) and ra.is_integer() else str(ra)
        if r.body is not None:
            body = r.body if isinstance(r.body, (bytes, str)) else orjson.dumps(r.body)
            return Response(r.status, body.encode() if isinstance(body, str) else body, headers, "application/json" if not isinstance(r.body, str) else "text/plain")
        if r.code is None and r.message is None and r.status >= 500:
            return Response(r.status, b"", headers, "text/plain")  # Outlook's 503s come with an empty body
        code = r.code or {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout"}.get(r.status, "UnknownError")
        return GraphError(r.status, code, r.message or "Fault injected by the emulator.", headers=headers).to_response()

    # entry points ---------------------------------------------------------------------------
    async def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes, *, loopback: bool = True) -> Response:
        """Answer one HTTP request given as method, path-and-query as sent, lower-case headers and body."""
        path, _, qs = target.partition("?")
        if path.startswith("/_emulator"):
            if not loopback:
                return GraphError(403, "Forbidden", "The control API only answers loopback clients.").to_response()
            return await self._run(self.control, self._request(method, path, target, qs, headers, body), auth=False)
        rule = self._fault(method, target, path)
        delay = 0.0
        if rule is not None:
            if rule.spec.reset:
                return Response(0, reset=True)
            if rule.spec.delay_ms is None:
                return self._fault_response(rule)
            delay = rule.spec.delay_ms / 1000
        collapsed = normalise_path(path)
        if collapsed.startswith("/v1.0/") or collapsed == "/v1.0":
            req = self._request(method, collapsed[5:] or "/", target, qs, headers, body)
            req.delay = delay
            return await self.dispatch_graph(req)
        if delay:
            await asyncio.sleep(delay)
        try:
            return self._identity(method, collapsed, headers, body)
        except Exception as exc:  # like the Graph half: a bug answers in the service's shape, never a traceback
            log.exception("emulator identity handler failed for %s %s", method, collapsed)
            from .identity import aad_error

            return aad_error(500, "server_error", 90033, f"A transient error has occurred ({type(exc).__name__}). Please try again.")

    def _request(self, method: str, path: str, target: str, qs: str, headers: dict[str, str], body: bytes) -> Request:
        from urllib.parse import parse_qsl

        query: dict[str, str] = {}
        for k, v in parse_qsl(qs, keep_blank_values=True):
            query[k.lower()] = v
        return Request(method, path, target, query, headers, body, self.state.origin, prefer=Prefer.parse(headers.get("prefer")))

    def _identity(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        parts = path.strip("/").split("/")
        ct = headers.get("content-type", "")
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"] and method == "GET":
            return self.identity.openid_configuration(parts[0])
        if len(parts) == 4 and parts[1:3] == ["oauth2", "v2.0"] and method == "POST":
            if parts[3] == "token":
                return self.identity.token(parts[0], body, ct)
            if parts[3] == "devicecode":
                return self.identity.device_authorize(parts[0], body)
        if len(parts) == 4 and parts[1:] == ["discovery", "v2.0", "keys"]:
            return self.identity.jwks()
        return GraphError(404, "NotFound", f"No endpoint at {path}.").to_response()

    async def dispatch_graph(self, req: Request) -> Response:
        """The Graph half of the pipeline; also used for `$batch` inner requests."""
        return await self._run(self.graph, req, auth=True)

    async def _run(self, router: Router, req: Request, *, auth: bool) -> Response:
        started = time.perf_counter()
        slot: tuple[str, str] | None = None
        mailbox_name = ""
        try:
            if auth:
                req.principal = self.identity.authenticate(req)
                if req.path == "/me" or req.path.startswith("/me/"):
                    if req.principal.app_only:
                        raise GraphError(400, "Request_BadRequest", "/me request is only valid with delegated authentication flow.")
                    req.path = f"/users/{req.principal.user_id}{req.path[3:]}"
            route, params = router.match(req.method, req.path)
            # Route parameters arrive percent-encoded (msgraph-sdk sends users/adele%40contoso.com); Graph decodes them.
            req.params = {k: unquote(v) for k, v in params.items()}
            if auth:
                self._authorize(route.app_roles, route.scopes, req)
                if "user" in req.params:
                    mb = self.state.tenant.find(req.params["user"])
                    if mb is not None:
                        mailbox_name = mb.upn
                        assert req.principal is not None
                        self.state.throttle.enter(req.principal.client_id, mb.id)
                        slot = (req.principal.client_id, mb.id)
            if req.delay:
                await asyncio.sleep(req.delay)  # a slow response still occupies its concurrency slot
            resp = await route.handler(req)
        except GraphError as err:
            resp = err.to_response(req.headers.get("client-request-id"))
        except Exception as exc:  # a bug must still answer like Graph, never with a traceback
            log.exception("emulator handler failed for %s %s", req.method, req.path)
            resp = GraphError(500, "InternalServerError", f"The emulator failed: {type(exc).__name__}.").to_response()
        finally:
            if slot is not None:
                self.state.throttle.leave(*slot)
        if auth or req.in_batch:
            self.state.stats_status[resp.status] += 1
            self.state.request_log.append(
                {"method": req.method, "path": req.raw_target, "status": resp.status, "mailbox": mailbox_name,
                 "ms": round((time.perf_counter() - started) * 1000, 2), "batch": req.in_batch}
            )
        rid = req.headers.get("client-request-id")
        if rid:
            resp.headers.setdefault("client-request-id", rid)
        resp.headers.setdefault("request-id", str(uuid.uuid4()))
        return resp

    def _authorize(self, app_roles: frozenset[str], scopes: frozenset[str], req: Request) -> None:
        p = req.principal
        assert p is not None
        if not app_roles and not scopes:
            return
        if p.app_only and not (p.roles & app_roles):
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        if not p.app_only and not (p.scopes & scopes):
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def make_app(dispatcher: Dispatcher) -> web.Application:
    """The aiohttp application: one catch-all handler feeding the dispatcher."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        resp = await dispatcher.dispatch(request.method, request.raw_path, headers, body, loopback=_is_loopback(request.remote))
        if resp.reset:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        out = web.Response(status=resp.status, body=resp.body, headers=resp.headers)
        if resp.content_type:
            out.headers["Content-Type"] = resp.content_type
        return out

    app = web.Application(client_max_size=200 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app

