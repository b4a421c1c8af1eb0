"""The real msgraph-sdk (GraphServiceClient, kiota) against the emulator, configured only with authority, base URL and CA bundle.

Covers message delta rounds (paged first round, then a deltaLink round with created, updated and removed
items), 410 after eviction, 429 + Retry-After honoured by the SDK's RetryHandler, the raw-bytes path the
connector uses (graph-v1.md §7.5), and shape fidelity: every response is parsed with the SDK's own models
and must leave no unknown property in `additional_data`. Calendar, contacts, To Do, `$batch` and
subscriptions light up when their emulator modules exist.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from azure.identity.aio import ClientSecretCredential
from certs import ssl_context
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_abstractions.serialization import Parsable
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph import GraphServiceClient
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.single_value_legacy_extended_property import SingleValueLegacyExtendedProperty
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.users.item.messages.item.message_item_request_builder import MessageItemRequestBuilder
from msgraph.graph_request_adapter import GraphRequestAdapter, options
from msgraph_core import GraphClientFactory

from connector.emulator import Emulator
from conftest import APP_ID, APP_SECRET, TENANT_ID, base_scenario

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ADELE = "adele@contoso.com"
MARKER = "String {66f5a359-4659-4830-9070-00040ec6ac6e} Name m365syncRecordId"


# msgraph-sdk's generated builders warn about their own deprecated request-configuration classes.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _has(module: str) -> bool:
    return importlib.util.find_spec(f"connector.emulator.{module}") is not None


needs_calendar = pytest.mark.skipif(not _has("calendar"), reason="connector/emulator/calendar.py not written yet")
needs_contacts = pytest.mark.skipif(not _has("contacts"), reason="connector/emulator/contacts.py not written yet")
needs_todo = pytest.mark.skipif(not _has("todo"), reason="connector/emulator/todo.py not written yet")
needs_batch = pytest.mark.skipif(not _has("batch"), reason="connector/emulator/batch.py not written yet")
needs_subscriptions = pytest.mark.skipif(not _has("subscriptions"), reason="connector/emulator/subscriptions.py not written yet")


def _soon(hours: int) -> str:
    t = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def scenario() -> dict[str, Any]:
    """Adele has five Inbox messages, a Projects/Sub folder tree, a category, events, contacts and a To Do list."""
    data = base_scenario()
    adele = data["users"][0]
    adele["mailFolders"] = {
        "inbox": {"messages": [
            {"subject": f"Quarterly report {i}", "body": {"contentType": "html", "content": f"<p>Numbers for Q{i}</p>"},
             "from": {"emailAddress": {"name": "Megan Bowen", "address": "megan@fabrikam.example"}}, "categories": ["Red category"]}
            for i in range(5)
        ]},
        "Projects": {"childFolders": {"Sub": {}}},
    }
    adele["masterCategories"] = [{"displayName": "Red category", "color": "preset0"}]
    adele["events"] = [
        {"subject": "Standup", "start": {"dateTime": _soon(24), "timeZone": "UTC"}, "end": {"dateTime": _soon(25), "timeZone": "UTC"}},
        {"subject": "Review", "start": {"dateTime": _soon(48), "timeZone": "UTC"}, "end": {"dateTime": _soon(49), "timeZone": "UTC"}},
    ]
    adele["contacts"] = [
        {"givenName": "Pavel", "surname": "Bansky", "emailAddresses": [{"address": "pavel@fabrikam.example", "name": "Pavel Bansky"}]},
    ]
    adele["contactFolders"] = {"Suppliers": {"contacts": [{"givenName": "Ana", "surname": "Trujillo"}]}}
    adele["todo"] = {"lists": [
        {"displayName": "Tasks", "wellknownListName": "defaultList", "tasks": [{"title": "Pay invoice"}, {"title": "Book travel"}]},
    ]}
    return data


# the SDK client ---------------------------------------------------------------------------


@dataclass
class Sdk:
    """A GraphServiceClient wired to one emulator, plus what the tests inspect."""

    client: GraphServiceClient
    adapter: GraphRequestAdapter
    credential: ClientSecretCredential
    emu: Emulator


def build_client(emu: Emulator, credential: ClientSecretCredential) -> tuple[GraphServiceClient, GraphRequestAdapter]:
    """graph-v1.md §7.2: keep the default middleware (retry, redirect...), trust only the emulator's CA."""
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(base_url=emu.graph_url, verify=ssl_context(emu.ca_bundle), timeout=30), options=options,
    )
    adapter = GraphRequestAdapter(AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE]), client=http)
    return GraphServiceClient(request_adapter=adapter), adapter


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    """The scenario above, running."""
    return make_emulator(scenario())


