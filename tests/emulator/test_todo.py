"""To Do: lists, tasks, linked resources, delta over lists and tasks, date normalisation, permissions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connector.emulator import Emulator
from tests.conftest import ALL_PERMISSIONS, APP_ID, APP_SECRET, base_scenario, graph_client, round_trip

U = "/users/adele@contoso.com"
MAIL_ONLY = "33333333-3333-3333-3333-333333333333"
TASKS_READ = "55555555-5555-5555-5555-555555555555"


def scenario(n: int = 25) -> dict[str, Any]:
    s = base_scenario(apps=[
        {"client_id": APP_ID, "client_secret": APP_SECRET, "permissions": ALL_PERMISSIONS},
        {"client_id": MAIL_ONLY, "client_secret": APP_SECRET, "permissions": ["Mail.Read"]},
        {"client_id": TASKS_READ, "client_secret": APP_SECRET, "permissions": ["Tasks.Read.All"]},
    ])
    s["users"][0]["todo"] = {"lists": [
        {"displayName": "Tasks", "wellknownListName": "defaultList", "tasks": [{"title": f"Task {i}"} for i in range(n)]},
        {"displayName": "Groceries", "tasks": [{"title": "Milk", "importance": "high"}, {"title": "Eggs", "status": "completed"}]},
    ]}
    return s


client_for = graph_client


@pytest.fixture
def emu(make_emulator: Any) -> Emulator:
    return make_emulator(scenario())


@pytest.fixture
def client(emu: Emulator) -> httpx.Client:
    return client_for(emu)


def lists(client: httpx.Client, user: str = U) -> dict[str, dict[str, Any]]:
    return {lst["displayName"]: lst for lst in client.get(f"{user}/todo/lists").json()["value"]}


# lists --------------------------------------------------------------------------------------


def test_every_mailbox_has_the_default_list(client: httpx.Client) -> None:
    bob = lists(client, "/users/bob@contoso.com")
    assert list(bob) == ["Tasks"]
    tasks = bob["Tasks"]
    assert set(tasks) == {"@odata.etag", "displayName", "isOwner", "isShared", "wellknownListName", "id"}
    assert tasks["wellknownListName"] == "defaultList" and tasks["isOwner"] is True and tasks["isShared"] is False
    mine = lists(client)
    assert sorted(mine) == ["Groceries", "Tasks"] and mine["Groceries"]["wellknownListName"] == "none"


def test_list_crud(client: httpx.Client) -> None:
    r = client.post(f"{U}/todo/lists", json={"displayName": "Travel"})
    assert r.status_code == 201, r.text
    travel = r.json()
    assert travel["wellknownListName"] == "none" and travel["@odata.context"].endswith("/todo/lists/$entity")
    r = client.patch(f"{U}/todo/lists/{travel['id']}", json={"displayName": "Trips"})
    assert r.status_code == 200 and r.json()["displayName"] == "Trips" and r.json()["@odata.etag"] != travel["@odata.etag"]
    assert client.get(f"{U}/todo/lists/{travel['id']}").json()["displayName"] == "Trips"
    assert client.delete(f"{U}/todo/lists/{travel['id']}").status_code == 204
    assert client.get(f"{U}/todo/lists/{travel['id']}").status_code == 404
    default = lists(client)["Tasks"]["id"]
    assert client.delete(f"{U}/todo/lists/{default}").status_code == 400


def test_lists_delta_reports_new_renamed_and_deleted_lists(client: httpx.Client) -> None:
    items, link, _ = round_trip(client, f"{U}/todo/lists/delta()")
    assert sorted(i["displayName"] for i in items) == ["Groceries", "Tasks"]
    assert all("@odata.type" not in i and i["@odata.etag"].startswith('W/"') for i in items)
    groceries = lists(client)["Groceries"]["id"]
    new = client.post(f"{U}/todo/lists", json={"displayName": "Travel"}).json()
    assert client.delete(f"{U}/todo/lists/{groceries}").status_code == 204
    changes, link2, _ = round_trip(client, link)
    by_id = {c["id"]: c for c in changes}
    assert by_id[new["id"]]["displayName"] == "Travel"
    assert by_id[groceries] == {"id": groceries, "@removed": {"reason": "deleted"}}
    assert round_trip(client, link2)[0] == []


# tasks --------------------------------------------------------------------------------------


def test_create_task_with_inline_linked_resources(client: httpx.Client) -> None:
    lid = lists(client)["Groceries"]["id"]
    body = {"title": "A new task", "categories": ["Important"],
            "linkedResources": [{"webUrl": "http://microsoft.com", "applicationName": "Microsoft", "displayName": "Microsoft"}]}
    r = client.post(f"{U}/todo/lists/{lid}/tasks", json=body)
    assert r.status_code == 201, r.text
    t = r.json()
    for key in ("@odata.etag", "importance", "isReminderOn", "status", "title", "createdDateTime", "lastModifiedDateTime",
                "categories", "id", "body", "linkedResources", "hasAttachments", "bodyLastModifiedDateTime"):
        assert key in t, key
    assert "changeKey" not in t and "@odata.type" not in t and "dueDateTime" not in t and "completedDateTime" not in t
    assert t["status"] == "notStarted" and t["importance"] == "normal" and t["body"] == {"content": "", "contentType": "text"}
    assert len(t["createdDateTime"]) == len("2020-08-18T09:03:05.8339192Z")
    link = t["linkedResources"][0]
    assert link["webUrl"] == "http://microsoft.com" and link["id"]
    got = client.get(f"{U}/todo/lists/{lid}/tasks/{t['id']}").json()
    assert "linkedResources" not in got
    got = client.get(f"{U}/todo/lists/{lid}/tasks/{t['id']}?$expand=linkedResources").json()
    assert got["linkedResources"] == [link]
    assert client.get(f"{U}/todo/lists/{lid}/tasks/{t['id']}?$expand=attachments").status_code == 400


def test_linked_resources_endpoint(client: httpx.Client) -> None:
    lid = lists(client)["Groceries"]["id"]
    tid = client.post(f"{U}/todo/lists/{lid}/tasks", json={"title": "Follow up"}).json()["id"]
    r = client.post(f"{U}/todo/lists/{lid}/tasks/{tid}/linkedResources",
                    json={"webUrl": "https://crm.example/1", "applicationName": "CRM", "externalId": "1"})
    assert r.status_code == 201 and r.json()["externalId"] == "1"
    listed = client.get(f"{U}/todo/lists/{lid}/tasks/{tid}/linkedResources").json()["value"]
    assert [x["id"] for x in listed] == [r.json()["id"]]
    assert client.get(f"{U}/todo/lists/{lid}/tasks/{tid}/linkedResources/{r.json()['id']}").json()["applicationName"] == "CRM"
    assert client.post(f"{U}/todo/lists/{lid}/tasks/{tid}/linkedResources", json={"colour": "red"}).status_code == 400


def test_patch_normalises_due_date_to_utc_and_tracks_completion(client: httpx.Client) -> None:
    lid = lists(client)["Groceries"]["id"]
    t = client.post(f"{U}/todo/lists/{lid}/tasks", json={"title": "Shop for dinner"}).json()
    r = client.patch(f"{U}/todo/lists/{lid}/tasks/{t['id']}",
                     json={"dueDateTime": {"dateTime": "2020-07-25T16:00:00", "timeZone": "Eastern Standard Time"}})
    assert r.status_code == 200, r.text
    p = r.json()
    # todotask-update-response.json: due dates are days, echoed as that midnight in UTC
    assert p["dueDateTime"] == {"dateTime": "2020-07-25T04:00:00.0000000", "timeZone": "UTC"}
    assert p["@odata.etag"] != t["@odata.etag"] and p["lastModifiedDateTime"] >= t["lastModifiedDateTime"]
    done = client.patch(f"{U}/todo/lists/{lid}/tasks/{t['id']}", json={"status": "completed"}).json()
    assert done["completedDateTime"]["timeZone"] == "UTC" and done["completedDateTime"]["dateTime"].endswith("T00:00:00.0000000")
    reopened = client.patch(f"{U}/todo/lists/{lid}/tasks/{t['id']}", json={"status": "inProgress"}).json()
    assert "completedDateTime" not in reopened
    body = client.patch(f"{U}/todo/lists/{lid}/tasks/{t['id']}", json={"body": {"content": "<p>x</p>", "contentType": "html"}}).json()
    assert body["body"] == {"content": "<p>x</p>", "contentType": "html"}
    assert body["bodyLastModifiedDateTime"] >= t["bodyLastModifiedDateTime"]


@pytest.mark.parametrize("patch", [{"status": "done"}, {"importance": "urgent"}, {"colour": "red"}, {"categories": "Red"},
                                   {"dueDateTime": {"dateTime": "tomorrow", "timeZone": "UTC"}},
                                   {"dueDateTime": {"dateTime": "2020-01-01T00:00:00", "timeZone": "Mars Standard Time"}}])
def test_bad_patches_are_400(client: httpx.Client, patch: dict[str, Any]) -> None:
    lid = lists(client)["Groceries"]["id"]
    tid = client.get(f"{U}/todo/lists/{lid}/tasks").json()["value"][0]["id"]
    assert client.patch(f"{U}/todo/lists/{lid}/tasks/{tid}", json=patch).status_code == 400


def test_task_lookup_is_scoped_to_its_list(client: httpx.Client) -> None:
    ls = lists(client)
    tid = client.get(f"{U}/todo/lists/{ls['Groceries']['id']}/tasks").json()["value"][0]["id"]
    r = client.get(f"{U}/todo/lists/{ls['Tasks']['id']}/tasks/{tid}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ErrorItemNotFound"
    assert client.delete(f"{U}/todo/lists/{ls['Groceries']['id']}/tasks/{tid}").status_code == 204
    assert client.get(f"{U}/todo/lists/{ls['Groceries']['id']}/tasks/{tid}").status_code == 404


def test_task_list_filter_and_paging(client: httpx.Client) -> None:
    ls = lists(client)
    done = client.get(f"{U}/todo/lists/{ls['Groceries']['id']}/tasks?$filter=status eq 'completed'").json()["value"]
    assert [t["title"] for t in done] == ["Eggs"] and "completedDateTime" in done[0]
    page = client.get(f"{U}/todo/lists/{ls['Tasks']['id']}/tasks", headers={"Prefer": "odata.maxpagesize=10"}).json()
    assert len(page["value"]) == 10 and "@odata.nextLink" in page


# delta --------------------------------------------------------------------------------------


def test_tasks_delta_snapshot_is_paged(client: httpx.Client, emu: Emulator) -> None:
    lid = lists(client)["Tasks"]["id"]
    items, link, pages = round_trip(client, f"{U}/todo/lists/{lid}/tasks/delta", {"Prefer": "odata.maxpagesize=10"})
    assert len(items) == 25 and pages == 3
    assert {i["title"] for i in items} == {f"Task {i}" for i in range(25)}
    assert all("@odata.type" not in i and "changeKey" not in i and i["@odata.etag"].startswith('W/"') for i in items)
    assert link.startswith(f"{emu.graph_url}/users/") and "$deltatoken=" in link


def test_tasks_delta_round_reports_create_update_delete(client: httpx.Client, emu: Emulator) -> None:
    lid = lists(client)["Groceries"]["id"]
    items, link, _ = round_trip(client, f"{U}/todo/lists/{lid}/tasks/delta?$select=title,status")
    assert all(set(i) == {"@odata.etag", "title", "status", "id"} for i in items)
    milk = next(i for i in items if i["title"] == "Milk")
    eggs = next(i for i in items if i["title"] == "Eggs")
    new = client.post(f"{U}/todo/lists/{lid}/tasks", json={"title": "Bread"}).json()
    assert client.patch(f"{U}/todo/lists/{lid}/tasks/{milk['id']}", json={"status": "completed"}).status_code == 200
    assert client.delete(f"{U}/todo/lists/{lid}/tasks/{eggs['id']}").status_code == 204
    changes, link2, _ = round_trip(client, link)
    by_id = {c["id"]: c for c in changes}
    assert len(changes) == 3
    assert by_id[new["id"]] == {"@odata.etag": new["@odata.etag"], "title": "Bread", "status": "notStarted", "id": new["id"]}
    assert by_id[milk["id"]]["status"] == "completed" and by_id[milk["id"]]["@odata.etag"] != milk["@odata.etag"]
    assert by_id[eggs["id"]] == {"id": eggs["id"], "@removed": {"reason": "deleted"}}
    assert round_trip(client, link2)[0] == []
    # control routes address the list by name, case-insensitively
    added = emu.call("POST", "/_emulator/users/adele@contoso.com/todo/lists/groceries/tasks", {"title": "Cheese"})
    emu.call("PATCH", f"/_emulator/users/adele@contoso.com/todo/lists/GROCERIES/tasks/{new['id']}", {"title": "Rye bread"})
    emu.call("DELETE", f"/_emulator/users/adele@contoso.com/todo/lists/{lid}/tasks/{milk['id']}")
    changes = {c["id"]: c for c in round_trip(client, link2)[0]}
    assert changes[added["id"]]["title"] == "Cheese" and changes[new["id"]]["title"] == "Rye bread"
    assert "@removed" in changes[milk["id"]]


@pytest.mark.parametrize("query", ["$top=5", "$filter=status eq 'completed'", "$orderby=title", "$expand=linkedResources", "$search=x"])
def test_tasks_delta_accepts_only_select(client: httpx.Client, query: str) -> None:
    lid = lists(client)["Tasks"]["id"]
    r = client.get(f"{U}/todo/lists/{lid}/tasks/delta?{query}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "ErrorInvalidUrlQuery", r.text


def test_tasks_delta_of_unknown_list_is_404(client: httpx.Client) -> None:
    assert client.get(f"{U}/todo/lists/AAMkADnope/tasks/delta").status_code == 404


# permissions --------------------------------------------------------------------------------


def test_mail_only_app_is_refused(emu: Emulator, client: httpx.Client) -> None:
    lid = lists(client)["Tasks"]["id"]
    with client_for(emu, MAIL_ONLY) as c:
        for path in (f"{U}/todo/lists", f"{U}/todo/lists/delta", f"{U}/todo/lists/{lid}/tasks", f"{U}/todo/lists/{lid}/tasks/delta"):
            r = c.get(path)
            assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied", path
        assert c.post(f"{U}/todo/lists/{lid}/tasks", json={"title": "X"}).status_code == 403


def test_read_only_app_reads_but_cannot_write(emu: Emulator, client: httpx.Client) -> None:
    lid = lists(client)["Tasks"]["id"]
    tid = client.get(f"{U}/todo/lists/{lid}/tasks").json()["value"][0]["id"]
    with client_for(emu, TASKS_READ) as c:
        assert c.get(f"{U}/todo/lists/{lid}/tasks/delta").status_code == 200
        assert c.get(f"{U}/todo/lists/{lid}/tasks/{tid}").status_code == 200
        assert c.post(f"{U}/todo/lists/{lid}/tasks", json={"title": "X"}).status_code == 403
        assert c.patch(f"{U}/todo/lists/{lid}/tasks/{tid}", json={"title": "X"}).status_code == 403
        assert c.delete(f"{U}/todo/lists/{lid}/tasks/{tid}").status_code == 403
        assert c.post(f"{U}/todo/lists", json={"displayName": "X"}).status_code == 403
