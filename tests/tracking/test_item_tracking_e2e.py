"""Category tracking of events and To Do tasks (`tracking.events` / `tracking.tasks`), and the late re-check's reuse of
messages already synced in the run: the real engine against the emulator."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from connector.tracking import tracker as tracker_module

from .conftest import TrackRunner, ext, hdr, scenario

CAT = "Tracked to Dynamics 365"
ADELE = "adele@contoso.com"
ADELE_FROM = {"emailAddress": {"name": "Adele Vance", "address": ADELE}}


def _day(offset: int, hour: int = 9) -> dict[str, str]:
    d = datetime.now(timezone.utc).replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(days=offset)
    return {"dateTime": d.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def event(subject: str, day: int, **more: Any) -> dict[str, Any]:
    return {"subject": subject, "start": _day(day), "end": _day(day, 10), **more}


def pim_scenario() -> dict[str, Any]:
    s = scenario()
    s["users"][0]["todo"] = {"lists": [{"displayName": "Tasks", "wellknownListName": "defaultList", "tasks": []},
                                       {"displayName": "Renewals", "tasks": []}]}
    return s


def appointment(r: TrackRunner, subject: str) -> list[tuple[Any, ...]]:
    return r.rows("SELECT subject, statecode FROM appointment WHERE subject = ?", subject)


def test_events_with_the_category_are_tracked_and_removing_it_untracks_without_cancelling(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for(pim_scenario())
    opts = {"resources": ["calendar"], "tracking": {"events": "category"}}
    review = r.emu.add_event(ADELE, event("Fabrikam review", 3, categories=[CAT]))
    dentist = r.emu.add_event(ADELE, event("Dentist", 4))
    r.sync(**opts)
    assert appointment(r, "Fabrikam review") == [("Fabrikam review", 3)] and appointment(r, "Dentist") == []
    d = r.one("Fabrikam review")
    assert d["tracked"] and d["tracked_by"] == "category" and "tracking.events = category" in d["reason"] and d["folder"] == "Calendar"
    d = r.one("Dentist")
    assert d["tracked"] is False and "no category" in d["reason"]

    # category added -> tracked; category removed -> untracked, the record stays
    r.emu.update_event(ADELE, dentist["id"], {"categories": ["Personal", CAT]})
    r.emu.update_event(ADELE, review["id"], {"categories": ["Other"]})
    r.sync(**opts)
    assert appointment(r, "Dentist") == [("Dentist", 3)] and r.one("Dentist")["tracked"]
    d = r.one("Fabrikam review")
    assert d["tracked"] is False and "removed" in d["reason"] and d["activityid"]
    assert appointment(r, "Fabrikam review") == [("Fabrikam review", 3)]

    # untracked: later changes are not applied, and deleting it in Outlook does not cancel the appointment
    r.emu.update_event(ADELE, review["id"], {"subject": "Fabrikam review (moved)"})
    r.sync(**opts)
    assert appointment(r, "Fabrikam review") == [("Fabrikam review", 3)] and appointment(r, "Fabrikam review (moved)") == []
    r.emu.delete_event(ADELE, review["id"])
    rep = r.sync(**opts)
    assert appointment(r, "Fabrikam review") == [("Fabrikam review", 3)]
    assert next(m for m in rep.mailboxes if m.address == ADELE).resource("calendar").deleted == 0
    # a tracked one still follows Outlook: deleted -> Canceled, as today
    r.emu.delete_event(ADELE, dentist["id"])
    r.sync(**opts)
    assert appointment(r, "Dentist") == [("Dentist", 2)]


def test_tasks_with_the_category_are_tracked_and_untracked_ones_survive_a_full_resync(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for(pim_scenario())
    opts = {"resources": ["tasks"], "tracking": {"tasks": "category"}}
    call = r.emu.add_task(ADELE, "Renewals", {"title": "Call Dana", "categories": [CAT]})
    milk = r.emu.add_task(ADELE, "Tasks", {"title": "Buy milk"})
    r.sync(**opts)
    assert r.rows("SELECT subject FROM task ORDER BY subject") == [("Call Dana",)]
    d = r.one("Call Dana")
    assert d["tracked"] and d["tracked_by"] == "category" and "tracking.tasks = category" in d["reason"]
    assert r.one("Buy milk")["tracked"] is False

    r.emu.update_task(ADELE, "Renewals", call["id"], {"categories": []})
    r.emu.update_task(ADELE, "Tasks", milk["id"], {"categories": [CAT]})
    r.sync(**opts)
    d = r.one("Call Dana")
    assert d["tracked"] is False and "removed" in d["reason"]
    assert r.rows("SELECT subject FROM task ORDER BY subject") == [("Buy milk",), ("Call Dana",)]  # untracked, not deleted

    # changes no longer reach it, and a full resync (the delta token lost: reconciliation) keeps it although tasks are deleted
    r.emu.update_task(ADELE, "Renewals", call["id"], {"title": "Call Dana today"})
    r.emu.evict_sync_state(ADELE)
    rep = r.sync(**opts)
    tasks_rep = next(m for m in rep.mailboxes if m.address == ADELE).resource("tasks")
    assert tasks_rep.resyncs >= 1 and tasks_rep.deleted == 0
    assert r.rows("SELECT subject FROM task ORDER BY subject") == [("Buy milk",), ("Call Dana",)]
    assert "untracked earlier" in r.one("Call Dana")["reason"]

    # the category again: tracked again and up to date; then an Outlook delete deletes it (tracked tasks follow Outlook)
    r.emu.update_task(ADELE, "Renewals", call["id"], {"categories": [CAT]})
    r.sync(**opts)
    d = r.one("Call Dana today")
    assert d["tracked"] and "tracked again" in d["reason"]
    assert r.rows("SELECT subject FROM task ORDER BY subject") == [("Buy milk",), ("Call Dana today",)]
    r.emu.delete_task(ADELE, "Renewals", call["id"])
    r.sync(**opts)
    assert r.rows("SELECT subject FROM task ORDER BY subject") == [("Buy milk",)]


def test_all_is_the_default_and_switching_to_category_keeps_what_was_written(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for(pim_scenario())
    r.emu.add_event(ADELE, event("Standup", 2))
    r.emu.add_event(ADELE, event("Customer call", 2, categories=[CAT]))
    plain = r.emu.add_task(ADELE, "Tasks", {"title": "Plain task"})
    r.emu.add_contact(ADELE, {"givenName": "Kim", "surname": "Akers", "categories": [CAT]})
    r.sync(resources=["calendar", "tasks", "contacts"])
    assert sorted(s for (s,) in r.rows("SELECT subject FROM appointment")) == ["Customer call", "Standup"]
    assert r.rows("SELECT subject FROM task") == [("Plain task",)]
    assert r.rows("SELECT lastname FROM contact WHERE lastname = 'Akers'") == [("Akers",)]
    assert r.rows("SELECT COUNT(*) FROM tracking_decision") == [(0,)]  # `all`: written as mapped, nothing to explain

    # switching to `category`: what was written without the category is kept (unlinked), not deleted or cancelled
    opts = {"resources": ["calendar", "tasks"], "tracking": {"events": "category", "tasks": "category"}}
    r.emu.update_task(ADELE, "Tasks", plain["id"], {"title": "Plain task, renamed"})
    r.emu.evict_sync_state(ADELE)
    r.sync(**opts)
    assert r.rows("SELECT subject, statecode FROM appointment WHERE subject = 'Standup'") == [("Standup", 3)]
    assert r.rows("SELECT subject FROM task") == [("Plain task",)]
    assert "the record written earlier is kept" in r.one("Plain task, renamed")["reason"]
    assert r.one("Customer call")["tracked"] and r.one("Standup")["tracked"] is False


def test_category_tracking_is_per_mailbox_category(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for(pim_scenario())
    r.emu.add_event(ADELE, event("Board", 5, categories=["CRM"]))
    r.emu.add_event(ADELE, event("Lunch", 5, categories=[CAT]))
    r.sync(resources=["calendar"], tracking={"events": "category"},
           mailboxes=[{"address": ADELE, "category": "CRM"}, {"address": "bob@contoso.com"}])
    assert [s for (s,) in r.rows("SELECT subject FROM appointment")] == ["Board"]


@pytest.mark.parametrize("cached", [True, False])
def test_late_recheck_reuses_messages_synced_in_the_run(tracking_for: Any, monkeypatch: Any, cached: bool) -> None:
    """A reply in the Inbox is synced before its parent in Sent Items gets tracked (one request at a time: the Inbox comes
    first); the late re-check then tracks it from the copy synced in the run, fetching it again only when it is not kept."""
    if not cached:
        monkeypatch.setattr(tracker_module, "_SEEN_CAP", 0)
    r: TrackRunner = tracking_for()
    mid = "<quote-77@contoso.com>"
    r.emu.deliver(ADELE, {"folder": "sentitems", "subject": "Quote 77", "from": ADELE_FROM, "internetMessageId": mid, "categories": [CAT],
                          "toRecipients": [{"emailAddress": {"address": "dana@fabrikam.com"}}]})
    r.emu.deliver(ADELE, ext("RE: Quote 77", internetMessageHeaders=hdr(In_Reply_To=mid)))
    r.emu.deliver(ADELE, ext("Unrelated 77"))
    before = len(r.emu.request_log)
    r.sync(mailbox_concurrency=1, mailboxes=[{"address": ADELE}])
    d = r.one("RE: Quote 77")
    assert d["tracked"] and d["correlationmethod"] == 3 and "re-evaluated after the rest of its thread synced" in d["reason"]
    assert r.one("Unrelated 77")["tracked"] is False
    gets = [e for e in r.emu.request_log[before:] if "/messages/" in e["path"] and "delta" not in e["path"] or e["path"].endswith("$batch")]
    assert (gets == []) is cached, gets


def test_a_parent_tracked_by_a_mailbox_synced_later_in_the_run_tracks_the_reply(tracking_for: Any) -> None:
    """Adele's mailbox is synced (and re-checked) before Bob's tracks the parent: the end of the run re-checks Adele's reply."""
    r: TrackRunner = tracking_for()
    mid = "<offer-12@contoso.com>"
    r.emu.deliver(ADELE, ext("RE: Offer 12", internetMessageHeaders=hdr(In_Reply_To=mid)))
    r.emu.deliver("bob@contoso.com", {"folder": "sentitems", "subject": "Offer 12", "internetMessageId": mid, "categories": [CAT],
                                      "from": {"emailAddress": {"name": "Bob Kelly", "address": "bob@contoso.com"}},
                                      "toRecipients": [{"emailAddress": {"address": "dana@fabrikam.com"}}]})
    r.sync(parallel_mailboxes=1, mailboxes=[{"address": ADELE}, {"address": "bob@contoso.com"}])
    assert r.one("Offer 12", "bob@contoso.com")["tracked"]
    d = r.one("RE: Offer 12")
    assert d["tracked"] and d["correlationmethod"] == 3 and "re-evaluated after the rest of its thread synced" in d["reason"]