@pytest.fixture
async def sdk(emu: Emulator) -> AsyncIterator[Sdk]:
    """An app-only GraphServiceClient on the emulator."""
    cred = ClientSecretCredential(TENANT_ID, APP_ID, APP_SECRET, authority=emu.authority, connection_verify=emu.ca_bundle)
    client, adapter = build_client(emu, cred)
    yield Sdk(client, adapter, cred, emu)
    await adapter._http_client.aclose()  # noqa: SLF001 - the adapter has no public close
    await cred.close()


def unknown_properties(model: Any, path: str = "$") -> list[str]:
    """Properties the SDK's models did not recognise (they land in `additional_data`); annotations excepted."""
    out: list[str] = []
    if isinstance(model, Parsable):
        extra = getattr(model, "additional_data", None) or {}
        out += [f"{path}.{k}" for k in extra if not k.startswith("@odata.") and k != "@removed"]
        for name, value in vars(model).items():
            if name not in ("additional_data", "backing_store"):
                out += unknown_properties(value, f"{path}.{name}")
    elif isinstance(model, list):
        for i, value in enumerate(model):
            out += unknown_properties(value, f"{path}[{i}]")
    return out


def parse(raw: bytes, model: type[Parsable]) -> Any:
    """Deserialize JSON bytes into a kiota model class (for bodies not fetched through a builder)."""
    return JsonParseNodeFactory().get_root_parse_node("application/json", raw).get_object_value(model)


def delta_config(*, page_size: int = 2, select: list[str] | None = None) -> RequestConfiguration:
    """Prefer odata.maxpagesize and IdType="ImmutableId", as the connector sends them (graph-v1.md §7.3)."""
    cfg = RequestConfiguration(query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=select))
    cfg.headers.add("Prefer", f"odata.maxpagesize={page_size}")
    cfg.headers.add("Prefer", 'IdType="ImmutableId"')
    return cfg


async def follow(builder: Any, cfg: RequestConfiguration, link: str | None = None) -> tuple[list[Any], str, int]:
    """Run one delta round with the SDK (graph-v1.md §7.4): (items, deltaLink, pages)."""
    headers_only = RequestConfiguration(headers=cfg.headers)
    page = await (builder.with_url(link).get(request_configuration=headers_only) if link else builder.get(request_configuration=cfg))
    items, pages = list(page.value or []), 1
    while page.odata_next_link:
        page = await builder.with_url(page.odata_next_link).get(request_configuration=headers_only)
        items += page.value or []
        pages += 1
    assert page.odata_delta_link, "a round ends with a deltaLink"
    return items, page.odata_delta_link, pages


def inbox_delta(sdk: Sdk) -> Any:
    """The SDK's request builder for Adele's Inbox message delta."""
    return sdk.client.users.by_user_id(ADELE).mail_folders.by_mail_folder_id("inbox").messages.delta


def graph_paths(emu: Emulator) -> list[str]:
    """Paths of every Graph request the emulator has answered so far."""
    return [r["path"] for r in emu.request_log]


# pointing the SDK at the emulator ---------------------------------------------------------


