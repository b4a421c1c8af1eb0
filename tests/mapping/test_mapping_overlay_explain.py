"""User overlays (add/change/remove columns, custom columns and tables), explain output and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mapping_helpers import FIXTURES, MAILBOX, sample
from typer.testing import CliRunner

from connector.mapping import MappingContext, MappingSet, explain, load_mapping_set
from connector.mapping.cli import app
from connector.store import SqliteStore

OVERLAY = """\
version: 1
kind: MappingOverlay
name: email
custom_columns:
  new_graphsource: {type: String, max_length: 100}
columns:
  subject:
    transforms: [lower, truncate]
  category: null
  new_graphsource:
    source: id
"""

CUSTOM_TABLE = """\
version: 1
kind: Mapping
name: graphitem
source: message
target: new_graphitem
delete_policy: delete
custom_table:
  primary_key: new_graphitemid
  columns:
    new_subject: {type: String, max_length: 50}
    new_isread: {type: Boolean}
key:
  parts:
    - source: $mailbox
    - source: id
columns:
  new_subject: {source: subject, transforms: [truncate]}
  new_isread: {source: isRead, transforms: [to_bool]}
"""


@pytest.fixture()
def overlay_dir(tmp_path: Path) -> Path:
    (tmp_path / "email.yaml").write_text(OVERLAY, encoding="utf-8")
    (tmp_path / "graphitem.yaml").write_text(CUSTOM_TABLE, encoding="utf-8")
    return tmp_path


def test_overlay_changes_adds_and_removes_columns(overlay_dir: Path, ctx: MappingContext) -> None:
    ms = load_mapping_set(overlay_dir)
    item = dict(sample("message-get-response.json"), categories=["Red"], isRead="true")
    records = ms.map_item("message", item, ctx)
    email = records[0]
    assert email.values["subject"] == "9/9/2018: concert".lower()
    assert "category" not in email.values
    assert email.values["new_graphsource"] == "AAMkADhMGAAA="
    assert email.values["messageid"] == item["internetMessageId"]  # untouched shipped rule
    custom = [r for r in records if r.table == "new_graphitem"]
    assert len(custom) == 1
    assert custom[0].values == {"new_subject": "9/9/2018: concert", "new_isread": True}
    assert ms.mappings["graphitem"].delete_policy == "delete"


def test_overlay_shapes_the_store(overlay_dir: Path, tmp_path: Path, ctx: MappingContext) -> None:
    db = tmp_path / "store.db"
    SqliteStore(db).close()  # created from the shipped tables only
    ms = load_mapping_set(overlay_dir)
    with SqliteStore(db, tables=ms.tables) as store:  # reopening adds the custom column and table
        assert "new_graphsource" in store.columns("email")
        records = ms.map_item("message", sample("message-get-response.json"), ctx)
        store.upsert_records(records)
        assert store.get("email", records[0].key)["new_graphsource"] == "AAMkADhMGAAA="  # type: ignore[index]
        assert store.count("new_graphitem") == 1


def test_shipped_mappings_unchanged_without_overlay(mapping_set: MappingSet) -> None:
    assert "new_graphsource" not in mapping_set.tables["email"].columns
    assert "category" in mapping_set.mappings["email"].rules


def test_overlay_direction_none_disables_a_column(tmp_path: Path, ctx: MappingContext) -> None:
    (tmp_path / "task.yaml").write_text("version: 1\nkind: MappingOverlay\nname: task\ncolumns:\n  category:\n    direction: none\n", encoding="utf-8")
    ms = load_mapping_set(tmp_path)
    assert "category" not in ms.map_item("todoTask", sample("todotask-create-response.json"), ctx)[0].values


def test_explain_json_form() -> None:
    raw = (FIXTURES / "message-get-response.json").read_bytes()
    out = explain("message", raw, mailbox=MAILBOX)
    tables = [r["table"] for r in out["records"]]
    assert tables == ["email", "activityparty", "activityparty"]
    email = out["records"][0]
    assert email["values"]["activityid"] == email["key"]
    assert email["rules"]["activityid"].startswith("key: uuid5(internetMessageId | message_id)")
    assert email["rules"]["subject"] == "subject | truncate"
    assert email["rules"]["senton"] == "sentDateTime | utc_datetime"
    assert "set to 2 when description is truncated" in email["rules"]["notifications"]
    assert set(email["rules"]) == set(email["values"])
    party = out["records"][2]
    assert party["values"]["participationtypemask"] == 2
    assert party["rules"]["addressused"] == "parties.to <- toRecipients[].emailAddress.address | email_address"
    json.dumps(out)  # JSON-serialisable


def test_explain_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        explain("calendar", {})


runner = CliRunner()


def test_cli_validate_ok_and_failing(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate"])
    assert ok.exit_code == 0 and ok.stdout.startswith("OK")
    (tmp_path / "email.yaml").write_text("version: 1\nkind: MappingOverlay\nname: email\ncolumns:\n  subjekt: {source: subject}\n", encoding="utf-8")
    bad = runner.invoke(app, ["validate", str(tmp_path)])
    assert bad.exit_code == 1
    assert f"{tmp_path / 'email.yaml'}:5:3: unknown target column 'subjekt' in table 'email'" in bad.stdout


def test_cli_schema_prints_the_committed_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    committed = json.loads((Path(__file__).resolve().parents[2] / "mappings/schema/mapping.schema.json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == committed


def test_cli_explain_json_and_table() -> None:
    path = str(FIXTURES / "todotask-create-response.json")
    result = runner.invoke(app, ["explain", "--kind", "todoTask", path, "--json", "--mailbox", MAILBOX])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["records"][0]["values"]["subject"] == "A new task"
    table = runner.invoke(app, ["explain", "--kind", "todoTask", path])
    assert table.exit_code == 0 and "percentcomplete" in table.stdout
    bad = runner.invoke(app, ["explain", "--kind", "contact", str(FIXTURES / "contact-delta-response.json")])
    assert bad.exit_code == 2
