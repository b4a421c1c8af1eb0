"""Message and folder delta: snapshot, paging, later rounds, ids across moves, options, expiry."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connector.emulator import Emulator
from tests.conftest import app_token, base_scenario, round_trip

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def messages(n: int, prefix: str = "Msg") -> list[dict[str, Any]]:
    return [
        {"subject": f"{prefix} {i}", "receivedDateTime": f"2026-11-{1 + i % 25:02d}T10:{i % 60:02d}:00Z",
         "from": {"emailAddress": {"name": "Dana", "address": "dana@fabrikam.com"}},
         "body": {"contentType": "html", "content": f"<p>Body <b>{i}</b></p>"}}
        for i in range(n)
    ]


def scenario_with_inbox(n: int, **extra: Any) -> dict[str, Any]:
    s = base_scenario(**extra)
    s["users"][0]["mailFolders"] = {"inbox": {"messages": messages(n), "childFolders": {"Projects": {"messages": messages(2, "Proj")}}}}
    return s


@pytest.fixture
def emu(make_emulator: Any) -> Emulator:
    return make_emulator(scenario_with_inbox(25))


@pytest.fixture
def client(emu: Emulator) -> httpx.Client:
    return httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context(), headers={"Authorization": f"Bearer {app_token(emu)}"})


DELTA = "/users/adele@contoso.com/mailFolders/inbox/messages/delta"


def test_first_round_is_a_paged_snapshot_with_absolute_links(client: httpx.Client, emu: Emulator) -> None:
    items, delta_link, pages = round_trip(client, DELTA, {"Prefer": "odata.maxpagesize=10"})
    assert len(items) == 25 and pages == 3
    assert sorted(i["subject"] for i in items) == sorted(f"Msg {i}" for i in range(25))
    assert delta_link.startswith(emu.graph_url + "/users/") and "$deltatoken=" in delta_link
    assert all(i["@odata.type"] == "#microsoft.graph.message" and i["@odata.etag"].startswith('W/"') for i in items)
    assert "internetMessageHeaders" not in items[0]  # select-only property


def test_default_page_size_is_ten(client: httpx.Client) -> None:
    page = client.get(DELTA).json()
    assert len(page["value"]) == 10 and "@odata.nextLink" in page


def test_sdk_style_paths_are_routed(client: httpx.Client, emu: Emulator) -> None:
    for path in ("//users/adele@contoso.com/mailFolders('inbox')/messages/delta()",
                 "/users/adele@contoso.com/mailfolders/Inbox/messages/microsoft.graph.delta()"):
        r = client.get(emu.graph_url + path)
        assert r.status_code == 200, (path, r.text)


def test_later_round_reports_creates_updates_moves_and_deletes(client: httpx.Client, emu: Emulator) -> None:
    items, delta_link, _ = round_trip(client, DELTA + "?$select=subject,isRead,categories", {"Prefer": "odata.maxpagesize=50"})
    by_subject = {i["subject"]: i["id"] for i in items}
    emu.update_message("adele@contoso.com", by_subject["Msg 1"], {"isRead": True})
    emu.delete_message("adele@contoso.com", by_subject["Msg 2"])
    emu.move_message("adele@contoso.com", by_subject["Msg 3"], "inbox/Projects")
    created = emu.deliver("adele@contoso.com", {"subject": "New one"})
    changes, _, _ = round_trip(client, delta_link)
    removed = {c["id"] for c in changes if "@removed" in c}
    full = {c["subject"]: c for c in changes if "@removed" not in c}
    assert removed == {by_subject["Msg 2"], by_subject["Msg 3"]}
    assert set(full) == {"Msg 1", "New one"}
    assert full["Msg 1"]["isRead"] is True and set(full["Msg 1"]) == {"@odata.type", "@odata.etag", "subject", "isRead", "categories", "id"}
    assert full["New one"]["id"] == created["id"]
    assert all(c["@removed"] == {"reason": "deleted"} for c in changes if "@removed" in c)


def test_rest_ids_change_on_move_and_immutable_ids_do_not(client: httpx.Client, emu: Emulator) -> None:
    first = client.get(DELTA, headers=IMMUTABLE).json()["value"][0]
    rest = client.get(f"/users/adele@contoso.com/messages/{first['id']}").json()
    moved = client.post(f"/users/adele@contoso.com/messages/{rest['id']}/move", json={"destinationId": "archive"})
    assert moved.status_code == 201
    assert moved.json()["id"] != rest["id"]  # the REST id changes on move
    again = client.get(f"/users/adele@contoso.com/messages/{first['id']}", headers=IMMUTABLE).json()
    assert again["id"] == first["id"] and again["subject"] == first["subject"]
    assert client.get(f"/users/adele@contoso.com/messages/{rest['id']}").status_code == 404


def test_moved_message_appears_in_destination_folder_delta(client: httpx.Client, emu: Emulator) -> None:
    dest = "/users/adele@contoso.com/mailFolders/archive/messages/delta"
    _, dest_link, _ = round_trip(client, dest, IMMUTABLE)
    items, _, _ = round_trip(client, DELTA, {**IMMUTABLE})
    emu.move_message("adele@contoso.com", items[0]["id"], "archive")
    changes, _, _ = round_trip(client, dest_link, IMMUTABLE)
    assert [c["id"] for c in changes] == [items[0]["id"]]


def test_eviction_gives_410_sync_state_not_found(client: httpx.Client, emu: Emulator) -> None:
    _, delta_link, _ = round_trip(client, DELTA)
    assert emu.evict_sync_state("adele@contoso.com") >= 1
    r = client.get(delta_link)
    assert r.status_code == 410
    err = r.json()["error"]
    assert err["code"] == "SyncStateNotFound" and "generation=" in err["message"]


def test_resync_required_with_location(make_emulator: Any) -> None:
    emu = make_emulator(scenario_with_inbox(3, delta={"expired_code": "resyncRequired", "expired_location": True}))
    client = httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context(), headers={"Authorization": f"Bearer {app_token(emu)}"})
    _, delta_link, _ = round_trip(client, DELTA)
    emu.evict_sync_state("adele@contoso.com")
    r = client.get(delta_link)
    assert r.status_code == 410 and r.json()["error"]["code"] == "resyncRequired"
    restart = r.headers["Location"]
    items, _, _ = round_trip(client, restart)
    assert len(items) == 3  # the Location restarts a full round


def test_ring_evicts_oldest_generation(make_emulator: Any) -> None:
    emu = make_emulator(scenario_with_inbox(2, delta={"ring_size": 4}))
    client = httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context(), headers={"Authorization": f"Bearer {app_token(emu)}"})
    _, oldest, _ = round_trip(client, DELTA)
    for _ in range(4):
        round_trip(client, DELTA)
    assert client.get(oldest).status_code == 410


def test_tampered_token_is_rejected(client: httpx.Client) -> None:
    _, delta_link, _ = round_trip(client, DELTA)
    r = client.get(delta_link[:-3] + "xyz")
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidDeltaToken"


def test_replays_duplicate_items_within_a_round(make_emulator: Any) -> None:
    emu = make_emulator(scenario_with_inbox(5, delta={"replays": 2}))
    client = httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context(), headers={"Authorization": f"Bearer {app_token(emu)}"})
    items, _, _ = round_trip(client, DELTA)
    assert len(items) == 7 and len({i["id"] for i in items}) == 5


def test_filter_on_received_date_and_rejected_options(client: httpx.Client) -> None:
    items, _, _ = round_trip(client, DELTA + "?$filter=receivedDateTime ge 2026-11-20T00:00:00Z", {"Prefer": "odata.maxpagesize=100"})
    assert items and all(i["receivedDateTime"] >= "2026-11-20" for i in items)
    assert len(items) < 25
    for bad in ("?$search=hello", "?$filter=subject eq 'x'", "?$orderby=subject", "?changeType=bogus"):
        r = client.get(DELTA + bad)
        assert r.status_code == 400, bad
        assert set(r.json()["error"]) >= {"code", "message", "innerError"}


def test_change_type_created_only_reports_new_messages(client: httpx.Client, emu: Emulator) -> None:
    items, link, _ = round_trip(client, DELTA + "?changeType=created", {"Prefer": "odata.maxpagesize=100"})
    assert len(items) == 25  # the first round still returns everything
    emu.update_message("adele@contoso.com", items[0]["id"], {"isRead": True})
    emu.delete_message("adele@contoso.com", items[1]["id"])
    emu.deliver("adele@contoso.com", {"subject": "Fresh"})
    changes, _, _ = round_trip(client, link)
    assert [c["subject"] for c in changes] == ["Fresh"]


def test_select_only_headers_and_text_body(client: httpx.Client, emu: Emulator) -> None:
    emu.deliver("adele@contoso.com", {"subject": "Headers", "internetMessageHeaders": [{"name": "X-Test", "value": "1"}],
                                      "body": {"contentType": "html", "content": "<p>Hello <b>world</b></p>"}})
    items, _, _ = round_trip(client, DELTA + "?$select=subject,internetMessageHeaders,body",
                             {"Prefer": 'odata.maxpagesize=100, outlook.body-content-type="text"'})
    msg = next(i for i in items if i["subject"] == "Headers")
    names = {h["name"] for h in msg["internetMessageHeaders"]}
    assert {"Message-ID", "X-Test"} <= names
    assert msg["body"] == {"contentType": "text", "content": "Hello world"}


def test_folder_delta_follows_create_rename_delete(client: httpx.Client, emu: Emulator) -> None:
    items, link, _ = round_trip(client, "/users/adele@contoso.com/mailFolders/delta", {"Prefer": "odata.maxpagesize=100"})
    names = {f["displayName"] for f in items}
    assert {"Inbox", "Sent Items", "Deleted Items", "Projects"} <= names
    r = client.post("/users/adele@contoso.com/mailFolders/inbox/childFolders", json={"displayName": "Customers"})
    assert r.status_code == 201
    fid = r.json()["id"]
    projects = next(f for f in items if f["displayName"] == "Projects")
    assert client.patch(f"/users/adele@contoso.com/mailFolders/{projects['id']}", json={"displayName": "Projects 2026"}).status_code == 200
    changes, link2, _ = round_trip(client, link)
    assert {c["displayName"] for c in changes} == {"Customers", "Projects 2026"}
    assert client.delete(f"/users/adele@contoso.com/mailFolders/{fid}").status_code == 204
    changes, _, _ = round_trip(client, link2)
    assert changes == [{"id": fid, "@removed": {"reason": "deleted"}}]
    assert client.delete("/users/adele@contoso.com/mailFolders/inbox").status_code == 400


def test_user_level_message_delta_is_unsupported(client: httpx.Client) -> None:
    r = client.get("/users/adele@contoso.com/messages/delta")
    assert r.status_code == 400
    assert "Change tracking is not supported against 'microsoft.graph.message'" in r.json()["error"]["message"]
