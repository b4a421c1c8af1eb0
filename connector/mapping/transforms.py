"""The closed vocabulary of column transforms (R7): each YAML name -> a builder of a plain closure.

A built transform is ``fn(value, scope) -> value``; ``scope`` carries the whole Graph item,
the :class:`~connector.mapping.records.MappingContext` and per-item side flags. Transforms
never evaluate strings from the mapping file; new behaviour is added here, in code.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from connector.mapping import models as m
from connector.mapping.errors import RecordInvalid
from connector.mapping.paths import compile_path
from connector.mapping.records import MappingContext
from connector.mapping.schema_data import ColumnInfo
from connector.mapping.timezones import zone


class Scope:
    """Per-item state handed to every transform."""

    __slots__ = ("item", "ctx", "flags")

    def __init__(self, item: Any, ctx: MappingContext) -> None:
        self.item = item
        self.ctx = ctx
        self.flags: dict[str, Any] | None = None

    def set_flag(self, column: str, value: Any) -> None:
        """Set ``column`` on the record being built (applied after all column rules)."""
        if self.flags is None:
            self.flags = {}
        self.flags[column] = value


Fn = Callable[[Any, Scope], Any]
Kinds = frozenset[str]
ANY: Kinds = frozenset({"any"})


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """What a transform builder may know about its target column."""

    column: ColumnInfo | None


@dataclass(frozen=True, slots=True)
class TransformDef:
    """Registry entry: builder plus the static facts validation uses."""

    name: str
    build: Callable[[Any, BuildInfo], Fn]
    invertible: Callable[[Any], bool]
    kinds: Callable[[Any, Kinds], Kinds]
    values: Callable[[Any, frozenset[Any] | None], frozenset[Any] | None]
    doc: str


def kind_of(value: Any) -> str:
    """Static kind of a literal value from a mapping file."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def _kinds(values: Iterable[Any]) -> Kinds:
    return frozenset(kind_of(v) for v in values if v is not None) or ANY


def _vals(values: Iterable[Any]) -> frozenset[Any]:
    return frozenset(v for v in values if v is not None)


# --- date and time ----------------------------------------------------------------------------

_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/GMT", "GMT", "tzone://Microsoft/Utc"})
_DATE_RE = re.compile(r"^\d{4}-\d\d-\d\d")


def _fmt(dt: datetime) -> str | None:
    # Graph writes 0001-01-01T00:00:00Z for "unset" (e.g. attendee status.time).
    if dt.year <= 1:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise RecordInvalid(f"not an ISO-8601 date-time: {text!r}") from None


def to_utc(value: Any, scope: Any = None) -> str | None:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ`` from an ISO string or a Graph ``dateTimeTimeZone`` dict."""
    if value is None:
        return None
    if type(value) is str:
        if len(value) == 20 and value[19] == "Z" and value[10] == "T":
            return None if value.startswith("0001-") else value
        dt = _parse_iso(value)
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc)
        return _fmt(dt)
    if isinstance(value, dict):
        raw = value.get("dateTime")
        if not raw:
            return None
        tzname = value.get("timeZone") or "UTC"
        dt = _parse_iso(raw)
        if dt.tzinfo is None and tzname not in _UTC_NAMES:
            tz = zone(tzname)
            if tz is None:
                raise RecordInvalid(f"unknown time zone {tzname!r}")
            dt = dt.replace(tzinfo=tz)
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc)
        return _fmt(dt)
    raise RecordInvalid(f"not a date-time: {value!r}")


def to_date(value: Any, scope: Any = None) -> str | None:
    """``YYYY-MM-DD`` as written in the value's own zone (birthdays, due dates)."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("dateTime")
        if value is None:
            return None
    if isinstance(value, str) and _DATE_RE.match(value):
        return None if value.startswith("0001-") else value[:10]
    raise RecordInvalid(f"not a date: {value!r}")


# --- loose scalars ----------------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


def to_bool(value: Any, scope: Any = None) -> bool | None:
    """Loose boolean; Graph docs samples carry ``"isRead": "true"``."""
    t = type(value)
    if t is bool:
        return value  # type: ignore[no-any-return]
    if t is str:
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return None
    if t is int or t is float:
        return value != 0  # type: ignore[no-any-return]
    return None


