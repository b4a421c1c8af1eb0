"""The Graph client: msgraph-sdk's request adapter for building, auth and middleware; raw bytes and orjson for pages.

Retry lives here and only here (tenacity): 429, 503, 504, dropped connections and malformed pages
are retried with `Retry-After` honoured (integer or fractional) or exponential backoff with jitter.
The SDK's own RetryHandler is left out of the middleware so nothing retries twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider
from kiota_abstractions.method import Method
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_abstractions.request_information import RequestInformation
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.options import ResponseHandlerOption
from msgraph import GraphServiceClient
from msgraph.graph_request_adapter import GraphRequestAdapter, options as graph_options
from msgraph_core import GraphClientFactory
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from ..errors import FatalGraphError, GraphError, MalformedPageError, TransientGraphError, UnreachableError, classify
from .auth import TokenProvider

log = logging.getLogger("connector.graph")


@dataclass(slots=True)
class CallStats:
    """Counters a caller passes in to see what its requests cost."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    refreshes: int = 0


@dataclass(slots=True)
class Page:
    """A parsed Graph response body."""

    data: dict[str, Any]
    size: int


class _Unreachable(Exception):
    """A connect failure, retried like a transient error and surfaced as UnreachableError."""


# The future a request started with `GraphClient.start` resolves once it is written to its connection. It is set in the
# request's own task, so the httpcore trace callback below (which runs in that task) finds it.
_written: ContextVar[asyncio.Future[None] | None] = ContextVar("graph_request_written", default=None)


async def _trace(event: str, info: dict[str, Any]) -> None:
    """httpcore's `trace` request extension: called at each step of sending a request and reading its response."""
    if event.endswith("send_request_body.complete"):  # (http11. or http2.): the whole request is handed to the socket
        written = _written.get()
        if written is not None and not written.done():
            written.set_result(None)


async def _with_trace(request: httpx.Request) -> None:
    request.extensions["trace"] = _trace


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            from datetime import datetime, timezone

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    after = getattr(exc, "retry_after", None)
    if after is not None:
        return float(after) + random.uniform(0, min(1.0, 0.1 * float(after)))  # honour, plus a little jitter
    return min(30.0, 0.25 * 2 ** (state.attempt_number - 1)) + random.uniform(0, 0.25)