BOB = "bob@contoso.com"
BOB_FROM = {"emailAddress": {"name": "Bob Kelly", "address": BOB}}
SALES = "sales@contoso.com"


def _order_scenario(r: TrackRunner) -> None:
    """Mail whose outcome depends on what other mailboxes track in the same run."""
    # a chain across mailboxes: Bob's P (tracked) <- Adele's R1 <- Bob's R2 (each tracked only as a response)
    r.emu.deliver(BOB, {"folder": "sentitems", "subject": "Plan P", "from": BOB_FROM, "internetMessageId": "<p@contoso.com>", "categories": [CAT],
                        "toRecipients": [{"emailAddress": {"address": "dana@fabrikam.com"}}]})
    r.emu.deliver(ADELE, ext("RE: Plan P", internetMessageId="<r1@fabrikam.com>", internetMessageHeaders=hdr(In_Reply_To="<p@contoso.com>")))
    r.emu.deliver(BOB, ext("RE: RE: Plan P", to=(BOB,), internetMessageId="<r2@fabrikam.com>",
                           internetMessageHeaders=hdr(In_Reply_To="<r1@fabrikam.com>", References="<p@contoso.com> <r1@fabrikam.com>")))
    # a contact created in Bob's mailbox (unknown sender, tracked by its category) resolves parties of the other mailboxes
    r.emu.deliver(BOB, ext("Northwind intro", sender="nora@northwind.com", to=(BOB,), categories=[CAT], internetMessageId="<intro@northwind.com>"))
    # ... and Adele's tracked reply to it, synced first in one order: re-evaluated in full (not only re-linked)
    r.emu.deliver(ADELE, {"folder": "sentitems", "subject": "RE: Northwind intro", "from": ADELE_FROM, "categories": [CAT],
                          "toRecipients": [{"emailAddress": {"address": "nora@northwind.com"}}],
                          "internetMessageHeaders": hdr(In_Reply_To="<intro@northwind.com>")})
    r.emu.deliver(ADELE, ext("Northwind and Fabrikam", categories=[CAT], ccRecipients=[{"emailAddress": {"address": "nora@northwind.com"}}]))
    r.emu.deliver(SALES, {"folder": "sentitems", "subject": "Welcome Northwind", "from": {"emailAddress": {"address": SALES}},
                          "toRecipients": [{"emailAddress": {"address": "nora@northwind.com"}}]})
    # internal mail makes two activities; a reply to it correlates with the sent one whichever copy synced first
    internal = {"subject": "Internal I", "internetMessageId": "<i@contoso.com>", "categories": [CAT], "from": BOB_FROM,
                "toRecipients": [{"emailAddress": {"address": ADELE}}]}
    r.emu.deliver(BOB, {**internal, "folder": "sentitems"})
    r.emu.deliver(ADELE, internal)
    r.emu.deliver(ADELE, ext("RE: Internal I", categories=[CAT], internetMessageHeaders=hdr(In_Reply_To="<i@contoso.com>")))