def to_int(value: Any, scope: Any = None) -> int | None:
    """Loose integer; non-integral or non-numeric input -> None."""
    t = type(value)
    if t is int:
        return value  # type: ignore[no-any-return]
    if t is bool:
        return int(value)
    if t is float:
        return int(value) if value.is_integer() else None
    if t is str:
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                return None
            return int(f) if f.is_integer() else None
    return None


def _option_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


# --- text ------------------------------------------------------------------------------------

_COMMENT_RE = re.compile(r"<!--.*?-->", re.S)
_DROP_RE = re.compile(r"<(head|style|script|title)\b.*?</\1\s*>", re.S | re.I)
_WS_RE = re.compile(r"\s+")
_BREAK_RE = re.compile(r"<\s*(?:br|/p|/div|/li|/tr|/h[1-6]|/table|/blockquote)\b[^>]*>", re.I)
_TAG_RE = re.compile(r"<[^>]*>")


def html_to_text(value: Any, scope: Any = None) -> str | None:
    """Plain text of an HTML string or Graph ``itemBody``; ``contentType: text`` passes unchanged."""
    if value is None:
        return None
    if isinstance(value, dict):
        content = value.get("content")
        if content is None:
            return None
        if str(value.get("contentType", "html")).lower() == "text":
            return content or None  # type: ignore[no-any-return]
        value = content
    if not isinstance(value, str):
        return None
    text = _COMMENT_RE.sub("", value)
    text = _DROP_RE.sub("", text)
    text = _WS_RE.sub(" ", text)  # newlines in HTML source are not line breaks
    text = _BREAK_RE.sub("\n", text)
    text = html.unescape(_TAG_RE.sub("", text)).replace("\xa0", " ")
    lines: list[str] = []
    for line in text.split("\n"):
        line = " ".join(line.split())
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip() or None


_MISSING = object()
_ADDRESSES: dict[str, str | None] = {}  # raw address -> normalised: the same few addresses recur in every message
_ADDRESSES_CAP = 100_000


def email_address(value: Any, scope: Any = None) -> str | None:
    """Normalised address: trimmed, no ``mailto:``/``<>``, lower-case."""
    if type(value) is not str:
        return None
    got = _ADDRESSES.get(value, _MISSING)
    if got is not _MISSING:
        return got  # type: ignore[return-value]
    text = value.strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    text = text.strip("<> \t").lower()
    if len(_ADDRESSES) >= _ADDRESSES_CAP:
        _ADDRESSES.clear()
    got = _ADDRESSES[value] = text or None
    return got


def message_id(value: Any, scope: Any = None) -> str | None:
    """Normalised Message-ID: trimmed, no ``<>``, domain part lower-cased (RFC 5322)."""
    if not isinstance(value, str):
        return None
    text = value.strip().strip("<>").strip()
    local, at, domain = text.rpartition("@")
    if at:
        text = f"{local}@{domain.lower()}"
    return text or None


# --- builders --------------------------------------------------------------------------------


def _simple(fn: Fn) -> Callable[[Any, BuildInfo], Fn]:
    def build(spec: Any, info: BuildInfo) -> Fn:
        return fn

    return build


def _build_option_map(spec: m.OptionMap, info: BuildInfo) -> Fn:
    table = {k.lower(): v for k, v in spec.map.items()}
    default = spec.default

    def option_map(v: Any, s: Scope) -> Any:
        if v is None:
            return None
        hit = table.get(v, _MISSING) if type(v) is str else _MISSING  # already in the map's form (e.g. "normal"): no normalising
        return table.get(_option_key(v), default) if hit is _MISSING else hit

    return option_map


def _build_truncate(spec: m.Truncate, info: BuildInfo) -> Fn:
    limit = spec.max_length or (info.column.max_length if info.column else None)
    if limit is None:
        raise ValueError("truncate needs max_length: the target column has no max length")
    flag = spec.flag

    def truncate(v: Any, s: Scope) -> Any:
        if type(v) is str and len(v) > limit:
            if flag is not None:
                s.set_flag(flag.column, flag.value)
            return v[:limit]
        return v

    return truncate


