"""`/_emulator` control routes that are not tied to one resource: faults, stats, sync-state eviction, sign-in approval."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .http import GraphError, Request, Response, Router, bad_request, empty, json_response
from .scenario import FaultSpec
from .state import EmulatorState


def stats(state: EmulatorState) -> dict[str, Any]:
    """Requests by status, 429 count, and the highest concurrency seen per mailbox."""
    names = {mb.id: mb.upn for mb in state.tenant.mailboxes.values()}
    return {
        "requests": sum(state.stats_status.values()),
        "by_status": {str(k): v for k, v in sorted(state.stats_status.items())},
        "throttled": state.stats_status.get(429, 0),
        "max_concurrency": {names.get(k, k): v for k, v in state.throttle.max_seen.items()},
        "faults": [{"id": r.id, "seen": r.seen, "fired": r.fired} for r in state.faults],
    }


def register(router: Router, control: Router, state: EmulatorState) -> None:
    """Add the generic control routes."""

    async def add_faults(request: Request) -> Response:
        body = request.json()
        rules = body if isinstance(body, list) else [body]
        try:
            specs = [FaultSpec.model_validate(r) for r in rules]
        except ValidationError as exc:
            raise bad_request(f"Invalid fault rule: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", "InvalidFault") from None
        added = [state.add_fault(s).id for s in specs]
        return json_response({"ids": added}, 201)

    async def clear_faults(request: Request) -> Response:
        state.clear_faults()
        return empty(204)

    async def get_stats(request: Request) -> Response:
        return json_response(stats(state))

    async def reset_stats(request: Request) -> Response:
        state.stats_status.clear()
        state.throttle.max_seen.clear()
        state.request_log.clear()
        return empty(204)

    async def evict(request: Request) -> Response:
        mb = state.named_mailbox(request)
        return json_response({"evicted": state.sync.evict(mb.id)})

    async def approve(request: Request) -> Response:
        body = request.json()
        identity = state.extensions["identity"]
        try:
            ok = identity.approve_device_code(str(body.get("user_code", "")), str(body.get("user", "")))
        except KeyError:
            raise GraphError(404, "ErrorInvalidUser", f"No user {body.get('user')!r} in the scenario.") from None
        if not ok:
            raise GraphError(404, "NotFound", "No pending device code with that user_code.")
        return empty(204)

    async def requests_log(request: Request) -> Response:
        return json_response({"value": list(state.request_log)[-int(request.query.get("$top", "1000")):]})

    control.add("POST", "/_emulator/faults", add_faults)
    control.add("DELETE", "/_emulator/faults", clear_faults)
    control.add("GET", "/_emulator/stats", get_stats)
    control.add("DELETE", "/_emulator/stats", reset_stats)
    control.add("GET", "/_emulator/requests", requests_log)
    control.add("POST", "/_emulator/users/{user}/evict-sync-state", evict)
    control.add("POST", "/_emulator/devicecode/approve", approve)
