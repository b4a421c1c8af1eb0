"""Every transform of the closed vocabulary, through the same builder the compiler uses."""

from __future__ import annotations

from typing import Any

import pytest

from connector.mapping import MappingContext, PartyRef
from connector.mapping import models as m
from connector.mapping.errors import RecordInvalid
from connector.mapping.schema_data import ColumnInfo
from connector.mapping.transforms import REGISTRY, BuildInfo, Scope

ITEM = {
    "isCancelled": "true",
    "type": "required",
    "displayName": "Display",
    "fileAs": "",
    "internetMessageHeaders": [{"name": "In-Reply-To", "value": "<abc@x.com>"}],
}


def run(step: dict[str, Any] | str, value: Any, *, item: dict[str, Any] | None = None, ctx: MappingContext | None = None, column: ColumnInfo | None = None) -> tuple[Any, Scope]:
    """Validate ``step`` like a mapping file would, build it, apply it to ``value``."""
    rule = m.ColumnRule.model_validate({"transforms": [step]})
    spec = rule.transforms[0]
    fn = REGISTRY[spec.type].build(spec, BuildInfo(column=column))
    scope = Scope(item if item is not None else ITEM, ctx or MappingContext(mailbox="Me@Contoso.com", folder="sentitems"))
    return fn(value, scope), scope


def test_registry_matches_models() -> None:
    union = m.TransformModel.__origin__.__args__  # type: ignore[attr-defined]
    names = {cls.model_fields["type"].annotation.__args__[0] for cls in union}
    assert names == set(REGISTRY)
    assert set(m.BARE_TRANSFORMS) <= names


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2018-09-09T03:15:08Z", "2018-09-09T03:15:08Z"),
        ("2017-10-07T04:59:12.9698856Z", "2017-10-07T04:59:12Z"),
        ("2017-10-07T06:59:12+02:00", "2017-10-07T04:59:12Z"),
        ("2017-10-07T04:59:12", "2017-10-07T04:59:12Z"),  # naive = UTC
        ({"dateTime": "2017-09-04T12:00:00.0000000", "timeZone": "Pacific Standard Time"}, "2017-09-04T19:00:00Z"),
        ({"dateTime": "2017-01-04T12:00:00.0000000", "timeZone": "Pacific Standard Time"}, "2017-01-04T20:00:00Z"),  # PST, no DST
        ({"dateTime": "2020-08-25T04:00:00.0000000", "timeZone": "UTC"}, "2020-08-25T04:00:00Z"),
        ({"dateTime": "2024-03-31T09:00:00", "timeZone": "W. Europe Standard Time"}, "2024-03-31T07:00:00Z"),
        ({"dateTime": "2024-03-31T09:00:00", "timeZone": "Europe/Berlin"}, "2024-03-31T07:00:00Z"),  # IANA (Prefer header)
        ({"dateTime": "2024-01-15T09:00:00", "timeZone": "India Standard Time"}, "2024-01-15T03:30:00Z"),
        ("0001-01-01T00:00:00Z", None),  # Graph's "unset"
        (None, None),
    ],
)
def test_utc_datetime(value: Any, expected: str | None) -> None:
    assert run("utc_datetime", value)[0] == expected


def test_utc_datetime_rejects_unknown_zone_and_garbage() -> None:
    with pytest.raises(RecordInvalid, match="unknown time zone"):
        run("utc_datetime", {"dateTime": "2024-01-01T00:00:00", "timeZone": "Mars Standard Time"})
    with pytest.raises(RecordInvalid, match="not an ISO-8601"):
        run("utc_datetime", "yesterday")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2016-10-19T10:37:00Z", "2016-10-19"),
        ("1974-07-22", "1974-07-22"),
        ({"dateTime": "2020-08-25T00:00:00.0000000", "timeZone": "Eastern Standard Time"}, "2020-08-25"),
        (None, None),
    ],
)
def test_date_only(value: Any, expected: str | None) -> None:
    assert run("date_only", value)[0] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("False", False), ("1", True), (0, False), (1, True), ("maybe", None), (None, None)],
)
def test_to_bool_is_loose(value: Any, expected: bool | None) -> None:
    assert run("to_bool", value)[0] is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), ("42", 42), (" 7 ", 7), (2.0, 2), ("2.0", 2), (True, 1), (2.5, None), ("x", None), (None, None)],
)
def test_to_int_is_loose(value: Any, expected: int | None) -> None:
    assert run("to_int", value)[0] == expected


