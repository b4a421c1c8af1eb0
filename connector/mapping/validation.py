"""Schema-aware checks of a parsed mapping against the Dataverse tables (load-time validation).

Each issue carries a ``loc`` path into the mapping document so the loader can point at
``file:line:col``.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from typing import Any

from connector.mapping import models as m
from connector.mapping.schema_data import (
    CHOICE_TYPES,
    FLOAT_TYPES,
    INT_TYPES,
    PLATFORM_FILLED,
    REF_TYPES,
    STRING_TYPES,
    UNSUPPORTED_TYPES,
    ColumnInfo,
    TableInfo,
    column_from_dict,
    make_table,
    with_columns,
)
from connector.mapping.transforms import ANY, REGISTRY, Kinds, kind_of

Loc = tuple[str | int, ...]

DEFAULT_DELETE_POLICY: dict[str, str] = {
    # Server-side sync behaviour: tracked email stays, a deleted meeting becomes Canceled,
    # a deleted contact is deactivated, a deleted task is deleted.
    "message": "keep",
    "event": "cancel",
    "contact": "deactivate",
    "todoTask": "delete",
}

POLICY_STATE_LABEL = {"deactivate": "Inactive", "cancel": "Canceled"}

ACCEPTED_KINDS: dict[str, frozenset[str]] = {
    **{t: frozenset({"str"}) for t in STRING_TYPES},
    **{t: frozenset({"int"}) for t in INT_TYPES},
    **{t: frozenset({"int", "float"}) for t in FLOAT_TYPES},
    **{t: frozenset({"int"}) for t in CHOICE_TYPES},
    **{t: frozenset({"ref", "str"}) for t in REF_TYPES},
    "Boolean": frozenset({"bool"}),
    "DateTime": frozenset({"datetime", "date"}),
    "Uniqueidentifier": frozenset({"ref", "str"}),
}


@dataclass(frozen=True, slots=True)
class Issue:
    """One semantic problem, located by a path into the mapping document."""

    loc: Loc
    message: str
    hint: str = ""


def custom_column_info(name: str, decl: m.CustomColumn) -> ColumnInfo:
    """ColumnInfo of a column declared under ``custom_columns:`` / ``custom_table:``."""
    raw: dict[str, Any] = decl.model_dump(exclude_none=True)
    if decl.options is not None:
        raw["options"] = {str(k): v for k, v in decl.options.items()}
    return column_from_dict(name, raw, custom=True)


def effective_table(mapping: m.Mapping, tables: AbcMapping[str, TableInfo], issues: list[Issue]) -> TableInfo | None:
    """Target table of ``mapping`` with its custom declarations applied (None if unusable)."""
    table = tables.get(mapping.target)
    if mapping.custom_table is not None:
        if table is not None and not table.custom:
            issues.append(Issue(("custom_table",), f"custom_table given but {mapping.target!r} is a standard Dataverse table", "remove custom_table or pick a prefixed name like new_graphitem"))
            return None
        if "_" not in mapping.target:
            issues.append(Issue(("target",), f"custom table {mapping.target!r} has no publisher prefix", "custom names look like new_graphitem"))
        ct = mapping.custom_table
        cols = {n: custom_column_info(n, c) for n, c in ct.columns.items()}
        cols[ct.primary_key] = ColumnInfo(ct.primary_key, "Uniqueidentifier", required="SystemRequired", custom=True)
        table = make_table(mapping.target, ct.primary_key, cols, primary_name=ct.primary_name, custom=True)
    if table is None:
        issues.append(Issue(("target",), f"unknown target table {mapping.target!r}", "known tables: " + ", ".join(sorted(tables)) + "; or declare custom_table:"))
        return None
    extra: dict[str, ColumnInfo] = {}
    for name, decl in mapping.custom_columns.items():
        if name in table.columns and not table.columns[name].custom:
            issues.append(Issue(("custom_columns", name), f"{name!r} is already a column of {table.name!r}", "custom columns must be new, prefixed names"))
            continue
        if "_" not in name:
            issues.append(Issue(("custom_columns", name), f"custom column {name!r} has no publisher prefix", "custom names look like new_graphsource"))
        extra[name] = custom_column_info(name, decl)
    return with_columns(table, extra) if extra else table


def pipeline_facts(steps: list[Any], start: Kinds) -> tuple[Kinds, frozenset[Any] | None]:
    """Static output kinds and (when known) the possible output values of a pipeline."""
    kinds, values = start, None
    for step in steps:
        d = REGISTRY[step.type]
        kinds = d.kinds(step, kinds)
        values = d.values(step, values)
    return kinds, values


def check_value(col: ColumnInfo, value: Any) -> str | None:
    """Why literal ``value`` cannot go into ``col`` (None if it can)."""
    k = kind_of(value)
    accepted = ACCEPTED_KINDS.get(col.type, frozenset())
    if k not in accepted and not (k == "str" and ("datetime" in accepted or "ref" in accepted)):
        return f"value {value!r} ({k}) does not fit {col.type} column {col.name!r}"
    if col.type in CHOICE_TYPES and col.options and value not in col.options:
        return f"value {value!r} is not an option of {col.name!r}"
    if isinstance(value, str) and col.max_length is not None and len(value) > col.max_length:
        return f"value is {len(value)} characters; {col.name!r} allows {col.max_length}"
    return None


def options_hint(col: ColumnInfo) -> str:
    """``allowed: 0 Open, 1 Completed ...`` for a choice column."""
    return "allowed: " + ", ".join(f"{k} {v}" for k, v in (col.options or {}).items())


def _check_steps(steps: list[Any], base: Loc, col: ColumnInfo | None, tables: AbcMapping[str, TableInfo], table: TableInfo, issues: list[Issue]) -> None:
    for i, step in enumerate(steps):
        loc = (*base, i)
        if step.type == "truncate":
            limit = step.max_length or (col.max_length if col else None)
            if limit is None:
                issues.append(Issue(loc, "truncate has no max_length and the target column has none", "give max_length:"))
            elif col is not None and col.max_length is not None and limit > col.max_length:
                issues.append(Issue(loc, f"truncate max_length {limit} exceeds {col.name!r} max length {col.max_length}", f"use at most {col.max_length}"))
            if step.flag is not None:
                fcol = table.columns.get(step.flag.column)
                if fcol is None:
                    issues.append(Issue((*loc, "flag", "column"), f"unknown flag column {step.flag.column!r} in table {table.name!r}"))
                else:
                    err = check_value(fcol, step.flag.value)
                    if err:
                        issues.append(Issue((*loc, "flag", "value"), err, options_hint(fcol) if fcol.options else ""))
        elif step.type == "lookup":
            lt = tables.get(step.table)
            if lt is None:
                issues.append(Issue((*loc, "table"), f"lookup table {step.table!r} is unknown", "known tables: " + ", ".join(sorted(tables))))
            elif step.column not in lt.columns:
                issues.append(Issue((*loc, "column"), f"lookup column {step.column!r} is not in table {step.table!r}"))
            if col is not None and col.targets and step.table not in col.targets:
                issues.append(Issue((*loc, "table"), f"column {col.name!r} cannot point at {step.table!r}", "allowed targets: " + ", ".join(col.targets)))


def check_mapping(mapping: m.Mapping, tables: AbcMapping[str, TableInfo]) -> tuple[list[Issue], TableInfo | None]:
    """All schema problems of ``mapping``; also returns its effective target table."""
    issues: list[Issue] = []
    table = effective_table(mapping, tables, issues)
    if table is None:
        return issues, None

    policy = mapping.delete_policy or DEFAULT_DELETE_POLICY[mapping.source]
    label = POLICY_STATE_LABEL.get(policy)
    if label and table.state_for_label(label) is None:
        issues.append(Issue(("delete_policy",), f"delete policy {policy!r} needs a {label!r} state, which table {table.name!r} does not have", "use keep or delete"))

    for i, part in enumerate(mapping.key.parts):
        _check_steps(part.transforms, ("key", "parts", i, "transforms"), None, tables, table, issues)

    for name, rule in mapping.columns.items():
        base: Loc = ("columns", name)
        col = table.columns.get(name)
        if col is None:
            issues.append(Issue(base, f"unknown target column {name!r} in table {table.name!r}", "check the spelling, or declare it under custom_columns: with a publisher prefix (new_...)"))
            continue
        if name == table.primary_key:
            issues.append(Issue(base, f"{name!r} is the primary key; it is produced by key:", "remove this column rule"))
            continue
        if col.is_party_list:
            issues.append(Issue(base, f"{name!r} is a party list", "map it under parties:"))
            continue
        if col.type in UNSUPPORTED_TYPES:
            issues.append(Issue(base, f"{col.type} column {name!r} cannot be mapped"))
            continue
        if rule.source is None and not rule.transforms and rule.default is None:
            issues.append(Issue(base, f"rule for {name!r} produces nothing", "give source:, transforms: or default:"))
        if rule.direction in ("both", "to_graph"):
            for i, step in enumerate(rule.transforms):
                if not REGISTRY[step.type].invertible(step):
                    inv = ", ".join(n for n, d in REGISTRY.items() if n != "option_map" and d.invertible(None))
                    issues.append(Issue((*base, "transforms", i), f"transform {step.type!r} is not invertible, so direction {rule.direction!r} cannot use it", f"use direction: to_dataverse, or only invertible transforms ({inv}, option_map with distinct values)"))
        _check_steps(rule.transforms, (*base, "transforms"), col, tables, table, issues)
        if rule.direction in ("none", "to_graph"):
            continue
        start: Kinds = ANY if rule.source else frozenset()
        kinds, values = pipeline_facts(rule.transforms, start)
        accepted = ACCEPTED_KINDS.get(col.type, frozenset())
        bad = sorted(k for k in kinds if k != "any" and k not in accepted)
        if col.type == "DateTime" and col.date_only and "datetime" in kinds:
            issues.append(Issue((*base, "transforms"), f"{name!r} is a date-only column but the pipeline produces a date-time", "use date_only"))
        elif bad:
            issues.append(Issue((*base, "transforms") if rule.transforms else base, f"type mismatch: pipeline produces {'/'.join(bad)} but {name!r} is {col.type}", f"{col.type} accepts {'/'.join(sorted(accepted))}"))
        for v in sorted(values or (), key=repr):
            err = check_value(col, v)
            if err and not bad:
                issues.append(Issue((*base, "transforms"), err, options_hint(col) if col.options else ""))
        if rule.default is not None:
            err = check_value(col, rule.default)
            if err:
                issues.append(Issue((*base, "default"), err, options_hint(col) if col.options else ""))

    mapped = {n for n, r in mapping.columns.items() if r.direction in ("to_dataverse", "both")}
    for cname, col in table.columns.items():
        if cname in mapped or cname == table.primary_key or not col.writable or col.is_party_list:
            continue
        needed = col.required == "ApplicationRequired" or (
            col.required == "SystemRequired" and cname not in PLATFORM_FILLED and col.default is None
        )
        if needed:
            issues.append(Issue(("columns",), f"missing required column {cname!r} ({col.required}) of table {table.name!r}", "add a rule for it (a default: is enough)"))

    for pname, prule in mapping.parties.items():
        pcol = table.columns.get(pname)
        if pcol is None or not pcol.is_party_list:
            lists = sorted(c for c, ci in table.columns.items() if ci.is_party_list)
            issues.append(Issue(("parties", pname), f"{pname!r} is not a party list of table {table.name!r}", ("party lists: " + ", ".join(lists)) if lists else "this table has no party lists"))
        elif pcol.participationtypemask is None:
            issues.append(Issue(("parties", pname), f"party list {pname!r} has no participation type mask"))
        if "activityparty" not in tables:
            issues.append(Issue(("parties",), "party lists need the activityparty table"))
    return issues, table