async def test_default_graph_client_with_base_url_and_ca_bundle(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simplest recipe: GraphServiceClient(credentials, scopes), base_url override, CA via SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", emu.ca_bundle)  # httpx's default client (http2=True) trusts this file
    cred = ClientSecretCredential(TENANT_ID, APP_ID, APP_SECRET, authority=emu.authority, connection_verify=emu.ca_bundle)
    try:
        client = GraphServiceClient(credentials=cred, scopes=[GRAPH_SCOPE])
        client.request_adapter.base_url = emu.graph_url
        users = await client.users.get()
        assert sorted(u.user_principal_name for u in users.value) == [ADELE, "bob@contoso.com"]
        assert graph_paths(emu) == ["/v1.0/users"]
        await client.request_adapter._http_client.aclose()  # noqa: SLF001
    finally:
        await cred.close()


async def test_httpx_base_url_double_slash_is_collapsed(sdk: Sdk) -> None:
    """With base_url on the httpx client the SDK sends `/v1.0//users/...` (graph-v1.md §7.2); Graph and the emulator accept it."""
    user = await sdk.client.users.by_user_id(ADELE).get()
    assert user.user_principal_name == ADELE
    log = sdk.emu.request_log
    assert log[-1]["path"] == "/v1.0//users/adele%40contoso.com" and log[-1]["status"] == 200
    await inbox_delta(sdk).get(request_configuration=delta_config())
    assert sdk.emu.request_log[-1]["path"].startswith("/v1.0//users/adele%40contoso.com/mailFolders/inbox/messages/delta()")
    assert sdk.emu.request_log[-1]["mailbox"] == ADELE


# message delta ----------------------------------------------------------------------------


async def test_message_delta_paged_round_then_delta_link_round(sdk: Sdk) -> None:
    """First round in pages of 2; then created, updated, deleted and moved-away items via the deltaLink."""
    emu, builder = sdk.emu, inbox_delta(sdk)
    cfg = delta_config(select=["subject", "isRead", "parentFolderId", "categories"])
    first, delta_link, pages = await follow(builder, cfg)
    assert pages == 3
    assert sorted(m.subject for m in first) == [f"Quarterly report {i}" for i in range(5)]
    assert all(m.odata_type == "#microsoft.graph.message" and m.body is None for m in first)  # $select honoured
    assert all(m.categories == ["Red category"] for m in first)
    assert unknown_properties(first) == []
    by_subject = {m.subject: m.id for m in first}
    assert delta_link.startswith(emu.graph_url + "/users/")

    # An unchanged mailbox: the deltaLink round is empty and hands back a new deltaLink.
    empty_round, delta_link, _ = await follow(builder, cfg, delta_link)
    assert empty_round == []

    created = emu.deliver(ADELE, {"subject": "New order", "body": {"contentType": "text", "content": "hello"}})
    emu.update_message(ADELE, by_subject["Quarterly report 1"], {"isRead": True})
    emu.delete_message(ADELE, by_subject["Quarterly report 2"])
    emu.move_message(ADELE, by_subject["Quarterly report 3"], "Projects")

    changes, delta_link2, pages = await follow(builder, cfg, delta_link)
    assert pages == 2  # four changes, two per page
    live = {m.id: m for m in changes if not (m.additional_data or {}).get("@removed")}
    removed = {m.id: m.additional_data["@removed"] for m in changes if (m.additional_data or {}).get("@removed")}
    assert set(live) == {created["immutableId"], by_subject["Quarterly report 1"]}
    assert live[created["immutableId"]].subject == "New order"
    assert live[created["immutableId"]].is_read is False
    assert live[by_subject["Quarterly report 1"]].is_read is True
    # Immutable ids survive the move, so the tombstone names the id the first round returned (graph-v1.md §2.6).
    assert removed == {by_subject["Quarterly report 2"]: {"reason": "deleted"}, by_subject["Quarterly report 3"]: {"reason": "deleted"}}
    assert unknown_properties(changes) == []
    assert delta_link2 != delta_link

    # The moved message shows up as new in its destination folder's own first round, under the same immutable id.
    projects = sdk.client.users.by_user_id(ADELE).mail_folders.by_mail_folder_id("Projects").messages.delta
    moved, _, _ = await follow(projects, delta_config(select=["subject"]))
    assert [(m.id, m.subject) for m in moved] == [(by_subject["Quarterly report 3"], "Quarterly report 3")]


async def test_delta_link_after_eviction_is_410_sync_state_not_found(sdk: Sdk) -> None:
    """An evicted sync state surfaces as ODataError 410 SyncStateNotFound (graph-v1.md §2.7, §7.4)."""
    builder = inbox_delta(sdk)
    _, delta_link, _ = await follow(builder, delta_config(page_size=10))
    assert sdk.emu.evict_sync_state(ADELE) >= 1
    with pytest.raises(ODataError) as err:
        await builder.with_url(delta_link).get(request_configuration=delta_config())
    assert err.value.response_status_code == 410
    assert err.value.error is not None and err.value.error.code == "SyncStateNotFound"
    assert sdk.emu.request_log[-1]["status"] == 410


async def test_sdk_retry_handler_honours_retry_after_on_injected_429(sdk: Sdk) -> None:
    """Two 429s with Retry-After: 1, then success: the SDK waits and retries on its own."""
    emu = sdk.emu
    await inbox_delta(sdk).get(request_configuration=delta_config(page_size=10))  # warm up: token, imports of the models
    rule = emu.add_fault({"match": {"path": "/v1.0/users/*/mailFolders/*/messages/delta*"}, "times": 2,
                          "respond": {"status": 429, "retry_after": 1}})
    started = time.monotonic()
    page = await inbox_delta(sdk).get(request_configuration=delta_config(page_size=10))
    elapsed = time.monotonic() - started
    assert len(page.value) == 5 and page.odata_delta_link
    # Honouring Retry-After: 1 twice takes ~2 s; kiota's fallback backoff (no usable Retry-After) would take over 7 s (§7.6).
    assert 1.9 <= elapsed < 4, f"two retries took {elapsed:.2f}s, so Retry-After: 1 was not honoured"
    fault = next(f for f in emu.stats()["faults"] if f["id"] == rule)
    assert (fault["seen"], fault["fired"]) == (3, 2)  # two 429s answered, the third attempt passed through
    assert [r["status"] for r in emu.request_log if "/messages/delta" in r["path"]] == [200, 200]


async def test_sdk_retry_handler_recovers_from_mailbox_budget_429(make_emulator: Callable[..., Emulator]) -> None:
    """A real (not injected) Outlook budget 429: the emulator's Retry-After is obeyed and the retry succeeds."""
    data = scenario()
    data["throttling"] = {"requests_per_window": 2, "window_seconds": 3}
    emu = make_emulator(data)
    cred = ClientSecretCredential(TENANT_ID, APP_ID, APP_SECRET, authority=emu.authority, connection_verify=emu.ca_bundle)
    client, adapter = build_client(emu, cred)
    try:
        folders = client.users.by_user_id(ADELE).mail_folders
        for _ in range(3):
            await folders.get()
        statuses = [r["status"] for r in emu.request_log]
        assert statuses.count(200) == 3 and 429 in statuses
        assert statuses.index(429) == 2  # the third request is over the budget of two per window
        assert emu.stats()["throttled"] >= 1
    finally:
        await adapter._http_client.aclose()  # noqa: SLF001
        await cred.close()


async def test_raw_bytes_path_through_the_sdk_pipeline(sdk: Sdk) -> None:
    """graph-v1.md §7.5: send_primitive_async(..., "bytes") returns Graph's JSON as sent; errors still raise."""
    builder = inbox_delta(sdk)
    cfg = delta_config(page_size=3, select=["subject"])
    raw = await sdk.adapter.send_primitive_async(builder.to_get_request_information(cfg), "bytes", {"XXX": ODataError})
    page = orjson.loads(raw)
    assert page["@odata.context"].endswith("/$metadata#Collection(message)")
    assert len(page["value"]) == 3 and "@odata.nextLink" in page
    assert set(page["value"][0]) == {"@odata.type", "@odata.etag", "subject", "id"}
    rest = orjson.loads(await sdk.adapter.send_primitive_async(
        builder.with_url(page["@odata.nextLink"]).to_get_request_information(RequestConfiguration(headers=cfg.headers)), "bytes", {"XXX": ODataError}))
    assert len(rest["value"]) == 2 and "@odata.deltaLink" in rest and "@odata.nextLink" not in rest
    sdk.emu.evict_sync_state(ADELE)
    with pytest.raises(ODataError) as err:
        await sdk.adapter.send_primitive_async(builder.with_url(rest["@odata.deltaLink"]).to_get_request_information(), "bytes", {"XXX": ODataError})
    assert err.value.response_status_code == 410


# shape fidelity: SDK models for every resource kind ---------------------------------------


async def test_users_parse_with_sdk_models(sdk: Sdk) -> None:
    """`/users` and `/users/{upn}` parse into `User` with nothing left over."""
    users = await sdk.client.users.get()
    assert [u.user_principal_name for u in users.value] == [ADELE, "bob@contoso.com"]
    assert unknown_properties(users) == []
    adele = await sdk.client.users.by_user_id(users.value[0].id).get()
    assert (adele.display_name, adele.mail) == ("Adele Vance", ADELE)
    assert unknown_properties(adele) == []


async def test_mail_folders_and_folder_delta_parse_with_sdk_models(sdk: Sdk) -> None:
    """mailFolders list, childFolders and mailFolders/delta parse into `MailFolder` with nothing left over."""
    u = sdk.client.users.by_user_id(ADELE)
    top = await u.mail_folders.get()
    names = {f.display_name: f for f in top.value}
    assert {"Inbox", "Drafts", "Sent Items", "Deleted Items", "Projects"} <= set(names)
    assert (names["Inbox"].total_item_count, names["Inbox"].unread_item_count) == (5, 5)
    assert unknown_properties(top) == []
    children = await u.mail_folders.by_mail_folder_id(names["Projects"].id).child_folders.get()
    assert [f.display_name for f in children.value] == ["Sub"]
    assert children.value[0].parent_folder_id == names["Projects"].id
    folders = []
    page = await u.mail_folders.delta.get()
    while True:
        folders += page.value
        if not page.odata_next_link:
            break
        page = await u.mail_folders.delta.with_url(page.odata_next_link).get()
    assert page.odata_delta_link
    assert {"Inbox", "Projects", "Sub"} <= {f.display_name for f in folders}
    assert unknown_properties(folders) == []


async def test_message_get_with_headers_and_extended_property_after_patch(sdk: Sdk) -> None:
    """PATCH a singleValueExtendedProperty with the SDK, then read it back with $expand, plus internetMessageHeaders."""
    msgs = sdk.client.users.by_user_id(ADELE).messages
    listed = await msgs.get()
    target = listed.value[0]
    assert unknown_properties(listed) == []
    patched = await msgs.by_message_id(target.id).patch(Message(
        categories=["Red category", "Synced"],
        single_value_extended_properties=[SingleValueLegacyExtendedProperty(id=MARKER, value="record-42")],
    ))
    assert patched.categories == ["Red category", "Synced"]
    assert unknown_properties(patched) == []

    full = await msgs.by_message_id(target.id).get()
    assert full.body.content_type == BodyType.Html and "Numbers for" in full.body.content
    assert isinstance(full.received_date_time, datetime) and full.received_date_time.tzinfo is not None
    assert full.from_.email_address.address == "megan@fabrikam.example"
    assert full.internet_message_id and full.conversation_id and full.parent_folder_id
    assert full.internet_message_headers is None  # select-only property
    assert unknown_properties(full) == []

    q = MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
        select=["subject", "internetMessageHeaders"], expand=[f"singleValueExtendedProperties($filter=id eq '{MARKER}')"])
    got = await msgs.by_message_id(target.id).get(request_configuration=RequestConfiguration(query_parameters=q))
    assert got.subject == target.subject and got.body is None
    assert any(h.name == "Message-ID" and h.value == full.internet_message_id for h in got.internet_message_headers)
    assert [(p.id, p.value) for p in got.single_value_extended_properties] == [(MARKER, "record-42")]
    assert unknown_properties(got) == []


