"""Generated bulk content (determinism, counts, threads, folders, users) and the contoso demo tenant."""

from __future__ import annotations

import base64
import statistics
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from connector.emulator import Emulator, Scenario, build_state, generate, load_scenario, mail
from connector.emulator.state import EmulatorState
from connector.emulator.store import Item, Mailbox
from tests.conftest import base_scenario

CONTOSO = Path(__file__).resolve().parents[2] / "samples" / "tenants" / "contoso.yaml"
FIXED_NOW = datetime(2026, 11, 26, 15, 30, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the generator's anchor so two builds in one test can never straddle midnight."""
    monkeypatch.setattr(generate, "utcnow", lambda: FIXED_NOW)


def build(**gen: Any) -> EmulatorState:
    spec = {"seed": 7, "messages": 120, "folders": ["inbox", "inbox/Projects", "inbox/Projects/2026", "Clients"]}
    spec.update(gen)
    return build_state(Scenario.model_validate(base_scenario(generate=spec)))


def messages_of(mb: Mailbox) -> list[Item]:
    return sorted((i for n, c in mb.collections.items() if n.startswith("messages:") for i in c), key=lambda i: i.key)


def mailbox(state: EmulatorState, name: str) -> Mailbox:
    mb = state.tenant.find(name)
    assert mb is not None
    return mb


def header(item: Item, name: str) -> str | None:
    return mail.header(item.data.get("internetMessageHeaders"), name)


# determinism --------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_messages_and_users() -> None:
    a, b = build(users=3), build(users=3)
    for name in ("adele@contoso.com", "bob@contoso.com", "gen002@contoso.com"):
        ma, mb_ = mailbox(a, name), mailbox(b, name)
        dump = lambda m: orjson.dumps([(i.key, i.rest_id, i.container, i.data) for i in messages_of(m)])  # noqa: E731
        assert dump(ma) == dump(mb_)
        assert ma.user == mb_.user
    assert sorted(a.tenant.mailboxes) == sorted(b.tenant.mailboxes)


def test_different_seed_gives_different_content() -> None:
    a, b = build(seed=1), build(seed=2)
    subjects_a = [i.data["subject"] for i in messages_of(mailbox(a, "adele@contoso.com"))]
    subjects_b = [i.data["subject"] for i in messages_of(mailbox(b, "adele@contoso.com"))]
    assert subjects_a != subjects_b
    imids_a = {i.data["internetMessageId"] for i in messages_of(mailbox(a, "adele@contoso.com"))}
    imids_b = {i.data["internetMessageId"] for i in messages_of(mailbox(b, "adele@contoso.com"))}
    assert not imids_a & imids_b


# counts and shape ---------------------------------------------------------------------------


def test_counts_per_target_mailbox_and_sent_items() -> None:
    state = build(messages=200, mailboxes=["adele@contoso.com"])
    adele, bob = mailbox(state, "adele@contoso.com"), mailbox(state, "bob@contoso.com")
    msgs = messages_of(adele)
    assert len(msgs) == 200
    assert messages_of(bob) == []
    sent_id = adele.extra["mail"].well_known["sentitems"]
    sent = [m for m in msgs if m.container == "messages:" + sent_id]
    assert 5 <= len(sent) <= 40  # ~10%
    assert all(m.data["from"]["emailAddress"]["address"] == "adele@contoso.com" for m in sent)
    assert all(m.data["isRead"] for m in sent)
    received = [m for m in msgs if m not in sent]
    assert all(m.data["from"]["emailAddress"]["address"] != "adele@contoso.com" for m in received)
    folders = {m.container for m in received}
    assert len(folders) == 4  # spread over every listed folder


def test_default_targets_are_all_mailboxes_including_generated_users() -> None:
    state = build(messages=15, users=2)
    for name in ("adele@contoso.com", "bob@contoso.com", "gen001@contoso.com", "gen002@contoso.com"):
        assert len(messages_of(mailbox(state, name))) == 15


def test_message_fields_are_realistic() -> None:
    state = build(messages=300, mailboxes=["adele@contoso.com"])
    msgs = messages_of(mailbox(state, "adele@contoso.com"))
    sizes = [len(m.data["body"]["content"]) for m in msgs]
    assert 2_000 <= statistics.median(sizes) <= 20_000
    bodies = [m.data["body"]["content"] for m in msgs]
    assert any("<table" in b for b in bodies) and any("<a href=" in b for b in bodies)
    assert any("divRplyFwdMsg" in b for b in bodies)  # quoted history in replies
    # the precomputed preview is exactly what mail.preview derives from the body
    assert all(m.data["bodyPreview"] == mail.preview(m.data["body"]) for m in msgs)
    senders = {m.data["from"]["emailAddress"]["address"].split("@")[1] for m in msgs}
    assert {"fabrikam.com", "adatum.com", "litware.com"} <= senders
    assert "contoso.com" in senders and len(senders) >= 10
    assert all(1 <= len(m.data["toRecipients"]) + len(m.data["ccRecipients"]) <= 5 for m in msgs)
    assert any(m.data["ccRecipients"] for m in msgs)
    assert {m.data["importance"] for m in msgs} >= {"normal", "high"}
    assert {m.data["isRead"] for m in msgs} == {True, False}
    assert any(m.data["categories"] for m in msgs) and any(m.data["hasAttachments"] for m in msgs)
    received = sorted(m.data["receivedDateTime"] for m in msgs)
    first = datetime.fromisoformat(received[0].replace("Z", "+00:00"))
    last = datetime.fromisoformat(received[-1].replace("Z", "+00:00"))
    assert 90 <= (last - first).days <= 180 and last <= FIXED_NOW
    used = {c for m in msgs for c in m.data["categories"]}
    master = {c["displayName"] for c in mailbox(state, "adele@contoso.com").extra["masterCategories"].values()}
    assert used <= master


def test_replies_thread_with_their_parents() -> None:
    state = build(messages=200, mailboxes=["adele@contoso.com"])
    msgs = messages_of(mailbox(state, "adele@contoso.com"))
    by_imid = {m.data["internetMessageId"]: m for m in msgs}
    replies = [m for m in msgs if header(m, "In-Reply-To")]
    assert len(replies) >= 20
    for reply in replies:
        parent = by_imid[header(reply, "In-Reply-To") or ""]
        topic = parent.data["subject"][4:] if parent.data["subject"][:4] in ("RE: ", "FW: ") else parent.data["subject"]
        assert reply.data["subject"] == "RE: " + topic
        assert reply.data["conversationId"] == parent.data["conversationId"]
        assert (header(reply, "References") or "").split()[-1] == parent.data["internetMessageId"]
        p_index = base64.b64decode(parent.data["conversationIndex"])
        r_index = base64.b64decode(reply.data["conversationIndex"])
        assert r_index[: len(p_index)] == p_index and len(r_index) == len(p_index) + 5
        assert reply.data["receivedDateTime"] >= parent.data["receivedDateTime"]
    assert any(m.data["subject"].startswith("FW: ") for m in msgs)
    assert len({m.data["conversationId"] for m in msgs}) < len(msgs)


def test_folders_are_created_once_with_stable_ids() -> None:
    state = build(messages=40, mailboxes=["adele@contoso.com"])
    adele = mailbox(state, "adele@contoso.com")
    inbox = mail.resolve_folder(adele, "inbox")
    projects = mail.resolve_folder(adele, "inbox/Projects")
    year = mail.resolve_folder(adele, "inbox/Projects/2026")
    clients = mail.resolve_folder(adele, "Clients")
    assert projects.data["parentFolderId"] == inbox.key
    assert year.data["parentFolderId"] == projects.key
    assert clients.data["parentFolderId"] == adele.extra["mail"].root_id
    names = [f.data["displayName"] for f in mail.folder_coll(adele)]
    assert names.count("Projects") == 1
    again = mail.resolve_folder(mailbox(build(messages=40, mailboxes=["adele@contoso.com"]), "adele@contoso.com"), "inbox/Projects/2026")
    assert again.key == year.key


def test_generated_users_are_in_the_directory() -> None:
    state = build(users=3, messages=0)
    gen = mailbox(state, "gen003@contoso.com")
    assert gen.user["givenName"] and gen.user["surname"]
    assert gen.user["displayName"] == f"{gen.user['givenName']} {gen.user['surname']}"
    alias = gen.user["proxyAddresses"][1].split(":", 1)[1]
    assert gen.user["proxyAddresses"][0] == "SMTP:gen003@contoso.com"
    assert state.tenant.find(alias) is gen
    assert "mail" in gen.extra  # mailbox initialised


def test_events_contacts_and_tasks_reach_their_modules() -> None:
    state = build(messages=0, events=12, contacts=9, tasks=8, mailboxes=["bob@contoso.com"])
    bob = mailbox(state, "bob@contoso.com")
    counts = {prefix: sum(len(c) for n, c in bob.collections.items() if n.split(":")[0] == prefix) for prefix in ("events", "contacts", "todoTasks")}
    assert counts == {"events": 12, "contacts": 9, "todoTasks": 8}
    events = list(bob.collection("events"))
    assert any(e.data.get("recurrence") for e in events) and any(not e.data.get("recurrence") for e in events)
    assert any(e.data.get("attendees") for e in events)


def test_unknown_target_mailbox_is_an_error() -> None:
    with pytest.raises(ValueError, match="nobody@contoso.com"):
        build(mailboxes=["nobody@contoso.com"])


# the contoso demo tenant --------------------------------------------------------------------


@pytest.fixture(scope="module")
def contoso() -> Iterator[Emulator]:
    with Emulator(CONTOSO) as emu:
        yield emu


def _all(mb: Mailbox) -> list[Item]:
    return [i for n, c in mb.collections.items() if n.startswith("messages:") for i in c]


def test_contoso_has_users_apps_and_a_mailboxless_user() -> None:
    scenario = load_scenario(CONTOSO)
    assert len([u for u in scenario.users if u.hasMailbox]) >= 5
    assert any(not u.hasMailbox for u in scenario.users)
    assert {a.public_client for a in scenario.apps} == {True, False}
    assert any(a.mailboxes for a in scenario.apps)
    assert scenario.generate is not None and scenario.generate.messages > 0
    assert all(u.proxyAddresses for u in scenario.users if u.hasMailbox)


def test_contoso_content_exercises_every_feature(contoso: Emulator) -> None:
    state = contoso.state
    adele = mailbox(state, "adele@contoso.com")
    msgs = _all(adele)
    subjects = {m.data["subject"]: m for m in msgs}
    assert any("CRM:0001001" in s for s in subjects)
    assert any("Tracked to Dynamics 365" in m.data["categories"] for m in msgs)
    assert "Tracked to Dynamics 365" in {c["displayName"] for c in adele.extra["masterCategories"].values()}
    oof = subjects["Automatic reply: Project Atlas kickoff"]
    assert header(oof, "Auto-Submitted") == "auto-replied" and header(oof, "X-Auto-Response-Suppress")
    assert oof.data["conversationId"] == subjects["Project Atlas kickoff"].data["conversationId"]
    fab = mail.resolve_folder(adele, "inbox/Customers/Fabrikam")
    thread = [m for m in msgs if "Fabrikam order 4471" in m.data["subject"]]
    assert len(thread) == 3 and len({m.data["conversationId"] for m in thread}) == 1
    assert any(m.container == "messages:" + fab.key for m in thread)
    adatum = mail.resolve_folder(adele, "inbox/Customers/Adatum")
    tracked = [m for m in msgs if m.data["subject"].endswith("CRM:0001001")]
    assert len(tracked) == 2 and len({m.data["conversationId"] for m in tracked}) == 1
    assert any(m.container == "messages:" + adatum.key for m in tracked)
    forward = subjects["FW: Litware partnership proposal"]
    original = next(m for m in _all(mailbox(state, "alex@contoso.com")) if m.data["subject"] == "Litware partnership proposal")
    assert forward.data["conversationId"] == original.data["conversationId"]
    assert any(m.data["bccRecipients"] for m in msgs)
    sent = adele.extra["mail"].well_known["sentitems"]
    assert sum(1 for m in msgs if m.container == "messages:" + sent) >= 2
    megan = mailbox(state, "megan@contoso.com")
    lunch = [m for m in _all(megan) + msgs if m.data["subject"] == "Lunch and learn: Dynamics 365 tips"]
    assert len(lunch) == 2 and len({m.data["conversationId"] for m in lunch}) == 1
    events = list(adele.collection("events"))
    assert any((e.data.get("recurrence") or {}).get("range", {}).get("type") == "noEnd" for e in events)
    contacts = [c for n, coll in adele.collections.items() if n.startswith("contacts:") for c in coll]
    domains = {a["address"].split("@")[1] for c in contacts for a in c.data.get("emailAddresses") or []}
    assert {"fabrikam.com", "adatum.com", "litware.com"} <= domains
    tasks = [t for n, coll in adele.collections.items() if n.startswith("todoTasks:") for t in coll]
    assert {t.data["status"] for t in tasks} >= {"notStarted", "inProgress", "completed"}
    assert len(_all(megan)) > 200  # the generate: block


def test_contoso_serves_graph_with_its_demo_apps(contoso: Emulator) -> None:
    scenario = load_scenario(CONTOSO)
    full = next(a for a in scenario.apps if "Mail.ReadWrite" in a.permissions)
    scoped = next(a for a in scenario.apps if a.mailboxes)

    def client(app: Any) -> httpx.Client:
        r = httpx.post(f"{contoso.authority}/{contoso.tenant_id}/oauth2/v2.0/token", verify=contoso.ssl_context(), data={
            "client_id": app.client_id, "client_secret": app.client_secret, "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default"})
        assert r.status_code == 200, r.text
        return httpx.Client(base_url=contoso.graph_url, verify=contoso.ssl_context(), headers={"Authorization": f"Bearer {r.json()['access_token']}"})

    with client(full) as c:
        r = c.get("/users", params={"$top": "999"})
        assert r.status_code == 200 and len(r.json()["value"]) >= 6
        r = c.get("/users/adele@contoso.com/mailFolders/inbox/childFolders")
        assert [f["displayName"] for f in r.json()["value"]] == ["Customers"]
        r = c.get("/users/svc-scanner@contoso.com/messages")
        assert r.status_code == 404 and r.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
    with client(scoped) as c:
        assert c.get("/users/sales@contoso.com/mailFolders/inbox/messages").status_code == 200
        r = c.get("/users/megan@contoso.com/mailFolders/inbox/messages")
        assert r.status_code == 403
