"""Change notifications: handshake, limits, delivery to a local webhook receiver, lifecycle events."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connector.emulator import Emulator
from conftest import APP_ID, app_token, base_scenario

LIMITED_APP = "33333333-3333-3333-3333-333333333333"
LIMITED_SECRET = "limited-secret"
ADELE = "adele@contoso.com"


class Receiver:
    """A webhook endpoint on 127.0.0.1: answers validation handshakes and records notifications.

    `validation` is "echo" (correct), "wrong" (echoes something else) or "error" (HTTP 500);
    `fail_next` makes that many notification POSTs answer 500 first.
    """

    def __init__(self) -> None:
        self.validation = "echo"
        self.fail_next = 0
        self.always_fail = False
        self.tokens: list[tuple[str, str]] = []  # (token, content-type) of validation requests
        self.posts: list[dict[str, Any]] = []  # notification collections, in arrival order
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes = b"", ct: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ct)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                query = parse_qs(urlsplit(self.path).query)
                if "validationToken" in query:
                    token = query["validationToken"][0]
                    with receiver.cond:
                        receiver.tokens.append((token, self.headers.get("Content-Type", "")))
                    if receiver.validation == "echo":
                        self._answer(200, token.encode())
                    elif receiver.validation == "wrong":
                        self._answer(200, b"not-the-token")
                    else:
                        self._answer(500)
                    return
                with receiver.cond:
                    if receiver.always_fail or receiver.fail_next > 0:
                        receiver.fail_next = max(0, receiver.fail_next - 1)
                        self._answer(500)
                        return
                    receiver.posts.append({"path": self.path, "body": json.loads(raw)})
                    receiver.cond.notify_all()
                self._answer(202)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The endpoint's base URL."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def values(self) -> list[dict[str, Any]]:
        """Every notification received so far, flattened."""
        with self.cond:
            return [v for p in self.posts for v in p["body"]["value"]]

    def wait(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least `n` notifications arrived."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(len(p["body"]["value"]) for p in self.posts) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
        return self.values()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    scenario = base_scenario()
    scenario["apps"].append({"client_id": LIMITED_APP, "client_secret": LIMITED_SECRET, "permissions": ["Calendars.Read"]})
    e = make_emulator(scenario)
    e.call("PATCH", "/_emulator/subscriptions/settings", {"retry_delays": [0.05, 0.05, 0.05], "validation_timeout": 3})
    return e


@pytest.fixture
def graph(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.graph_url, verify=emu.ca_bundle, timeout=30,
                      headers={"Authorization": f"Bearer {app_token(emu)}"}) as client:
        yield client


def _in(minutes: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _body(receiver: Receiver, **over: Any) -> dict[str, Any]:
    body = {
        "changeType": "created,updated",
        "notificationUrl": receiver.url + "/notify",
        "resource": f"/users/{ADELE}/messages",
        "expirationDateTime": _in(60),
        "clientState": "secretClientValue",
    }
    body.update(over)
    return body


def _flush(emu: Emulator) -> None:
    assert emu.call("POST", "/_emulator/subscriptions/flush")["pending"] == 0


# creation and the validation handshake ---------------------------------------------------------


def test_create_runs_handshake_and_returns_the_subscription(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    r = graph.post("/subscriptions", json=_body(receiver, lifecycleNotificationUrl=receiver.url + "/lifecycle"))
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["@odata.context"].endswith("/$metadata#subscriptions/$entity")
    assert sub["applicationId"] == APP_ID
    assert sub["resource"] == f"/users/{ADELE}/messages"
    assert sub["changeType"] == "created,updated"
    assert sub["clientState"] == "secretClientValue"
    assert sub["latestSupportedTlsVersion"] == "v1_2"
    assert sub["includeResourceData"] is False and sub["encryptionCertificate"] is None
    assert sub["lifecycleNotificationUrl"] == receiver.url + "/lifecycle"
    assert sub["expirationDateTime"].endswith("Z") and len(sub["expirationDateTime"].split(".")[1]) == 8
    # Both URLs were validated with a decoded token sent as text/plain.
    assert len(receiver.tokens) == 2
    token, ct = receiver.tokens[0]
    assert token.startswith("Validation: Testing client application reachability for subscription Request-Id: ")
    assert ct.startswith("text/plain")
    listed = graph.get("/subscriptions").json()["value"]
    assert [s["id"] for s in listed] == [sub["id"]]
    assert graph.get(f"/subscriptions/{sub['id']}").json()["notificationUrl"] == receiver.url + "/notify"


@pytest.mark.parametrize("mode", ["wrong", "error"])
def test_failed_handshake_creates_nothing(graph: httpx.Client, receiver: Receiver, mode: str) -> None:
    receiver.validation = mode
    r = graph.post("/subscriptions", json=_body(receiver))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "InvalidRequest"
    assert r.json()["error"]["message"] == (
        "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.")
    assert graph.get("/subscriptions").json()["value"] == []


def test_unreachable_endpoint_and_bad_lifecycle_endpoint_fail(graph: httpx.Client, receiver: Receiver) -> None:
    closed = Receiver()
    dead_url = closed.url
    closed.close()
    assert graph.post("/subscriptions", json=_body(receiver, notificationUrl=dead_url)).status_code == 400
    bad = Receiver()
    bad.validation = "wrong"
    try:
        r = graph.post("/subscriptions", json=_body(receiver, lifecycleNotificationUrl=bad.url))
        assert r.status_code == 400 and "validation request failed" in r.json()["error"]["message"]
    finally:
        bad.close()


def test_plain_http_is_only_accepted_on_loopback(graph: httpx.Client, receiver: Receiver) -> None:
    r = graph.post("/subscriptions", json=_body(receiver, notificationUrl="http://webhook.example.com/notify"))
    assert r.status_code == 400
    assert receiver.tokens == []


def test_expiration_limits(graph: httpx.Client, receiver: Receiver) -> None:
    over = graph.post("/subscriptions", json=_body(receiver, expirationDateTime=_in(10071)))
    assert over.status_code == 400
    assert over.json()["error"] == {**over.json()["error"], "code": "ExtensionError",
                                    "message": "Subscription expiration can only be 10070 minutes in the future."}
    past = graph.post("/subscriptions", json=_body(receiver, expirationDateTime=_in(-5)))
    assert past.status_code == 400
    assert graph.post("/subscriptions", json=_body(receiver, expirationDateTime=_in(10069))).status_code == 201
    events = graph.post("/subscriptions", json=_body(receiver, resource=f"users/{ADELE}/events", expirationDateTime=_in(10069)))
    assert events.status_code == 201

    list_id = graph.get(f"/users/{ADELE}/todo/lists").json()["value"][0]["id"]
    tasks = f"/users/{ADELE}/todo/lists/{list_id}/tasks"
    r = graph.post("/subscriptions", json=_body(receiver, resource=tasks, expirationDateTime=_in(4231)))
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Subscription expiration can only be 4230 minutes in the future."
    assert graph.post("/subscriptions", json=_body(receiver, resource=tasks, expirationDateTime=_in(4229))).status_code == 201


def test_client_state_and_change_type_are_validated(graph: httpx.Client, receiver: Receiver) -> None:
    assert graph.post("/subscriptions", json=_body(receiver, clientState="x" * 129)).status_code == 400
    assert graph.post("/subscriptions", json=_body(receiver, changeType="created,moved")).status_code == 400
    assert graph.post("/subscriptions", json=_body(receiver, resource=f"/users/{ADELE}/mailFolders")).status_code == 400
    assert graph.post("/subscriptions", json=_body(receiver, clientState="x" * 128)).status_code == 201


def test_duplicate_subscription_conflicts(graph: httpx.Client, receiver: Receiver) -> None:
    first = graph.post("/subscriptions", json=_body(receiver)).json()
    again = graph.post("/subscriptions", json=_body(receiver, resource=f"users/{ADELE}/messages", clientState="other"))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ObjectIdentifierInUse"
    assert again.json()["error"]["message"] == f"Subscription Id {first['id']} already exists for the requested combination"
    assert graph.post("/subscriptions", json=_body(receiver, changeType="deleted")).status_code == 201


def test_subscription_needs_the_resource_read_permission(emu: Emulator, receiver: Receiver) -> None:
    token = app_token(emu, LIMITED_APP, LIMITED_SECRET)
    with httpx.Client(base_url=emu.graph_url, verify=emu.ca_bundle, headers={"Authorization": f"Bearer {token}"}) as limited:
        r = limited.post("/subscriptions", json=_body(receiver))
        assert r.status_code == 403
        assert receiver.tokens == []  # refused before any handshake
        assert limited.post("/subscriptions", json=_body(receiver, resource=f"/users/{ADELE}/events")).status_code == 201
        assert limited.post("/subscriptions", json=_body(receiver, resource="/me/messages")).json()["error"]["code"] == "Request_BadRequest"


def test_subscriptions_are_private_to_their_app(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    sub = graph.post("/subscriptions", json=_body(receiver)).json()
    token = app_token(emu, LIMITED_APP, LIMITED_SECRET)
    with httpx.Client(base_url=emu.graph_url, verify=emu.ca_bundle, headers={"Authorization": f"Bearer {token}"}) as other:
        assert other.get("/subscriptions").json()["value"] == []
        assert other.get(f"/subscriptions/{sub['id']}").status_code == 404
        assert other.delete(f"/subscriptions/{sub['id']}").status_code == 404


# change notifications ------------------------------------------------------------------------


def test_delivered_message_notifies_with_client_state(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    sub = graph.post("/subscriptions", json=_body(receiver)).json()
    msg = emu.deliver(ADELE, {"subject": "Hello"})
    got = receiver.wait(1)
    assert len(got) == 1
    n = got[0]
    user_id = graph.get(f"/users/{ADELE}").json()["id"]
    assert n["subscriptionId"] == sub["id"]
    assert n["clientState"] == "secretClientValue"
    assert n["changeType"] == "created"
    assert n["tenantId"] == emu.tenant_id
    assert n["subscriptionExpirationDateTime"] == sub["expirationDateTime"]
    assert n["resource"] == f"Users/{user_id}/Messages/{msg['id']}"
    assert n["resourceData"]["@odata.type"] == "#Microsoft.Graph.Message"
    assert n["resourceData"]["@odata.id"] == n["resource"]
    assert n["resourceData"]["id"] == msg["id"]
    assert n["resourceData"]["@odata.etag"].startswith('W/"')
    assert receiver.posts[0]["path"] == "/notify"

    # A Graph PATCH is an update; the etag in the notification matches the item's new etag.
    patched = graph.patch(f"/users/{ADELE}/messages/{msg['id']}", json={"isRead": True}).json()
    got = receiver.wait(2)
    assert [v["changeType"] for v in got] == ["created", "updated"]
    assert got[1]["resourceData"]["@odata.etag"] == patched["@odata.etag"]


def test_change_type_and_folder_filters(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    graph.post("/subscriptions", json=_body(receiver, changeType="deleted", resource=f"users/{ADELE}/mailFolders('inbox')/messages",
                                            clientState="inbox-deletes"))
    inbox_msg = emu.deliver(ADELE, {"subject": "in inbox"})  # created: not subscribed
    emu.add_message(ADELE, "drafts", {"subject": "draft"})  # other folder
    emu.delete_message(ADELE, inbox_msg["id"])
    got = receiver.wait(1)
    _flush(emu)
    got = receiver.values()
    assert len(got) == 1
    assert got[0]["changeType"] == "deleted" and got[0]["clientState"] == "inbox-deletes"
    assert got[0]["resourceData"]["id"] == inbox_msg["id"]
    assert "@odata.etag" not in got[0]["resourceData"]


def test_immutable_id_preference_applies_to_notifications(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    r = graph.post("/subscriptions", json=_body(receiver), headers={"Prefer": 'IdType="ImmutableId"'})
    assert r.status_code == 201
    msg = emu.deliver(ADELE, {"subject": "Hello"})
    assert receiver.wait(1)[0]["resourceData"]["id"] == msg["immutableId"] != msg["id"]


def test_notifications_queued_together_share_a_post(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    emu.call("PATCH", "/_emulator/subscriptions/settings", {"batch_window": 0.5})
    graph.post("/subscriptions", json=_body(receiver))
    for i in range(3):
        emu.deliver(ADELE, {"subject": f"m{i}"})
    _flush(emu)
    assert len(receiver.posts) == 1
    assert len(receiver.posts[0]["body"]["value"]) == 3


def test_failed_delivery_is_retried(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    graph.post("/subscriptions", json=_body(receiver))
    receiver.fail_next = 2
    emu.deliver(ADELE, {"subject": "retry me"})
    _flush(emu)
    assert len(receiver.values()) == 1
    state = emu.call("GET", "/_emulator/subscriptions")
    attempts = [d for d in state["deliveries"] if d["kind"] == "change"]
    assert [(d["attempt"], d["status"]) for d in attempts] == [(1, 500), (2, 500), (3, 202)]
    assert state["value"][0]["delivered"] == 1


def test_retries_are_bounded(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    graph.post("/subscriptions", json=_body(receiver))
    receiver.always_fail = True
    emu.deliver(ADELE, {"subject": "lost"})
    _flush(emu)
    state = emu.call("GET", "/_emulator/subscriptions")
    assert len([d for d in state["deliveries"] if d["kind"] == "change"]) == 4  # 1 + len(retry_delays)
    assert state["value"][0]["failed"] == 1 and state["value"][0]["delivered"] == 0
    assert receiver.values() == []


# renew, delete, reauthorize, lifecycle -----------------------------------------------------------


def test_renew_and_delete(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    sub = graph.post("/subscriptions", json=_body(receiver)).json()
    later = _in(5000)
    r = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": later})
    assert r.status_code == 200
    assert r.json()["expirationDateTime"] == later
    too_far = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": _in(20000)})
    assert too_far.status_code == 400 and too_far.json()["error"]["code"] == "ExtensionError"
    assert graph.get(f"/subscriptions/{sub['id']}").json()["expirationDateTime"] == later
    assert graph.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    assert graph.delete(f"/subscriptions/{sub['id']}").status_code == 204
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
    emu.deliver(ADELE, {"subject": "nobody listens"})
    _flush(emu)
    assert receiver.values() == []


def test_lifecycle_notifications(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    lifecycle = Receiver()
    try:
        sub = graph.post("/subscriptions", json=_body(receiver, lifecycleNotificationUrl=lifecycle.url + "/lc")).json()
        out = emu.call("POST", f"/_emulator/subscriptions/{sub['id']}/lifecycle", {"event": "reauthorizationRequired"})
        assert out["delivered"] is True
        n = lifecycle.wait(1)[0]
        assert n == {"subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
                     "tenantId": emu.tenant_id, "clientState": "secretClientValue", "lifecycleEvent": "reauthorizationRequired"}
        assert lifecycle.posts[0]["path"] == "/lc"
        assert receiver.values() == []  # lifecycle events never go to the notificationUrl
        assert emu.call("GET", "/_emulator/subscriptions")["value"][0]["needsReauthorization"] is True
        assert graph.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
        assert emu.call("GET", "/_emulator/subscriptions")["value"][0]["needsReauthorization"] is False

        emu.call("POST", f"/_emulator/subscriptions/{sub['id']}/lifecycle", {"event": "subscriptionRemoved"})
        assert [v["lifecycleEvent"] for v in lifecycle.wait(2)] == ["reauthorizationRequired", "subscriptionRemoved"]
        assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
    finally:
        lifecycle.close()


def test_lifecycle_events_follow_resource_support(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    list_id = graph.get(f"/users/{ADELE}/todo/lists").json()["value"][0]["id"]
    sub = graph.post("/subscriptions", json=_body(receiver, resource=f"/users/{ADELE}/todo/lists/{list_id}/tasks")).json()
    with pytest.raises(Exception) as err:
        emu.call("POST", f"/_emulator/subscriptions/{sub['id']}/lifecycle", {"event": "missed"})
    assert getattr(err.value, "status", None) == 400
    out = emu.call("POST", f"/_emulator/subscriptions/{sub['id']}/lifecycle", {"event": "reauthorizationRequired"})
    assert out["delivered"] is False  # no lifecycleNotificationUrl: nothing to send


def test_todo_task_changes_notify(emu: Emulator, graph: httpx.Client, receiver: Receiver) -> None:
    list_id = graph.get(f"/users/{ADELE}/todo/lists").json()["value"][0]["id"]
    graph.post("/subscriptions", json=_body(receiver, resource=f"/users/{ADELE}/todo/lists/{list_id}/tasks", changeType="created"))
    task = graph.post(f"/users/{ADELE}/todo/lists/{list_id}/tasks", json={"title": "Write report"})
    assert task.status_code == 201
    n = receiver.wait(1)[0]
    assert n["resourceData"]["id"] == task.json()["id"]
    assert n["resourceData"]["@odata.type"] == "#Microsoft.Graph.todoTask"
    assert n["resource"].endswith(f"/todo/lists/{list_id}/tasks/{task.json()['id']}")


def _delegated_token(make_emulator: Callable[..., Emulator]) -> tuple[Emulator, str]:
    public = "55555555-5555-5555-5555-555555555555"
    scenario = base_scenario()
    scenario["apps"].append({"client_id": public, "public_client": True, "scopes": ["Mail.Read", "User.Read"]})
    emu = make_emulator(scenario)
    base = f"{emu.authority}/{emu.tenant_id}/oauth2/v2.0"
    code = httpx.post(f"{base}/devicecode", data={"client_id": public, "scope": "Mail.Read"}, verify=emu.ca_bundle).json()
    emu.approve_device_code(code["user_code"], ADELE)
    tok = httpx.post(f"{base}/token", verify=emu.ca_bundle, data={
        "client_id": public, "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": code["device_code"]})
    tok.raise_for_status()
    return emu, tok.json()["access_token"]


def test_delegated_subscription_on_me(make_emulator: Callable[..., Emulator], receiver: Receiver) -> None:
    emu, token = _delegated_token(make_emulator)
    with httpx.Client(base_url=emu.graph_url, verify=emu.ca_bundle, headers={"Authorization": f"Bearer {token}"}) as me:
        r = me.post("/subscriptions", json=_body(receiver, resource="me/mailFolders('Inbox')/messages"))
        assert r.status_code == 201, r.text
        assert r.json()["creatorId"] == emu.state.tenant.find(ADELE).id  # type: ignore[union-attr]
        # Another user's mailbox is out of reach for a delegated caller without shared-mailbox scopes.
        assert me.post("/subscriptions", json=_body(receiver, resource="/users/bob@contoso.com/messages")).status_code == 403
        # Calendars.Read was not consented.
        assert me.post("/subscriptions", json=_body(receiver, resource="/me/events")).status_code == 403
    msg = emu.deliver(ADELE, {"subject": "to me"})
    n = receiver.wait(1)[0]
    assert n["resourceData"]["id"] == msg["id"] and n["subscriptionId"] == r.json()["id"]