async def test_master_categories_parse_with_sdk_models(sdk: Sdk) -> None:
    """outlook/masterCategories parse into `OutlookCategory`; the color is the SDK's enum."""
    cats = await sdk.client.users.by_user_id(ADELE).outlook.master_categories.get()
    assert [(c.display_name, c.color.value) for c in cats.value] == [("Red category", "preset0")]
    assert unknown_properties(cats) == []


async def test_graph_error_parses_as_odata_error(sdk: Sdk) -> None:
    """A Graph error envelope becomes ODataError with code, message and innerError."""
    with pytest.raises(ODataError) as err:
        await sdk.client.users.by_user_id(ADELE).messages.by_message_id("AAMkAGnope").get()
    assert err.value.response_status_code == 404
    assert err.value.error.code == "ErrorItemNotFound" and err.value.error.message
    assert err.value.error.inner_error is not None and err.value.error.inner_error.request_id


# calendar, contacts, To Do ----------------------------------------------------------------


@needs_calendar
async def test_calendar_view_delta_round_with_sdk_models(sdk: Sdk) -> None:
    """calendarView/delta with startDateTime/endDateTime: events parse, a new event arrives via the deltaLink."""
    from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
    from msgraph.generated.models.event import Event
    from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder as CalendarDelta

    u = sdk.client.users.by_user_id(ADELE)
    cfg = RequestConfiguration(query_parameters=CalendarDelta.DeltaRequestBuilderGetQueryParameters(
        start_date_time=_soon(0) + "Z", end_date_time=_soon(24 * 7) + "Z"))
    cfg.headers.add("Prefer", "odata.maxpagesize=1")
    cfg.headers.add("Prefer", 'IdType="ImmutableId"')
    events, delta_link, pages = await follow(u.calendar_view.delta, cfg)
    assert sorted(e.subject for e in events) == ["Review", "Standup"] and pages == 2
    assert all(isinstance(e.start, DateTimeTimeZone) and e.start.date_time for e in events)
    assert unknown_properties(events) == []

    created = await u.events.post(Event(subject="Planning", start=DateTimeTimeZone(date_time=_soon(30), time_zone="UTC"),
                                        end=DateTimeTimeZone(date_time=_soon(31), time_zone="UTC")))
    assert created.id and unknown_properties(created) == []
    await u.events.by_event_id(events[0].id).delete()
    changes, _, _ = await follow(u.calendar_view.delta, cfg, delta_link)
    assert "Planning" in {e.subject for e in changes}
    assert any((e.additional_data or {}).get("@removed") and e.id == events[0].id for e in changes)
    assert unknown_properties(changes) == []


