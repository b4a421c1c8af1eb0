"""Compile a validated mapping into plain closures: no rule-tree interpretation per item."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping as AbcMapping
from dataclasses import dataclass, field
from hashlib import sha1
from typing import Any

from connector.mapping import models as m
from connector.mapping.errors import RecordInvalid
from connector.mapping.keys import KEY_SEPARATOR, hex_to_uuid5, table_namespace, uuid5_str
from connector.mapping.paths import Getter, compile_path, top_level_key
from connector.mapping.records import MappingContext, Record, no_party
from connector.mapping.schema_data import CHOICE_TYPES, FLOAT_TYPES, INT_TYPES, REF_TYPES, STRING_TYPES, ColumnInfo, TableInfo
from connector.mapping.transforms import REGISTRY, BuildInfo, Fn, Scope, _norm, describe, email_address
from connector.mapping.validation import DEFAULT_DELETE_POLICY, pipeline_facts
from connector.mapping.transforms import ANY

Check = Callable[[Any], "str | None"]
ColumnFn = Callable[[Any, Scope], Any]

_DATETIME_RE = re.compile(r"^\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\dZ)?$")
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ACTIVITY_PARTY = "activityparty"
ADDRESS_USED_MAX = 320


def column_check(col: ColumnInfo) -> Check:
    """Run-time validator of one column: returns the reason a value does not fit, or None."""
    t = col.type
    if t in STRING_TYPES:
        limit = col.max_length

        def check_str(v: Any) -> str | None:
            if type(v) is not str:
                return f"expected text, got {type(v).__name__}"
            if limit is not None and len(v) > limit:
                return f"value is {len(v)} characters; max length is {limit}"
            return None

        return check_str
    if t in INT_TYPES or t in CHOICE_TYPES:
        lo, hi = col.min, col.max
        options = frozenset(col.options) if t in CHOICE_TYPES and col.options else None

        def check_int(v: Any) -> str | None:
            if type(v) is not int:
                return f"expected an integer, got {type(v).__name__}"
            if options is not None and v not in options:
                return f"{v} is not an option ({', '.join(map(str, sorted(options)))})"
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                return f"{v} is outside {lo}..{hi}"
            return None

        return check_int
    if t in FLOAT_TYPES:
        return lambda v: None if type(v) in (int, float) else f"expected a number, got {type(v).__name__}"
    if t == "Boolean":
        return lambda v: None if type(v) is bool else f"expected true/false, got {type(v).__name__}"
    if t == "DateTime":
        date_only = col.date_only

        def check_dt(v: Any) -> str | None:
            if type(v) is not str or not _DATETIME_RE.match(v):
                return f"expected an ISO date-time, got {v!r}"
            if date_only and len(v) != 10:
                return f"date-only column needs YYYY-MM-DD, got {v!r}"
            return None

        return check_dt
    if t == "Uniqueidentifier":
        return lambda v: None if type(v) is str and _GUID_RE.match(v) else f"expected a GUID, got {v!r}"
    if t in REF_TYPES:
        return lambda v: None if type(v) is str and v else f"expected a record id, got {v!r}"
    return lambda v: f"{t} columns cannot hold values"


def _pipeline(rule_transforms: list[Any], col: ColumnInfo | None) -> tuple[Fn, ...]:
    info = BuildInfo(column=col)
    return tuple(REGISTRY[s.type].build(s, info) for s in rule_transforms)


def _no_source(item: Any, ctx: MappingContext) -> Any:
    return None


def _column_fn(table: str, name: str, getter: Getter | None, steps: tuple[Fn, ...], default: Any, check: Check | None,
               text_limit: int | None = None, key: str | None = None) -> ColumnFn:
    """One closure per column; variants avoid loops and checks the static analysis made redundant.

    `text_limit`: the column is text and `check` is its check: a string within the limit passes without calling it.
    `key`: the source is this top-level field, read inline instead of through the getter."""
    get = getter or _no_source

    def reraise(exc: RecordInvalid) -> RecordInvalid:
        return RecordInvalid(exc.reason, table=table, column=name)

    if check is not None and text_limit is not None and len(steps) <= 1:
        step = steps[0] if steps else None

        def fn_text(item: Any, scope: Scope) -> Any:
            v = item.get(key) if key is not None else get(item, scope.ctx)
            if step is not None:
                try:
                    v = step(v, scope)
                except RecordInvalid as exc:
                    raise reraise(exc) from None
            if v is None:
                v = default
                if v is None:
                    return None
            if type(v) is str and len(v) <= text_limit:
                return v
            err = check(v)  # type: ignore[misc]
            if err is not None:
                raise RecordInvalid(err, table=table, column=name)
            return v

        return fn_text

    if check is None and len(steps) == 1:
        (s1,) = steps

        def fn1(item: Any, scope: Scope) -> Any:
            try:
                v = s1(item.get(key) if key is not None else get(item, scope.ctx), scope)
            except RecordInvalid as exc:
                raise reraise(exc) from None
            return default if v is None else v

        return fn1
    if check is None and len(steps) == 2:
        s1, s2 = steps

        def fn2(item: Any, scope: Scope) -> Any:
            try:
                v = s2(s1(item.get(key) if key is not None else get(item, scope.ctx), scope), scope)
            except RecordInvalid as exc:
                raise reraise(exc) from None
            return default if v is None else v

        return fn2

    def fn(item: Any, scope: Scope) -> Any:
        v = get(item, scope.ctx)
        if steps:
            try:
                for step in steps:
                    v = step(v, scope)
            except RecordInvalid as exc:
                raise reraise(exc) from None
        if v is None:
            v = default
        if v is not None and check is not None:
            err = check(v)
            if err is not None:
                raise RecordInvalid(err, table=table, column=name)
        return v

    return fn


def needs_runtime_check(col: ColumnInfo, rule: m.ColumnRule) -> bool:
    """False when static analysis already proves every produced value fits ``col``.

    Literal values (option maps, constants, defaults) were checked at load time, and
    ``utc_datetime``/``date_only``/``to_bool`` produce exactly the wire format.
    """
    if rule.source is None and not rule.transforms:
        return False
    kinds, values = pipeline_facts(rule.transforms, ANY if rule.source else frozenset())
    if "any" in kinds or not kinds:
        return True
    t = col.type
    if t == "Boolean":
        return kinds != {"bool"}
    if t == "DateTime":
        return not (kinds == {"date"} or (kinds == {"datetime"} and not col.date_only))
    if t in CHOICE_TYPES or t in INT_TYPES:
        return not (kinds == {"int"} and values is not None)
    if t in STRING_TYPES:
        if values is not None and kinds == {"str"}:
            return False
        last = rule.transforms[-1] if rule.transforms else None
        return not (kinds == {"str"} and last is not None and last.type == "truncate" and (last.max_length or 0) <= (col.max_length or 0))
    return True


def rule_text(rule: m.ColumnRule | m.KeyPart) -> str:
    """Human form of a rule: ``source | transform | transform (default X)``."""
    parts = [rule.source or "(no source)"] + [describe(s) for s in rule.transforms]
    text = " | ".join(parts)
    default = getattr(rule, "default", None)
    if default is not None:
        text += f" (default {default!r})"
    return text


_record = tuple.__new__  # Record(...) without NamedTuple's Python-level __new__: several records per item


_MISSING = object()
_NAMES_CAP = 50_000  # per party rule: addresses recur across messages


@dataclass(frozen=True, slots=True)
class _Party:
    column: str
    mask: int
    source: Getter
    address: Getter
    where: Getter | None
    wanted: frozenset[Any]
    text: str
    mask_part: str  # "<mask>\x1f": the middle of an activityparty key name
    names: dict[Any, tuple[str, str, bytes] | None] = field(default_factory=dict)  # raw address -> (address, key name, its UTF-8)

    def name_of(self, raw: str) -> tuple[str, str, bytes] | None:
        """(normalised address, key name, key name as UTF-8) of a raw address, remembered; None when it is no address."""
        addr = email_address(raw)
        got = None
        if addr is not None:
            if len(addr) > ADDRESS_USED_MAX:
                raise RecordInvalid(f"address is {len(addr)} characters; max length is {ADDRESS_USED_MAX}", table=ACTIVITY_PARTY, column="addressused")
            name = self.mask_part + addr
            got = (addr, name, name.encode())
        if len(self.names) >= _NAMES_CAP:
            self.names.clear()
        self.names[raw] = got
        return got


@dataclass(slots=True)
class CompiledMapping:
    """A mapping compiled to closures. Call :meth:`map` per Graph item."""

    name: str
    source: str
    target: str
    delete_policy: str
    table: TableInfo
    party_table: TableInfo | None
    rules: dict[str, str]
    key_rule: str
    lookup_tables: dict[str, str]
    _columns: tuple[tuple[str, ColumnFn], ...] = field(repr=False)
    _key: Callable[[Any, Scope], str] = field(repr=False)
    _parties: tuple[_Party, ...] = field(repr=False)
    _required: tuple[str, ...] = field(repr=False)
    _state_pairs: AbcMapping[int, int] | None = field(repr=False)
    _party_ns: bytes = field(default=b"", repr=False)
    _constants: dict[str, Any] = field(default_factory=dict, repr=False)  # columns with a fixed value: no call per item

    def map(self, item: dict[str, Any], ctx: MappingContext) -> list[Record]:
        """Records produced by one Graph item: the target row first, then its activityparty rows.

        Raises:
            RecordInvalid: a value does not fit the Dataverse schema; nothing is returned.
        """
        scope = Scope(item, ctx)
        values = {name: fn(item, scope) for name, fn in self._columns}
        if self._constants:
            values.update(self._constants)
        if scope.flags:
            values.update(scope.flags)
        for name in self._required:
            if values.get(name) is None:
                raise RecordInvalid("required column has no value", table=self.target, column=name)
        pairs = self._state_pairs
        if pairs is not None:
            status = values.get("statuscode")
            if status is not None and values.get("statecode") is not None and pairs.get(status) != values["statecode"]:
                raise RecordInvalid(f"statuscode {status} does not belong to statecode {values['statecode']}", table=self.target, column="statuscode")
        key = self._key(item, scope)
        records = [_record(Record, (self.target, key, values))]
        if self._parties:
            records.extend(self._map_parties(item, ctx, key))
        return records

    def _map_parties(self, item: Any, ctx: MappingContext, activity_key: str) -> list[Record]:
        # Hot path (several rows per message): the key hash is seeded once per item, the default
        # resolver is skipped instead of called, and rows are built without intermediate objects.
        resolve = None if ctx.resolve_party is no_party else ctx.resolve_party
        seed = sha1(self._party_ns + (activity_key + KEY_SEPARATOR).encode())
        copy = seed.copy
        seen: set[str] = set()
        out: list[Record] = []
        append = out.append
        for p in self._parties:
            src = p.source(item, ctx)
            if src is None:
                continue
            mask, address, where, names = p.mask, p.address, p.where, p.names
            for el in src if type(src) is list else (src,):
                if where is not None and _norm(where(el, ctx)) not in p.wanted:
                    continue
                raw = address(el, ctx)
                got = names.get(raw, _MISSING) if type(raw) is str else None
                if got is _MISSING:
                    got = p.name_of(raw)
                if got is None:
                    continue
                addr, name, encoded = got  # type: ignore[misc]
                if name in seen:
                    continue
                seen.add(name)
                h = copy()
                h.update(encoded)
                ref = None if resolve is None else resolve(addr, mask)
                append(_record(Record, (ACTIVITY_PARTY, hex_to_uuid5(h.hexdigest()), {
                    "activityid": activity_key,
                    "participationtypemask": mask,
                    "addressused": addr,
                    "partyid": None if ref is None else ref.id,
                    "partyobjecttypecode": None if ref is None else ref.table,
                })))
        return out

    def key_of(self, item: dict[str, Any], ctx: MappingContext) -> str:
        """The primary key :meth:`map` gives the record of ``item`` (raises RecordInvalid when it has none)."""
        return self._key(item, Scope(item, ctx))

    def party_rules(self) -> dict[int, str]:
        """participationtypemask -> human description of the party rule producing it."""
        return {p.mask: p.text for p in self._parties}

    def writable_values(self, record: Record) -> dict[str, Any]:
        """Only the columns a Dataverse client may send (read-only ones dropped)."""
        table = self.party_table if record.table == ACTIVITY_PARTY and self.party_table else self.table
        return writable_values(record, table)


def writable_values(record: Record, table: TableInfo) -> dict[str, Any]:
    """``record.values`` without read-only columns (e.g. email ``senton``, ``conversationindex``)."""
    allowed = table.writable_columns
    return {k: v for k, v in record.values.items() if k in allowed}


def _key_fn(mapping: m.Mapping, table: TableInfo) -> Callable[[Any, Scope], str]:
    def compile_parts(parts: list[m.KeyPart]) -> tuple[tuple[Getter, tuple[Fn, ...], bool], ...]:
        return tuple((compile_path(p.source), _pipeline(p.transforms, None), p.required) for p in parts)

    primary = compile_parts(mapping.key.parts)
    fallback = compile_parts(mapping.key.fallback)
    target = mapping.target
    ns = table_namespace(target)

    def attempt(parts: tuple[tuple[Getter, tuple[Fn, ...], bool], ...], item: Any, scope: Scope) -> list[str] | None:
        out: list[str] = []
        for get, steps, required in parts:
            v = get(item, scope.ctx)
            for step in steps:
                v = step(v, scope)
            if v is None or v == "":
                if required:
                    return None
                v = ""
            out.append(str(v))
        return out

    if len(primary) == 1 and primary[0][2] and len(primary[0][1]) <= 1:
        # Fast path for the common single-part key (e.g. the email Message-ID).
        get0, steps0, _ = primary[0]
        step0 = steps0[0] if steps0 else None

        def key1(item: Any, scope: Scope) -> str:
            try:
                v = get0(item, scope.ctx)
                if step0 is not None:
                    v = step0(v, scope)
                if v is not None and v != "":
                    return uuid5_str(ns, v if type(v) is str else str(v))
                parts = attempt(fallback, item, scope) if fallback else None
            except RecordInvalid as exc:
                raise RecordInvalid(f"key: {exc.reason}", table=target) from None
            if parts is None:
                raise RecordInvalid("cannot build the record key: a required key part is missing", table=target)
            return uuid5_str(ns, KEY_SEPARATOR.join(parts))

        return key1

    def key(item: Any, scope: Scope) -> str:
        try:
            parts = attempt(primary, item, scope)
            if parts is None and fallback:
                parts = attempt(fallback, item, scope)
        except RecordInvalid as exc:
            raise RecordInvalid(f"key: {exc.reason}", table=target) from None
        if parts is None:
            raise RecordInvalid("cannot build the record key: a required key part is missing", table=target)
        return uuid5_str(ns, KEY_SEPARATOR.join(parts))

    return key


def compile_mapping(mapping: m.Mapping, table: TableInfo, tables: AbcMapping[str, TableInfo]) -> CompiledMapping:
    """Build closures for a mapping that already passed :func:`~connector.mapping.validation.check_mapping`."""
    columns: list[tuple[str, ColumnFn]] = []
    constants: dict[str, Any] = {}
    rules: dict[str, str] = {}
    lookup_tables: dict[str, str] = {}
    required: list[str] = []
    flag_notes: list[tuple[str, str]] = []
    for name, rule in mapping.columns.items():
        if rule.direction not in ("to_dataverse", "both"):
            continue
        col = table.columns[name]
        rules[name] = rule_text(rule)
        if rule.source is None and not rule.transforms:
            constants[name] = rule.default  # set without a call per item
            continue
        getter = compile_path(rule.source) if rule.source else None
        steps = _pipeline(rule.transforms, col)
        check = column_check(col) if needs_runtime_check(col, rule) else None
        text_limit = (col.max_length if col.max_length is not None else sys.maxsize) if col.type in STRING_TYPES else None
        key = top_level_key(rule.source) if rule.source else None
        columns.append((name, _column_fn(table.name, name, getter, steps, rule.default, check, text_limit, key)))
        for step in rule.transforms:
            if step.type == "truncate" and step.flag is not None:
                flag_notes.append((step.flag.column, f"set to {step.flag.value!r} when {name} is truncated"))
            if step.type == "lookup":
                lookup_tables[name] = step.table
        if col.required == "ApplicationRequired":
            required.append(name)
    for column, note in flag_notes:
        rules[column] = f"{rules[column]} / {note}" if rules.get(column) else note
    parties = []
    for pname, prule in mapping.parties.items():
        if prule.direction not in ("to_dataverse", "both"):
            continue
        mask = table.columns[pname].participationtypemask
        assert mask is not None
        where = prule.where
        wanted = frozenset(_norm(x) for x in (where.equals if isinstance(where.equals, list) else [where.equals])) if where else frozenset()
        text = f"parties.{pname} <- {prule.source}[].{prule.address} | email_address"
        if where:
            text += f" where {where.field} == {where.equals!r}"
        parties.append(
            _Party(pname, mask, compile_path(prule.source), compile_path(prule.address), compile_path(where.field) if where else None, wanted, text, f"{mask}{KEY_SEPARATOR}")
        )
    state = table.columns.get("statuscode")
    key_parts = " + ".join(rule_text(p) for p in mapping.key.parts)
    key_rule = f"uuid5({key_parts})"
    if mapping.key.fallback:
        key_rule += " else uuid5(" + " + ".join(rule_text(p) for p in mapping.key.fallback) + ")"
    return CompiledMapping(
        name=mapping.name,
        source=mapping.source,
        target=mapping.target,
        delete_policy=mapping.delete_policy or DEFAULT_DELETE_POLICY[mapping.source],
        table=table,
        party_table=tables.get(ACTIVITY_PARTY) if parties else None,
        rules=rules,
        key_rule=key_rule,
        lookup_tables=lookup_tables,
        _columns=tuple(columns),
        _constants=constants,
        _key=_key_fn(mapping, table),
        _parties=tuple(parties),
        _required=tuple(required),
        _state_pairs=state.state_of_status if state is not None else None,
        _party_ns=table_namespace(ACTIVITY_PARTY),
    )
