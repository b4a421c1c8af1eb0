"""The engine against the emulator: mail rounds, moves, resyncs, faults, limits, dedupe."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import base_scenario
from tests.emulator.test_mail_delta import messages

from .conftest import Runner


def mail_scenario(n: int = 30, **extra: Any) -> dict[str, Any]:
    s = base_scenario(**extra)
    s["users"][0]["mailFolders"] = {
        "inbox": {"messages": messages(n), "childFolders": {"Customers": {"messages": messages(5, "Cust"), "childFolders": {"Fabrikam": {"messages": messages(3, "Fab")}}}}},
        "sentitems": {"messages": [{"subject": "Sent one", "from": {"emailAddress": {"address": "adele@contoso.com"}},
                                    "toRecipients": [{"emailAddress": {"address": "dana@fabrikam.com"}}]}]},
    }
    return s


def email_subjects(r: Runner) -> list[str]:
    return sorted(s for (s,) in r.rows("SELECT subject FROM email"))


def test_full_then_incremental_rounds_match_the_emulator(runner_for: Any) -> None:
    r = runner_for(mail_scenario())
    rep = r.sync(resources=["mail"], page_size=7)
    assert rep.ok, rep.to_dict()
    mail = _mail_report(rep)
    assert mail.created == 31 and mail.pages >= 6  # Inbox (30) + Sent Items (1), default folders only
    assert email_subjects(r) == sorted([f"Msg {i}" for i in range(30)] + ["Sent one"])
    sent = r.rows("SELECT directioncode, statuscode FROM email WHERE subject = 'Sent one'")
    assert sent == [(1, 3)]
    # changes: update, delete (email policy: keep), move Inbox -> Deleted Items (not synced), new mail
    emu = r.emu
    inbox = _inbox_ids(r)
    emu.update_message("adele@contoso.com", inbox["Msg 1"], {"subject": "Msg 1 (edited)", "importance": "high"})
    emu.deliver("adele@contoso.com", {"subject": "Brand new"})
    emu.delete_message("adele@contoso.com", inbox["Msg 2"])
    rep2 = r.sync(resources=["mail"], page_size=7)
    m2 = _mail_report(rep2)
    assert (m2.created, m2.updated) == (1, 1)
    assert "Brand new" in email_subjects(r) and "Msg 1 (edited)" in email_subjects(r)
    assert r.rows("SELECT prioritycode FROM email WHERE subject = 'Msg 1 (edited)'") == [(2,)]
    assert "Msg 2" in email_subjects(r)  # emails are kept when the Outlook copy goes (server-side sync's default)
    assert len(email_subjects(r)) == 32


def _inbox_ids(r: Runner) -> dict[str, str]:
    from tests.conftest import graph_client

    with graph_client(r.emu, Prefer='IdType="ImmutableId"') as c:
        got = c.get("/users/adele@contoso.com/mailFolders/inbox/messages", params={"$top": "1000", "$select": "subject"}).json()["value"]
    return {m["subject"]: m["id"] for m in got}


def _mail_report(rep: Any, address: str = "adele@contoso.com") -> Any:
    return next(m for m in rep.mailboxes if m.address == address).resource("mail")


def test_configured_and_all_folders_and_moves_stay_one_record(runner_for: Any) -> None:
    r = runner_for(mail_scenario(4))
    rep = r.sync(resources=["mail"], mail_folders="all")
    assert rep.ok
    assert len(email_subjects(r)) == 4 + 5 + 3 + 1
    inbox = _inbox_ids(r)
    r.emu.move_message("adele@contoso.com", inbox["Msg 0"], "inbox/Customers/Fabrikam")
    rep = r.sync(resources=["mail"], mail_folders="all")
    assert rep.ok
    assert len(email_subjects(r)) == 13  # the moved message is still one record
    links = r.rows("SELECT container, deleted FROM item_link WHERE record_key IN (SELECT activityid FROM email WHERE subject = 'Msg 0')")
    assert len(links) == 1 and links[0][1] == 0


def test_410_mid_round_resyncs_without_duplicates_or_ghosts(runner_for: Any) -> None:
    r = runner_for(mail_scenario(40))
    r.emu.add_fault({"match": {"path": "*skiptoken*"}, "skip": 2, "times": 1,
                     "respond": {"status": 410, "code": "SyncStateNotFound", "message": "The sync state generation is not found; generation=1;"}})
    rep = r.sync(resources=["mail"], page_size=5)
    m = _mail_report(rep)
    assert rep.ok and m.resyncs == 1
    assert len(email_subjects(r)) == 41
    assert r.rows("SELECT COUNT(*) FROM item_link WHERE deleted = 0") == [(41,)]


def test_evicted_token_resync_reconciles_deletions(runner_for: Any) -> None:
    s = mail_scenario(3)
    r = runner_for(s)
    assert r.sync(resources=["mail"]).ok
    inbox = _inbox_ids(r)
    r.emu.delete_message("adele@contoso.com", inbox["Msg 0"])  # hard delete while we are away
    r.emu.evict_sync_state("adele@contoso.com")
    rep = r.sync(resources=["mail"])
    m = _mail_report(rep)
    assert rep.ok and m.resyncs >= 1
    assert m.deleted == 1  # reconciled: the email is kept (policy keep) but its link is marked deleted
    assert r.rows("SELECT COUNT(*) FROM item_link WHERE deleted = 1") == [(1,)]
    assert len(email_subjects(r)) == 4


@pytest.mark.parametrize("fault", [
    {"respond": {"status": 429, "retry_after": 0.2}, "times": 6},
    {"respond": {"status": 503}, "times": 4},
    {"respond": {"status": 504}, "times": 2},
    {"reset": True, "times": 3},
])
def test_transient_faults_are_retried(runner_for: Any, fault: dict[str, Any]) -> None:
    r = runner_for(mail_scenario(12))
    r.emu.add_fault({"match": {"path": "/v1.0/users/*/mailFolders/*/messages/delta*"}, **fault})
    rep = r.sync(resources=["mail"], page_size=5)
    assert rep.ok, rep.to_dict()
    assert rep.totals().retries == fault["times"] and len(email_subjects(r)) == 13


def test_persistent_failure_fails_the_container_not_the_run(runner_for: Any) -> None:
    r = runner_for(mail_scenario(3))
    r.emu.add_fault({"match": {"path": "/v1.0/users/*/mailFolders/*/messages/delta*", "user": "bob@contoso.com"}, "respond": {"status": 500, "code": "ErrorInternalServerError"}})
    rep = r.sync(resources=["mail"])
    assert not rep.ok
    assert _mail_report(rep, "bob@contoso.com").errors and not _mail_report(rep).errors
    assert len(email_subjects(r)) == 4  # Adele's mail still arrived


def test_concurrency_per_mailbox_never_exceeds_four(runner_for: Any) -> None:
    s = mail_scenario(20)
    r = runner_for(s)
    r.emu.add_fault({"match": {"path": "/v1.0/users/*"}, "delay_ms": 30})
    rep = r.sync(page_size=3, mail_folders="all")
    assert rep.ok, rep.to_dict()
    stats = r.emu.stats()
    assert 1 <= max(stats["max_concurrency"].values()) <= 4
    assert stats["throttled"] == 0


def test_token_expiry_during_a_long_sync(runner_for: Any) -> None:
    r = runner_for(mail_scenario(60, identity={"token_lifetime": 2}))
    r.emu.add_fault({"match": {"path": "/v1.0/users/*"}, "delay_ms": 150})
    rep = r.sync(resources=["mail"], page_size=3)
    assert rep.ok, rep.to_dict()
    assert len(email_subjects(r)) == 61
    assert rep.seconds > 2  # the pass outlived the token's lifetime...
    assert [e for e in r.emu.request_log if e["status"] == 401] == []  # ...and every request carried a live token


def test_two_mailboxes_receiving_the_same_email_make_one_record(runner_for: Any) -> None:
    r = runner_for(base_scenario())
    from tests.conftest import graph_client

    with graph_client(r.emu) as c:
        c.post("/users/adele@contoso.com/sendMail", json={"message": {"subject": "For both", "toRecipients": [
            {"emailAddress": {"address": "bob@contoso.com"}}, {"emailAddress": {"address": "dana@fabrikam.com"}}]}})
    rep = r.sync(resources=["mail"])
    assert rep.ok
    assert r.rows("SELECT COUNT(*) FROM email WHERE subject = 'For both'") == [(1,)]
    assert r.rows("SELECT COUNT(DISTINCT mailbox) FROM item_link WHERE table_name = 'email'") == [(2,)]


def test_unknown_mailbox_fails_only_itself(runner_for: Any) -> None:
    r = runner_for(mail_scenario(2))
    rep = r.sync(mailboxes=["adele@contoso.com", "ghost@contoso.com"], resources=["mail"])
    assert not rep.ok
    ghost = next(m for m in rep.mailboxes if m.address == "ghost@contoso.com")
    assert ghost.error and "404" in ghost.error and "Request_ResourceNotFound" in ghost.error
    assert len(email_subjects(r)) == 3


@pytest.mark.slow
def test_ten_thousand_messages_over_nested_folders(runner_for: Any) -> None:
    s = base_scenario(generate={"seed": 7, "messages": 10_000, "mailboxes": ["adele@contoso.com"],
                                "folders": ["inbox", "inbox/Projects", "inbox/Projects/2026", "inbox/Customers/Fabrikam", "archive"]})
    r = runner_for(s)
    rep = r.sync(resources=["mail"], mail_folders="all", page_size=500)
    assert rep.ok, rep.to_dict()
    truth = sum(f["totalItemCount"] for f in _folders(r))
    assert truth == 10_000
    assert r.rows("SELECT COUNT(*) FROM item_link WHERE mailbox = 'adele@contoso.com' AND resource = 'messages'") == [(10_000,)]


def _folders(r: Runner) -> list[dict[str, Any]]:
    from tests.conftest import graph_client

    with graph_client(r.emu, Prefer="odata.maxpagesize=500") as c:
        return c.get("/users/adele@contoso.com/mailFolders/delta").json()["value"]


def test_the_first_committed_page_freezes_the_startup_heap_once(runner_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the process holds when its first page commits (imports, the SDK, settings) leaves the cyclic collector's
    lists once per process; cycles made afterwards are still collected."""
    import gc
    import weakref

    from connector.sync import heap

    monkeypatch.setattr(heap, "_HEAP", [False])
    gc.unfreeze()
    r = runner_for(mail_scenario(3))
    r.sync()
    assert heap._HEAP[0] and gc.get_freeze_count() > 10_000

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]
    ref = weakref.ref(node)
    del node
    gc.collect()
    assert ref() is None


