"""Outlook throttling per (app, mailbox) and the fault-injection rules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from connector.emulator import Emulator
from tests.conftest import app_token, base_scenario

DELTA = "/users/adele@contoso.com/mailFolders/inbox/messages/delta"


async def _burst(emu: Emulator, paths: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=emu.graph_url, verify=emu.ssl_context(), headers={"Authorization": f"Bearer {app_token(emu)}"}) as c:
        return list(await asyncio.gather(*(c.get(p) for p in paths)))


def test_fifth_concurrent_request_per_mailbox_gets_application_throttled(make_emulator: Any) -> None:
    emu = make_emulator(base_scenario(faults=[{"match": {"path": "/v1.0/users/*/mailFolders/*"}, "delay_ms": 400}]))
    resps = asyncio.run(_burst(emu, ["/users/adele@contoso.com/mailFolders/inbox"] * 6 + ["/users/bob@contoso.com/mailFolders/inbox"] * 3))
    statuses = [r.status_code for r in resps]
    assert statuses.count(429) == 2 and statuses.count(200) == 7  # Bob's three are a separate budget
    throttled = next(r for r in resps if r.status_code == 429)
    assert throttled.json()["error"] == {**throttled.json()["error"], "code": "ApplicationThrottled", "message": "Application is over its MailboxConcurrency limit."}
    assert throttled.headers["Retry-After"].isdigit()
    stats = emu.stats()
    assert stats["max_concurrency"]["adele@contoso.com"] == 5  # 4 admitted + each rejected attempt and stats["max_concurrency"]["bob@contoso.com"] == 3
    assert stats["throttled"] == 2


def test_request_budget_gives_too_many_requests_with_integer_retry_after(make_emulator: Any) -> None:
    emu = make_emulator(base_scenario(throttling={"requests_per_window": 3, "window_seconds": 2}))
    with httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context(), headers={"Authorization": f"Bearer {app_token(emu)}"}) as c:
        codes = [c.get("/users/adele@contoso.com/mailFolders/inbox").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/users/adele@contoso.com/mailFolders/inbox")
        assert r.json()["error"]["code"] == "TooManyRequests" and 1 <= int(r.headers["Retry-After"]) <= 2
        assert c.get("/users/bob@contoso.com/mailFolders/inbox").status_code == 200  # per mailbox
        time.sleep(int(r.headers["Retry-After"]) + 0.1)
        assert c.get("/users/adele@contoso.com/mailFolders/inbox").status_code == 200


def test_fault_skip_and_times(emulator: Emulator, graph: httpx.Client) -> None:
    emulator.add_fault({"match": {"method": "GET", "path": "/v1.0/users/*/mailFolders/*/messages/delta*"}, "skip": 1, "times": 2,
                        "respond": {"status": 503}})
    codes = [graph.get(DELTA).status_code for _ in range(5)]
    assert codes == [200, 503, 503, 200, 200]
    assert graph.get("/users/adele@contoso.com/mailFolders/inbox").status_code == 200  # path glob did not match


def test_fault_429_with_fractional_retry_after_and_user_match(emulator: Emulator, graph: httpx.Client) -> None:
    emulator.add_fault({"match": {"path": "*", "user": "bob@contoso.com"}, "times": 1, "respond": {"status": 429, "retry_after": 1.5}})
    assert graph.get(DELTA).status_code == 200
    r = graph.get("/users/bob@contoso.com/mailFolders/inbox/messages/delta")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1.5" and r.json()["error"]["code"] == "TooManyRequests"


def test_fault_reset_drops_the_connection(emulator: Emulator, graph: httpx.Client) -> None:
    emulator.add_fault({"match": {"path": "/v1.0/users/*"}, "times": 1, "reset": True})
    with pytest.raises(httpx.TransportError):
        graph.get(DELTA)
    assert graph.get(DELTA).status_code == 200


def test_fault_delay_and_clear(emulator: Emulator, graph: httpx.Client) -> None:
    emulator.add_fault({"match": {"path": "/v1.0/users/*"}, "delay_ms": 300})
    t = time.perf_counter()
    assert graph.get(DELTA).status_code == 200
    assert time.perf_counter() - t >= 0.3
    emulator.clear_faults()
    t = time.perf_counter()
    graph.get(DELTA)
    assert time.perf_counter() - t < 0.3


def test_fault_body_is_sent_verbatim(emulator: Emulator, graph: httpx.Client) -> None:
    body = {"error": {"code": "SyncStateInvalid", "message": "custom"}}
    emulator.add_fault({"match": {"path": "*delta*"}, "times": 1, "respond": {"status": 410, "body": body}})
    r = graph.get(DELTA)
    assert r.status_code == 410 and r.json() == body


def test_invalid_fault_rule_is_refused(emulator: Emulator) -> None:
    from connector.emulator import ControlError

    with pytest.raises(ControlError) as err:
        emulator.add_fault({"match": {"path": "*"}, "reset": True, "delay_ms": 5})
    assert err.value.status == 400