def test_the_outcome_does_not_depend_on_the_order_mailboxes_sync_in(tracking_for: Any, tmp_path: Any) -> None:
    """The same tenant synced one mailbox at a time in two opposite orders gives the same emails, links and parties: the
    late re-check runs to a fixed point (a reply tracked late makes its own reply trackable), re-evaluates mail whose
    party got a contact later in the run, and replies to internal mail correlate with its sent copy."""
    first: TrackRunner = tracking_for()
    _order_scenario(first)
    second = TrackRunner(first.emu, tmp_path / "second.db", tmp_path)
    boxes = [{"address": ADELE}, {"address": BOB}, {"address": SALES, "track": "known_parties"}]
    first.sync(parallel_mailboxes=1, mailbox_concurrency=1, mailboxes=boxes, tracking={"auto_create_contacts": True})
    second.sync(parallel_mailboxes=1, mailbox_concurrency=1, mailboxes=boxes[::-1], tracking={"auto_create_contacts": True})
    emails = "SELECT activityid, subject, directioncode, correlationmethod, correlatedactivityid, regardingobjectid FROM email ORDER BY activityid"
    parties = "SELECT activitypartyid, activityid, participationtypemask, addressused, partyid FROM activityparty ORDER BY activitypartyid"
    for r in (first, second):
        assert r.one("RE: RE: Plan P", BOB)["tracked"], r.one("RE: RE: Plan P", BOB)
        assert r.one("Welcome Northwind", SALES)["tracked"]
        nora = r.rows("SELECT p.partyobjecttypecode FROM activityparty p JOIN email e ON e.activityid = p.activityid "
                      "WHERE e.subject = 'Northwind and Fabrikam' AND p.addressused = 'nora@northwind.com'")
        assert nora == [("contact",)]
        assert r.rows("SELECT p.partyobjecttypecode, e.correlationmethod FROM activityparty p JOIN email e ON e.activityid = p.activityid "
                      "WHERE e.subject = 'RE: Northwind intro' AND p.addressused = 'nora@northwind.com'") == [("contact", 3)]
        reply = r.email("RE: Internal I")
        assert r.rows("SELECT directioncode FROM email WHERE activityid = ?", reply["correlatedactivityid"]) == [(1,)]
    assert first.rows(emails) == second.rows(emails)
    assert first.rows(parties) == second.rows(parties)


