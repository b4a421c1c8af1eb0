"""SQL DDL for the SQLite store: Dataverse tables (from the schema data) and connector tables."""

from __future__ import annotations

import re

import sqlite3
from collections.abc import Callable
from hashlib import blake2b

from connector.mapping.schema_data import CHOICE_TYPES, FLOAT_TYPES, INT_TYPES, ColumnInfo, TableInfo

STORE_SCHEMA_VERSION = 6
"""Bump with a new entry in ``MIGRATIONS`` whenever the connector tables change."""

_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")

CONNECTOR_DDL = (
    """CREATE TABLE IF NOT EXISTS store_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sync_state (
        mailbox TEXT NOT NULL,
        resource TEXT NOT NULL,
        container TEXT NOT NULL DEFAULT '',
        next_link TEXT,
        delta_link TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (mailbox, resource, container)
    )""",
    """CREATE TABLE IF NOT EXISTS mailbox (
        address TEXT PRIMARY KEY,
        user_id TEXT,
        display_name TEXT,
        status TEXT NOT NULL DEFAULT 'active',
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sync_error (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mailbox TEXT NOT NULL,
        resource TEXT NOT NULL,
        item_id TEXT,
        reason TEXT NOT NULL,
        payload_excerpt TEXT,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS item_link (
        mailbox TEXT NOT NULL,
        resource TEXT NOT NULL,
        graph_id TEXT NOT NULL,
        table_name TEXT NOT NULL,
        record_key TEXT NOT NULL,
        change_key TEXT,
        container TEXT,
        deleted INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (mailbox, resource, graph_id)
    )""",
    "CREATE INDEX IF NOT EXISTS ix_item_link_record ON item_link (table_name, record_key)",
    "CREATE INDEX IF NOT EXISTS ix_sync_error_mailbox ON sync_error (mailbox, resource)",
)

def decision_key(mailbox: str, graph_id: str) -> int:
    """The `tracking_decision.key` of one message copy: a signed 64-bit hash of (lower-case mailbox, Graph id).

    A narrow integer key instead of a (mailbox, Graph id) text key: Graph ids are ~150 characters, and a
    unique index on them made every page's decisions cost random writes across a wide index."""
    return int.from_bytes(blake2b(f"{mailbox}\x1f{graph_id}".encode(), digest_size=8).digest(), "big", signed=True)


def resolution_id(party_json: str) -> int:
    """The `tracking_resolution.id` of one party's resolution JSON: a signed 64-bit hash of the text (content-addressed,
    so writing it again is a no-op)."""
    return int.from_bytes(blake2b(party_json.encode(), digest_size=8).digest(), "big", signed=True)


_DECISION_COLUMN_TYPES = (
    ("mailbox", "TEXT NOT NULL"), ("graph_id", "TEXT NOT NULL"), ("messageid", "TEXT"), ("subject", "TEXT"), ("folder", "TEXT"),
    ("tracked", "INTEGER NOT NULL"), ("tracked_by", "TEXT"), ("reason", "TEXT NOT NULL"), ("activityid", "TEXT"),
    ("correlationmethod", "INTEGER"), ("correlated_activityid", "TEXT"), ("regarding_table", "TEXT"), ("regarding_id", "TEXT"),
    ("regarding_why", "TEXT"), ("accepting_table", "TEXT"), ("accepting_id", "TEXT"), ("parties", "TEXT"), ("thread", "TEXT"),
    ("decided_at", "TEXT NOT NULL"),
)
_DECISION_COLUMNS = ", ".join(name for name, _ in _DECISION_COLUMN_TYPES)
DECISION_UPSERT = (f"INSERT OR REPLACE INTO tracking_decision (key, {_DECISION_COLUMNS}) "
                   f"VALUES ({', '.join('?' * (len(_DECISION_COLUMN_TYPES) + 1))})")
"""Writes one decision row: (`decision_key`, mailbox, graph_id, ..., decided_at) in `_DECISION_COLUMN_TYPES` order."""


