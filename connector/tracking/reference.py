"""Reference records (contacts, accounts, leads, users, queues...) loaded into the store from files.

YAML or JSON files map a table's logical name to a list of rows with Dataverse column names; a CSV
file holds one table and is named `<table>.csv`. Rows without a primary key get a stable one
derived from their content's first email address or name, so re-importing a file updates in place.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..mapping.records import Record
from ..mapping.schema_data import TableInfo
from ..store.sqlite import SqliteStore
from ..yamlfile import load_with_marks

REFERENCE_NAMESPACE = uuid.UUID("0b6a1f5e-8d3c-4c2a-9e7f-1a2b3c4d5e6f")
DEMO_RECORDS = Path(__file__).resolve().parents[2] / "samples" / "crm"


class ReferenceFileError(ValueError):
    """A reference file is malformed (unknown table or column, bad value)."""


def _coerce(table: TableInfo, column: str, value: Any) -> Any:
    col = table.columns.get(column)
    if col is None:
        raise ReferenceFileError(f"table {table.name!r} has no column {column!r}")
    if value is None or value == "":
        return None
    if col.type == "Boolean":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes")
        return bool(value)
    if col.type in ("Integer", "BigInt", "Picklist", "State", "Status"):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ReferenceFileError(f"{table.name}.{column}: {value!r} is not a number") from None
    if col.type in ("Double", "Decimal", "Money"):
        return float(value)
    return str(value)


def rows_to_records(tables: dict[str, TableInfo], data: dict[str, list[dict[str, Any]]], source: str = "") -> list[Record]:
    """Dataverse-style rows -> records (primary keys filled in when missing)."""
    out: list[Record] = []
    for tname, rows in data.items():
        info = tables.get(tname)
        if info is None:
            raise ReferenceFileError(f"{source}: unknown table {tname!r}")
        if not isinstance(rows, list):
            raise ReferenceFileError(f"{source}: {tname} must be a list of rows")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ReferenceFileError(f"{source}: {tname}[{i}] is not a mapping")
            values = {k: _coerce(info, k, v) for k, v in row.items() if k != info.primary_key}
            key = row.get(info.primary_key)
            if not key:
                hint = next((str(row[c]) for c in ("internalemailaddress", "emailaddress1", "emailaddress", "accountnumber", "name", "fullname")
                             if row.get(c)), json.dumps(row, sort_keys=True, default=str))
                key = str(uuid.uuid5(REFERENCE_NAMESPACE, f"{tname}:{hint.lower()}"))
            if "statecode" in info.columns and "statecode" not in values:
                values["statecode"] = 0
            if tname in ("contact", "lead", "systemuser") and "fullname" in info.columns and "fullname" not in values:
                full = " ".join(str(values[c]) for c in ("firstname", "lastname") if values.get(c))
                if full:
                    values["fullname"] = full
            out.append(Record(tname, str(key), values))
    return out


def read_file(path: Path) -> dict[str, list[dict[str, Any]]]:
    """One reference file as {table: rows}."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return {path.stem.lower(): [dict(r) for r in csv.DictReader(fh)]}
    if suffix == ".json":
        data = json.loads(path.read_text("utf-8"))
    elif suffix in (".yaml", ".yml"):
        data, _ = load_with_marks(path)
    else:
        raise ReferenceFileError(f"{path}: use .yaml, .yml, .json or <table>.csv")
    if not isinstance(data, dict):
        raise ReferenceFileError(f"{path}: expected a mapping of table name to rows")
    return data


def import_records(store: SqliteStore, paths: Iterable[str | Path]) -> dict[str, int]:
    """Load reference files (a directory means every file in it) into the store; returns rows per table."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in (".yaml", ".yml", ".json", ".csv")))
        elif p.is_file():
            files.append(p)
        else:
            raise ReferenceFileError(f"{p}: no such file or directory")
    records: list[Record] = []
    for f in files:
        records.extend(rows_to_records(store.tables, read_file(f), str(f)))
    counts: dict[str, int] = {}
    with store.transaction() as tx:
        tx.upsert_records(records)
        # imported emails keep their own keys: tracking finds them by Message-ID here (see tracker._load_messageids)
        tx.executemany("INSERT OR IGNORE INTO tracking_email_alias (messageid, activityid) VALUES (?, ?)",
                       [(r.values["messageid"], r.key) for r in records if r.table == "email" and r.values.get("messageid")])
    for r in records:
        counts[r.table] = counts.get(r.table, 0) + 1
    return counts


def import_demo_records(store: SqliteStore) -> dict[str, int]:
    """Load samples/crm/ (the accounts, contacts, users and queues matching the demo tenant)."""
    return import_records(store, [DEMO_RECORDS])