def test_a_thread_s_first_message_never_correlates_with_its_own_reply_whichever_syncs_first(tracking_for: Any, tmp_path: Any) -> None:
    """A reply stamped a minute before the message it answers (the sender's clock is behind) shares its thread hash and Graph
    conversationId: the first message is not correlated with it, by either, in either order. The reply correlates with it."""
    first: TrackRunner = tracking_for()
    at = datetime.now(timezone.utc).replace(microsecond=0)
    mid = "<kickoff-9@contoso.com>"
    first.emu.deliver(BOB, {"folder": "sentitems", "subject": "Kickoff 9", "internetMessageId": mid, "from": BOB_FROM,
                            "sentDateTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "toRecipients": [{"emailAddress": {"address": "dana@fabrikam.com"}}]})
    first.emu.deliver(ADELE, ext("RE: Kickoff 9", internetMessageHeaders=hdr(In_Reply_To=mid),
                                 sentDateTime=(at - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")))
    second = TrackRunner(first.emu, tmp_path / "second.db", tmp_path)
    boxes = [{"address": ADELE, "track": "all"}, {"address": BOB, "track": "all"}]
    first.sync(parallel_mailboxes=1, mailbox_concurrency=1, mailboxes=boxes)
    second.sync(parallel_mailboxes=1, mailbox_concurrency=1, mailboxes=boxes[::-1])
    for r in (first, second):
        root, reply = r.email("Kickoff 9"), r.email("RE: Kickoff 9")
        assert root["baseconversationindexhash"] == reply["baseconversationindexhash"] is not None
        assert root["conversationtrackingid"] == reply["conversationtrackingid"] is not None
        assert (root["correlationmethod"], root.get("correlatedactivityid")) == (0, None), root
        assert (reply["correlationmethod"], reply["correlatedactivityid"]) == (3, root["activityid"]), reply


def _conversation_index(header: bytes, replies: int) -> str:
    """A conversationIndex: the 22-byte thread header and one 5-byte block per reply level."""
    import base64

    return base64.b64encode(header + bytes(range(1, 6)) * replies).decode()


@pytest.mark.parametrize("by", ["thread hash", "conversationId", "token"])
def test_a_conversation_match_is_the_earliest_sent_eligible_email_whichever_syncs_first(tracking_for: Any, tmp_path: Any, by: str) -> None:
    """A thread's root in Adele's Inbox, Bob's forward of it and a later reply to Bob share one conversation (the thread header,
    the Graph conversationId, or a tracking token) and no In-Reply-To. The forward and the reply correlate with the earliest
    sent email they may (the root), in either mailbox order: not with whichever was stored first. (Bob first: the reply
    matches the forward, then waits for an earlier match, and is re-linked when the root syncs.)"""
    first: TrackRunner = tracking_for()
    at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=30)
    stamp = lambda days: (at + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    header = bytes([1]) + bytes(range(40, 61))

    def thread(level: int) -> dict[str, Any]:
        if by == "thread hash":
            return {"conversationIndex": _conversation_index(header, level)}
        if by == "conversationId":
            return {"conversationId": "AAQkADplan7conversation", "conversationIndex": ""}
        return {}

    token = " CRM:0001007" if by == "token" else ""
    first.emu.deliver(ADELE, ext(f"Plan 7{token}", internetMessageId="<plan-7@fabrikam.com>", sentDateTime=stamp(0), **thread(0)))
    first.emu.deliver(BOB, {"folder": "sentitems", "subject": f"FW: Plan 7{token}", "internetMessageId": "<plan-7-fw@contoso.com>",
                            "from": BOB_FROM, "sentDateTime": stamp(10), "toRecipients": [{"emailAddress": {"address": "erin@litware.com"}}],
                            **thread(1)})
    first.emu.deliver(BOB, ext(f"RE: Plan 7{token}", to=(BOB,), internetMessageId="<plan-7-re@fabrikam.com>", sentDateTime=stamp(20), **thread(2)))
    second = TrackRunner(first.emu, tmp_path / "second.db", tmp_path)
    boxes = [{"address": ADELE, "track": "all"}, {"address": BOB, "track": "all"}]
    first.sync(parallel_mailboxes=1, mailbox_concurrency=1, mailboxes=boxes)
    second.sync(parallel_mailboxes=1, mailbox_concurrency=1, mailboxes=boxes[::-1])
    method = 4 if by == "token" else 5
    for r in (first, second):
        root = r.email(f"Plan 7{token}")
        for subject in (f"FW: Plan 7{token}", f"RE: Plan 7{token}"):
            e = r.email(subject)
            assert (e["correlationmethod"], e["correlatedactivityid"]) == (method, root["activityid"]), (r is first, subject, e)


def test_internal_mail_two_mailboxes_receive_gets_the_same_acceptance_columns_whichever_syncs_first(tracking_for: Any, tmp_path: Any) -> None:
    """Bob writes to Adele, with the sales queue in Cc; all three mailboxes track all mail. The received activity is
    accepted by the first accepting To/Cc recipient (Adele), and received in that recipient's mailbox, in either order."""
    from connector.tracking.tracker import mailbox_record_id

    first: TrackRunner = tracking_for()
    note = {"subject": "Internal J", "internetMessageId": "<j@contoso.com>", "from": BOB_FROM,
            "toRecipients": [{"emailAddress": {"address": ADELE}}], "ccRecipients": [{"emailAddress": {"address": SALES}}]}
    first.emu.deliver(BOB, {**note, "folder": "sentitems"})
    first.emu.deliver(ADELE, note)
    first.emu.deliver(SALES, note)
    second = TrackRunner(first.emu, tmp_path / "second.db", tmp_path)
    boxes = [{"address": SALES, "track": "all"}, {"address": BOB, "track": "all"}, {"address": ADELE, "track": "all"}]
    first.sync(parallel_mailboxes=1, mailbox_concurrency=1, mailboxes=boxes)
    second.sync(parallel_mailboxes=1, mailbox_concurrency=1, mailboxes=boxes[::-1])
    query = "SELECT directioncode, acceptingentityid, receivingmailboxid FROM email WHERE subject = 'Internal J' ORDER BY directioncode"
    expected = [(0, "u-adele", mailbox_record_id(ADELE)), (1, "u-bob", mailbox_record_id(BOB))]
    assert first.rows(query) == second.rows(query) == expected


def test_a_tracked_reply_is_correlated_again_without_fetching_it_when_its_parent_syncs_later(tracking_for: Any) -> None:
    """Adele tracks all mail, so her reply is tracked (uncorrelated) before Bob's mailbox tracks its parent: the late re-check
    sets its correlation and regarding from the stored thread keys, with no request for the message."""
    r: TrackRunner = tracking_for()
    mid = "<offer-44@contoso.com>"
    r.emu.deliver(ADELE, ext("RE: Offer 44", internetMessageHeaders=hdr(In_Reply_To=mid)))
    r.emu.deliver(BOB, {"folder": "sentitems", "subject": "Offer 44", "internetMessageId": mid, "categories": [CAT], "from": BOB_FROM,
                        "toRecipients": [{"emailAddress": {"address": "dana@fabrikam.com"}}]})
    before = len(r.emu.request_log)
    r.sync(parallel_mailboxes=1, mailboxes=[{"address": ADELE, "track": "all"}, {"address": BOB}])
    parent, reply = r.email("Offer 44"), r.email("RE: Offer 44")
    assert reply["correlationmethod"] == 3 and reply["correlatedactivityid"] == parent["activityid"] == reply["parentactivityid"]
    d = r.one("RE: Offer 44")
    assert d["tracked"] and d["correlationmethod"] == 3 and "correlated again after the rest of its thread synced" in d["reason"], d
    gets = [e["path"] for e in r.emu.request_log[before:] if "/messages/" in e["path"] and "delta" not in e["path"] or e["path"].endswith("$batch")]
    assert gets == []


def test_the_email_owner_is_chosen_as_server_side_sync_does(tracking_for: Any, tmp_path: Any) -> None:
    """server-side-sync.md §2.13: sent mail belongs to its sender; received mail to the user recipient owning the correlated
    email, else the one owning the sender's record, else the first user in To."""
    from connector.store.sqlite import SqliteStore
    from connector.tracking import import_records

    r: TrackRunner = tracking_for()
    owned = tmp_path / "owned.yaml"
    owned.write_text("contact:\n  - {contactid: c-olga, firstname: Olga, lastname: Berg, emailaddress1: olga@fabrikam.com, ownerid: u-bob}\n")
    with SqliteStore(f"sqlite:///{r.db}") as s:
        import_records(s, [owned])
    r.emu.deliver(ADELE, ext("Owner A", to=(BOB, ADELE)))
    r.emu.deliver(ADELE, ext("Owner B", sender="olga@fabrikam.com", to=(ADELE, BOB)))
    r.emu.deliver(ADELE, {"folder": "sentitems", "subject": "Owner C", "from": ADELE_FROM, "internetMessageId": "<owner-c@contoso.com>",
                          "toRecipients": [{"emailAddress": {"address": "dana@fabrikam.com"}}]})
    r.emu.deliver(ADELE, ext("RE: Owner C", to=(BOB, ADELE), internetMessageHeaders=hdr(In_Reply_To="<owner-c@contoso.com>")))
    r.sync(mailboxes=[{"address": ADELE, "track": "all"}])
    owners = {s: (o, t) for s, o, t in r.rows("SELECT subject, ownerid, owneridtype FROM email")}
    assert owners["Owner A"] == ("u-bob", "systemuser")  # the first user in To (Dana's contact has no owner)
    assert owners["Owner B"] == ("u-bob", "systemuser")  # Bob owns Olga's contact and is a recipient
    assert owners["Owner C"] == ("u-adele", "systemuser")  # sent by Adele
    assert owners["RE: Owner C"] == ("u-adele", "systemuser")  # Adele owns the email it correlates with