def _build_join(spec: m.Join, info: BuildInfo) -> Fn:
    sep = spec.separator

    def join(v: Any, s: Scope) -> Any:
        if type(v) is list:
            return sep.join([x if type(x) is str else str(x) for x in v if x is not None and x != ""]) or None
        return v

    return join


def _first(v: Any, s: Any = None) -> Any:
    if isinstance(v, list):
        for x in v:
            if x is not None:
                return x
        return None
    return v


def _build_pluck(spec: m.Pluck, info: BuildInfo) -> Fn:
    get = compile_path(spec.path)

    def pluck(v: Any, s: Scope) -> Any:
        if not isinstance(v, list):
            return None
        ctx = s.ctx
        return [get(x, ctx) for x in v]

    return pluck


def _count(v: Any, s: Any = None) -> Any:
    return len(v) if isinstance(v, list) else None


def _lower(v: Any, s: Any = None) -> Any:
    return v.lower() if isinstance(v, str) else v


def _build_const(spec: m.Const, info: BuildInfo) -> Fn:
    value = spec.value
    return lambda v, s: value


def _norm(x: Any) -> Any:
    if isinstance(x, str):
        low = x.strip().lower()
        return True if low == "true" else False if low == "false" else low
    return x


def _build_when(spec: m.When, info: BuildInfo) -> Fn:
    get = compile_path(spec.field)
    wanted = spec.equals if isinstance(spec.equals, list) else [spec.equals]
    targets = frozenset(_norm(x) for x in wanted)
    then = spec.then
    has_else = "else_" in spec.model_fields_set
    other = spec.else_

    def when(v: Any, s: Scope) -> Any:
        if _norm(get(s.item, s.ctx)) in targets:
            return then
        return other if has_else else v

    return when


def _build_coalesce(spec: m.Coalesce, info: BuildInfo) -> Fn:
    getters = tuple(compile_path(p) for p in spec.paths)

    def coalesce(v: Any, s: Scope) -> Any:
        if v is None or v == "" or v == []:
            for g in getters:
                x = g(s.item, s.ctx)
                if x is not None and x != "" and x != []:
                    return x
        return v

    return coalesce


_DIGITS = re.compile(r"\d+")
_ASCII_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def _build_tracking_token(spec: m.TrackingToken, info: BuildInfo) -> Fn:
    markers = tuple(dict.fromkeys(p + ":" for p in spec.prefixes))
    digits, alnum = _DIGITS.match, _ASCII_ALNUM

    def tracking_token(v: Any, s: Scope) -> Any:
        # the last `<prefix>:<digits>` not glued to a preceding letter or digit (from the right: no regex scan of the subject)
        if type(v) is not str or ":" not in v:
            return None
        best, at = None, -1
        for mk in markers:
            i = len(v)
            while i > at:
                i = v.rfind(mk, 0, i)
                if i <= at:
                    break
                end = i + len(mk)
                num = digits(v, end)
                if num is not None and (i == 0 or v[i - 1] not in alnum):
                    best, at = v[i:num.end()], i
                    break
        return best

    return tracking_token


def _build_header(spec: m.Header, info: BuildInfo) -> Fn:
    wanted = spec.name.lower()

    def header(v: Any, s: Scope) -> Any:
        if not isinstance(v, list):
            return None
        for h in v:
            if isinstance(h, dict) and str(h.get("name", "")).lower() == wanted:
                return h.get("value")
        return None

    return header


def _matches_mailbox(v: Any, s: Scope) -> Any:
    if type(v) is not str:
        return None
    return email_address(v) == email_address(s.ctx.mailbox)


def _build_lookup(spec: m.LookupRef, info: BuildInfo) -> Fn:
    table, column = spec.table, spec.column

    def lookup(v: Any, s: Scope) -> Any:
        if v is None or v == "":
            return None
        return s.ctx.lookup(table, column, v)

    return lookup


def _fixed(kind: str) -> Callable[[Any, Kinds], Kinds]:
    k = frozenset({kind})
    return lambda spec, kinds: k


def _same(spec: Any, kinds: Kinds) -> Kinds:
    return kinds


def _unknown(spec: Any, values: frozenset[Any] | None) -> None:
    return None


def _keep(spec: Any, values: frozenset[Any] | None) -> frozenset[Any] | None:
    return values


def _never(spec: Any) -> bool:
    return False