@needs_contacts
async def test_contacts_and_contact_folders_delta_with_sdk_models(sdk: Sdk) -> None:
    """contacts/delta, contactFolders/delta and a folder's contacts/delta parse into SDK models."""
    from msgraph.generated.models.contact import Contact

    u = sdk.client.users.by_user_id(ADELE)
    cfg = RequestConfiguration()
    cfg.headers.add("Prefer", 'IdType="ImmutableId"')
    contacts, delta_link, _ = await follow(u.contacts.delta, cfg)
    assert [(c.given_name, c.email_addresses[0].address) for c in contacts] == [("Pavel", "pavel@fabrikam.example")]
    assert unknown_properties(contacts) == []
    folders, _, _ = await follow(u.contact_folders.delta, cfg)
    suppliers = next(f for f in folders if f.display_name == "Suppliers")
    assert unknown_properties(folders) == []
    in_folder, _, _ = await follow(u.contact_folders.by_contact_folder_id(suppliers.id).contacts.delta, cfg)
    assert [c.given_name for c in in_folder] == ["Ana"]
    await u.contacts.post(Contact(given_name="Isaiah", surname="Langer"))
    changes, _, _ = await follow(u.contacts.delta, cfg, delta_link)
    assert [c.given_name for c in changes] == ["Isaiah"]
    assert unknown_properties(changes) == []


