"""JSON batching: `POST /$batch` with up to 20 inner requests (graph-v1.md §4.3).

Every inner request runs through the whole Graph pipeline (fault rules, token, permission,
per-mailbox throttle) with the outer request's token, so each can fail on its own — a throttled
inner request is a 429 inside a 200 batch. Like Graph in front of Outlook, at most four inner
requests run at a time; a batch that uses `dependsOn` runs one request at a time, in order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from .http import JSON_CT, GraphError, Prefer, Request, Response, Router, json_response, normalise_path
from .state import EmulatorState

MAX_REQUESTS = 20
PARALLEL = 4  # Graph forwards at most four requests of a batch to Outlook at a time (§4.3)
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
_DROP_HEADERS = frozenset({"request-id", "client-request-id"})


@dataclass(slots=True)
class Step:
    """One inner request as parsed from the batch body."""

    id: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    depends_on: list[str] = field(default_factory=list)
    error: GraphError | None = None  # a per-request validation failure, answered without running it


def _invalid(message: str = "Invalid batch payload format.") -> GraphError:
    return GraphError(400, "BadRequest", message)


def _decode_body(value: Any, content_type: str) -> bytes:
    """An inner body: a JSON value, or a base64 string for non-JSON content (msgraph-core sends base64)."""
    if not isinstance(value, str):
        return orjson.dumps(value)
    if "json" in content_type.lower():
        return value.encode()
    try:
        text = value.replace("-", "+").replace("_", "/")
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return value.encode()


def parse_steps(payload: Any) -> list[Step]:
    """Validate the batch body; whole-batch problems raise a 400, per-request ones are kept on the step."""
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list) or not payload["requests"]:
        raise _invalid()
    raw = payload["requests"]
    if len(raw) > MAX_REQUESTS:
        # [unconfirmed wording] Graph rejects the whole batch above 20 requests.
        raise _invalid(f"The number of requests in the batch ({len(raw)}) exceeds the maximum of {MAX_REQUESTS}.")
    steps: list[Step] = []
    seen: set[str] = set()
    for entry in raw:
        if not isinstance(entry, dict):
            raise _invalid()
        rid, method, url = entry.get("id"), entry.get("method"), entry.get("url")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        if not isinstance(rid, str) or not rid or not isinstance(method, str) or not isinstance(url, str) or not url:
            raise _invalid()
        if rid.lower() in seen:  # ids are case-insensitive (§4.3)
            raise _invalid(f"Batch request contains duplicate request Id '{rid}'.")
        raw_headers = entry.get("headers") or {}
        if not isinstance(raw_headers, dict):
            raise _invalid()
        headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
        deps = entry.get("dependsOn") or []  # msgraph-core's `depends_on` is ignored, as Graph does (§7.7)
        if isinstance(deps, str):
            deps = [deps]
        if not isinstance(deps, list) or any(not isinstance(d, str) or d.lower() not in seen for d in deps):
            raise _invalid(f"Invalid dependency for request Id {rid}.")
        step = Step(rid, method.upper(), url, headers, None, list(deps))
        if "body" in entry and entry["body"] is not None:
            ct = headers.get("content-type")
            if not ct:
                step.error = GraphError(400, "BadRequest", f"Write request id : {rid} does not contain Content-Type header or body.")
            else:
                step.body = _decode_body(entry["body"], ct)
        if step.error is None and step.method not in METHODS:
            step.error = GraphError(400, "BadRequest", f"Invalid method '{method}' for request Id {rid}.")
        if step.error is None and "://" in url.split("?", 1)[0]:
            # Graph wants relative URLs; msgraph-core sends absolute ones and gets this (§7.7, msgraph-sdk-python #1015).
            step.error = GraphError(400, "BadRequest", f"Resource not found for the segment '{url.split('/', 1)[0]}'.")
        if step.error is None and normalise_path("/" + url.split("?", 1)[0].lstrip("/")).lower() == "/$batch":
            step.error = GraphError(400, "BadRequest", "Nested batch requests are not supported.")
        seen.add(rid.lower())
        steps.append(step)
    return steps


def entry_json(step_id: str, resp: Response) -> dict[str, Any]:
    """One element of `responses`: JSON bodies inline, anything else base64 (as Graph does)."""
    headers = {k: v for k, v in resp.headers.items() if k.lower() not in _DROP_HEADERS}
    headers.setdefault("Cache-Control", "no-cache")
    if resp.content_type:
        headers["Content-Type"] = resp.content_type
        if "json" in resp.content_type:
            headers.setdefault("OData-Version", "4.0")
    out: dict[str, Any] = {"id": step_id, "status": resp.status, "headers": headers}
    if resp.body:
        if resp.content_type and "json" in resp.content_type:
            try:
                out["body"] = orjson.loads(resp.body)
                return out
            except orjson.JSONDecodeError:
                pass
        out["body"] = base64.b64encode(resp.body).decode()
    return out


class BatchRunner:
    """Executes the steps of one batch through the dispatcher."""

    def __init__(self, state: EmulatorState, outer: Request) -> None:
        self.state = state
        self.outer = outer
        self.dispatcher = state.extensions["dispatcher"]
        self.results: dict[str, Response] = {}

    async def run(self, steps: list[Step]) -> list[dict[str, Any]]:
        """Run every step; responses come back in request order (Graph may reorder; we keep it deterministic)."""
        if any(s.depends_on for s in steps):
            for step in steps:  # "with dependsOn it sends one at a time" (§4.3)
                self.results[step.id.lower()] = await self._step(step)
        else:
            gate = asyncio.Semaphore(PARALLEL)

            async def one(step: Step) -> None:
                async with gate:
                    self.results[step.id.lower()] = await self._step(step)

            await asyncio.gather(*(one(s) for s in steps))
        return [entry_json(s.id, self.results[s.id.lower()]) for s in steps]

    async def _step(self, step: Step) -> Response:
        if step.error is not None:
            return step.error.to_response(step.headers.get("client-request-id"))
        for dep in step.depends_on:
            failed = self.results.get(dep.lower())
            if failed is None or failed.status >= 400:
                return GraphError(424, "FailedDependency", f"Request Id {step.id} depends on request Id {dep}, which failed.").to_response()
        rel = step.url.lstrip("/")
        target = "/v1.0/" + rel
        delay = 0.0
        rule = self.dispatcher.fault_for(step.method, target)
        if rule is not None:
            if rule.spec.reset:
                # A dropped connection behind Graph surfaces as a gateway timeout inside the batch.
                return GraphError(504, "GatewayTimeout", "The backend did not answer in time.").to_response()
            if rule.spec.delay_ms is None:
                return self.dispatcher.fault_response(rule)  # type: ignore[no-any-return]
            delay = rule.spec.delay_ms / 1000  # spent inside the pipeline, holding the mailbox's concurrency slot
        path, _, qs = rel.partition("?")
        query = {k.lower(): v for k, v in parse_qsl(qs, keep_blank_values=True)}
        headers = dict(step.headers)
        auth = self.outer.headers.get("authorization")
        if auth:
            headers["authorization"] = auth
        else:
            headers.pop("authorization", None)
        req = Request(
            step.method, normalise_path("/" + path), target, query, headers, step.body or b"", self.outer.origin,
            prefer=Prefer.parse(headers.get("prefer")), in_batch=True,
        )
        req.delay = delay
        return await self.dispatcher.dispatch_graph(req)  # type: ignore[no-any-return]


def register(router: Router, control: Router, state: EmulatorState) -> None:
    """Add `POST /$batch`; any valid token may call it, the inner requests carry the permission checks."""

    async def batch(request: Request) -> Response:
        steps = parse_steps(request.json())
        responses = await BatchRunner(state, request).run(steps)
        resp = json_response({"responses": responses})
        resp.content_type = JSON_CT
        return resp

    router.add("POST", "/$batch", batch)
    router.add("POST", "/%24batch", batch)