def test_a_run_freezes_each_page_and_collects_its_cycles_when_it_ends(runner_for: Any) -> None:
    """What survives a committed page is frozen for the rest of the run; a cycle that became garbage during the run is
    freed when the run ends (not kept for the life of the process)."""
    import gc
    import weakref

    class Node:
        pass

    r = runner_for(mail_scenario(12))
    r.sync(page_size=5)  # the startup heap: frozen by an earlier run in this process or by this one
    node = Node()
    node.self = node  # type: ignore[attr-defined]
    ref = weakref.ref(node)
    held = [node]
    del node
    counts: list[int] = []
    kept: list[bool] = []

    def progress(event: Any) -> None:  # called after each committed page
        counts.append(gc.get_freeze_count())
        if held:
            held.clear()  # garbage from here on, but frozen with the first page
            gc.collect()
            kept.append(ref() is not None)

    r.sync(page_size=5, full=True, progress=progress)
    assert len(counts) >= 3
    assert kept == [True]  # made before the run, frozen when its first page committed: a full collection leaves it alone
    assert ref() is None  # the run's end collected it


def test_a_read_response_is_freed_without_the_cyclic_collector(runner_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx binds a response and its stream in a cycle; the client releases the stream once the body is read, so a
    page's response (its body bytes included) is freed as soon as it is dropped, not when the collector next runs."""
    import gc
    import weakref

    from connector.graph.client import GraphClient

    refs: list[weakref.ref[Any]] = []
    send = GraphClient._send

    async def tracked_send(self: GraphClient, *args: Any, **kwargs: Any) -> Any:
        resp = await send(self, *args, **kwargs)
        refs.append(weakref.ref(resp))
        return resp

    alive: list[int] = []

    def progress(event: Any) -> None:  # after each committed page (the run's end collects, so look during it)
        alive.append(sum(ref() is not None for ref in refs[:-2]))  # (the last two: the page at hand and the one prefetched)

    monkeypatch.setattr(GraphClient, "_send", tracked_send)
    r = runner_for(mail_scenario(12))
    gc.disable()
    try:
        r.sync(page_size=5, progress=progress)
    finally:
        gc.enable()
    assert len(refs) > 5 and len(alive) >= 3 and alive == [0] * len(alive)


def test_the_next_page_is_requested_before_a_page_commits(runner_for: Any) -> None:
    """While the engine commits page k, Graph is already serving page k+1: the pager writes that request before it hands
    page k over (a commit never yields to the event loop, so a request only scheduled would wait for it to end)."""
    import asyncio
    import time
    from urllib.parse import unquote

    from connector.sync.engine import SyncEngine
    from connector.sync.hooks import MailHook

    from .conftest import settings_for

    r = runner_for(mail_scenario(12))
    emu = r.emu

    class Watch(MailHook):
        """At the commit of the Inbox's k-th full page (another follows it), waits up to 5 s (the GIL released: the emulator
        runs in a thread of this process) for the emulator to have served k+1 of the Inbox's delta requests."""

        def __init__(self) -> None:
            self.folder: str | None = None
            self.pages = 0
            self.seen: list[tuple[bool, float]] = []  # (page k+1 was served during page k's commit, seconds waited)

        def served(self) -> int:
            return sum(1 for e in emu.request_log if f"/mailFolders/{self.folder}/messages/delta" in unquote(e["path"]))

        def prepare_page(self, tx: Any, mailbox: str, container: Any, items: list[dict[str, Any]], keys: Any = None) -> None:
            self.folder = container.container if container.folder == "inbox" and len(items) == 5 else None

        def page_done(self, tx: Any) -> None:
            if self.folder is None:
                return
            self.pages += 1
            start = time.monotonic()
            while self.served() <= self.pages and time.monotonic() - start < 5:
                time.sleep(0.005)
            self.seen.append((self.served() > self.pages, time.monotonic() - start))

    watch = Watch()

    async def go() -> Any:
        settings = settings_for(emu, r.db, page_size=5, mailboxes=["adele@contoso.com"])
        base = SyncEngine.from_settings(settings)
        engine = SyncEngine(settings, base.client, base.store, base.mappings, mail_hook=watch)
        try:
            return await engine.sync_once(resources=["mail"])
        finally:
            await engine.aclose()

    rep = asyncio.run(go())
    assert rep.ok, rep.to_dict()
    assert len(email_subjects(r)) == 13
    # the Inbox's 12 messages come in pages of 5, 5 and 2: the next page is served during each of the first two commits
    assert [ok for ok, _ in watch.seen] == [True, True], watch.seen