@needs_todo
async def test_todo_lists_and_tasks_delta_with_sdk_models(sdk: Sdk) -> None:
    """todo/lists/delta and tasks/delta parse into `TodoTaskList` / `TodoTask`; a completed task comes back updated."""
    from msgraph.generated.models.task_status import TaskStatus
    from msgraph.generated.models.todo_task import TodoTask

    u = sdk.client.users.by_user_id(ADELE)
    lists, _, _ = await follow(u.todo.lists.delta, RequestConfiguration())
    default = next(lst for lst in lists if lst.display_name == "Tasks")
    assert default.wellknown_list_name.value == "defaultList"
    assert unknown_properties(lists) == []
    tasks_delta = u.todo.lists.by_todo_task_list_id(default.id).tasks.delta
    tasks, delta_link, _ = await follow(tasks_delta, RequestConfiguration())
    assert sorted(t.title for t in tasks) == ["Book travel", "Pay invoice"]
    assert unknown_properties(tasks) == []
    pay = next(t for t in tasks if t.title == "Pay invoice")
    await u.todo.lists.by_todo_task_list_id(default.id).tasks.by_todo_task_id(pay.id).patch(TodoTask(status=TaskStatus.Completed))
    changes, _, _ = await follow(tasks_delta, RequestConfiguration(), delta_link)
    assert [(t.id, t.status) for t in changes] == [(pay.id, TaskStatus.Completed)]
    assert unknown_properties(changes) == []


