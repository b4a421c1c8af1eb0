"""Transport-neutral request/response types, Graph error envelopes and the path router.

Handlers never see aiohttp: the same `Request` is built for a socket request and for an inner
`$batch` request, so throttling, auth and routing behave identically in both.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

JSON_CT = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    """Graph's DateTimeOffset rendering: UTC with a trailing Z, no fractional part."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Prefer:
    """The parsed `Prefer` header (kiota joins several values with ", " in set order)."""

    maxpagesize: int | None = None
    immutable_id: bool = False
    body_content_type: str | None = None
    timezone: str | None = None

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        """Parse an unordered comma list, honouring quotes around values."""
        p = cls()
        if not header:
            return p
        for part in re.findall(r'(?:[^,"]|"[^"]*")+', header):
            name, _, value = part.strip().partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "odata.maxpagesize" and value.isdigit():
                p.maxpagesize = int(value)
            elif name == "idtype":
                p.immutable_id = value.lower() == "immutableid"
            elif name == "outlook.body-content-type":
                p.body_content_type = value.lower()
            elif name == "outlook.timezone":
                p.timezone = value
        return p


@dataclass(slots=True)
class Principal:
    """Who is calling, from a verified access token."""

    tenant_id: str
    client_id: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    user_id: str | None = None  # set for delegated tokens

    @property
    def app_only(self) -> bool:
        """True for client-credential tokens."""
        return self.user_id is None


@dataclass(slots=True)
class Request:
    """One Graph request as the handlers see it."""

    method: str
    path: str  # routed path, normalised, without the /v1.0 prefix
    raw_target: str  # path and query exactly as sent (fault globs match this)
    query: dict[str, str]  # keys lower-cased; "$select" and "%24select" are the same key
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    origin: str  # scheme://host:port of the emulator, for minting absolute links
    params: dict[str, str] = field(default_factory=dict)
    principal: Principal | None = None
    prefer: Prefer = field(default_factory=Prefer)
    in_batch: bool = False
    delay: float = 0.0  # seconds a delay_ms fault adds while the request holds its throttle slot

    def json(self) -> Any:
        """The body as JSON; a Graph 400 when it is not."""
        if not self.body:
            raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise GraphError(400, "BadRequest", f"Unable to read JSON request payload: {exc}") from None
        # Every Graph body the emulator accepts is an object; only control routes take lists (fault rules).
        if not isinstance(data, dict) and not self.path.startswith("/_emulator"):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload: a JSON object was expected.")
        return data

    @property
    def graph_base(self) -> str:
        """Absolute Graph root on this emulator, for nextLink and deltaLink."""
        return f"{self.origin}/v1.0"


@dataclass(slots=True)
class Response:
    """A complete response; body is already serialised."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = JSON_CT
    reset: bool = False  # drop the connection instead of answering (fault injection)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise `data` with orjson."""
    return Response(status, orjson.dumps(data), headers or {})


def empty(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    """A bodiless response such as 202 Accepted or 204 No Content."""
    return Response(status, b"", headers or {}, content_type=None)


class GraphError(Exception):
    """A Graph error answered with Graph's envelope: {"error": {"code", "message", "innerError"}}."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        inner_code: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.inner_code = inner_code

    def to_response(self, client_request_id: str | None = None) -> Response:
        """The error as Graph sends it, with request-id and date in innerError."""
        request_id = str(uuid.uuid4())
        inner: dict[str, Any] = {"date": utcnow().strftime("%Y-%m-%dT%H:%M:%S"), "request-id": request_id}
        if client_request_id:
            inner["client-request-id"] = client_request_id
        if self.inner_code:
            inner["code"] = self.inner_code
        body = {"error": {"code": self.code, "message": self.message, "innerError": inner}}
        headers = {"request-id": request_id, **self.headers}
        return Response(self.status, orjson.dumps(body), headers)


def not_found(what: str = "The specified object was not found in the store.") -> GraphError:
    """Outlook's 404 for an unknown item or folder id."""
    return GraphError(404, "ErrorItemNotFound", what)


def bad_request(message: str, code: str = "ErrorInvalidParameter") -> GraphError:
    """A 400 in Graph's envelope."""
    return GraphError(400, code, message)


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """One routed endpoint and the permissions that may call it."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    app_roles: frozenset[str]  # any one of these application permissions suffices
    scopes: frozenset[str]  # any one of these delegated scopes suffices
    template: str


_SEGMENT = re.compile(r"\{(\w+)\}")


class Router:
    """Matches normalised Graph paths to handlers. Literal segments are case-insensitive, as in Graph."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(
        self,
        method: str,
        template: str,
        handler: Handler,
        *,
        app: tuple[str, ...] = (),
        delegated: tuple[str, ...] = (),
    ) -> None:
        """Register `template` such as "/users/{user}/mailFolders/{folder}/messages/delta"."""
        parts = []
        for seg in template.strip("/").split("/"):
            m = _SEGMENT.fullmatch(seg)
            parts.append(f"(?P<{m.group(1)}>[^/]+)" if m else re.escape(seg))
        pattern = re.compile("^/" + "/".join(parts) + "$", re.IGNORECASE)
        self.routes.append(Route(method, pattern, handler, frozenset(app), frozenset(delegated), template))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for (method, path); Graph-shaped 400/405 when none."""
        path_matched = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            path_matched = True
            if route.method == method:
                return route, m.groupdict()
        if path_matched:
            raise GraphError(405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed for '{path}'.")
        segment = path.strip("/").split("/")[-1] or path
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


_PAREN = re.compile(r"([A-Za-z.]+)\('([^']*)'\)")
_PAREN_BARE = re.compile(r"([A-Za-z.]+)\(([^)'/]+)\)")


def normalise_path(path: str) -> str:
    """Collapse '//', rewrite `x('id')` to `x/id`, and `delta()` / `microsoft.graph.delta` to `delta`.

    msgraph-sdk sends `/v1.0//users/...` by default and calls `delta()` (graph-v1.md §1, §2.8).
    """
    path = re.sub(r"/{2,}", "/", path)
    path = _PAREN.sub(r"\1/\2", path)
    path = _PAREN_BARE.sub(r"\1/\2", path)
    path = re.sub(r"(?i)/(microsoft\.graph\.)?(delta|send|move|reauthorize)\(\)", r"/\2", path)
    path = re.sub(r"(?i)/microsoft\.graph\.(delta|send|move|sendMail)(?=/|$)", r"/\1", path)
    if len(path) > 1:
        path = path.rstrip("/")
    return path