def test_option_map_is_case_insensitive_with_default() -> None:
    step = {"type": "option_map", "map": {"low": 0, "normal": 1, "high": 2}, "default": 1}
    assert run(step, "High")[0] == 2
    assert run(step, "urgent")[0] == 1
    assert run(step, None)[0] is None
    assert run({"type": "option_map", "map": {"true": 2}}, True)[0] == 2


def test_truncate_uses_column_length_and_sets_flag() -> None:
    col = ColumnInfo("description", "Memo", max_length=5)
    out, scope = run({"type": "truncate", "flag": {"column": "notifications", "value": 2}}, "abcdefgh", column=col)
    assert out == "abcde"
    assert scope.flags == {"notifications": 2}
    out, scope = run({"type": "truncate", "flag": {"column": "notifications", "value": 2}}, "abc", column=col)
    assert out == "abc" and scope.flags is None
    assert run({"type": "truncate", "max_length": 2}, "abc")[0] == "ab"


def test_truncate_without_any_length_fails_to_build() -> None:
    with pytest.raises(ValueError, match="max_length"):
        run("truncate", "abc", column=ColumnInfo("x", "Memo"))


def test_html_to_text() -> None:
    html = "<html>\r\n<head><style>p{}</style></head>\r\n<body>\r\nThe group &amp; represents<br>Nevada.\r\n<p>One</p><p>Two&nbsp;words</p><!-- c --></body></html>"
    assert run("html_to_text", html)[0] == "The group & represents\nNevada. One\nTwo words"
    assert run("html_to_text", {"contentType": "text", "content": "a < b"})[0] == "a < b"
    assert run("html_to_text", {"contentType": "html", "content": "<b>x</b>"})[0] == "x"
    assert run("html_to_text", {"contentType": "html", "content": ""})[0] is None


def test_join_first_pluck_count_lower() -> None:
    assert run("join", ["a", None, "", "b"])[0] == "a; b"
    assert run({"type": "join", "separator": ","}, [])[0] is None
    assert run("first", [None, "x", "y"])[0] == "x"
    assert run({"type": "pluck", "path": "emailAddress.address"}, [{"emailAddress": {"address": "a@b"}}, {}])[0] == ["a@b", None]
    assert run("count", [1, 2, 3])[0] == 3
    assert run("count", None)[0] is None
    assert run("lower", "MiXed")[0] == "mixed"


def test_const_ignores_input() -> None:
    assert run({"type": "const", "value": 7}, "anything")[0] == 7


def test_when_conditions_on_another_field() -> None:
    step = {"type": "when", "field": "isCancelled", "equals": True, "then": 2}
    assert run(step, 3)[0] == 2  # "true" string counts as true
    assert run(step, 3, item={"isCancelled": False})[0] == 3  # no else: pass through
    with_else = {"type": "when", "field": "$folder", "equals": ["sentitems", "outbox"], "then": 3, "else": 4}
    assert run(with_else, None)[0] == 3
    assert run(with_else, None, ctx=MappingContext(mailbox="x", folder="inbox"))[0] == 4


def test_coalesce_takes_first_non_empty_path() -> None:
    step = {"type": "coalesce", "paths": ["fileAs", "displayName"]}
    assert run(step, None)[0] == "Display"
    assert run(step, "")[0] == "Display"
    assert run(step, "kept")[0] == "kept"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" AlexW@Contoso.OnMicrosoft.com ", "alexw@contoso.onmicrosoft.com"), ("mailto:A@B.com", "a@b.com"), ("<a@b.com>", "a@b.com"), ("", None), (5, None)],
)
def test_email_address(value: Any, expected: str | None) -> None:
    assert run("email_address", value)[0] == expected