# $batch -----------------------------------------------------------------------------------


async def send_json(sdk: Sdk, method: Method, path: str, body: Any) -> dict[str, Any]:
    """POST/PATCH a JSON body through the SDK's authenticated pipeline; the parsed JSON answer."""
    ri = RequestInformation(method, "{+baseurl}" + path)
    ri.content = orjson.dumps(body)
    ri.headers.try_add("Content-Type", "application/json")
    raw = await sdk.adapter.send_primitive_async(ri, "bytes", {"XXX": ODataError})
    return orjson.loads(raw) if raw else {}


@needs_batch
async def test_batch_with_depends_on(sdk: Sdk) -> None:
    """`$batch` with dependsOn runs in order; a dependant of a failed request gets 424 (graph-v1.md §4.3).

    msgraph-core 1.5.2's BatchRequestContent is not usable against Graph (graph-v1.md §7.7): it
    serialises `depends_on` instead of `dependsOn` (so ordering would be silently lost) and keeps
    absolute URLs. The batch is therefore sent as Graph's JSON through the SDK's own authenticated
    pipeline, and each inner body is parsed with the SDK's models.
    """
    from msgraph.generated.models.mail_folder import MailFolder
    from msgraph.generated.models.mail_folder_collection_response import MailFolderCollectionResponse

    inbox = f"/users/{ADELE}/mailFolders/inbox/childFolders"
    body = {"requests": [
        {"id": "1", "method": "POST", "url": inbox, "headers": {"Content-Type": "application/json"}, "body": {"displayName": "From batch"}},
        {"id": "2", "method": "GET", "url": inbox, "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/users/nobody@contoso.com/messages", "dependsOn": ["2"]},
        {"id": "4", "method": "GET", "url": f"/users/{ADELE}/messages?$top=1", "dependsOn": ["3"]},
    ]}
    answer = await send_json(sdk, Method.POST, "/$batch", body)
    by_id = {r["id"]: r for r in answer["responses"]}
    assert set(by_id) == {"1", "2", "3", "4"}
    assert by_id["1"]["status"] == 201
    made = parse(orjson.dumps(by_id["1"]["body"]), MailFolder)
    assert made.display_name == "From batch" and unknown_properties(made) == []
    assert by_id["2"]["status"] == 200
    listed = parse(orjson.dumps(by_id["2"]["body"]), MailFolderCollectionResponse)
    assert "From batch" in [f.display_name for f in listed.value]  # 2 ran after 1
    assert by_id["3"]["status"] == 404 and by_id["3"]["body"]["error"]["code"]
    assert by_id["4"]["status"] == 424
    assert any(r.get("batch") for r in sdk.emu.request_log)