class GraphClient:
    """Sends Graph requests through the msgraph-sdk adapter and returns parsed pages."""

    def __init__(self, tokens: TokenProvider, *, graph_url: str = "https://graph.microsoft.com/v1.0", ca_bundle: str | None = None,
                 timeout: float = 60.0, max_retries: int = 6) -> None:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        http = httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
                                 limits=httpx.Limits(max_connections=200, max_keepalive_connections=100), event_hooks={"request": [_with_trace]})
        middleware = [m for m in KiotaClientFactory.get_default_middleware(graph_options) if not isinstance(m, RetryHandler)]
        http = GraphClientFactory.create_with_custom_middleware(middleware, client=http)
        self.tokens = tokens
        self.adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(tokens), client=http)
        self.adapter.base_url = graph_url.rstrip("/")
        self.sdk = GraphServiceClient(request_adapter=self.adapter)
        self.graph_url = graph_url.rstrip("/")
        self.max_retries = max_retries

    # request building -----------------------------------------------------------------------
    def url_request(self, url: str, *, prefer: list[str] | None = None) -> RequestInformation:
        """A GET for an absolute URL (a nextLink or deltaLink is replayed verbatim)."""
        ri = RequestInformation(Method.GET)
        ri.url = url
        ri.headers.try_add("Accept", "application/json")
        for p in prefer or []:
            ri.headers.add("Prefer", p)
        return ri

    # sending --------------------------------------------------------------------------------
    async def get(self, request: RequestInformation, *, limiter: asyncio.Semaphore | None = None, stats: CallStats | None = None,
                  validate: Callable[[dict[str, Any]], None] | None = None) -> Page:
        """Send `request` (retrying transient failures) and parse the JSON body.

        `validate` may raise `MalformedPageError` for a body of the wrong shape; that is retried too.
        """
        stats = stats if stats is not None else CallStats()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=_wait,
            retry=retry_if_exception_type((TransientGraphError, MalformedPageError, _Unreachable)),
            reraise=True,
            before_sleep=lambda s: self._note_retry(s, stats),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    page = await self._once(request, limiter, stats)
                    if validate is not None:
                        validate(page.data)
                    return page
        except _Unreachable as exc:
            raise UnreachableError(str(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def start(self, request: RequestInformation, **kwargs: Any) -> tuple[asyncio.Future[Page], asyncio.Future[None]]:
        """`get(request, **kwargs)` in a task of its own: (the task, a future resolved once the request is written).

        A task only runs when its creator yields to the event loop; a caller that starts a request and then works
        synchronously (a page commit) awaits the second future first, so the request travels while it works."""
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def run() -> Page:
            _written.set(written)
            return await self.get(request, **kwargs)

        return asyncio.ensure_future(run()), written

    @staticmethod
    def _note_retry(state: RetryCallState, stats: CallStats) -> None:
        stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.debug("retrying after %s (attempt %d)", exc, state.attempt_number)

    async def _once(self, request: RequestInformation, limiter: asyncio.Semaphore | None, stats: CallStats) -> Page:
        refreshed = False
        while True:
            resp = await self._send(request, limiter, stats)
            if resp.status_code == 401 and not refreshed:
                refreshed = True  # one token refresh, then the 401 stands
                stats.refreshes += 1
                await self.tokens.invalidate()
                continue
            break
        body = resp.content
        # httpx binds a response and its stream in a reference cycle (BoundAsyncStream), so a read response, body bytes
        # and all, would wait for the cyclic garbage collector; with the stream released it is freed as soon as it is dropped
        resp.stream = httpx.ByteStream(b"")
        if resp.status_code >= 400:
            raise self._error(resp, body, stats)
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            raise MalformedPageError(f"response to {resp.request.url} is not JSON ({len(body)} bytes)") from None
        if not isinstance(data, dict):
            raise MalformedPageError(f"response to {resp.request.url} is not a JSON object")
        return Page(data, len(body))

    async def _send(self, request: RequestInformation, limiter: asyncio.Semaphore | None, stats: CallStats) -> httpx.Response:
        request.request_options.pop(ResponseHandlerOption.get_key(), None)
        request.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
        try:
            if limiter is None:
                stats.requests += 1
                return await self.adapter.send_async(request, None, {})  # type: ignore[arg-type]
            async with limiter:
                stats.requests += 1
                return await self.adapter.send_async(request, None, {})  # type: ignore[arg-type]
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Unreachable(f"cannot reach {request.url.split('?')[0]}: {exc or type(exc).__name__}") from None
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout, httpx.WriteError) as exc:
            raise TransientGraphError(0, "ConnectionDropped", f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _error(resp: httpx.Response, body: bytes, stats: CallStats) -> GraphError:
        code, message = f"HTTP{resp.status_code}", resp.reason_phrase or ""
        try:
            err = orjson.loads(body).get("error", {}) if body else {}
            if isinstance(err, dict):
                code = str(err.get("code") or code)
                message = str(err.get("message") or message)
        except (orjson.JSONDecodeError, AttributeError):
            pass
        if resp.status_code == 429:
            stats.throttled += 1
        if resp.status_code == 401:
            return FatalGraphError(401, code, f"{message} (after a token refresh)", request_id=resp.headers.get("request-id"))
        return classify(resp.status_code, code, message, request_id=resp.headers.get("request-id"),
                        retry_after=_retry_after(resp.headers.get("Retry-After")), location=resp.headers.get("Location"))

    async def close(self) -> None:
        """Close the HTTP client and the credential."""
        await self.adapter._http_client.aclose()
        await self.tokens.close()


__all__ = ["CallStats", "GraphClient", "Page"]