def test_message_id_normalisation() -> None:
    assert run("message_id", " <MWHPR6E1BE060@MWHPR1120.NAMPRD22.prod.outlook.com> ")[0] == "MWHPR6E1BE060@mwhpr1120.namprd22.prod.outlook.com"


def test_tracking_token() -> None:
    assert run("tracking_token", "RE: Quote CRM:0001001")[0] == "CRM:0001001"
    assert run("tracking_token", "CRM:0001001 then CRM:0001002")[0] == "CRM:0001002"
    assert run("tracking_token", "no token here")[0] is None
    assert run({"type": "tracking_token", "prefixes": ["ACME"]}, "x ACME:12 CRM:0001001")[0] == "ACME:12"
    assert run("tracking_token", "XCRM:0001001")[0] is None
    assert run("tracking_token", "CRM:0001001 and XCRM:0009999")[0] == "CRM:0001001"  # a glued later one does not hide it
    assert run("tracking_token", "CRM:0001001 CRM: none")[0] == "CRM:0001001"  # a prefix without digits is no token
    assert run({"type": "tracking_token", "prefixes": ["CRM", "OLD"]}, "OLD:7 re CRM:0001001 (OLD:8)")[0] == "OLD:8"
    assert run({"type": "tracking_token", "prefixes": ["CRM", "OLD"]}, "(CRM:5)OLD:6")[0] == "OLD:6"  # after ")": not glued
    assert run({"type": "tracking_token", "prefixes": ["CRM", "OLD"]}, "OLD:6 xCRM:5")[0] == "OLD:6"


def test_header() -> None:
    assert run({"type": "header", "name": "in-reply-to"}, ITEM["internetMessageHeaders"])[0] == "<abc@x.com>"
    assert run({"type": "header", "name": "References"}, ITEM["internetMessageHeaders"])[0] is None
    assert run({"type": "header", "name": "References"}, None)[0] is None


def test_matches_mailbox() -> None:
    assert run("matches_mailbox", "me@contoso.com")[0] is True
    assert run("matches_mailbox", "other@contoso.com")[0] is False
    assert run("matches_mailbox", None)[0] is None


def test_lookup_uses_the_context_hook() -> None:
    calls: list[tuple[str, str, Any]] = []

    def lookup(table: str, column: str, value: Any) -> str | None:
        calls.append((table, column, value))
        return "00000000-0000-0000-0000-000000000001" if value == "Contoso" else None

    ctx = MappingContext(mailbox="x", lookup=lookup)
    step = {"type": "lookup", "table": "account", "column": "name"}
    assert run(step, "Contoso", ctx=ctx)[0] == "00000000-0000-0000-0000-000000000001"
    assert run(step, "Fabrikam", ctx=ctx)[0] is None
    assert run(step, None, ctx=ctx)[0] is None
    assert calls == [("account", "name", "Contoso"), ("account", "name", "Fabrikam")]


def test_default_party_resolver_and_lookup_resolve_nothing() -> None:
    ctx = MappingContext(mailbox="x")
    assert ctx.resolve_party("a@b.com", 1) is None
    assert ctx.lookup("account", "name", "x") is None
    assert PartyRef("contact", "1").table == "contact"


def test_invertibility_flags() -> None:
    invertible = {n for n, d in REGISTRY.items() if n != "option_map" and d.invertible(None)}
    assert invertible == {"utc_datetime", "date_only", "to_bool", "to_int", "email_address"}
    distinct = m.OptionMap(type="option_map", map={"a": 1, "b": 2})
    clash = m.OptionMap(type="option_map", map={"a": 1, "b": 1})
    assert REGISTRY["option_map"].invertible(distinct) is True
    assert REGISTRY["option_map"].invertible(clash) is False