def _always(spec: Any) -> bool:
    return True


def _when_kinds(spec: m.When, kinds: Kinds) -> Kinds:
    out = {kind_of(spec.then)} if spec.then is not None else set()
    if "else_" in spec.model_fields_set:
        if spec.else_ is not None:
            out.add(kind_of(spec.else_))
    else:
        out |= kinds
    return frozenset(out) or kinds


def _when_values(spec: m.When, values: frozenset[Any] | None) -> frozenset[Any] | None:
    if "else_" in spec.model_fields_set:
        return _vals([spec.then, spec.else_])
    if values is None:
        return None
    return values | _vals([spec.then])


REGISTRY: dict[str, TransformDef] = {
    d.name: d
    for d in (
        TransformDef("utc_datetime", _simple(to_utc), _always, _fixed("datetime"), _unknown, m.UtcDateTime.__doc__ or ""),
        TransformDef("date_only", _simple(to_date), _always, _fixed("date"), _unknown, m.DateOnly.__doc__ or ""),
        TransformDef("to_bool", _simple(to_bool), _always, _fixed("bool"), _unknown, m.ToBool.__doc__ or ""),
        TransformDef("to_int", _simple(to_int), _always, _fixed("int"), _unknown, m.ToInt.__doc__ or ""),
        TransformDef(
            "option_map",
            _build_option_map,
            lambda spec: len(set(map(repr, spec.map.values()))) == len(spec.map),
            lambda spec, kinds: _kinds([*spec.map.values(), spec.default]),
            lambda spec, values: _vals([*spec.map.values(), spec.default]),
            m.OptionMap.__doc__ or "",
        ),
        TransformDef("truncate", _build_truncate, _never, _same, _keep, m.Truncate.__doc__ or ""),
        TransformDef("html_to_text", _simple(html_to_text), _never, _fixed("str"), _unknown, m.HtmlToText.__doc__ or ""),
        TransformDef("join", _build_join, _never, _fixed("str"), _unknown, m.Join.__doc__ or ""),
        TransformDef("first", _simple(_first), _never, lambda spec, kinds: ANY, _unknown, m.First.__doc__ or ""),
        TransformDef("pluck", _build_pluck, _never, _fixed("list"), _unknown, m.Pluck.__doc__ or ""),
        TransformDef("count", _simple(_count), _never, _fixed("int"), _unknown, m.Count.__doc__ or ""),
        TransformDef("lower", _simple(_lower), _never, _same, _unknown, m.Lower.__doc__ or ""),
        TransformDef(
            "const",
            _build_const,
            _never,
            lambda spec, kinds: frozenset({kind_of(spec.value)}),
            lambda spec, values: _vals([spec.value]),
            m.Const.__doc__ or "",
        ),
        TransformDef("when", _build_when, _never, _when_kinds, _when_values, m.When.__doc__ or ""),
        TransformDef("coalesce", _build_coalesce, _never, lambda spec, kinds: ANY, _unknown, m.Coalesce.__doc__ or ""),
        # Exchange compares addresses case-insensitively, so the normalised form maps back as-is.
        TransformDef("email_address", _simple(email_address), _always, _fixed("str"), _unknown, m.EmailAddress.__doc__ or ""),
        TransformDef("message_id", _simple(message_id), _never, _fixed("str"), _unknown, m.MessageId.__doc__ or ""),
        TransformDef("tracking_token", _build_tracking_token, _never, _fixed("str"), _unknown, m.TrackingToken.__doc__ or ""),
        TransformDef("header", _build_header, _never, _fixed("str"), _unknown, m.Header.__doc__ or ""),
        TransformDef("matches_mailbox", lambda spec, info: _matches_mailbox, _never, _fixed("bool"), _unknown, m.MatchesMailbox.__doc__ or ""),
        TransformDef("lookup", _build_lookup, _never, _fixed("ref"), _unknown, m.LookupRef.__doc__ or ""),
    )
}


def describe(spec: Any) -> str:
    """Short human form of a transform step, e.g. ``truncate(max_length=800)``."""
    params = spec.model_dump(exclude={"type"}, exclude_unset=True, by_alias=True)
    if not params:
        return str(spec.type)
    inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"{spec.type}({inner})"
