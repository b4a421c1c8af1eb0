"""Invalid mapping files: each case gives the expected problem text and its file:line:col."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.mapping import MappingValidationError, build_mapping_set, validate_dir

TASK = """\
version: 1
kind: Mapping
name: t
source: todoTask
target: task
key:
  parts:
    - source: id
columns:
  subject:
    source: title
{extra}"""


@dataclass(frozen=True)
class Case:
    """One invalid document and the problem it must produce."""

    id: str
    text: str
    expected_message: str
    line: int
    col: int
    hint: str = ""


def task(extra: str) -> str:
    return TASK.format(extra=extra)


INVALID_MAPPINGS = [
    Case("unknown-transform", task("    transforms: [shout]\n"), "unknown transform 'shout'", 12, 18, "known transforms:"),
    Case("bad-path", task("  description:\n    source: body..content\n"), "bad path syntax 'body..content'", 13, 5, "paths look like"),
    Case("unknown-context-var", task("  description:\n    source: $user\n"), "unknown context variable '$user'", 13, 5),
    Case("type-mismatch", task("    transforms: [to_bool]\n"), "type mismatch: pipeline produces bool but 'subject' is String", 12, 5, "String accepts str"),
    Case("unknown-column", task("  subjekt:\n    source: title\n"), "unknown target column 'subjekt' in table 'task'", 12, 3, "custom_columns"),
    Case(
        "disallowed-option",
        task("  prioritycode:\n    source: importance\n    transforms:\n      - {type: option_map, map: {high: 5}}\n"),
        "value 5 is not an option of 'prioritycode'",
        14, 5, "allowed: 0 Low, 1 Normal, 2 High",
    ),
    Case("bad-default-option", task("  statecode:\n    default: 9\n"), "value 9 is not an option of 'statecode'", 13, 5, "allowed: 0 Open"),
    Case(
        "missing-required",
        TASK.replace("todoTask", "event").replace("target: task", "target: appointment").format(extra="  scheduledend:\n    source: end\n    transforms: [utc_datetime]\n"),
        "missing required column 'scheduledstart' (ApplicationRequired) of table 'appointment'",
        9, 1, "add a rule",
    ),
    Case("not-invertible", task("    transforms: [truncate]\n    direction: both\n"), "transform 'truncate' is not invertible, so direction 'both' cannot use it", 12, 18, "use direction: to_dataverse"),
    Case("extra-key", task("    sourc: x\n"), "unknown key 'sourc'", 12, 5, "check the spelling"),
    Case("bad-version", task("").replace("version: 1", "version: 2"), "Input should be 1", 1, 1, "got 2"),
    Case("no-kind", task("").replace("kind: Mapping\n", ""), "missing 'kind'", 1, 1, "kind: Mapping"),
    Case("unknown-kind", task("").replace("kind: Mapping", "kind: Map"), "unknown kind 'Map'", 1, 1),
    Case("version-not-first", "kind: Mapping\n" + task("").replace("kind: Mapping\n", ""), "a mapping file must start with 'version: 1'", 1, 1),
    Case("yaml-syntax", task("    transforms: [lower\n"), "YAML syntax error", 13, 1, "indentation"),
    Case("policy-without-state", task("").replace("target: task", "target: task\ndelete_policy: deactivate"), "delete policy 'deactivate' needs a 'Inactive' state", 6, 1, "use keep or delete"),
    Case("not-a-party-list", task("parties:\n  to: {source: toRecipients}\n"), "'to' is not a party list of table 'task'", 13, 3, "no party lists"),
    Case("party-list-as-column", task("").replace("target: task", "target: email").replace("todoTask", "message") + "  to:\n    source: toRecipients\n", "'to' is a party list", 12, 3, "parties:"),
    Case("date-only-column", TASK.replace("todoTask", "contact").replace("target: task", "target: contact").replace("  subject:\n    source: title\n", "  lastname:\n    source: surname\n").format(extra="  birthdate:\n    source: birthday\n    transforms: [utc_datetime]\n"), "'birthdate' is a date-only column", 14, 5, "use date_only"),
    Case("truncate-too-long", task("    transforms: [{type: truncate, max_length: 500}]\n"), "truncate max_length 500 exceeds 'subject' max length 200", 12, 18),
    Case("const-too-long", task("  category:\n    transforms: [{type: const, value: " + "x" * 300 + "}]\n"), "value is 300 characters; 'category' allows 250", 13, 5),
    Case("primary-key-column", task("  activityid:\n    source: id\n"), "'activityid' is the primary key", 12, 3),
    Case("produces-nothing", task("  category: {}\n"), "rule for 'category' produces nothing", 12, 3),
    Case("lookup-unknown-table", task("  regardingobjectid:\n    source: x\n    transforms: [{type: lookup, table: nosuch, column: name}]\n"), "lookup table 'nosuch' is unknown", 14, 33),
    Case("custom-column-undeclared", task("  new_graphsource:\n    source: id\n"), "unknown target column 'new_graphsource'", 12, 3),
    Case("custom-column-no-prefix", task("custom_columns:\n  graphsource: {type: String, max_length: 10}\n"), "has no publisher prefix", 13, 3),
    Case("bad-custom-type", task("custom_columns:\n  new_x: {type: Text}\n"), "Input should be 'String'", 13, 11),
]


@pytest.mark.parametrize("case", INVALID_MAPPINGS, ids=[c.id for c in INVALID_MAPPINGS])
def test_invalid_mapping(case: Case) -> None:
    with pytest.raises(MappingValidationError) as info:
        build_mapping_set([("bad.yaml", case.text)])
    problems = info.value.problems
    matching = [p for p in problems if case.expected_message in p.message]
    assert matching, [str(p) for p in problems]
    p = matching[0]
    assert (p.file, p.line, p.col) == ("bad.yaml", case.line, case.col), str(p)
    assert case.hint in p.hint
    assert str(p).startswith(f"bad.yaml:{case.line}:{case.col}: {p.message}")


def test_valid_base_document_is_valid() -> None:
    ms = build_mapping_set([("ok.yaml", task(""))])
    assert list(ms.mappings) == ["t"]


def test_all_problems_are_reported_at_once() -> None:
    text = task("    transforms: [shout]\n  subjekt:\n    source: title\n")
    with pytest.raises(MappingValidationError) as info:
        build_mapping_set([("bad.yaml", text)])
    # pydantic errors stop schema checks for that file, so one problem here; fix it and the next shows.
    assert len(info.value.problems) == 1
    with pytest.raises(MappingValidationError) as info:
        build_mapping_set([("bad.yaml", task("  subjekt:\n    source: title\n  statecode:\n    default: 9\n"))])
    assert len(info.value.problems) == 2


def test_validate_dir_reports_overlay_problems(tmp_path: Path) -> None:
    (tmp_path / "email.yaml").write_text(
        "version: 1\nkind: MappingOverlay\nname: email\ncolumns:\n  subject:\n    transforms: [to_int]\n", encoding="utf-8"
    )
    (tmp_path / "ghost.yaml").write_text("version: 1\nkind: MappingOverlay\nname: ghost\n", encoding="utf-8")
    problems = validate_dir(tmp_path)
    assert any(p.startswith(f"{tmp_path / 'email.yaml'}:6:5: type mismatch: pipeline produces int but 'subject' is String") for p in problems), problems
    assert any(p.startswith(f"{tmp_path / 'ghost.yaml'}:3:1: overlay for unknown mapping 'ghost'") for p in problems), problems


def test_validate_dir_on_missing_directory(tmp_path: Path) -> None:
    assert validate_dir(tmp_path / "nope") == [f"{tmp_path / 'nope'}:1:1: not a directory (give a directory of *.yaml mapping files)"]
