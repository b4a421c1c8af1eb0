"""SQLite store: Dataverse-shaped tables plus the connector's own sync bookkeeping.

Tables are named by Dataverse logical name with Dataverse column names, so the local copy
reads like the org. Read-only Dataverse columns (``senton``, ``conversationindex`` ...) are
kept too. A page of records and its delta checkpoint are committed in one transaction::

    with store.transaction() as tx:
        tx.upsert_records(records)
        tx.set_checkpoint(mailbox, "messages", folder_id, delta_link=link)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connector.mapping.records import Record
from connector.mapping.schema_data import TableInfo, load_tables
from connector.store.schema import MIGRATIONS, STORE_SCHEMA_VERSION, create_table_sql, ident, sql_type

PAYLOAD_EXCERPT_CHARS = 2000
CACHE_KIB = 32 * 1024  # SQLite page cache per connection
ACTIVITY_PARTY = "activityparty"
POLICY_STATE_LABEL = {"deactivate": "Inactive", "cancel": "Canceled"}


class StoreVersionError(RuntimeError):
    """The database was written by a newer connector (no downgrade path)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Delta position of one (mailbox, resource, container)."""

    mailbox: str
    resource: str
    container: str
    next_link: str | None
    delta_link: str | None
    updated_at: str
    round_id: str | None = None  # set while a full (reconciling) round is in progress


@dataclass(frozen=True, slots=True)
class ItemLink:
    """Which record a Graph item became, and the item's last seen changeKey."""

    mailbox: str
    resource: str
    graph_id: str
    table: str
    record_key: str
    change_key: str | None
    container: str | None
    deleted: bool


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _path_of(url_or_path: str | Path) -> str:
    text = str(url_or_path)
    if text.startswith("sqlite:///"):
        return text[len("sqlite:///"):] or ":memory:"
    if text.startswith("sqlite://"):
        return text[len("sqlite://"):] or ":memory:"
    return text