# subscriptions ----------------------------------------------------------------------------


class Receiver:
    """A tiny webhook receiver on loopback: answers validation handshakes and records notifications."""

    def __init__(self) -> None:
        self.validations: list[str] = []
        self.notifications: list[bytes] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                token = parse_qs(urlsplit(self.path).query).get("validationToken")
                if token:
                    outer.validations.append(token[0])
                    reply = token[0].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                else:
                    outer.notifications.append(body)
                    outer.arrived.set()
                    reply = b""
                    self.send_response(202)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify?source=emulator"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running webhook receiver."""
    with Receiver() as r:
        yield r


@needs_subscriptions
async def test_subscription_handshake_and_notification(sdk: Sdk, receiver: Receiver) -> None:
    """POST /subscriptions via the SDK: validation handshake to the receiver, then a change notification on delivery."""
    from msgraph.generated.models.subscription import Subscription

    expires = datetime.now(timezone.utc) + timedelta(hours=2)
    sub = await sdk.client.subscriptions.post(Subscription(
        change_type="created,updated", notification_url=receiver.url, resource=f"users/{ADELE}/mailFolders('inbox')/messages",
        expiration_date_time=expires, client_state="s3cret-state",
    ))
    assert sub.id and sub.resource and sub.client_state == "s3cret-state"
    assert abs((sub.expiration_date_time - expires).total_seconds()) < 60
    assert unknown_properties(sub) == []
    assert len(receiver.validations) == 1 and receiver.validations[0]

    sdk.emu.deliver(ADELE, {"subject": "Ping"})
    assert await asyncio.to_thread(receiver.arrived.wait, 15), "no change notification arrived"
    # msgraph-sdk 1.65 has no changeNotificationCollection model: check against graph-samples/change-notification-collection.json.
    note = orjson.loads(receiver.notifications[0])["value"][0]
    assert set(note) >= {"subscriptionId", "subscriptionExpirationDateTime", "clientState", "changeType", "resource", "tenantId", "resourceData"}
    assert note["subscriptionId"] == sub.id and note["clientState"] == "s3cret-state" and note["tenantId"] == TENANT_ID
    assert note["changeType"] == "created" and "/messages/" in note["resource"].lower()
    data = note["resourceData"]
    assert data["@odata.type"] == "#Microsoft.Graph.Message" and data["id"] and data["@odata.id"].lower().startswith("users/")
    assert note["resource"].rsplit("/", 1)[-1] == data["id"]


@needs_subscriptions
async def test_subscription_rejected_when_receiver_fails_validation(sdk: Sdk) -> None:
    """A notificationUrl that does not echo the validation token: 400, no subscription."""
    from msgraph.generated.models.subscription import Subscription

    with pytest.raises(ODataError) as err:
        await sdk.client.subscriptions.post(Subscription(
            change_type="created", notification_url="http://127.0.0.1:9/nobody-listens", resource=f"users/{ADELE}/messages",
            expiration_date_time=datetime.now(timezone.utc) + timedelta(hours=1), client_state="x",
        ))
    assert err.value.response_status_code == 400
