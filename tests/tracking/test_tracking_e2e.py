"""Tracking rules end to end: the real engine, the emulator, and decisions read back through `explain`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from typer.testing import CliRunner

from connector.cli import app
from connector.store.sqlite import SqliteStore

from .conftest import TrackRunner, ext, hdr, scenario

CAT = "Tracked to Dynamics 365"
ADELE = {"emailAddress": {"name": "Adele Vance", "address": "adele@contoso.com"}}


def put(r: TrackRunner, folder: str, message: dict[str, Any]) -> dict[str, Any]:
    """A message placed straight into one of Adele's folders (by path or id), as a rule or the user would."""
    return r.emu.deliver("adele@contoso.com", {**message, "folder": folder})


def mailboxes(**options: dict[str, Any]) -> list[dict[str, Any]]:
    """Adele, Bob and sales@, with per-mailbox options (`adele={"track": "all"}`)."""
    return [{"address": f"{n}@contoso.com", **options.get(n, {})} for n in ("adele", "bob", "sales")]


def with_folders(*paths: str) -> dict[str, Any]:
    s = scenario()
    tree: dict[str, Any] = {}
    for p in paths:
        node = tree
        for part in p.split("/")[1:]:
            node = node.setdefault(part, {"displayName": part, "childFolders": {}})["childFolders"]
    s["users"][0]["mailFolders"] = {"inbox": {"childFolders": tree}}
    return s