class SqliteStore:
    """Stdlib-sqlite3 store (WAL, ``synchronous=NORMAL``), created and migrated on open.

    Args:
        url_or_path: ``sqlite:///path.db``, a plain path, or ``:memory:``.
        tables: Dataverse tables to keep (default: the shipped schema data); pass
            ``MappingSet.tables`` so custom tables and overlay columns get created.
    """

    def __init__(self, url_or_path: str | Path, *, tables: Mapping[str, TableInfo] | None = None) -> None:
        path = _path_of(url_or_path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None)
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # Record keys are UUIDs, so inserts land all over the B-trees; SQLite's default 2 MB page
        # cache makes that I/O-bound once a store outgrows it (sync throughput fell ~30% by 100k messages).
        self._conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._in_tx = False
        self._columns: dict[str, set[str]] = {}
        self._lookup_indexes: set[tuple[str, str]] = set()
        self.tables: dict[str, TableInfo] = {}
        self._migrate()
        self.ensure_tables(tables if tables is not None else load_tables())

    # --- schema ---------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """``PRAGMA user_version`` of the open database."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > STORE_SCHEMA_VERSION:
            raise StoreVersionError(f"database schema version {current} is newer than this connector's {STORE_SCHEMA_VERSION}")
        for version in range(current + 1, STORE_SCHEMA_VERSION + 1):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for step in MIGRATIONS[version]:
                    if isinstance(step, str):
                        self._conn.execute(step)
                    else:
                        step(self._conn)
                self._conn.execute(
                    "INSERT INTO store_meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(version),),
                )
                self._conn.execute(f"PRAGMA user_version = {int(version)}")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def ensure_tables(self, tables: Mapping[str, TableInfo]) -> None:
        """Create missing Dataverse tables and add missing columns (``ALTER TABLE ADD COLUMN``)."""
        for table in tables.values():
            self._conn.execute(create_table_sql(table))
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({ident(table.name)})")}
            for name, col in table.columns.items():
                if col.storable and name not in have:
                    self._conn.execute(f"ALTER TABLE {ident(table.name)} ADD COLUMN {ident(name)} {sql_type(col)}")
                    have.add(name)
            if table.name == ACTIVITY_PARTY and "activityid" in have:
                # Upserting an activity replaces its party rows: without this index each replace scans them all.
                self._conn.execute(f"CREATE INDEX IF NOT EXISTS ix_activityparty_activityid ON {ident(ACTIVITY_PARTY)} (activityid)")
            self._columns[table.name] = have
            self.tables[table.name] = table

    def columns(self, table: str) -> set[str]:
        """Column names the SQLite table has."""
        return set(self._columns[table])

    # --- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic unit: everything done through ``tx`` commits together or not at all."""
        if self._in_tx:
            raise RuntimeError("transactions do not nest")
        self._conn.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield Transaction(self)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._in_tx = False

    def upsert_records(self, records: Iterable[Record]) -> int:
        """Upsert ``records`` in their own transaction (see :meth:`Transaction.upsert_records`)."""
        with self.transaction() as tx:
            return tx.upsert_records(records)

    # --- reads ----------------------------------------------------------------------------

    def get_checkpoint(self, mailbox: str, resource: str, container: str = "") -> Checkpoint | None:
        """Stored delta position, or None if this partition never synced."""
        row = self._conn.execute(
            "SELECT mailbox, resource, container, next_link, delta_link, updated_at, round_id FROM sync_state "
            "WHERE mailbox = ? AND resource = ? AND container = ?",
            (mailbox, resource, container),
        ).fetchone()
        return Checkpoint(*row) if row else None

    def count(self, table: str) -> int:
        """Number of rows in ``table`` (Dataverse or connector table)."""
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {ident(table)}").fetchone()[0])

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        """One row as a dict of its non-null columns (Boolean columns back as bool)."""
        info = self.tables[table]
        cur = self._conn.execute(f"SELECT * FROM {ident(table)} WHERE {ident(info.primary_key)} = ?", (key,))
        row = cur.fetchone()
        if row is None:
            return None
        names = [d[0] for d in cur.description]
        out: dict[str, Any] = {}
        for name, value in zip(names, row):
            if value is None:
                continue
            col = info.columns.get(name)
            out[name] = bool(value) if col is not None and col.type == "Boolean" else value
        return out

    def lookup(self, table: str, column: str, value: Any) -> str | None:
        """Primary key of the first row whose ``column`` equals ``value`` (case-insensitive text).

        Used by the mapping ``lookup`` transform; the column gets an index on first use.
        """
        info = self.tables.get(table)
        if info is None or column not in self._columns.get(table, ()):
            return None
        if (table, column) not in self._lookup_indexes:
            self._conn.execute(
                f"CREATE INDEX IF NOT EXISTS {ident(f'ix_lookup_{table}_{column}')} "
                f"ON {ident(table)} ({ident(column)} COLLATE NOCASE)"
            )
            self._lookup_indexes.add((table, column))
        row = self._conn.execute(
            f"SELECT {ident(info.primary_key)} FROM {ident(table)} WHERE {ident(column)} = ? COLLATE NOCASE "
            f"ORDER BY {ident(info.primary_key)} LIMIT 1",
            (value,),
        ).fetchone()
        return None if row is None else str(row[0])

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (for connector tables owned by other modules, e.g. tracking)."""
        return list(self._conn.execute(sql, tuple(args)).fetchall())

    def find_link(self, mailbox: str, resource: str, graph_id: str) -> ItemLink | None:
        """The record a Graph item id maps to (needed for ``@removed`` items, which carry only an id)."""
        row = self._conn.execute(
            "SELECT mailbox, resource, graph_id, table_name, record_key, change_key, container, deleted "
            "FROM item_link WHERE mailbox = ? AND resource = ? AND graph_id = ?",
            (mailbox, resource, graph_id),
        ).fetchone()
        if row is None:
            return None
        return ItemLink(*row[:7], deleted=bool(row[7]))

    def links_for(self, mailbox: str, resource: str, graph_ids: list[str]) -> dict[str, ItemLink]:
        """The links of many Graph ids at once (one query per 500 ids, not one per item)."""
        out: dict[str, ItemLink] = {}
        for i in range(0, len(graph_ids), 500):
            chunk = graph_ids[i:i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT mailbox, resource, graph_id, table_name, record_key, change_key, container, deleted FROM item_link "
                f"WHERE mailbox = ? AND resource = ? AND graph_id IN ({marks})",
                (mailbox, resource, *chunk),
            ).fetchall()
            for row in rows:
                out[row[2]] = ItemLink(*row[:7], deleted=bool(row[7]))
        return out

    def unseen_links(self, mailbox: str, resource: str, container: str, round_id: str) -> list[ItemLink]:
        """Live links of a container that the full round `round_id` did not see (gone from Graph)."""
        rows = self._conn.execute(
            "SELECT mailbox, resource, graph_id, table_name, record_key, change_key, container, deleted FROM item_link "
            "WHERE mailbox = ? AND resource = ? AND container = ? AND deleted = 0 AND (seen_round IS NULL OR seen_round != ?)",
            (mailbox, resource, container, round_id),
        ).fetchall()
        return [ItemLink(*row[:7], deleted=bool(row[7])) for row in rows]

    def sync_errors(self, mailbox: str | None = None) -> list[dict[str, Any]]:
        """Quarantined items, oldest first."""
        sql = "SELECT id, mailbox, resource, item_id, reason, payload_excerpt, created_at FROM sync_error"
        args: tuple[Any, ...] = ()
        if mailbox is not None:
            sql += " WHERE mailbox = ?"
            args = (mailbox,)
        cur = self._conn.execute(sql + " ORDER BY id", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transaction:
    """Write operations; obtained from :meth:`SqliteStore.transaction`."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._conn = store._conn

    def execute(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        """Run one statement inside the transaction (for connector tables owned by other modules)."""
        return self._conn.execute(sql, tuple(args))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> sqlite3.Cursor:
        """Run one statement for many rows inside the transaction (for connector tables owned by other modules)."""
        return self._conn.executemany(sql, rows)

    def upsert_records(self, records: Iterable[Record]) -> int:
        """Insert or update records by primary key (``INSERT ... ON CONFLICT DO UPDATE``).

        Columns missing from a record keep their stored value. Upserting an activity
        replaces its ``activityparty`` rows with those in the same call, so pass an item's
        records together (as :meth:`CompiledMapping.map` returns them).
        """
        groups: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
        activities: list[str] = []
        count = 0
        tables = self._store.tables
        for rec in records:
            info = tables.get(rec.table)
            if info is None:
                raise ValueError(f"unknown table {rec.table!r}")
            cols = tuple(rec.values)
            unknown = set(cols) - self._store._columns[rec.table]
            if unknown:
                raise ValueError(f"table {rec.table!r} has no column(s) {sorted(unknown)}")
            groups.setdefault((rec.table, cols), []).append((rec.key, *rec.values.values()))
            if info.is_activity:
                activities.append(rec.key)
            count += 1
        if activities and ACTIVITY_PARTY in tables:
            self._conn.executemany(f"DELETE FROM {ident(ACTIVITY_PARTY)} WHERE activityid = ?", [(k,) for k in activities])
        for (table, cols), rows in groups.items():
            pk = tables[table].primary_key
            names = ", ".join([ident(pk), *map(ident, cols)])
            marks = ", ".join("?" * (len(cols) + 1))
            if cols:
                sets = ", ".join(f"{ident(c)} = excluded.{ident(c)}" for c in cols)
                conflict = f"DO UPDATE SET {sets}"
            else:
                conflict = "DO NOTHING"
            self._conn.executemany(
                f"INSERT INTO {ident(table)} ({names}) VALUES ({marks}) ON CONFLICT({ident(pk)}) {conflict}", rows
            )
        return count

    def delete(self, table: str, key: str) -> bool:
        """Delete a row (and an activity's party rows); True if it existed."""
        info = self._store.tables[table]
        if info.is_activity and ACTIVITY_PARTY in self._store.tables:
            self._conn.execute(f"DELETE FROM {ident(ACTIVITY_PARTY)} WHERE activityid = ?", (key,))
        cur = self._conn.execute(f"DELETE FROM {ident(table)} WHERE {ident(info.primary_key)} = ?", (key,))
        return cur.rowcount > 0

    def apply_delete_policy(self, table: str, key: str, policy: str) -> bool:
        """Apply a mapping's delete policy to a record whose Graph item was removed.

        ``keep`` leaves the row, ``deactivate`` sets the Inactive state, ``cancel`` the
        Canceled state (each with its default status), ``delete`` removes it.
        Returns True if a row was changed.
        """
        if policy == "keep":
            return False
        if policy == "delete":
            return self.delete(table, key)
        label = POLICY_STATE_LABEL.get(policy)
        if label is None:
            raise ValueError(f"unknown delete policy {policy!r}")
        info = self._store.tables[table]
        state = info.state_for_label(label)
        if state is None:
            raise ValueError(f"table {table!r} has no {label!r} state")
        cur = self._conn.execute(
            f"UPDATE {ident(table)} SET statecode = ?, statuscode = ? WHERE {ident(info.primary_key)} = ?",
            (state[0], state[1], key),
        )
        return cur.rowcount > 0

    def link_item(
        self,
        mailbox: str,
        resource: str,
        graph_id: str,
        table: str,
        record_key: str,
        *,
        change_key: str | None = None,
        container: str | None = None,
        seen_round: str | None = None,
    ) -> None:
        """Remember which record a Graph item became (and its changeKey); `seen_round` stamps a full round."""
        self._conn.execute(
            "INSERT INTO item_link (mailbox, resource, graph_id, table_name, record_key, change_key, container, deleted, updated_at, seen_round) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT(mailbox, resource, graph_id) DO UPDATE SET "
            "table_name = excluded.table_name, record_key = excluded.record_key, change_key = excluded.change_key, "
            "container = excluded.container, deleted = 0, updated_at = excluded.updated_at, "
            "seen_round = COALESCE(excluded.seen_round, item_link.seen_round)",
            (mailbox, resource, graph_id, table, record_key, change_key, container, _now(), seen_round),
        )

    def link_items(
        self, mailbox: str, resource: str, links: Iterable[tuple[str, str, str, str | None]], *, container: str | None = None,
        seen_round: str | None = None,
    ) -> None:
        """`link_item` for many `(graph_id, table, record_key, change_key)` at once."""
        now = _now()
        self._conn.executemany(
            "INSERT INTO item_link (mailbox, resource, graph_id, table_name, record_key, change_key, container, deleted, updated_at, seen_round) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT(mailbox, resource, graph_id) DO UPDATE SET "
            "table_name = excluded.table_name, record_key = excluded.record_key, change_key = excluded.change_key, "
            "container = excluded.container, deleted = 0, updated_at = excluded.updated_at, "
            "seen_round = COALESCE(excluded.seen_round, item_link.seen_round)",
            [(mailbox, resource, gid, table, key, ck, container, now, seen_round) for gid, table, key, ck in links],
        )

    def mark_link_deleted(self, mailbox: str, resource: str, graph_id: str) -> None:
        """Flag the item link as deleted in Graph (the row stays for audit and replays)."""
        self._conn.execute(
            "UPDATE item_link SET deleted = 1, updated_at = ? WHERE mailbox = ? AND resource = ? AND graph_id = ?",
            (_now(), mailbox, resource, graph_id),
        )

    def set_checkpoint(
        self, mailbox: str, resource: str, container: str = "", *, next_link: str | None = None, delta_link: str | None = None,
        round_id: str | None = None,
    ) -> None:
        """Store the delta position of one partition (and the full round in progress, if any)."""
        self._conn.execute(
            "INSERT INTO sync_state (mailbox, resource, container, next_link, delta_link, updated_at, round_id) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(mailbox, resource, container) DO UPDATE SET next_link = excluded.next_link, "
            "delta_link = excluded.delta_link, updated_at = excluded.updated_at, round_id = excluded.round_id",
            (mailbox, resource, container, next_link, delta_link, _now(), round_id),
        )

    def quarantine(self, mailbox: str, resource: str, item_id: str | None, reason: str, payload: Any = None) -> None:
        """Record an item that could not be mapped or stored (``sync_error``)."""
        excerpt = None
        if payload is not None:
            text = payload if isinstance(payload, str) else json.dumps(payload, default=str, ensure_ascii=False)
            excerpt = text[:PAYLOAD_EXCERPT_CHARS]
        self._conn.execute(
            "INSERT INTO sync_error (mailbox, resource, item_id, reason, payload_excerpt, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (mailbox, resource, item_id, reason, excerpt, _now()),
        )

    def upsert_mailbox(self, address: str, *, user_id: str | None = None, display_name: str | None = None, status: str = "active") -> None:
        """Insert or update a synced mailbox."""
        self._conn.execute(
            "INSERT INTO mailbox (address, user_id, display_name, status, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(address) DO UPDATE SET user_id = COALESCE(excluded.user_id, mailbox.user_id), "
            "display_name = COALESCE(excluded.display_name, mailbox.display_name), status = excluded.status, "
            "updated_at = excluded.updated_at",
            (address, user_id, display_name, status, _now()),
        )
