"""Contacts: folders, CRUD shapes, delta for the default folder, per folder and over folders, permissions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connector.emulator import Emulator
from tests.conftest import ALL_PERMISSIONS, APP_ID, APP_SECRET, base_scenario, graph_client, round_trip

U = "/users/adele@contoso.com"
MAIL_ONLY = "33333333-3333-3333-3333-333333333333"
CONTACTS_READ = "44444444-4444-4444-4444-444444444444"
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def people(n: int, prefix: str = "Person") -> list[dict[str, Any]]:
    return [{"givenName": prefix, "surname": f"{i:03d}", "emailAddresses": [{"address": f"{prefix.lower()}{i}@fabrikam.com"}]}
            for i in range(n)]


def scenario(n: int = 25) -> dict[str, Any]:
    s = base_scenario(apps=[
        {"client_id": APP_ID, "client_secret": APP_SECRET, "permissions": ALL_PERMISSIONS},
        {"client_id": MAIL_ONLY, "client_secret": APP_SECRET, "permissions": ["Mail.Read"]},
        {"client_id": CONTACTS_READ, "client_secret": APP_SECRET, "permissions": ["Contacts.Read"]},
    ])
    s["users"][0]["contacts"] = people(n)
    s["users"][0]["contactFolders"] = {"Suppliers": {"contacts": people(3, "Supplier")}, "Family": {}}
    return s


client_for = graph_client


@pytest.fixture
def emu(make_emulator: Any) -> Emulator:
    return make_emulator(scenario())


@pytest.fixture
def client(emu: Emulator) -> httpx.Client:
    return client_for(emu)


def folder_id(client: httpx.Client, name: str) -> str:
    folders = client.get(f"{U}/contactFolders").json()["value"]
    return next(f["id"] for f in folders if f["displayName"] == name)


# folders ----------------------------------------------------------------------------------


def test_contact_folders_list_the_children_of_the_default_folder(client: httpx.Client) -> None:
    default = client.get(f"{U}/contactFolders/contacts").json()
    assert default["displayName"] == "Contacts" and default["@odata.context"].endswith("/contactFolders/$entity")
    folders = client.get(f"{U}/contactFolders").json()["value"]
    assert sorted(f["displayName"] for f in folders) == ["Family", "Suppliers"]
    assert all(f["parentFolderId"] == default["id"] and set(f) == {"id", "displayName", "parentFolderId"} for f in folders)
    one = client.get(f"{U}/contactFolders/{folders[0]['id']}?$select=displayName").json()
    assert one["id"] == folders[0]["id"] and "parentFolderId" not in one


def test_create_child_folders_and_conflicts(client: httpx.Client) -> None:
    r = client.post(f"{U}/contactFolders", json={"displayName": "Partners"})
    assert r.status_code == 201, r.text
    partners = r.json()
    r = client.post(f"{U}/contactFolders/{partners['id']}/childFolders", json={"displayName": "EMEA"})
    assert r.status_code == 201 and r.json()["parentFolderId"] == partners["id"]
    children = client.get(f"{U}/contactFolders/{partners['id']}/childFolders").json()["value"]
    assert [c["displayName"] for c in children] == ["EMEA"]
    assert client.post(f"{U}/contactFolders", json={"displayName": "partners"}).status_code == 409
    assert client.post(f"{U}/contactFolders", json={}).status_code == 400
    assert client.get(f"{U}/contactFolders/AAMkADnope").json()["error"]["code"] == "ErrorItemNotFound"


def test_folder_delta_tracks_the_tree_without_the_default_folder(client: httpx.Client) -> None:
    items, link, _ = round_trip(client, f"{U}/contactFolders/delta")
    assert sorted(i["displayName"] for i in items) == ["Family", "Suppliers"]
    new = client.post(f"{U}/contactFolders", json={"displayName": "Partners"}).json()
    family = folder_id(client, "Family")
    assert client.delete(f"{U}/contactFolders/{family}").status_code == 204
    changes, link2, _ = round_trip(client, link)
    by_id = {c["id"]: c for c in changes}
    assert by_id[new["id"]]["displayName"] == "Partners"
    assert by_id[family] == {"id": family, "@removed": {"reason": "deleted"}}
    assert len(changes) == 2
    assert round_trip(client, link2)[0] == []


def test_default_folder_cannot_be_deleted(client: httpx.Client) -> None:
    r = client.delete(f"{U}/contactFolders/contacts")
    assert r.status_code == 400 and r.json()["error"]["code"] == "ErrorDeleteDistinguishedFolder"


# CRUD ---------------------------------------------------------------------------------------


def test_create_fills_every_default_property(client: httpx.Client) -> None:
    body = {"givenName": "Pavel", "surname": "Bansky", "emailAddresses": [{"address": "pavelb@contoso.com", "name": "Pavel Bansky"}],
            "businessPhones": ["+1 732 555 0102"]}
    r = client.post(f"{U}/contacts", json=body)
    assert r.status_code == 201, r.text
    c = r.json()
    default = client.get(f"{U}/contactFolders/contacts").json()["id"]
    assert c["displayName"] == "Pavel Bansky" and c["fileAs"] == "" and c["parentFolderId"] == default
    assert c["businessPhones"] == ["+1 732 555 0102"] and c["homePhones"] == [] and c["categories"] == []
    assert c["birthday"] is None and c["middleName"] is None and c["homeAddress"] == {} and c["personalNotes"] == ""
    assert c["@odata.etag"] == f'W/"{c["changeKey"]}"' and c["createdDateTime"].endswith("Z")
    assert "@odata.type" not in c
    got = client.get(f"{U}/contacts/{c['id']}").json()
    sample_keys = {"@odata.context", "@odata.etag", "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories",
                   "parentFolderId", "birthday", "fileAs", "displayName", "givenName", "initials", "middleName", "nickName",
                   "surname", "title", "yomiGivenName", "yomiSurname", "yomiCompanyName", "generation", "imAddresses", "jobTitle",
                   "companyName", "department", "officeLocation", "profession", "businessHomePage", "assistantName", "manager",
                   "homePhones", "mobilePhone", "businessPhones", "spouseName", "personalNotes", "children", "emailAddresses",
                   "homeAddress", "businessAddress", "otherAddress"}
    assert set(got) == sample_keys  # graph-samples/contact-get-response.json
    assert got["@odata.context"].endswith("/contacts/$entity")


def test_email_name_defaults_to_the_address_and_display_name_falls_back(client: httpx.Client) -> None:
    c = client.post(f"{U}/contacts", json={"emailAddresses": [{"address": "solo@fabrikam.com"}]}).json()
    assert c["emailAddresses"] == [{"name": "solo@fabrikam.com", "address": "solo@fabrikam.com"}]
    assert c["displayName"] == "solo@fabrikam.com"
    c = client.post(f"{U}/contacts", json={"companyName": "Fabrikam", "displayName": "Front desk"}).json()
    assert c["displayName"] == "Front desk"


def test_patch_delete_and_errors(client: httpx.Client) -> None:
    c = client.post(f"{U}/contacts", json={"givenName": "Ann", "surname": "Lee"}).json()
    r = client.patch(f"{U}/contacts/{c['id']}", json={"jobTitle": "CFO", "surname": "Lee-Smith"})
    assert r.status_code == 200
    p = r.json()
    assert p["jobTitle"] == "CFO" and p["displayName"] == "Ann Lee-Smith" and p["changeKey"] != c["changeKey"]
    assert client.patch(f"{U}/contacts/{c['id']}", json={"shoeSize": 9}).json()["error"]["code"] == "RequestBodyRead"
    assert client.patch(f"{U}/contacts/{c['id']}", json={"businessPhones": "+1 555"}).status_code == 400
    assert client.delete(f"{U}/contacts/{c['id']}").status_code == 204
    r = client.get(f"{U}/contacts/{c['id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ErrorItemNotFound"
    assert client.delete(f"{U}/contacts/{c['id']}").status_code == 404


def test_folder_scoped_crud_and_listing(client: httpx.Client) -> None:
    suppliers = folder_id(client, "Suppliers")
    r = client.post(f"{U}/contactFolders/{suppliers}/contacts", json={"givenName": "Vendor", "surname": "One"})
    assert r.status_code == 201 and r.json()["parentFolderId"] == suppliers
    cid = r.json()["id"]
    assert client.get(f"{U}/contactFolders/{suppliers}/contacts/{cid}").status_code == 200
    assert client.get(f"{U}/contacts/{cid}").status_code == 200  # the user-level path finds any folder's contact
    other = folder_id(client, "Family")
    assert client.get(f"{U}/contactFolders/{other}/contacts/{cid}").status_code == 404
    listed = client.get(f"{U}/contactFolders/{suppliers}/contacts?$select=displayName").json()["value"]
    assert len(listed) == 4 and set(listed[0]) == {"@odata.etag", "displayName", "id"}
    page = client.get(f"{U}/contacts", headers={"Prefer": "odata.maxpagesize=10"}).json()
    assert len(page["value"]) == 10 and "$skip=10" in page["@odata.nextLink"]


def test_immutable_ids_are_distinct_and_both_resolve(client: httpx.Client) -> None:
    rest = client.post(f"{U}/contacts", json={"givenName": "Id"}).json()["id"]
    imm = client.get(f"{U}/contacts/{rest}", headers=IMMUTABLE).json()["id"]
    assert imm != rest
    assert client.get(f"{U}/contacts/{imm}").json()["id"] == rest


# delta --------------------------------------------------------------------------------------


def test_default_folder_snapshot_is_paged(client: httpx.Client, emu: Emulator) -> None:
    items, link, pages = round_trip(client, f"{U}/contacts/delta()", {"Prefer": "odata.maxpagesize=10"})
    assert len(items) == 25 and pages == 3
    assert {i["surname"] for i in items} == {f"{i:03d}" for i in range(25)}
    assert all(i["@odata.type"] == "#microsoft.graph.contact" and i["@odata.etag"] == f'W/"{i["changeKey"]}"' for i in items)
    assert link.startswith(emu.graph_url + "/users/") and "$deltatoken=" in link
    page = client.get(f"{U}/contacts/delta").json()
    assert len(page["value"]) == 10 and "@odata.nextLink" in page  # default page size


def test_delta_round_reports_create_update_delete(client: httpx.Client, emu: Emulator) -> None:
    items, link, _ = round_trip(client, f"{U}/contacts/delta", {"Prefer": "odata.maxpagesize=50"})
    first, second = items[0], items[1]
    new = client.post(f"{U}/contacts", json={"givenName": "New", "surname": "Person"}).json()
    assert client.patch(f"{U}/contacts/{first['id']}", json={"companyName": "Contoso"}).status_code == 200
    assert client.delete(f"{U}/contacts/{second['id']}").status_code == 204
    changes, link2, _ = round_trip(client, link)
    by_id = {c["id"]: c for c in changes}
    assert len(changes) == 3
    assert by_id[new["id"]]["displayName"] == "New Person"
    updated = by_id[first["id"]]
    assert updated["companyName"] == "Contoso" and updated["changeKey"] != first["changeKey"] and "emailAddresses" in updated
    assert by_id[second["id"]] == {"@odata.type": "#microsoft.graph.contact", "id": second["id"], "@removed": {"reason": "deleted"}}
    assert round_trip(client, link2)[0] == []
    # a change made through the control API shows up in the next round, too
    emu.call("PATCH", f"/_emulator/users/adele@contoso.com/contacts/{new['id']}", {"jobTitle": "Buyer"})
    assert [c["jobTitle"] for c in round_trip(client, link2)[0]] == ["Buyer"]


def test_folder_delta_with_select_and_control_adds(client: httpx.Client, emu: Emulator) -> None:
    suppliers = folder_id(client, "Suppliers")
    url = f"{U}/contactFolders/{suppliers}/contacts/delta?$select=displayName,emailAddresses"
    items, link, _ = round_trip(client, url)
    assert len(items) == 3
    assert set(items[0]) == {"@odata.type", "@odata.etag", "displayName", "emailAddresses", "id"}
    added = emu.call("POST", "/_emulator/users/adele@contoso.com/contacts", {"folder": "Suppliers", "givenName": "Late"})
    assert added["folderId"] == suppliers
    changes, _, _ = round_trip(client, link)
    assert [(c["id"], c["displayName"]) for c in changes] == [(added["id"], "Late")]
    assert "$select" not in link  # options live in the token


def test_deleting_a_folder_removes_its_contacts_from_its_delta(client: httpx.Client) -> None:
    created = client.post(f"{U}/contactFolders", json={"displayName": "Temp"}).json()
    cid = client.post(f"{U}/contactFolders/{created['id']}/contacts", json={"givenName": "Gone"}).json()["id"]
    _, link, _ = round_trip(client, f"{U}/contactFolders/{created['id']}/contacts/delta")
    assert client.delete(f"{U}/contactFolders/{created['id']}").status_code == 204
    assert client.get(f"{U}/contacts/{cid}").status_code == 404
    assert client.get(link).status_code == 404  # the folder is gone


@pytest.mark.parametrize("query", ["$filter=givenName eq 'x'", "$orderby=displayName", "$search=x", "$expand=extensions"])
def test_unsupported_delta_options_are_400(client: httpx.Client, query: str) -> None:
    for path in (f"{U}/contacts/delta", f"{U}/contactFolders/contacts/contacts/delta", f"{U}/contactFolders/delta"):
        r = client.get(f"{path}?{query}")
        assert r.status_code == 400 and r.json()["error"]["code"] == "ErrorInvalidUrlQuery", (path, r.text)


# permissions --------------------------------------------------------------------------------


def test_mail_only_app_is_refused(emu: Emulator) -> None:
    with client_for(emu, MAIL_ONLY) as c:
        for method, path in (("GET", f"{U}/contacts"), ("GET", f"{U}/contacts/delta"), ("GET", f"{U}/contactFolders"),
                             ("GET", f"{U}/contactFolders/delta")):
            r = c.request(method, path)
            assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied", path
        assert c.post(f"{U}/contacts", json={"givenName": "X"}).status_code == 403


def test_read_only_app_reads_but_cannot_write(emu: Emulator, client: httpx.Client) -> None:
    cid = client.get(f"{U}/contacts").json()["value"][0]["id"]
    with client_for(emu, CONTACTS_READ) as c:
        assert c.get(f"{U}/contacts/delta").status_code == 200
        assert c.get(f"{U}/contacts/{cid}").status_code == 200
        assert c.post(f"{U}/contacts", json={"givenName": "X"}).status_code == 403
        assert c.patch(f"{U}/contacts/{cid}", json={"jobTitle": "X"}).status_code == 403
        assert c.delete(f"{U}/contacts/{cid}").status_code == 403
        assert c.post(f"{U}/contactFolders", json={"displayName": "X"}).status_code == 403
