"""SQLite store: upsert idempotency, party replacement, atomic transactions, migrations, delete policies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mapping_helpers import MAILBOX, sample

from connector.mapping import MappingContext, MappingSet, Record
from connector.store import SqliteStore, StoreVersionError
from connector.store.schema import STORE_SCHEMA_VERSION


@pytest.fixture()
def store(tmp_path: Path, mapping_set: MappingSet) -> SqliteStore:
    s = SqliteStore(f"sqlite:///{tmp_path / 'sync.db'}", tables=mapping_set.tables)
    yield s  # type: ignore[misc]
    s.close()


def email_records(mapping_set: MappingSet, ctx: MappingContext, **changes: object) -> list[Record]:
    return mapping_set.map_item("message", dict(sample("message-get-response.json"), **changes), ctx)


def test_tables_use_dataverse_names_and_wal(store: SqliteStore, tmp_path: Path) -> None:
    assert {"activityid", "subject", "senton", "conversationindex", "inreplyto", "correlationmethod"} <= store.columns("email")
    assert {"activitypartyid", "activityid", "participationtypemask", "addressused", "partyid"} <= store.columns("activityparty")
    assert "to" not in store.columns("email")  # party lists live in activityparty
    conn = sqlite3.connect(tmp_path / "sync.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    pk = [r for r in conn.execute("PRAGMA table_info(contact)") if r[5]]
    assert [r[1] for r in pk] == ["contactid"]


def test_upsert_is_idempotent(store: SqliteStore, mapping_set: MappingSet, ctx: MappingContext) -> None:
    records = email_records(mapping_set, ctx)
    store.upsert_records(records)
    first = store.get("email", records[0].key)
    store.upsert_records(records)
    assert store.count("email") == 1
    assert store.count("activityparty") == 2
    assert store.get("email", records[0].key) == first
    assert first is not None and first["directioncode"] is False and first["senton"] == "2018-09-09T03:15:06Z"


def test_upsert_updates_values_and_replaces_parties(store: SqliteStore, mapping_set: MappingSet, ctx: MappingContext) -> None:
    store.upsert_records(email_records(mapping_set, ctx, ccRecipients=[{"emailAddress": {"address": "lee@contoso.com"}}]))
    assert store.count("activityparty") == 3
    records = email_records(mapping_set, ctx, subject="changed")
    store.upsert_records(records)
    assert store.get("email", records[0].key)["subject"] == "changed"  # type: ignore[index]
    assert store.count("activityparty") == 2  # the cc party went with the new version


def test_partial_record_keeps_other_columns(store: SqliteStore, mapping_set: MappingSet, ctx: MappingContext) -> None:
    records = email_records(mapping_set, ctx)
    store.upsert_records(records)
    store.upsert_records([Record("email", records[0].key, {"subject": "only subject"})])
    row = store.get("email", records[0].key)
    assert row is not None and row["subject"] == "only subject" and row["messageid"] == records[0].values["messageid"]


def test_exception_in_transaction_leaves_nothing(store: SqliteStore, mapping_set: MappingSet, ctx: MappingContext) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as tx:
            tx.upsert_records(email_records(mapping_set, ctx))
            tx.set_checkpoint(MAILBOX, "messages", "inbox", delta_link="https://graph/delta?token=1")
            tx.link_item(MAILBOX, "messages", "AAMkADhMGAAA=", "email", "k")
            tx.quarantine(MAILBOX, "messages", "x", "bad")
            raise RuntimeError("boom")
    assert store.count("email") == 0
    assert store.count("activityparty") == 0
    assert store.get_checkpoint(MAILBOX, "messages", "inbox") is None
    assert store.find_link(MAILBOX, "messages", "AAMkADhMGAAA=") is None
    assert store.sync_errors() == []


def test_page_and_checkpoint_commit_together(store: SqliteStore, mapping_set: MappingSet, ctx: MappingContext) -> None:
    records = email_records(mapping_set, ctx)
    with store.transaction() as tx:
        tx.upsert_records(records)
        tx.link_item(MAILBOX, "messages", "AAMkADhMGAAA=", "email", records[0].key, change_key="ck1", container="inbox")
        tx.set_checkpoint(MAILBOX, "messages", "inbox", next_link="https://graph/next")
    cp = store.get_checkpoint(MAILBOX, "messages", "inbox")
    assert cp is not None and cp.next_link == "https://graph/next" and cp.delta_link is None
    with store.transaction() as tx:
        tx.set_checkpoint(MAILBOX, "messages", "inbox", delta_link="https://graph/delta")
    cp = store.get_checkpoint(MAILBOX, "messages", "inbox")
    assert cp is not None and (cp.next_link, cp.delta_link) == (None, "https://graph/delta")
    link = store.find_link(MAILBOX, "messages", "AAMkADhMGAAA=")
    assert link is not None and (link.table, link.record_key, link.change_key, link.deleted) == ("email", records[0].key, "ck1", False)
    with store.transaction() as tx:
        tx.mark_link_deleted(MAILBOX, "messages", "AAMkADhMGAAA=")
    assert store.find_link(MAILBOX, "messages", "AAMkADhMGAAA=").deleted is True  # type: ignore[union-attr]


def test_transactions_do_not_nest(store: SqliteStore) -> None:
    with store.transaction():
        with pytest.raises(RuntimeError, match="nest"):
            with store.transaction():
                pass


def test_migration_version_and_reopen(tmp_path: Path, mapping_set: MappingSet, ctx: MappingContext) -> None:
    db = tmp_path / "v.db"
    with SqliteStore(db) as s:
        assert s.schema_version == STORE_SCHEMA_VERSION == 6
        s.upsert_records(email_records(mapping_set, ctx))
    with SqliteStore(db) as s:  # reopening migrates nothing and keeps data
        assert s.count("email") == 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone() == ("6",)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreVersionError):
        SqliteStore(db)


def test_v3_decisions_are_rekeyed_by_the_v4_migration(tmp_path: Path) -> None:
    from connector.store.schema import MIGRATIONS, decision_key

    db = tmp_path / "v3.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for version in (1, 2, 3):
        for stmt in MIGRATIONS[version]:
            conn.execute(stmt)  # type: ignore[arg-type]
    conn.execute("INSERT INTO tracking_decision (mailbox, graph_id, messageid, subject, tracked, reason, decided_at) "
                 "VALUES ('adele@contoso.com', 'AAMk1', '<m1@x>', 'Hello', 1, 'tracked', '2026-01-01T00:00:00Z')")
    conn.execute("PRAGMA user_version = 3")
    conn.close()
    with SqliteStore(db) as s:
        assert s.schema_version == STORE_SCHEMA_VERSION
        assert s.query("SELECT key, graph_id, subject, reason FROM tracking_decision") == [
            (decision_key("adele@contoso.com", "AAMk1"), "AAMk1", "Hello", "tracked")]
        names = {n for (n,) in s.query("SELECT name FROM sqlite_master WHERE tbl_name = 'tracking_decision' AND type = 'index'")}
        assert "ix_tracking_decision_mailbox" in names and "ix_tracking_decision_messageid" not in names


def test_v5_lists_stored_emails_by_message_id_and_drops_the_messageid_index(tmp_path: Path, mapping_set: MappingSet, ctx: MappingContext) -> None:
    db = tmp_path / "v4.db"
    with SqliteStore(db) as s:
        s.upsert_records(email_records(mapping_set, ctx))
        key, mid = s.query("SELECT activityid, messageid FROM email")[0]
        with s.transaction() as tx:  # back to what a v4 store with tracking looked like
            tx.execute("DROP TABLE tracking_email_alias")
            tx.execute("CREATE INDEX ix_tracking_email_messageid ON email (messageid)")
        s._conn.execute("PRAGMA user_version = 4")
    with SqliteStore(db) as s:
        assert s.schema_version == STORE_SCHEMA_VERSION
        assert s.query("SELECT messageid, activityid FROM tracking_email_alias") == [(mid, key)]
        assert not s.query("SELECT name FROM sqlite_master WHERE name = 'ix_tracking_email_messageid'")


def test_adding_a_column_alters_the_table(tmp_path: Path) -> None:
    from connector.mapping.schema_data import ColumnInfo, load_tables, with_columns

    db = tmp_path / "a.db"
    SqliteStore(db).close()
    tables = dict(load_tables())
    tables["task"] = with_columns(tables["task"], {"new_listname": ColumnInfo("new_listname", "String", max_length=100, custom=True)})
    with SqliteStore(db, tables=tables) as s:
        assert "new_listname" in s.columns("task")
        s.upsert_records([Record("task", "t1", {"subject": "x", "new_listname": "Groceries"})])
        assert s.get("task", "t1") == {"activityid": "t1", "subject": "x", "new_listname": "Groceries"}


@pytest.mark.parametrize(
    ("kind", "fixture", "table", "policy", "expected"),
    [
        ("message", "message-get-response.json", "email", "keep", (1, 4)),
        ("contact", "contact-get-response.json", "contact", "deactivate", (1, 2)),
        ("event", "event-create-response-recurring-seriesMaster.json", "appointment", "cancel", (2, 4)),
        ("todoTask", "todotask-create-response.json", "task", "delete", None),
    ],
)
def test_delete_policies(store: SqliteStore, mapping_set: MappingSet, ctx: MappingContext, kind: str, fixture: str, table: str, policy: str, expected: tuple[int, int] | None) -> None:
    records = mapping_set.map_item(kind, sample(fixture), ctx)
    assert mapping_set.for_source(kind)[0].delete_policy == policy
    store.upsert_records(records)
    with store.transaction() as tx:
        changed = tx.apply_delete_policy(table, records[0].key, policy)
    assert changed is (policy != "keep")
    row = store.get(table, records[0].key)
    if expected is None:
        assert row is None
    else:
        assert row is not None and (row["statecode"], row["statuscode"]) == expected


def test_deleting_an_activity_removes_its_parties(store: SqliteStore, mapping_set: MappingSet, ctx: MappingContext) -> None:
    records = mapping_set.map_item("event", sample("event-create-response-recurring-seriesMaster.json"), ctx)
    store.upsert_records(records)
    assert store.count("activityparty") == 2
    with store.transaction() as tx:
        assert tx.delete("appointment", records[0].key) is True
        assert tx.delete("appointment", records[0].key) is False
    assert store.count("activityparty") == 0


def test_lookup_is_indexed_and_feeds_the_lookup_transform(store: SqliteStore, mapping_set: MappingSet) -> None:
    store.upsert_records([Record("account", "a-1", {"name": "Contoso"}), Record("account", "a-2", {"name": "Fabrikam"})])
    assert store.lookup("account", "name", "contoso") == "a-1"
    assert store.lookup("account", "name", "Nobody") is None
    assert store.lookup("account", "nosuchcolumn", "x") is None
    indexes = {r[1] for r in store._conn.execute("PRAGMA index_list(account)")}
    assert "ix_lookup_account_name" in indexes
    ctx = MappingContext(mailbox=MAILBOX, lookup=store.lookup)
    item = dict(sample("contact-get-response.json"), companyName="Fabrikam")
    assert mapping_set.map_item("contact", item, ctx)[0].values["parentcustomerid"] == "a-2"


def test_quarantine_and_mailbox(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.quarantine(MAILBOX, "messages", "id-1", "email.messageid: too long", {"id": "id-1", "subject": "x" * 5000})
        tx.upsert_mailbox(MAILBOX, user_id="u-1")
        tx.upsert_mailbox(MAILBOX, status="disabled")
    errors = store.sync_errors(MAILBOX)
    assert len(errors) == 1 and errors[0]["reason"] == "email.messageid: too long"
    assert len(errors[0]["payload_excerpt"]) == 2000
    assert store.count("mailbox") == 1
    row = store._conn.execute("SELECT user_id, status FROM mailbox").fetchone()
    assert row == ("u-1", "disabled")


def test_invalid_record_is_never_written(store: SqliteStore, mapping_set: MappingSet, ctx: MappingContext) -> None:
    from connector.mapping import RecordInvalid

    with pytest.raises(RecordInvalid):
        with store.transaction() as tx:
            tx.upsert_records(email_records(mapping_set, ctx, internetMessageId="<" + "x" * 400 + "@c.com>"))
    assert store.count("email") == 0 and store.count("activityparty") == 0


def test_unknown_column_is_refused(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="no column"):
        store.upsert_records([Record("task", "t", {"nosuch": 1})])
    with pytest.raises(ValueError, match="unknown table"):
        store.upsert_records([Record("nosuch", "t", {})])


def test_version_1_database_is_migrated_to_the_current_version(tmp_path: Path) -> None:
    from connector.store.schema import MIGRATIONS

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    for stmt in MIGRATIONS[1]:
        conn.execute(stmt)
    conn.execute("INSERT INTO sync_state (mailbox, resource, container, next_link, delta_link, updated_at) VALUES ('a@b.c', 'messages', 'f', NULL, 'dl', 'now')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with SqliteStore(db) as s:
        assert s.schema_version == STORE_SCHEMA_VERSION
        cp = s.get_checkpoint("a@b.c", "messages", "f")
        assert cp is not None and cp.delta_link == "dl" and cp.round_id is None
        with s.transaction() as tx:
            tx.link_item("a@b.c", "messages", "g1", "email", "k1", container="f", seen_round="r1")
            tx.link_item("a@b.c", "messages", "g2", "email", "k2", container="f")
        assert [link.graph_id for link in s.unseen_links("a@b.c", "messages", "f", "r1")] == ["g2"]
