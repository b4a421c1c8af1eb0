"""Dataverse table definitions used for validation, loaded from ``dataverse_tables.json``.

The JSON is a trimmed copy of the Dataverse table reference (see its ``_source`` key).
Custom tables and columns declared in mapping overlays are added with :func:`with_custom`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

STRING_TYPES = frozenset({"String", "Memo", "EntityName"})
INT_TYPES = frozenset({"Integer", "BigInt"})
FLOAT_TYPES = frozenset({"Double", "Decimal", "Money"})
CHOICE_TYPES = frozenset({"Picklist", "State", "Status"})
REF_TYPES = frozenset({"Lookup", "Customer", "Owner"})
UNSUPPORTED_TYPES = frozenset({"File", "Image"})

# Columns the platform fills in itself even though they are SystemRequired and writable.
PLATFORM_FILLED = frozenset({"ownerid", "owneridtype", "messageiddupcheck"})


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """One Dataverse column: the facts validation and the store need."""

    name: str
    type: str
    required: str = "None"
    writable: bool = True
    max_length: int | None = None
    min: float | None = None
    max: float | None = None
    options: Mapping[int, str] | None = None
    default: Any = None
    default_status: Mapping[int, int] | None = None
    state_of_status: Mapping[int, int] | None = None
    participationtypemask: int | None = None
    targets: tuple[str, ...] = ()
    date_only: bool = False
    custom: bool = False

    @property
    def is_party_list(self) -> bool:
        """True for PartyList columns (written as activityparty rows, not as values)."""
        return self.type == "PartyList"

    @property
    def storable(self) -> bool:
        """True if the column holds a scalar value a store can keep."""
        return self.type != "PartyList" and self.type not in UNSUPPORTED_TYPES


@dataclass(frozen=True, slots=True)
class TableInfo:
    """One Dataverse table."""

    name: str
    primary_key: str
    columns: Mapping[str, ColumnInfo]
    primary_name: str | None = None
    is_activity: bool = False
    custom: bool = False
    writable_columns: frozenset[str] = field(default=frozenset())

    def state_for_label(self, label: str) -> tuple[int, int] | None:
        """``(statecode, default statuscode)`` of the state whose label is ``label``, if any."""
        state = self.columns.get("statecode")
        if state is None or not state.options or not state.default_status:
            return None
        for value, text in state.options.items():
            if text.lower() == label.lower() and value in state.default_status:
                return value, state.default_status[value]
        return None


def _int_keys(raw: Mapping[str, Any] | None) -> dict[int, Any] | None:
    return None if raw is None else {int(k): v for k, v in raw.items()}


def column_from_dict(name: str, raw: Mapping[str, Any], *, custom: bool = False) -> ColumnInfo:
    """Build a :class:`ColumnInfo` from its JSON form."""
    options = _int_keys(raw.get("options"))
    return ColumnInfo(
        name=name,
        type=raw["type"],
        required=raw.get("required", "None"),
        writable=bool(raw.get("writable", True)),
        max_length=raw.get("max_length"),
        min=raw.get("min"),
        max=raw.get("max"),
        options=options,
        default=raw.get("default"),
        default_status=_int_keys(raw.get("default_status")),
        state_of_status=_int_keys(raw.get("state_of_status")),
        participationtypemask=raw.get("participationtypemask"),
        targets=tuple(raw.get("targets", ())),
        date_only=raw.get("datetime_behavior") == "DateOnly" or bool(raw.get("date_only", False)),
        custom=custom,
    )


def make_table(
    name: str,
    primary_key: str,
    columns: Mapping[str, ColumnInfo],
    *,
    primary_name: str | None = None,
    is_activity: bool = False,
    custom: bool = False,
) -> TableInfo:
    """Build a :class:`TableInfo`, computing its set of writable columns."""
    writable = frozenset(c.name for c in columns.values() if c.writable)
    return TableInfo(
        name=name,
        primary_key=primary_key,
        columns=dict(columns),
        primary_name=primary_name,
        is_activity=is_activity,
        custom=custom,
        writable_columns=writable,
    )


@lru_cache(maxsize=1)
def load_tables() -> Mapping[str, TableInfo]:
    """The shipped Dataverse tables, keyed by logical name (cached; treat as read-only)."""
    text = resources.files("connector.mapping").joinpath("dataverse_tables.json").read_text("utf-8")
    raw = json.loads(text)
    tables: dict[str, TableInfo] = {}
    for tname, t in raw["tables"].items():
        cols = {c: column_from_dict(c, spec) for c, spec in t["columns"].items()}
        tables[tname] = make_table(
            tname,
            t["primary_key"],
            cols,
            primary_name=t.get("primary_name"),
            is_activity=bool(t.get("is_activity")),
        )
    return tables


def with_columns(table: TableInfo, extra: Mapping[str, ColumnInfo]) -> TableInfo:
    """A copy of ``table`` with ``extra`` columns added."""
    cols = dict(table.columns)
    cols.update(extra)
    return replace(table, columns=cols, writable_columns=frozenset(c.name for c in cols.values() if c.writable))
