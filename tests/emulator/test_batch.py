"""JSON batching: validation, dependsOn sequencing, 424, four-at-a-time, and per-request auth and throttling."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from connector.emulator import Emulator
from conftest import APP_ID, app_token, base_scenario

READER = "44444444-4444-4444-4444-444444444444"
READER_SECRET = "reader-secret"
ADELE = "adele@contoso.com"
BOB = "bob@contoso.com"


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    scenario = base_scenario()
    scenario["apps"].append({"client_id": READER, "client_secret": READER_SECRET, "permissions": ["Mail.Read"]})
    return make_emulator(scenario)


@pytest.fixture
def graph(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.graph_url, verify=emu.ca_bundle, timeout=30,
                      headers={"Authorization": f"Bearer {app_token(emu)}"}) as client:
        yield client


def _get(rid: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": rid, "method": "GET", "url": url, **extra}


def _batch(graph: httpx.Client, requests: list[dict[str, Any]]) -> httpx.Response:
    return graph.post("/$batch", json={"requests": requests})


def _by_id(resp: httpx.Response) -> dict[str, dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    return {r["id"]: r for r in resp.json()["responses"]}


def _batch_log(emu: Emulator) -> list[str]:
    return [e["path"] for e in emu.request_log if e["batch"]]


def test_inner_requests_run_and_answer_in_request_order(emu: Emulator, graph: httpx.Client) -> None:
    msg = emu.deliver(ADELE, {"subject": "Batched"})
    r = _batch(graph, [
        _get("1", f"/users/{ADELE}/messages/{msg['id']}?$select=subject"),
        _get("2", f"users/{BOB}"),
        {"id": "3", "method": "POST", "url": f"/users/{ADELE}/mailFolders/drafts/messages",
         "headers": {"Content-Type": "application/json"}, "body": {"subject": "Draft via batch"}},
        {"id": "4", "method": "DELETE", "url": f"/users/{ADELE}/messages/{msg['id']}"},
    ])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    responses = r.json()["responses"]
    assert [x["id"] for x in responses] == ["1", "2", "3", "4"]
    one, two, three, four = responses
    assert one["status"] == 200 and one["body"]["subject"] == "Batched"
    assert one["headers"]["Content-Type"].startswith("application/json")
    assert two["status"] == 200 and two["body"]["userPrincipalName"] == BOB
    assert three["status"] == 201 and three["body"]["subject"] == "Draft via batch" and three["body"]["isDraft"] is True
    assert four["status"] == 204 and "body" not in four
    assert set(_batch_log(emu)) == {
        f"/v1.0/users/{ADELE}/messages/{msg['id']}?$select=subject", f"/v1.0/users/{BOB}",
        f"/v1.0/users/{ADELE}/mailFolders/drafts/messages", f"/v1.0/users/{ADELE}/messages/{msg['id']}",
    }


def test_base64_body_for_non_json_content(emu: Emulator, graph: httpx.Client) -> None:
    body = base64.b64encode(b'{"subject": "from base64"}').decode()
    r = _batch(graph, [{"id": "1", "method": "POST", "url": f"/users/{ADELE}/messages",
                        "headers": {"Content-Type": "text/plain"}, "body": body}])
    assert _by_id(r)["1"]["status"] == 201
    assert _by_id(r)["1"]["body"]["subject"] == "from base64"


def test_at_most_twenty_requests(graph: httpx.Client) -> None:
    twenty = [_get(str(i), f"/users/{ADELE}") for i in range(20)]
    assert [x["status"] for x in _batch(graph, twenty).json()["responses"]] == [200] * 20
    r = _batch(graph, [*twenty, _get("20", f"/users/{ADELE}")])
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BadRequest"
    assert "20" in r.json()["error"]["message"]


def test_malformed_batches_are_rejected_whole(graph: httpx.Client) -> None:
    dup = _batch(graph, [_get("a", f"/users/{ADELE}"), _get("A", f"/users/{BOB}")])
    assert dup.status_code == 400 and "duplicate" in dup.json()["error"]["message"]
    forward = _batch(graph, [_get("1", f"/users/{ADELE}", dependsOn=["2"]), _get("2", f"/users/{BOB}")])
    assert forward.status_code == 400
    assert forward.json()["error"]["message"].startswith("Invalid dependency for request Id 1")
    unknown = _batch(graph, [_get("1", f"/users/{ADELE}"), _get("2", f"/users/{BOB}", dependsOn=["9"])])
    assert unknown.status_code == 400
    assert graph.post("/$batch", json={"requests": []}).status_code == 400
    assert graph.post("/$batch", json={"nope": 1}).status_code == 400
    assert graph.post("/$batch", json={"requests": [{"id": "1", "method": "GET"}]}).status_code == 400


def test_per_request_validation_errors(graph: httpx.Client) -> None:
    r = _by_id(_batch(graph, [
        {"id": "1", "method": "POST", "url": f"/users/{ADELE}/messages", "body": {"subject": "no content type"}},
        _get("2", f"https://graph.microsoft.com/v1.0/users/{ADELE}"),
        _get("3", f"/users/{ADELE}"),
    ]))
    assert r["1"]["status"] == 400 and "Content-Type" in r["1"]["body"]["error"]["message"]
    assert r["2"]["status"] == 400
    assert r["2"]["body"]["error"]["message"] == "Resource not found for the segment 'https:'."
    assert r["3"]["status"] == 200


def test_depends_on_runs_in_order(emu: Emulator, graph: httpx.Client) -> None:
    emu.add_fault({"match": {"path": f"/v1.0/users/{ADELE}"}, "delay_ms": 150})
    # Independent: the slow request 1 finishes after request 2.
    _by_id(_batch(graph, [_get("1", f"/users/{ADELE}"), _get("2", f"/users/{BOB}")]))
    assert _batch_log(emu) == [f"/v1.0/users/{BOB}", f"/v1.0/users/{ADELE}"]
    # With dependsOn, 2 waits for 1.
    _by_id(_batch(graph, [_get("1", f"/users/{ADELE}"), _get("2", f"/users/{BOB}", dependsOn=["1"])]))
    assert _batch_log(emu)[2:] == [f"/v1.0/users/{ADELE}", f"/v1.0/users/{BOB}"]


def test_failed_dependency_gives_424(emu: Emulator, graph: httpx.Client) -> None:
    r = _by_id(_batch(graph, [
        _get("1", f"/users/{ADELE}/messages/AAMkNoSuchMessage"),
        _get("2", f"/users/{ADELE}", dependsOn=["1"]),
        _get("3", f"/users/{BOB}", dependsOn=["2"]),
        _get("4", f"/users/{BOB}"),
    ]))
    assert r["1"]["status"] == 404
    assert r["2"]["status"] == 424 and r["2"]["body"]["error"]["code"] == "FailedDependency"
    assert r["3"]["status"] == 424
    assert r["4"]["status"] == 200
    assert _batch_log(emu) == [f"/v1.0/users/{ADELE}/messages/AAMkNoSuchMessage", f"/v1.0/users/{BOB}"]


def test_at_most_four_inner_requests_at_a_time(emu: Emulator, graph: httpx.Client) -> None:
    emu.add_fault({"match": {"path": "/v1.0/users/*"}, "delay_ms": 200})
    started = time.perf_counter()
    r = _batch(graph, [_get(str(i), f"/users/{ADELE if i % 2 else BOB}") for i in range(8)])
    elapsed = time.perf_counter() - started
    assert [x["status"] for x in r.json()["responses"]] == [200] * 8
    assert 0.4 <= elapsed < 1.4  # two waves of four, not one of eight nor eight of one


def test_fault_rule_applies_to_inner_request(emu: Emulator, graph: httpx.Client) -> None:
    emu.add_fault({"match": {"path": "*/messages*", "user": ADELE}, "times": 1,
                   "respond": {"status": 429, "retry_after": "7"}})
    r = _by_id(_batch(graph, [_get("1", f"/users/{ADELE}/messages"), _get("2", f"/users/{BOB}/messages"),
                              _get("3", f"/users/{ADELE}")]))
    assert r["1"]["status"] == 429
    assert r["1"]["headers"]["Retry-After"] == "7"
    assert r["1"]["body"]["error"]["code"] == "TooManyRequests"
    assert r["2"]["status"] == 200 and r["3"]["status"] == 200
    assert emu.stats()["faults"][0]["fired"] == 1


def test_inner_requests_count_against_the_mailbox_budget(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(base_scenario(throttling={"requests_per_window": 3}))
    with httpx.Client(base_url=emu.graph_url, verify=emu.ca_bundle, headers={"Authorization": f"Bearer {app_token(emu)}"}) as graph:
        r = _batch(graph, [_get(str(i), f"/users/{ADELE}/mailFolders/inbox/messages") for i in range(5)]
                   + [_get("bob", f"/users/{BOB}/mailFolders/inbox/messages")])
        statuses = {k: v["status"] for k, v in _by_id(r).items()}
        assert sorted(statuses[str(i)] for i in range(5)) == [200, 200, 200, 429, 429]
        assert statuses["bob"] == 200  # another mailbox has its own budget
        throttled = next(v for v in r.json()["responses"] if v["status"] == 429)
        assert throttled["body"]["error"]["code"] == "TooManyRequests"
        assert int(throttled["headers"]["Retry-After"]) >= 1


def test_concurrent_inner_requests_over_the_mailbox_limit_get_429(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(base_scenario(throttling={"mailbox_concurrency": 2}))
    emu.add_fault({"match": {"path": "/v1.0/users/*"}, "delay_ms": 150})
    with httpx.Client(base_url=emu.graph_url, verify=emu.ca_bundle, headers={"Authorization": f"Bearer {app_token(emu)}"}) as graph:
        r = _batch(graph, [_get(str(i), f"/users/{ADELE}/messages") for i in range(4)])
    statuses = sorted(x["status"] for x in r.json()["responses"])
    assert statuses == [200, 200, 429, 429]  # four forwarded at once, two over Adele's limit of two
    assert emu.stats()["max_concurrency"][ADELE] >= 2


def test_inner_request_over_the_concurrency_limit_gets_429(emu: Emulator, graph: httpx.Client) -> None:
    adele_id = graph.get(f"/users/{ADELE}").json()["id"]
    throttle = emu.state.throttle

    async def occupy(n: int) -> None:
        for _ in range(n):
            throttle.enter(APP_ID, adele_id)

    async def release(n: int) -> None:
        for _ in range(n):
            throttle.leave(APP_ID, adele_id)

    emu.run(occupy(4))  # four requests of the same app already in flight on Adele's mailbox
    try:
        r = _by_id(_batch(graph, [_get("1", f"/users/{ADELE}/messages"), _get("2", f"/users/{BOB}/messages")]))
    finally:
        emu.run(release(4))
    assert r["1"]["status"] == 429
    assert r["1"]["body"]["error"] == {**r["1"]["body"]["error"], "code": "ApplicationThrottled",
                                       "message": "Application is over its MailboxConcurrency limit."}
    assert r["2"]["status"] == 200
    assert _by_id(_batch(graph, [_get("1", f"/users/{ADELE}/messages")]))["1"]["status"] == 200


def test_inner_requests_are_authorised_individually(emu: Emulator, graph: httpx.Client) -> None:
    msg = emu.deliver(ADELE, {"subject": "read only"})
    token = app_token(emu, READER, READER_SECRET)
    with httpx.Client(base_url=emu.graph_url, verify=emu.ca_bundle, headers={"Authorization": f"Bearer {token}"}) as reader:
        r = _by_id(reader.post("/$batch", json={"requests": [
            _get("read", f"/users/{ADELE}/messages/{msg['id']}"),
            {"id": "write", "method": "PATCH", "url": f"/users/{ADELE}/messages/{msg['id']}",
             "headers": {"Content-Type": "application/json"}, "body": {"isRead": True}},
            _get("me", "/me/messages"),
        ]}))
    assert r["read"]["status"] == 200
    assert r["write"]["status"] == 403 and r["write"]["body"]["error"]["code"] == "ErrorAccessDenied"
    assert r["me"]["status"] == 400 and r["me"]["body"]["error"]["code"] == "Request_BadRequest"
    assert graph.get(f"/users/{ADELE}/messages/{msg['id']}").json()["isRead"] is False


def test_inner_prefer_header_is_honoured(emu: Emulator, graph: httpx.Client) -> None:
    msg = emu.deliver(ADELE, {"subject": "ids"})
    r = _by_id(_batch(graph, [
        _get("rest", f"/users/{ADELE}/messages/{msg['id']}?$select=subject"),
        _get("imm", f"/users/{ADELE}/messages/{msg['id']}?$select=subject", headers={"Prefer": 'IdType="ImmutableId"'}),
    ]))
    assert r["rest"]["body"]["id"] == msg["id"]
    assert r["imm"]["body"]["id"] == msg["immutableId"]


def test_batch_needs_a_token(emu: Emulator) -> None:
    r = httpx.post(f"{emu.graph_url}/$batch", json={"requests": [_get("1", f"/users/{ADELE}")]}, verify=emu.ca_bundle)
    assert r.status_code == 401