def _decisions_keyed(conn: sqlite3.Connection) -> None:
    """v4: decisions keyed by `decision_key` (rows appended in decision order), found per mailbox by time."""
    columns = ",\n        ".join(f"{name} {kind}" for name, kind in _DECISION_COLUMN_TYPES)
    conn.execute(f"CREATE TABLE tracking_decision_v4 (\n        key INTEGER NOT NULL UNIQUE,\n        {columns}\n    )")
    rows = conn.execute(f"SELECT {_DECISION_COLUMNS} FROM tracking_decision ORDER BY decided_at").fetchall()
    conn.executemany(DECISION_UPSERT.replace("tracking_decision", "tracking_decision_v4", 1), [(decision_key(r[0], r[1]), *r) for r in rows])
    conn.execute("DROP TABLE tracking_decision")
    conn.execute("ALTER TABLE tracking_decision_v4 RENAME TO tracking_decision")
    conn.execute("CREATE INDEX ix_tracking_decision_mailbox ON tracking_decision (mailbox, decided_at)")


def _aliases_of_stored_emails(conn: sqlite3.Connection) -> None:
    """v5: every email stored so far, by Message-ID (their keys may come from another mapping or an import)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'email'").fetchone() is None:
        return
    if not any(r[1] == "messageid" for r in conn.execute('PRAGMA table_info("email")')):
        return
    conn.execute("INSERT OR IGNORE INTO tracking_email_alias (messageid, activityid) "
                 "SELECT messageid, activityid FROM email WHERE messageid IS NOT NULL AND activityid IS NOT NULL")


Migration = str | Callable[[sqlite3.Connection], None]

# version -> steps upgrading from version-1 to version (version 1 is the initial DDL): SQL, or a function
# for what SQL cannot compute.
MIGRATIONS: dict[int, tuple[Migration, ...]] = {
    1: CONNECTOR_DDL,
    # 2: full-round reconciliation. A full round stamps every item it sees with its round id;
    # links of the container left unstamped when the round ends are gone from Graph.
    2: (
        "ALTER TABLE sync_state ADD COLUMN round_id TEXT",
        "ALTER TABLE item_link ADD COLUMN seen_round TEXT",
        "CREATE INDEX IF NOT EXISTS ix_item_link_container ON item_link (mailbox, resource, container)",
    ),
    # 3: email tracking (connector/tracking): one decision per evaluated message copy, folder
    # rules keyed by folder id, mailbox alerts, retry attempts, token numbers, smart-matching hashes.
    3: (
        """CREATE TABLE IF NOT EXISTS tracking_decision (
            mailbox TEXT NOT NULL,
            graph_id TEXT NOT NULL,
            messageid TEXT,
            subject TEXT,
            folder TEXT,
            tracked INTEGER NOT NULL,
            tracked_by TEXT,
            reason TEXT NOT NULL,
            activityid TEXT,
            correlationmethod INTEGER,
            correlated_activityid TEXT,
            regarding_table TEXT,
            regarding_id TEXT,
            regarding_why TEXT,
            accepting_table TEXT,
            accepting_id TEXT,
            parties TEXT,
            thread TEXT,
            decided_at TEXT NOT NULL,
            PRIMARY KEY (mailbox, graph_id)
        )""",
        "CREATE INDEX IF NOT EXISTS ix_tracking_decision_messageid ON tracking_decision (messageid)",
        "CREATE INDEX IF NOT EXISTS ix_tracking_decision_activity ON tracking_decision (activityid)",
        """CREATE TABLE IF NOT EXISTS tracking_folder (
            mailbox TEXT NOT NULL,
            folder_id TEXT NOT NULL,
            rule_path TEXT NOT NULL,
            current_path TEXT,
            regarding_table TEXT,
            regarding_id TEXT,
            status TEXT NOT NULL DEFAULT 'active',
            updated_at TEXT NOT NULL,
            PRIMARY KEY (mailbox, folder_id)
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS ix_tracking_folder_rule ON tracking_folder (mailbox, rule_path)",
        """CREATE TABLE IF NOT EXISTS tracking_alert (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mailbox TEXT NOT NULL,
            level INTEGER NOT NULL,
            code TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS ix_tracking_alert_mailbox ON tracking_alert (mailbox, code)",
        """CREATE TABLE IF NOT EXISTS tracking_attempt (
            mailbox TEXT NOT NULL,
            graph_id TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT,
            status TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (mailbox, graph_id)
        )""",
        """CREATE TABLE IF NOT EXISTS tracking_token_user (
            address TEXT PRIMARY KEY,
            number INTEGER NOT NULL UNIQUE,
            counter INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE IF NOT EXISTS tracking_smart (
            activityid TEXT PRIMARY KEY,
            subject_sig INTEGER NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS ix_tracking_smart_sig ON tracking_smart (subject_sig)",
        """CREATE TABLE IF NOT EXISTS tracking_smart_address (
            activityid TEXT NOT NULL,
            address TEXT NOT NULL,
            PRIMARY KEY (activityid, address)
        )""",
        "CREATE INDEX IF NOT EXISTS ix_tracking_smart_address ON tracking_smart_address (address)",
    ),
    # 4: tracking decisions keyed by a 64-bit hash of (mailbox, Graph id) instead of the text pair, without the
    # messageid and activityid indexes (explain and the demo read few rows): fewer, narrower index writes per message.
    4: (_decisions_keyed,),
    # 5: tracking finds an email by Message-ID through the key the email mapping gives it (its primary key), so the
    # wide, randomly written email(messageid) index goes; emails stored under any other key (imported ones, and every
    # email already stored) are listed here by Message-ID instead.
    5: (
        """CREATE TABLE IF NOT EXISTS tracking_email_alias (
            messageid TEXT NOT NULL,
            activityid TEXT NOT NULL,
            PRIMARY KEY (messageid, activityid)
        ) WITHOUT ROWID""",
        _aliases_of_stored_emails,
        "DROP INDEX IF EXISTS ix_tracking_email_messageid",
    ),
    # 6: a decision lists its parties' resolutions by id (`resolution_id`); each distinct resolution (role, address, the
    # records found and why, as JSON) is stored once here. The same correspondents recur in message after message, so
    # a decision row shrinks from about 1 KB to about 400 bytes. Decisions written before list the JSON itself.
    6: (
        """CREATE TABLE IF NOT EXISTS tracking_resolution (
            id INTEGER PRIMARY KEY,
            party TEXT NOT NULL
        )""",
    ),
}


def ident(name: str) -> str:
    """Quoted SQL identifier; refuses anything that is not a Dataverse-style logical name."""
    if not _IDENT_RE.match(name):
        raise ValueError(f"not a valid table/column name: {name!r}")
    return f'"{name}"'


def sql_type(col: ColumnInfo) -> str:
    """SQLite column type for a Dataverse column type."""
    if col.type in INT_TYPES or col.type in CHOICE_TYPES or col.type == "Boolean":
        return "INTEGER"
    if col.type in FLOAT_TYPES:
        return "REAL"
    return "TEXT"


def create_table_sql(table: TableInfo) -> str:
    """``CREATE TABLE`` for a Dataverse table: storable columns, primary key first, multiline text (Memo) last.

    SQLite reads a row's columns in order, and a column stored after a long value is only reached through that
    value's overflow pages: with an email's HTML body ahead of its subject or Message-ID, every lookup of those
    read the whole body."""
    cols = [f"{ident(table.primary_key)} TEXT PRIMARY KEY NOT NULL"]
    storable = [(name, col) for name, col in table.columns.items() if name != table.primary_key and col.storable]
    for name, col in sorted(storable, key=lambda nc: nc[1].type == "Memo"):
        cols.append(f"{ident(name)} {sql_type(col)}")
    return f"CREATE TABLE IF NOT EXISTS {ident(table.name)} (\n  " + ",\n  ".join(cols) + "\n)"
