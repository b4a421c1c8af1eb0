"""Pure tracking logic: tokens, auto-reply detection, subject words, names, settings, party resolution, reference files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from connector.errors import SettingsError
from connector.settings import Settings
from connector.store.sqlite import SqliteStore
from connector.tracking import signals
from connector.tracking.parties import Candidate, PartyIndex
from connector.tracking.reference import ReferenceFileError, import_records
from connector.tracking.tokens import TokenFormat


# tokens ------------------------------------------------------------------------------------------
def test_token_format_matches_the_documented_shape_and_wraps() -> None:
    fmt = TokenFormat()
    assert fmt.make(1, 1) == "CRM:0001001"
    assert fmt.make(1, 999) == "CRM:0001999" and fmt.make(1, 1000) == "CRM:0001000"  # counter wraps 999 -> 000
    assert TokenFormat(base_number=500).make(1, 7) == "CRM:0501007"  # base offsets user numbers
    assert TokenFormat(prefix="CASE", user_digits=2, counter_digits=4).make(3, 12) == "CASE:0030012"


def test_parsing_honours_every_prefix_ever_used() -> None:
    fmt = TokenFormat(prefix="NEW", previous_prefixes=("CRM",))
    assert fmt.find("RE: Quote CRM:0001001") == "CRM:0001001"
    assert fmt.find("Re: status new:0002003") == "NEW:0002003"
    assert fmt.find("Invoice XCRM:0001001 and CRM:01") is None  # part of a word; too short
    assert TokenFormat().find("Mail about OLD:0001001") is None


def test_subject_plus_token_is_capped_by_cutting_the_subject() -> None:
    fmt = TokenFormat()
    long = "x" * 300
    out = fmt.apply(long, "CRM:0001001")
    assert len(out) == 255 and out.endswith(" CRM:0001001")
    assert fmt.apply("RE: Hello CRM:0001001", "CRM:0001002") == "RE: Hello CRM:0001002"  # one token only
    assert TokenFormat(enabled=False).apply("Hello", "CRM:0001001") == "Hello"  # tokens can be turned off
    assert TokenFormat(max_subject_length=20).apply("Hello", "CRM:" + "9" * 30) == "Hello"  # token longer than the cap: dropped


# signals -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("headers", "subject", "auto"), [
    ({"auto-submitted": "auto-replied"}, "Anything", True),
    ({"auto-submitted": "no"}, "Lunch", False),
    ({"x-auto-response-suppress": "All"}, "Anything", True),
    ({}, "Automatic reply: Project Atlas", True),
    ({}, "Out of Office: back Monday", True),
    ({}, "Abwesenheitsnotiz: Urlaub", True),
    ({}, "RE: Out of office planning for the team", False),
    ({}, "Office move", False),
])
def test_auto_replies_are_recognised(headers: dict[str, str], subject: str, auto: bool) -> None:
    assert (signals.auto_reply_reason(headers, subject) is not None) is auto


def test_subject_words_ignore_reply_prefixes_and_count_twenty() -> None:
    assert signals.subject_words("RE: FW: AW: Budget  for Q3") == ["budget", "for", "q3"]
    assert signals.subject_signature("RE: Budget for Q3") == signals.subject_signature("fw:budget FOR q3")
    assert signals.subject_signature("Budget for Q3") != signals.subject_signature("Budget for Q4")
    many = " ".join(f"w{i}" for i in range(30))
    assert len(signals.subject_words(many)) == 20
    assert signals.subject_signature(many) == signals.subject_signature(many + " extra words after twenty")


def test_conversation_hash_uses_the_thread_header_only() -> None:
    root = bytes(range(22))
    child = root + b"\x01\x02\x03\x04\x05"
    h = signals.base_conversation_hash(base64.b64encode(root).decode())
    assert h is not None and h == signals.base_conversation_hash(base64.b64encode(child).decode())
    assert signals.base_conversation_hash("AQID") is None and signals.base_conversation_hash(None) is None
    # the header alone starts a thread; a child block (a reply or forward) does not
    assert signals.thread_header(base64.b64encode(root).decode()) == (h, True)
    assert signals.thread_header(base64.b64encode(child).decode()) == (h, False)


@pytest.mark.parametrize(("method", "value", "root", "waits"), [
    (0, None, False, {"t", "h", "c"}),  # no match: any email sharing a value would be one
    (4, None, False, {"t"}),  # a token match: an earlier token email only (the conversation ranks after it)
    (5, "hash", False, {"t", "h"}),  # a thread hash match: the token, or an earlier hash email
    (5, "cid", False, {"t", "h", "c"}),  # a conversationId match: the token, any hash email, or an earlier cid email
    (3, "<p@x>", False, set()),  # In-Reply-To: its own header ids only (none rank before <p@x> here)
    (0, None, True, {"t"}),  # a thread's first message: never its conversation's values (its replies share them)
])
def test_a_match_waits_on_the_values_that_could_still_beat_it(tmp_path: Path, method: int, value: str | None, root: bool, waits: set[str]) -> None:
    from connector.tracking import tracker as tracker_module

    with SqliteStore(tmp_path / "s.db") as store:
        t = tracker_module.Tracker(Settings.load(None), store)
        sig = tracker_module._Sig(("<p@x>",), 7, "c-1", "CRM:0001001", None, root)
        corr = tracker_module.Correlation(method, None if method == 0 else "e1", value=value, rank=None if method in (0, 3) else "2026-01-01T00:00:00Z\x1fe1")
        thread = t._thread_keys(sig, {"senton": "2026-01-02T00:00:00Z", "messageid": "<m@x>"}, corr, "e2")
        got = set() if thread is None else {k for k in ("t", "h", "c") if getattr(thread, k) is not None}
        assert got == waits
        if thread is not None and method in (4, 5):
            assert (thread.k, thread.r) == ({4: "t"}.get(method) or value[0], corr.rank)  # type: ignore[index]


def test_names_are_parsed_from_display_names() -> None:
    assert signals.split_name("Naidoo, Chris", "x@y") == ("Chris", "Naidoo")
    assert signals.split_name("Mary Jo Berry", "x@y") == ("Mary Jo", "Berry")
    assert signals.split_name(None, "pat.coleman@northwind.com") == ("Pat", "Coleman")


# settings ----------------------------------------------------------------------------------------
def test_folders_accept_paths_and_objects_and_are_capped_at_25() -> None:
    s = Settings.load(None, mailboxes=[{"address": "a@contoso.com", "track": "all", "folders": [
        "inbox/Rules", {"path": "inbox/Customers/Fabrikam", "regarding": {"table": "account", "key": {"accountnumber": "F-100"}}}, "Archive"]}])
    mb = s.mailbox("a@contoso.com")
    assert mb.folders == ["inbox/Rules", "inbox/Customers/Fabrikam", "Archive"]  # all synced
    assert [f.key for f in mb.tracked_folders] == ["inbox/rules", "inbox/customers/fabrikam"]  # only those under the Inbox are tracked
    assert s.track_option("a@contoso.com") == "all" and s.track_option("other@contoso.com") == "responses"
    with pytest.raises(SettingsError, match="at most 25"):
        Settings.load(None, mailboxes=[{"address": "a@contoso.com", "folders": [f"inbox/f{i}" for i in range(26)]}])
    with pytest.raises(SettingsError, match="exactly one"):
        Settings.load(None, mailboxes=[{"address": "a@contoso.com", "folders": [{"path": "inbox/x", "regarding": {"table": "account"}}]}])
    with pytest.raises(SettingsError):
        Settings.load(None, tracking={"token": {"prefix": "X" * 21}})


# parties -----------------------------------------------------------------------------------------
def _index(*cands: tuple[str, Candidate]) -> PartyIndex:
    idx = PartyIndex()
    for addr, c in cands:
        idx.add(addr, c)
    return idx


def test_sender_takes_the_first_active_match_owner_first() -> None:
    idx = _index(("a@x.com", Candidate(2, "account", "acc", True, "u1", "emailaddress1")),
                 ("a@x.com", Candidate(1, "contact", "c-other", True, "u2", "emailaddress1")),
                 ("a@x.com", Candidate(1, "contact", "c-gone", False, "u1", "emailaddress1")))
    assert idx.sender("a@x.com", None).refs[0].id == "c-other"  # contact before account
    r = idx.sender("A@X.com", "u1")
    assert r.refs[0].id == "acc" and "owned by the mailbox owner" in r.why  # the owner's record first; inactive skipped
    assert idx.sender("a@x.com", None, unresolve_multiple=True).refs == []
    assert idx.sender("nobody@x.com", None).refs == []


def test_more_than_100_sender_matches_stay_unresolved_and_recipients_get_all() -> None:
    idx = _index(*[("dup@x.com", Candidate(1, "contact", f"c{i}", True, None, "emailaddress1")) for i in range(101)])
    assert idx.sender("dup@x.com", None).refs == [] and "more than 100" in idx.sender("dup@x.com", None).why
    assert len(idx.recipient("dup@x.com").refs) == 101
    assert idx.recipient("dup@x.com", unresolve_multiple=True).refs == []
    only_inactive = _index(("old@x.com", Candidate(1, "contact", "c", False, None, "emailaddress1")))
    assert only_inactive.recipient("old@x.com").refs == [] and "inactive" in only_inactive.recipient("old@x.com").why


def test_aliases_resolve_to_the_user_of_the_primary_address(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "p.db")
    import_records(store, [_write(tmp_path / "org.yaml", "systemuser:\n  - {systemuserid: u-1, internalemailaddress: adele@contoso.com}\n"
                                  "queue:\n  - {queueid: q-1, name: Sales, emailaddress: sales@contoso.com}\n")])
    users = [{"mail": "adele@contoso.com", "userPrincipalName": "adele@contoso.com", "proxyAddresses": ["SMTP:adele@contoso.com", "smtp:adele.vance@contoso.com"]},
             {"mail": "sales@contoso.com", "proxyAddresses": ["SMTP:sales@contoso.com", "smtp:orders@contoso.com"]},
             {"mail": "bob@contoso.com", "proxyAddresses": ["smtp:robert@contoso.com"]}]
    idx = PartyIndex.load(store.query, {t: store.columns(t) for t in store.tables}, users)
    assert [(r.table, r.id) for r in idx.recipient("Adele.Vance@contoso.com").refs] == [("systemuser", "u-1")]
    assert idx.mailbox("orders@contoso.com").table == "queue" and idx.mailbox("orders@contoso.com").id == "q-1"
    bob = idx.mailbox("robert@contoso.com")
    assert bob is not None and bob.id is None and bob.address == "bob@contoso.com"  # a tenant user with no systemuser row
    assert idx.user_of["adele@contoso.com"] == "u-1"


def test_contacts_accounts_and_leads_are_read_per_address_through_indexes_never_whole(tmp_path: Path) -> None:
    from connector.tracking import tracker as tracker_module

    store = SqliteStore(tmp_path / "p.db")
    import_records(store, [_write(tmp_path / "crm.yaml", "systemuser:\n  - {systemuserid: u-1, internalemailaddress: adele@contoso.com}\n"
                                  "contact:\n  - {contactid: c-1, emailaddress2: \" Dana@Fabrikam.COM\\t\", ownerid: u-1}\n"
                                  "  - {contactid: c-2, emailaddress1: dana@fabrikam.com, statecode: 1}\n"
                                  "  - {contactid: c-3, emailaddress1: other@fabrikam.com}\n"
                                  "account:\n  - {accountid: a-1, name: Fabrikam, emailaddress3: DANA@fabrikam.com}\n"
                                  "lead:\n  - {leadid: l-1, emailaddress1: lead@x.com}\n")])
    tracker_module.Tracker(Settings.load(None), store)  # creates the indexes the lookups read
    indexed = {name for (name,) in store.query("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_party_%'")}
    assert {"ix_party_contact_emailaddress1", "ix_party_contact_emailaddress3", "ix_party_account_emailaddress2", "ix_party_lead_emailaddress1"} <= indexed

    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    idx = PartyIndex.load(store.query, {t: store.columns(t) for t in store.tables})
    assert set(idx.by_address) == {"adele@contoso.com"}  # users now; no contact, account or lead read yet
    got = idx.recipient("dana@FABRIKAM.com")
    assert sorted((r.table, r.id) for r in got.refs) == [("account", "a-1"), ("contact", "c-1")] and "1 inactive skipped" in got.why
    assert [c.via for c in idx.candidates("dana@fabrikam.com") if c.table == "contact"] == ["emailaddress2", "emailaddress1"]
    assert idx.sender("dana@fabrikam.com", "u-1").refs[0].id == "c-1" and idx.recipient("lead@x.com").refs[0].table == "lead"
    assert "other@fabrikam.com" not in idx.by_address and idx.recipient("nobody@x.com").refs == []
    reads = [s for s in statements if 'FROM "contact"' in s]
    assert reads and all("WHERE lower(trim(emailaddress1, char(32, 9, 10, 11, 12, 13))) =" in s for s in reads)  # per address, never whole
    assert len(reads) == 3  # dana, lead, nobody: once each, whatever the case
    idx.recipient("Dana@fabrikam.com")
    assert len([s for s in statements if 'FROM "contact"' in s]) == 3  # remembered for the run
    plan = " ".join(str(r) for r in store.query(f"EXPLAIN QUERY PLAN {idx.lookup[1]}", ("dana@fabrikam.com",)))  # type: ignore[index]
    assert "ix_party_contact_emailaddress2" in plan and "ix_party_account_emailaddress3" in plan and "SCAN" not in plan


# reference files -----------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_reference_files_yaml_json_csv(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.db")
    counts = import_records(store, [
        _write(tmp_path / "a.yaml", "account:\n  - {name: Fabrikam, accountnumber: F-100, emailaddress1: info@fabrikam.com}\n"),
        _write(tmp_path / "b.json", '{"lead": [{"lastname": "Akers", "subject": "Field service", "emailaddress1": "kim@partner.com"}]}'),
        _write(tmp_path / "contact.csv", "firstname,lastname,emailaddress1,statecode\nChris,Naidoo,chris@fabrikam.com,1\n"),
    ])
    assert counts == {"account": 1, "lead": 1, "contact": 1}
    assert store.lookup("account", "accountnumber", "F-100") is not None
    cid = store.lookup("contact", "emailaddress1", "chris@fabrikam.com")
    assert cid and store.get("contact", cid)["statecode"] == 1 and store.get("contact", cid)["fullname"] == "Chris Naidoo"
    again = import_records(store, [tmp_path / "contact.csv"])  # stable keys: re-import updates in place
    assert again == {"contact": 1} and store.count("contact") == 1
    with pytest.raises(ReferenceFileError, match="no column"):
        import_records(store, [_write(tmp_path / "bad.yaml", "account:\n  - {nosuch: 1}\n")])
    with pytest.raises(ReferenceFileError, match="unknown table"):
        import_records(store, [_write(tmp_path / "bad2.yaml", "nosuch:\n  - {a: 1}\n")])


def test_demo_records_match_the_demo_tenant(tmp_path: Path) -> None:
    from connector.tracking.demo import prepare_demo

    store = SqliteStore(tmp_path / "d.db")
    counts = prepare_demo(store)
    assert counts["account"] >= 4 and counts["contact"] >= 6 and counts["systemuser"] >= 5 and counts["queue"] == 1
    assert store.lookup("account", "accountnumber", "F-100") and store.lookup("contact", "emailaddress1", "chris.naidoo@fabrikam.com")


# correlation lookups -------------------------------------------------------------------------------
@pytest.mark.parametrize("cap", [2, 64])
def test_correlation_finds_the_first_eligible_email_past_the_preloaded_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: int) -> None:
    """A page preloads the first `_PRELOAD_CAP` emails of each thread value, earliest sent first; a message's match is the
    earliest sent of the emails sent no later than it, whether or not it was preloaded."""
    from connector.mapping.records import Record
    from connector.tracking import tracker as tracker_module

    monkeypatch.setattr(tracker_module, "_PRELOAD_CAP", cap)
    with SqliteStore(tmp_path / "s.db") as store:
        t = tracker_module.Tracker(Settings.load(None), store)
        sent = ["2026-01-05T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
        store.upsert_records([Record("email", f"e{i}", {"subject": f"s{i}", "messageid": f"<m{i}@x>", "senton": s, "baseconversationindexhash": 7})
                              for i, s in enumerate(sent)])
        store.upsert_records([Record("email", "other", {"subject": "o", "messageid": "<o@x>", "baseconversationindexhash": 8})])
        with store.transaction() as tx:
            page = tracker_module._Page(tx)
            t._load_rows(page, "baseconversationindexhash", [7, 8, 9])
            by_sent = ["e3", "e4", "e2", "e1", "e0"]
            assert [r.activityid for r in page.stored["baseconversationindexhash"][7]] == by_sent[:cap]
            assert page.stored["baseconversationindexhash"][9] == []
            got = t._first(page, "baseconversationindexhash", 7, ("new", "<new@x>", "2026-01-02T12:00:00Z"))
            assert got is not None and got.activityid == "e3"  # e0-e2 were sent later; e3 is the earliest sent of e3 and e4
            got = t._first(page, "baseconversationindexhash", 7, ("e3", "<new@x>", "2026-01-09T12:00:00Z"))
            assert got is not None and got.activityid == "e4"  # (not itself)
            assert t._first(page, "baseconversationindexhash", 7, ("new", "<new@x>", "2025-12-31T00:00:00Z")) is None
            assert t._first(page, "baseconversationindexhash", 8, None).activityid == "other"  # type: ignore[union-attr]
            alone = tracker_module._Page(tx)  # one value with more rows than the cap allows for the chunk: the bounded query
            t._load_rows(alone, "baseconversationindexhash", [7])
            assert [r.activityid for r in alone.stored["baseconversationindexhash"][7]] == by_sent[:cap]


def test_conversation_ids_are_found_by_their_prefix_and_told_apart_in_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conversationtrackingid is indexed by its first 8 hex digits: another conversation's emails sharing them are read but
    never matched, and a match past the preloaded rows is still the earliest sent eligible one."""
    from connector.mapping.records import Record
    from connector.tracking import tracker as tracker_module

    monkeypatch.setattr(tracker_module, "_PRELOAD_CAP", 2)
    a, b = "aaaaaaaa-0000-5000-8000-00000000000a", "aaaaaaaa-0000-5000-8000-00000000000b"
    rows = [(b, "2026-01-05T00:00:00Z"), (b, "2026-01-05T00:00:00Z"), (b, "2026-01-01T00:00:00Z"), (a, "2026-01-05T00:00:00Z"), (a, "2026-01-03T00:00:00Z")]
    with SqliteStore(tmp_path / "s.db") as store:
        with store.transaction() as tx:  # a store an earlier version indexed by the whole GUID
            tx.execute("CREATE INDEX ix_tracking_email_convid ON email (conversationtrackingid)")
            tx.execute("CREATE INDEX ix_tracking_email_convid8 ON email (substr(conversationtrackingid, 1, 8))")
        t = tracker_module.Tracker(Settings.load(None), store)
        store.upsert_records([Record("email", f"e{i}", {"subject": f"s{i}", "messageid": f"<m{i}@x>", "senton": sent, "conversationtrackingid": cid})
                              for i, (cid, sent) in enumerate(rows)])
        indexes = {n for (n,) in store.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "ix_tracking_email_convid8_by_sent" in indexes and not indexes & {"ix_tracking_email_convid", "ix_tracking_email_convid8"}
        with store.transaction() as tx:
            page = tracker_module._Page(tx)
            t._load_rows(page, "conversationtrackingid", [a, b, "cccccccc-0000-5000-8000-00000000000c"])
            stored = page.stored["conversationtrackingid"]
            # the prefix's first two by senton: e2 (b) and e4 (a)
            assert [r.activityid for r in stored[a]] == ["e4"] and [r.activityid for r in stored[b]] == ["e2"]
            assert stored["cccccccc-0000-5000-8000-00000000000c"] == []
            got = t._first(page, "conversationtrackingid", a, ("new", "<new@x>", "2026-01-04T00:00:00Z"))
            assert got is not None and got.activityid == "e4"  # e0-e2 are another conversation's, e3 was sent later
            assert t._first(page, "conversationtrackingid", a, ("new", "<new@x>", "2026-01-02T00:00:00Z")) is None
            got = t._first(page, "conversationtrackingid", b, ("new", "<new@x>", "2026-01-09T00:00:00Z"))
            assert got is not None and got.activityid == "e2"
            got = t._first(page, "conversationtrackingid", b, ("e2", "<new@x>", "2026-01-09T00:00:00Z"))
            assert got is not None and got.activityid == "e0"  # past the preloaded rows; e0 and e1 tie on senton: the lower activityid