def test_replies_with_headers_with_token_only_and_with_a_changed_subject(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    orig = put(r, "sentitems", {
        "subject": "Quote for Q1 CRM:0001001", "from": ADELE, "toRecipients": [{"emailAddress": {"address": "dana@fabrikam.com"}}],
        "categories": [CAT]})
    r.sync()
    original = r.email("Quote for Q1 CRM:0001001")
    assert original["trackingtoken"] == "CRM:0001001" and original["directioncode"] is True
    later = (datetime.now(timezone.utc) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")  # (the token's emails: the original is the earliest)
    r.emu.deliver("adele@contoso.com", ext("RE: Quote for Q1 CRM:0001001", internetMessageHeaders=hdr(In_Reply_To=orig["internetMessageId"]),
                                           sentDateTime=later))
    r.emu.deliver("adele@contoso.com", ext("Re: our quote CRM:0001001", sentDateTime=later))  # the token only (no headers, different topic)
    r.emu.deliver("adele@contoso.com", ext("Totally different subject", internetMessageHeaders=hdr(In_Reply_To=orig["internetMessageId"])))
    r.emu.deliver("adele@contoso.com", ext("Unrelated hello"))
    r.sync()
    by_header = r.email("RE: Quote for Q1 CRM:0001001")
    assert (by_header["correlationmethod"], by_header["parentactivityid"], by_header["correlatedactivityid"]) == (3, original["activityid"], original["activityid"])
    assert by_header["correlatedsubjectchanged"] is False
    by_token = r.email("Re: our quote CRM:0001001")
    assert by_token["correlationmethod"] == 4 and by_token["correlatedactivityid"] == original["activityid"] and "parentactivityid" not in by_token
    changed = r.email("Totally different subject")
    assert changed["correlationmethod"] == 3 and changed["correlatedsubjectchanged"] is True
    d = r.one("Unrelated hello")
    assert d["tracked"] is False and "not a response to tracked email" in d["reason"] and r.rows("SELECT 1 FROM email WHERE subject = 'Unrelated hello'") == []
    acc = r.one("RE: Quote for Q1 CRM:0001001")
    assert acc["tracked"] and "track=responses" in acc["reason"] and acc["acceptingentity"] == {"table": "systemuser", "id": "u-adele"}
    assert by_header["receivingmailboxid"] and by_header["acceptingentityid"] == "u-adele"


def test_a_reply_to_an_imported_email_correlates_by_its_message_id(tracking_for: Any, tmp_path: Any) -> None:
    """Emails imported with their own keys (say, from Dataverse) are found by Message-ID as the ones the connector wrote."""
    from connector.tracking import import_records

    r: TrackRunner = tracking_for()
    crm = tmp_path / "emails.yaml"
    crm.write_text("email:\n  - {activityid: 0d6f2b7e-0000-4000-8000-000000000001, subject: Old order, messageid: '<old-order@fabrikam.com>',\n"
                   "     regardingobjectid: acc-fab, regardingobjecttypecode: account}\n")
    with SqliteStore(f"sqlite:///{r.db}") as s:
        import_records(s, [crm])
    r.emu.deliver("adele@contoso.com", ext("RE: Old order", internetMessageHeaders=hdr(In_Reply_To="<old-order@fabrikam.com>")))
    r.sync()
    reply = r.email("RE: Old order")
    assert (reply["correlationmethod"], reply["correlatedactivityid"]) == (3, "0d6f2b7e-0000-4000-8000-000000000001")
    assert (reply["regardingobjectid"], reply["regardingobjecttypecode"]) == ("acc-fab", "account")


def test_tokens_can_be_turned_off(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    put(r, "sentitems", {"subject": "Offer CRM:0001005", "from": ADELE, "categories": [CAT],
                                                         "toRecipients": [{"emailAddress": {"address": "dana@fabrikam.com"}}]})
    r.sync()
    r.emu.deliver("adele@contoso.com", ext("About that CRM:0001005"))
    r.sync(tracking={"token": {"enabled": False}})
    assert r.one("About that CRM:0001005")["tracked"] is False


def test_forward_correlates_by_conversation_and_copies_the_folder_regarding(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for(with_folders("inbox/Customers/Fabrikam"))
    opts = mailboxes(adele={"folders": [{"path": "inbox/Customers/Fabrikam", "regarding": {"table": "account", "key": {"accountnumber": "F-100"}}}]})
    put(r, "inbox/Customers/Fabrikam", ext("Order 4471 delivery"))
    r.sync(mailboxes=opts)
    first = r.email("Order 4471 delivery")
    assert (first["regardingobjectid"], first["regardingobjecttypecode"]) == ("acc-fab", "account")
    assert r.one("Order 4471 delivery")["regarding"]["why"].startswith("tracked folder inbox/customers/fabrikam")
    r.emu.deliver("adele@contoso.com", ext("FW: Order 4471 delivery", sender="bob@contoso.com"))  # no In-Reply-To: same conversation
    r.sync(mailboxes=opts)
    fw = r.email("FW: Order 4471 delivery")
    assert fw["correlationmethod"] == 5 and fw["parentactivityid"] == first["activityid"] and fw["regardingobjectid"] == "acc-fab"
    assert "copied from the correlated email" in r.one("FW: Order 4471 delivery")["regarding"]["why"]


def test_smart_matching_when_headers_and_conversation_are_off(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    cc = [{"emailAddress": {"address": "bob@contoso.com"}}]
    r.emu.deliver("adele@contoso.com", ext("Budget for Q3", categories=[CAT], ccRecipients=cc))
    tracking = {"correlation": {"smart_matching": True, "conversation": False, "headers": False}}
    r.sync(tracking=tracking)
    r.emu.deliver("adele@contoso.com", ext("AW: RE: budget for q3", ccRecipients=cc))
    r.emu.deliver("adele@contoso.com", ext("RE: Budget for Q4", ccRecipients=cc))  # other words: no match
    r.sync(tracking=tracking)
    assert r.email("AW: RE: budget for q3")["correlationmethod"] == 6
    assert r.one("RE: Budget for Q4")["tracked"] is False


def test_bcc_and_distribution_list_copies_need_track_all(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    r.emu.deliver("adele@contoso.com", ext("Board offsite", to=("megan@elsewhere.com",), bccRecipients=[ADELE]))
    r.emu.deliver("bob@contoso.com", ext("Team news", to=("team@contoso.com",)))  # a distribution list
    r.emu.deliver("adele@contoso.com", ext("Team news 2", to=("team@contoso.com",)))
    r.sync(mailboxes=mailboxes(adele={"track": "known_parties"}, bob={"track": "all"}))
    bcc = r.one("Board offsite")
    assert bcc["tracked"] is False and "Bcc or through a distribution list" in bcc["reason"]
    dl = r.one("Team news", "bob@contoso.com")
    assert dl["tracked"] and "tracks all email" in dl["reason"]
    assert r.one("Team news 2")["tracked"] is False


def test_aliases_resolve_users_and_known_parties_accept(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    r.emu.deliver("adele@contoso.com", ext("Via alias", to=("adele.vance@contoso.com",)))
    r.emu.deliver("adele@contoso.com", ext("From a stranger", sender="someone@unknown.example", to=("adele.vance@contoso.com",)))
    r.sync(mailboxes=mailboxes(adele={"track": "known_parties"}))
    d = r.one("Via alias")
    assert d["tracked"] and "accepted by systemuser adele@contoso.com" in d["reason"]
    parties = {p["role"]: p for p in d["parties"]}
    assert parties["to"]["resolved"] == [{"table": "systemuser", "id": "u-adele"}] and parties["from"]["resolved"] == [{"table": "contact", "id": "c-dana"}]
    key = r.email("Via alias")["activityid"]
    assert sorted(r.rows("SELECT participationtypemask, addressused, partyid FROM activityparty WHERE activityid = ?", key)) == [
        (1, "dana@fabrikam.com", "c-dana"), (2, "adele.vance@contoso.com", "u-adele")]
    stranger = r.one("From a stranger")
    assert stranger["tracked"] is False and "no lead, contact or account" in stranger["reason"]


def test_a_decision_lists_its_parties_by_resolution_id_each_resolution_stored_once(tracking_for: Any) -> None:
    """A decision row names its parties' resolutions by id; each distinct resolution is stored once (correspondents
    recur). `explain` reads them back, and reads the JSON that decisions written before listed in place."""
    r: TrackRunner = tracking_for()
    for i in range(3):
        r.emu.deliver("adele@contoso.com", ext(f"Same people {i}", to=("adele@contoso.com",)))
    r.sync(mailboxes=mailboxes(adele={"track": "all"}))
    lists = [json.loads(p) for (p,) in r.rows("SELECT parties FROM tracking_decision WHERE subject LIKE 'Same people%'")]
    assert len(lists) == 3 and all(len(ids) == 2 and all(isinstance(i, int) for i in ids) for ids in lists) and len({tuple(ids) for ids in lists}) == 1
    assert r.rows("SELECT COUNT(*) FROM tracking_resolution WHERE id IN (?, ?)", *lists[0]) == [(2,)]
    d = r.one("Same people 1")
    assert {p["role"]: p["resolved"] for p in d["parties"]} == {"from": [{"table": "contact", "id": "c-dana"}], "to": [{"table": "systemuser", "id": "u-adele"}]}
    legacy = [{"role": "from", "address": "old@x.example", "resolved": [], "why": "no record"}]
    with SqliteStore(f"sqlite:///{r.db}") as s, s.transaction() as tx:
        tx.execute("UPDATE tracking_decision SET parties = ? WHERE subject = 'Same people 2'", (json.dumps(legacy),))
    assert r.one("Same people 2")["parties"] == legacy and r.one("Same people 0")["parties"] == d["parties"]


def test_two_mailboxes_receiving_the_same_mail_make_one_email_with_merged_parties(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    mid = "<same-1@fabrikam.com>"
    r.emu.deliver("adele@contoso.com", ext("For both", to=("adele@contoso.com", "bob@contoso.com"), internetMessageId=mid))
    r.emu.deliver("bob@contoso.com", ext("For both", to=("adele@contoso.com", "bob@contoso.com"), internetMessageId=mid,
                                         bccRecipients=[{"emailAddress": {"address": "bob@contoso.com"}}]))
    r.sync(mailboxes=mailboxes(adele={"track": "all"}, bob={"track": "all"}))
    key = r.email("For both")["activityid"]
    decisions = r.explain(mid)
    assert {d["mailbox"] for d in decisions} == {"adele@contoso.com", "bob@contoso.com"} and all(d["tracked"] for d in decisions)
    assert any("merged into that email" in d["reason"] for d in decisions)
    masks = sorted(m for (m,) in r.rows("SELECT participationtypemask FROM activityparty WHERE activityid = ?", key))
    assert masks == [1, 2, 2, 4]  # from, to x2, and the Bcc only Bob's copy shows


def test_a_recipient_matching_two_records_gets_a_row_for_each_and_a_merge_never_doubles_one(tracking_for: Any, tmp_path: Any) -> None:
    """Recipients get all matches: one activityparty row per record. The extra row's key shares its first 64 bits with the
    mapping's row (so it sorts next to it in the primary key's index). Merging another mailbox's copy keeps one row per
    party even when the stored one has a key an earlier version derived."""
    from connector.mapping.keys import uuid5_str
    from connector.tracking import import_records
    from connector.tracking.tracker import PARTY_NAMESPACE

    r: TrackRunner = tracking_for()
    more = tmp_path / "more.yaml"
    more.write_text("contact:\n  - {contactid: c-orders, firstname: Order, lastname: Desk, emailaddress1: orders@fabrikam.com}\n")
    with SqliteStore(f"sqlite:///{r.db}") as s:
        import_records(s, [more])
    mid = "<two-records-1@fabrikam.com>"
    r.emu.deliver("adele@contoso.com", ext("Two records", to=("adele@contoso.com", "orders@fabrikam.com"), internetMessageId=mid))
    r.sync(mailboxes=mailboxes(adele={"track": "all"}, bob={"track": "all"}))
    key = r.email("Two records")["activityid"]
    sql = "SELECT activitypartyid, partyobjecttypecode, partyid FROM activityparty WHERE activityid = ? AND addressused = 'orders@fabrikam.com'"
    rows = r.rows(sql, key)
    assert sorted((t, i) for _, t, i in rows) == [("account", "acc-fab"), ("contact", "c-orders")]
    first, extra = sorted(rows, key=lambda row: row[1] != "contact")  # contacts rank before accounts: the mapping's row
    assert extra[0] != first[0] and extra[0][:19] == first[0][:19]
    # as an earlier version keyed the extra row
    old = uuid5_str(PARTY_NAMESPACE.bytes, f"{key}\x1f2\x1forders@fabrikam.com\x1faccount:acc-fab")
    with SqliteStore(f"sqlite:///{r.db}") as s, s.transaction() as tx:
        tx.execute("UPDATE activityparty SET activitypartyid = ? WHERE activitypartyid = ?", (old, extra[0]))
    r.emu.deliver("bob@contoso.com", ext("Two records", to=("adele@contoso.com", "orders@fabrikam.com"), internetMessageId=mid))
    r.sync(mailboxes=mailboxes(adele={"track": "all"}, bob={"track": "all"}))
    assert any("merged into that email" in d["reason"] for d in r.explain(mid))
    assert sorted((t, i) for _, t, i in r.rows(sql, key)) == [("account", "acc-fab"), ("contact", "c-orders")]


def test_queue_style_shared_mailbox_tracks_all_through_its_alias(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    r.emu.deliver("sales@contoso.com", ext("RFQ 200 units", sender="pat@northwind.example", to=("orders@contoso.com",)))
    r.sync()  # mailboxes: all; the queue's incomingemailfilteringmethod (0 = all) applies
    d = r.one("RFQ 200 units", "sales@contoso.com")
    assert d["tracked"] and d["acceptingentity"] == {"table": "queue", "id": "q-sales"} and "track=all" in d["reason"]
    assert r.email("RFQ 200 units")["acceptingentityid"] == "q-sales"


def test_internal_mail_makes_two_activities_or_one(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    with r.graph() as c:
        c.post("/users/adele@contoso.com/sendMail", json={"message": {"subject": "Internal one", "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}]}})
    r.sync(mailboxes=mailboxes(adele={"track": "all"}, bob={"track": "all"}))
    assert sorted(d for (d,) in r.rows("SELECT directioncode FROM email WHERE subject = 'Internal one'")) == [0, 1]
    with r.graph() as c:
        c.post("/users/adele@contoso.com/sendMail", json={"message": {"subject": "Internal two", "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}]}})
    r.sync(mailboxes=mailboxes(adele={"track": "all"}, bob={"track": "all"}), tracking={"two_activities_for_internal_mail": False})
    assert r.rows("SELECT directioncode FROM email WHERE subject = 'Internal two'") == [(1,)]  # one activity; the sent copy's direction


def test_out_of_office_replies_are_skipped_by_default(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    r.emu.deliver("adele@contoso.com", ext("Automatic reply: Budget", internetMessageHeaders=hdr(Auto_Submitted="auto-replied")))
    r.emu.deliver("adele@contoso.com", ext("Out of Office: back Monday"))
    r.sync(mailboxes=mailboxes(adele={"track": "all"}))
    assert r.one("Automatic reply: Budget")["reason"] == "skipped auto-reply: Auto-Submitted: auto-replied"
    assert r.one("Out of Office: back Monday")["tracked"] is False
    r.emu.deliver("adele@contoso.com", ext("Automatic reply: kept", internetMessageHeaders=hdr(Auto_Submitted="auto-replied")))
    r.sync(mailboxes=mailboxes(adele={"track": "all"}), tracking={"ignore_auto_replies": False})
    assert r.one("Automatic reply: kept")["tracked"] is True


def test_mail_a_rule_moved_before_the_sync_is_still_evaluated(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for(with_folders("inbox/Rules"))
    put(r, "inbox/Rules", ext("Moved by a rule"))
    put(r, "deleteditems", ext("Deleted before sync"))
    r.sync(mailboxes=mailboxes(adele={"track": "known_parties"}), mail_folders="all")
    d = r.one("Moved by a rule")
    assert d["tracked"] and d["folder"] == "Inbox/Rules"
    gone = r.one("Deleted before sync")
    assert gone["tracked"] is False and "not an evaluated folder" in gone["reason"]


def test_folder_moves_renames_and_a_folder_moved_outside_the_inbox(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for(with_folders("inbox/Customers/Fabrikam", "inbox/Customers/Adatum"))
    opts = mailboxes(adele={"folders": [
        {"path": "inbox/Customers/Fabrikam", "regarding": {"table": "account", "key": {"accountnumber": "F-100"}}},
        {"path": "inbox/Customers/Adatum", "regarding": {"table": "account", "id": "acc-ada"}}]})
    msg = put(r, "inbox/Customers/Fabrikam", ext("Order in a folder", sender="x@nowhere.example"))
    r.sync(mailboxes=opts)
    assert r.email("Order in a folder")["regardingobjectid"] == "acc-fab"
    # a manual edit loses to the folder rule on the next sync of the message
    from connector.store.sqlite import SqliteStore

    with SqliteStore(f"sqlite:///{r.db}") as s, s.transaction() as tx:
        tx.execute("UPDATE email SET regardingobjectid = 'c-dana', regardingobjecttypecode = 'contact' WHERE subject = 'Order in a folder'")
    r.emu.update_message("adele@contoso.com", msg["immutableId"], {"isRead": True})
    r.sync(mailboxes=opts)
    assert r.email("Order in a folder")["regardingobjectid"] == "acc-fab"
    # moving between tracked folders relinks
    r.emu.move_message("adele@contoso.com", msg["immutableId"], "inbox/Customers/Adatum")
    r.sync(mailboxes=opts)
    assert r.email("Order in a folder")["regardingobjectid"] == "acc-ada"
    # rename: the rule follows the folder id; a new folder with the old name is not tracked
    fab = r.rows("SELECT folder_id FROM tracking_folder WHERE rule_path = 'inbox/customers/fabrikam'")[0][0]
    with r.graph() as c:
        assert c.patch(f"/users/adele@contoso.com/mailFolders/{fab}", json={"displayName": "Fabrikam Ltd"}).status_code == 200
    r.emu.add_folder("adele@contoso.com", "Fabrikam", "inbox/Customers")
    put(r, fab, ext("After the rename", sender="x@nowhere.example"))
    put(r, "inbox/Customers/Fabrikam", ext("In the new namesake", sender="x@nowhere.example"))
    r.sync(mailboxes=opts)
    renamed = r.one("After the rename")
    assert renamed["tracked"] and renamed["folder"] == "Inbox/Customers/Fabrikam Ltd" and renamed["regarding"]["id"] == "acc-fab"
    assert r.one("In the new namesake")["tracked"] is False
    # moved outside the Inbox: the rule is disabled and the mailbox gets an alert
    with r.graph() as c:
        assert c.post(f"/users/adele@contoso.com/mailFolders/{fab}/move", json={"destinationId": "msgfolderroot"}).status_code in (200, 201)
    put(r, fab, ext("After leaving the Inbox", sender="x@nowhere.example"))
    r.sync(mailboxes=opts)
    assert r.rows("SELECT status FROM tracking_folder WHERE folder_id = ?", fab) == [("disabled",)]
    assert r.one("After leaving the Inbox")["tracked"] is False
    out = CliRunner().invoke(app, ["tracking", "alerts", "--store", f"sqlite:///{r.db}"])
    assert out.exit_code == 0 and "TrackedFolderMovedOutsideInbox" in out.output and "Fabrikam" in out.output


def test_category_added_then_removed_untracks_without_deleting(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    msg = r.emu.deliver("adele@contoso.com", ext("Newsletter", sender="news@unknown.example"))
    r.sync()
    assert r.one("Newsletter")["tracked"] is False
    r.emu.update_message("adele@contoso.com", msg["immutableId"], {"categories": [CAT]})
    r.sync()
    d = r.one("Newsletter")
    assert d["tracked"] and d["tracked_by"] == "category" and d["acceptingentity"] is None
    r.emu.update_message("adele@contoso.com", msg["immutableId"], {"categories": ["Other"]})
    r.sync()
    d = r.one("Newsletter")
    assert d["tracked"] is False and "removed" in d["reason"]
    assert r.rows("SELECT COUNT(*) FROM email WHERE subject = 'Newsletter'") == [(1,)]  # untracked, not deleted


def test_failed_messages_get_the_undeliverable_category_after_five_attempts(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    bad = "<" + "x" * 400 + "@fabrikam.com>"  # longer than email.messageid allows: the mapping rejects it
    msg = r.emu.deliver("adele@contoso.com", ext("Cannot be stored", categories=[CAT], internetMessageId=bad))
    for _ in range(4):
        r.sync()
    assert r.rows("SELECT attempts, status FROM tracking_attempt") == [(4, "retrying")]
    r.sync()
    assert r.rows("SELECT attempts, status FROM tracking_attempt") == [(5, "undeliverable")]
    with r.graph() as c:
        cats = c.get(f"/users/adele@contoso.com/messages/{msg['immutableId']}", params={"$select": "categories"}).json()["categories"]
        master = [m["displayName"] for m in c.get("/users/adele@contoso.com/outlook/masterCategories").json()["value"]]
    assert cats == [f"{CAT} (Undeliverable)"] and f"{CAT} (Undeliverable)" in master


def test_party_resolution_inactive_unresolved_and_auto_created_contacts(tracking_for: Any) -> None:
    r: TrackRunner = tracking_for()
    r.emu.deliver("adele@contoso.com", ext("From an old record", sender="gone@fabrikam.com"))
    r.emu.deliver("adele@contoso.com", {**ext("From Pat"), "from": {"emailAddress": {"name": "Coleman, Pat", "address": "pat@northwind.example"}}})
    r.sync(mailboxes=mailboxes(adele={"track": "all"}), tracking={"auto_create_contacts": True})
    old = {p["role"]: p for p in r.one("From an old record")["parties"]}["from"]
    assert old["resolved"] == [] and "inactive" in old["why"]
    key = r.email("From an old record")["activityid"]
    assert r.rows("SELECT addressused, partyid FROM activityparty WHERE activityid = ? AND participationtypemask = 1", key) == [("gone@fabrikam.com", None)]
    pat = r.rows("SELECT contactid, firstname, lastname FROM contact WHERE emailaddress1 = 'pat@northwind.example'")
    assert len(pat) == 1 and pat[0][1:] == ("Pat", "Coleman")
    assert r.rows("SELECT partyid FROM activityparty WHERE addressused = 'pat@northwind.example'") == [(pat[0][0],)]


def test_explain_and_records_import_cli(tracking_for: Any, tmp_path: Any) -> None:
    r: TrackRunner = tracking_for()
    store = f"sqlite:///{r.db}"
    (tmp_path / "lead.csv").write_text("lastname,subject,emailaddress1\nAkers,Field service,kim@partner.example\n")
    out = CliRunner().invoke(app, ["records", "import", str(tmp_path / "lead.csv"), "--store", store])
    assert out.exit_code == 0 and "1 lead" in out.output
    r.emu.deliver("adele@contoso.com", ext("Hello from Kim", sender="kim@partner.example", internetMessageId="<kim-1@partner.example>"))
    r.sync(mailboxes=mailboxes(adele={"track": "known_parties"}))
    out = CliRunner().invoke(app, ["explain", "kim-1@partner.example", "--json", "--store", store])
    assert out.exit_code == 0, out.output
    decisions = json.loads(out.output)["decisions"]
    assert len(decisions) == 1
    d = decisions[0]
    assert {"messageid", "tracked", "reason", "correlationmethod", "regarding", "parties"} <= set(d)
    assert d["tracked"] and d["correlationmethod"] == 0 and any(p["resolved"] and p["resolved"][0]["table"] == "lead" for p in d["parties"])
    text = CliRunner().invoke(app, ["explain", "Hello from", "--store", store])
    assert text.exit_code == 0 and "TRACKED" in text.output and "kim@partner.example" in text.output
    assert CliRunner().invoke(app, ["explain", "no such mail", "--store", store]).exit_code == 1
