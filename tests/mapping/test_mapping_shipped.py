"""Shipped mappings: load and validate, JSON Schema in sync, reference Graph samples map to valid records."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.mapping import MappingContext, MappingSet, Record, RecordInvalid, json_schema, shipped_mappings_dir, validate_dir
from connector.mapping.compiler import column_check
from connector.mapping.keys import table_namespace, uuid5_str
from connector.mapping.models import MAPPING_FILE_ADAPTER

from mapping_helpers import MAILBOX, sample

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "mappings"
SCHEMA_FILE = MAPPINGS / "schema" / "mapping.schema.json"
SCHEMA_COMMENT = "# yaml-language-server: $schema=./schema/mapping.schema.json"


def assert_schema_valid(ms: MappingSet, rec: Record) -> None:
    """Every value fits its column (type, length, option); no unknown column; key is a GUID."""
    table = ms.tables[rec.table]
    uuid.UUID(rec.key)
    for col, value in rec.values.items():
        assert col in table.columns, f"{rec.table}.{col} is not a Dataverse column"
        if value is not None:
            assert column_check(table.columns[col])(value) is None, (col, value)


def test_shipped_mappings_validate() -> None:
    assert validate_dir() == []
    assert validate_dir(MAPPINGS) == []  # the shipped dir given explicitly is not overlaid on itself


def test_shipped_dir_resolves_to_repo_mappings() -> None:
    assert Path(str(shipped_mappings_dir())).resolve() == MAPPINGS.resolve()


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.yaml")), ids=lambda p: p.name)
def test_each_file_loads_and_starts_right(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == SCHEMA_COMMENT
    assert lines[1] == "version: 1"
    assert lines[2] == "kind: Mapping"
    model = MAPPING_FILE_ADAPTER.validate_python(yaml.safe_load(text))
    assert model.name == path.stem


def test_committed_json_schema_matches_models() -> None:
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == json_schema(), "regenerate with: m365sync mappings schema > mappings/schema/mapping.schema.json"


def test_all_four_resources_are_mapped(mapping_set: MappingSet) -> None:
    assert {(cm.source, cm.target, cm.delete_policy) for cm in mapping_set.mappings.values()} == {
        ("message", "email", "keep"),
        ("event", "appointment", "cancel"),
        ("contact", "contact", "deactivate"),
        ("todoTask", "task", "delete"),
    }


def test_message_sample(mapping_set: MappingSet, ctx: MappingContext) -> None:
    records = mapping_set.map_item("message", sample("message-get-response.json"), ctx)
    email, *parties = records
    for rec in records:
        assert_schema_valid(mapping_set, rec)
    assert email.table == "email"
    assert email.key == uuid5_str(table_namespace("email"), "MWHPR6E1BE060@mwhpr1120.namprd22.prod.outlook.com")
    v = email.values
    assert v["subject"] == "9/9/2018: concert"
    assert v["description"].startswith("<html>")
    assert v["messageid"] == "<MWHPR6E1BE060@MWHPR1120.namprd22.prod.outlook.com>"
    assert v["directioncode"] is False  # Adele sent it to Alex's inbox
    assert (v["statecode"], v["statuscode"]) == (1, 4)  # Completed / Received
    assert v["senton"] == "2018-09-09T03:15:06Z"
    assert v["actualend"] == "2018-09-09T03:15:08Z"
    assert v["prioritycode"] == 1
    assert v["attachmentcount"] == 0
    assert v["category"] is None
    assert v["notifications"] == 0
    assert v["trackingtoken"] is None
    assert v["torecipients"] == "AlexW@contoso.OnMicrosoft.com"
    assert [(p.values["participationtypemask"], p.values["addressused"]) for p in parties] == [
        (1, "adelev@contoso.onmicrosoft.com"),
        (2, "alexw@contoso.onmicrosoft.com"),
    ]
    assert all(p.values["activityid"] == email.key and p.values["partyid"] is None for p in parties)


def test_sent_items_message_is_outgoing_and_sent(mapping_set: MappingSet) -> None:
    item = sample("message-get-response.json")
    email = mapping_set.map_item("message", item, MappingContext(mailbox="adelev@contoso.onmicrosoft.com", folder="sentitems"))[0]
    assert email.values["directioncode"] is True
    assert (email.values["statecode"], email.values["statuscode"]) == (1, 3)  # Completed / Sent
    # sender is the mailbox owner even outside Sent Items
    email = mapping_set.map_item("message", item, MappingContext(mailbox="AdeleV@contoso.onmicrosoft.com", folder="inbox"))[0]
    assert email.values["directioncode"] is True


def test_two_mailboxes_converge_on_one_email(mapping_set: MappingSet) -> None:
    item = sample("message-get-response.json")
    a = mapping_set.map_item("message", item, MappingContext(mailbox="adelev@contoso.onmicrosoft.com", folder="sentitems"))
    b = mapping_set.map_item("message", dict(item, id="other-id"), MappingContext(mailbox=MAILBOX, folder="inbox"))
    assert a[0].key == b[0].key
    assert [r.key for r in a[1:]] == [r.key for r in b[1:]]  # activityparty keys converge too


def test_message_without_internet_message_id_falls_back_to_mailbox_and_id(mapping_set: MappingSet, ctx: MappingContext) -> None:
    item = sample("message-delta-response-page1.json")  # a delta page item: id, subject, isRead, sender only
    email = mapping_set.map_item("message", item, ctx)[0]
    assert email.key == uuid5_str(table_namespace("email"), f"{MAILBOX}\x1fAAMkADNkNAAASq35xAAA=")


def test_message_with_conversation_index_and_headers(mapping_set: MappingSet, ctx: MappingContext) -> None:
    item = dict(sample("message-with-conversationIndex-flag.json"))
    item["internetMessageHeaders"] = [{"name": "In-Reply-To", "value": "<parent@contoso.com>"}]
    item["subject"] = "RE: Quote CRM:0001001"
    item["categories"] = ["Tracked to Dynamics 365", "Red"]
    item["importance"] = "high"
    records = mapping_set.map_item("message", item, ctx)
    for rec in records:
        assert_schema_valid(mapping_set, rec)
    v = records[0].values
    assert v["conversationindex"] == "AQHZq6PnEvm0g=="
    assert v["inreplyto"] == "<parent@contoso.com>"
    assert v["trackingtoken"] == "CRM:0001001"
    assert v["category"] == "Tracked to Dynamics 365; Red"
    assert v["prioritycode"] == 2


def test_five_parties_with_cc_and_bcc(mapping_set: MappingSet, ctx: MappingContext) -> None:
    item = dict(sample("message-get-response.json"))
    item["ccRecipients"] = [{"emailAddress": {"address": "LeeG@contoso.com"}}]
    item["bccRecipients"] = [{"emailAddress": {"address": "nestor@contoso.com"}}, {"emailAddress": {"address": "NESTOR@contoso.com"}}]
    item["toRecipients"] = [*item["toRecipients"], {"emailAddress": {"name": "no address"}}]
    parties = mapping_set.map_item("message", item, ctx)[1:]
    assert [(p.values["participationtypemask"], p.values["addressused"]) for p in parties] == [
        (1, "adelev@contoso.onmicrosoft.com"),
        (2, "alexw@contoso.onmicrosoft.com"),
        (3, "leeg@contoso.com"),
        (4, "nestor@contoso.com"),  # duplicate (case-insensitive) dropped; address-less entry skipped
    ]
    assert len({p.key for p in parties}) == 4


def test_party_resolver_hook_fills_partyid(mapping_set: MappingSet) -> None:
    from connector.mapping import PartyRef

    def resolve(address: str, mask: int) -> PartyRef | None:
        return PartyRef("systemuser", "11111111-1111-1111-1111-111111111111") if address.startswith("alexw") else None

    ctx = MappingContext(mailbox=MAILBOX, resolve_party=resolve)
    parties = mapping_set.map_item("message", sample("message-get-response.json"), ctx)[1:]
    assert [p.values["partyid"] for p in parties] == [None, "11111111-1111-1111-1111-111111111111"]
    assert parties[1].values["partyobjecttypecode"] == "systemuser"


def test_writable_split_drops_read_only_columns(mapping_set: MappingSet, ctx: MappingContext) -> None:
    email = mapping_set.map_item("message", sample("message-with-conversationIndex-flag.json"), ctx)[0]
    writable = mapping_set.writable_values(email)
    for read_only in ("senton", "conversationindex", "attachmentcount"):
        assert read_only in email.values and read_only not in writable
    assert writable["subject"] == email.values["subject"]
    assert mapping_set.mappings["email"].writable_values(email) == writable


def test_series_master_event(mapping_set: MappingSet, ctx: MappingContext) -> None:
    records = mapping_set.map_item("event", sample("event-create-response-recurring-seriesMaster.json"), ctx)
    appt, *parties = records
    for rec in records:
        assert_schema_valid(mapping_set, rec)
    ical = "040000008200E00074C5B7101A82E0080000000028CEBE04293FD3010000000000000000100000009F85AB8AF8ED4D4FAC777FA89954BDB7"
    assert appt.key == uuid5_str(table_namespace("appointment"), f"{ical}\x1f")
    v = appt.values
    assert v["scheduledstart"] == "2017-09-04T19:00:00Z"  # 12:00 PDT
    assert v["scheduledend"] == "2017-09-04T21:00:00Z"
    assert v["subject"] == "Let's go for lunch"
    assert v["description"] == "Does late morning work for you?"
    assert v["location"] == "Harry's Bar"
    assert v["instancetypecode"] == 1
    assert (v["statecode"], v["statuscode"]) == (3, 5)  # busy -> Scheduled / Busy
    assert [(p.values["participationtypemask"], p.values["addressused"]) for p in parties] == [
        (7, "alexw@contoso.onmicrosoft.com"),
        (5, "adelev@contoso.onmicrosoft.com"),
    ]


def test_occurrences_are_keyed_by_ical_uid_and_original_start(mapping_set: MappingSet, ctx: MappingContext) -> None:
    base = sample("event-create-response-recurring-seriesMaster.json")
    occ1 = dict(base, type="occurrence", originalStart="2017-09-11T19:00:00Z", seriesMasterId="AAMkADQwMD")
    occ2 = dict(occ1, originalStart="2017-09-18T19:00:00Z")
    exc = dict(occ2, type="exception", isCancelled=True, subject="Moved lunch")
    k1, k2, k3 = (mapping_set.map_item("event", i, ctx)[0] for i in (occ1, occ2, exc))
    assert k1.key != k2.key
    assert k2.key == k3.key  # an exception replaces the occurrence it came from
    assert k3.values["instancetypecode"] == 3
    assert (k3.values["statecode"], k3.values["statuscode"]) == (2, 4)  # Canceled
    assert k1.values["originalstartdate"] == "2017-09-11T19:00:00Z"


@pytest.mark.parametrize(
    ("show_as", "state"),
    [("free", (0, 1)), ("tentative", (0, 2)), ("busy", (3, 5)), ("oof", (3, 6)), ("workingElsewhere", (0, 1))],
)
def test_show_as_to_state(mapping_set: MappingSet, ctx: MappingContext, show_as: str, state: tuple[int, int]) -> None:
    item = dict(sample("event-create-response-singleInstance-prefer-timezone.json"), showAs=show_as)
    v = mapping_set.map_item("event", item, ctx)[0].values
    assert (v["statecode"], v["statuscode"]) == state


def test_calendar_view_item_without_ical_uid(mapping_set: MappingSet, ctx: MappingContext) -> None:
    records = mapping_set.map_item("event", sample("event-calendarview-delta-response-page1.json"), ctx)
    assert records[0].key == uuid5_str(table_namespace("appointment"), f"{MAILBOX}\x1fAAMkADNVxRAAA=")
    assert records[0].values["scheduledstart"] == "2016-12-09T20:30:00Z"
    for rec in records:
        assert_schema_valid(mapping_set, rec)


def test_contact_sample(mapping_set: MappingSet, ctx: MappingContext) -> None:
    item = dict(sample("contact-get-response.json"))
    item.update(
        birthday="1974-07-22T11:59:00Z",
        businessPhones=["+1 425 555 0100", "+1 425 555 0101"],
        companyName="Contoso",
        businessAddress={"street": "1 Microsoft Way", "city": "Redmond", "state": "WA", "postalCode": "98052", "countryOrRegion": "USA"},
    )
    rec = mapping_set.map_item("contact", item, ctx)[0]
    assert_schema_valid(mapping_set, rec)
    v = rec.values
    assert rec.key == uuid5_str(table_namespace("contact"), f"{MAILBOX}\x1f{item['id']}")
    assert (v["firstname"], v["lastname"]) == ("Alex", "Wilber")
    assert v["emailaddress1"] == "alex@fineartschool.net"
    assert v["emailaddress2"] is None
    assert v["birthdate"] == "1974-07-22"
    assert (v["telephone1"], v["business2"]) == ("+1 425 555 0100", "+1 425 555 0101")
    assert (v["address1_line1"], v["address1_city"], v["address1_postalcode"]) == ("1 Microsoft Way", "Redmond", "98052")
    assert v["parentcustomerid"] is None  # no account record to look up
    assert "company" not in v  # contact.company is the Company Phone column
    assert (v["statecode"], v["statuscode"]) == (0, 1)


def test_contact_without_surname_uses_display_name(mapping_set: MappingSet, ctx: MappingContext) -> None:
    item = dict(sample("contact-delta-response.json"), id="c1", givenName=None)
    item.pop("displayName")
    assert mapping_set.map_item("contact", item, ctx)[0].values["lastname"] == "fileAs-value"


def test_todo_samples(mapping_set: MappingSet, ctx: MappingContext) -> None:
    created = mapping_set.map_item("todoTask", sample("todotask-create-response.json"), ctx)[0]
    assert_schema_valid(mapping_set, created)
    v = created.values
    assert v["subject"] == "A new task"
    assert v["prioritycode"] == 0
    assert v["category"] == "Important"
    assert (v["statecode"], v["statuscode"], v["percentcomplete"]) == (0, 2, 0)
    assert v["description"] is None
    updated = mapping_set.map_item("todoTask", sample("todotask-update-response.json"), ctx)[0]
    assert updated.values["scheduledend"] == "2020-08-25T04:00:00Z"
    done = dict(sample("todotask-update-response.json"), status="completed", completedDateTime={"dateTime": "2020-08-26T10:00:00.0000000", "timeZone": "UTC"})
    v = mapping_set.map_item("todoTask", done, ctx)[0].values
    assert (v["statecode"], v["statuscode"], v["percentcomplete"], v["actualend"]) == (1, 5, 100, "2020-08-26T10:00:00Z")
    assert mapping_set.map_item("todoTask", sample("todotask-delta-response.json"), ctx)[0].values["subject"] == "empty task3"


def test_loose_is_read_string_sample_maps(mapping_set: MappingSet, ctx: MappingContext) -> None:
    item: dict[str, Any] = dict(sample("message-delta-response-page1.json"), isRead="true")
    assert mapping_set.map_item("message", item, ctx)[0].table == "email"


# --- run-time record validation ----------------------------------------------------------


def test_too_long_value_without_truncate_is_record_invalid(mapping_set: MappingSet, ctx: MappingContext) -> None:
    item = dict(sample("message-get-response.json"), internetMessageId="<" + "x" * 400 + "@contoso.com>")
    with pytest.raises(RecordInvalid) as info:
        mapping_set.map_item("message", item, ctx)
    assert (info.value.table, info.value.column) == ("email", "messageid")
    assert "max length is 320" in info.value.reason


def test_wrong_type_is_record_invalid(mapping_set: MappingSet, ctx: MappingContext) -> None:
    item = dict(sample("message-with-conversationIndex-flag.json"), conversationIndex=12345)
    with pytest.raises(RecordInvalid, match="conversationindex: expected text"):
        mapping_set.map_item("message", item, ctx)


def test_bad_time_zone_is_record_invalid(mapping_set: MappingSet, ctx: MappingContext) -> None:
    item = dict(sample("event-create-response-singleInstance-prefer-timezone.json"))
    item["start"] = {"dateTime": "2017-04-15T11:00:00", "timeZone": "Nowhere Standard Time"}
    with pytest.raises(RecordInvalid) as info:
        mapping_set.map_item("event", item, ctx)
    assert info.value.column == "scheduledstart"


def test_missing_key_is_record_invalid(mapping_set: MappingSet, ctx: MappingContext) -> None:
    with pytest.raises(RecordInvalid, match="key"):
        mapping_set.map_item("contact", sample("contact-delta-response.json"), ctx)  # the docs sample has no id


def test_long_body_is_truncated_and_flagged(mapping_set: MappingSet, ctx: MappingContext) -> None:
    from dataclasses import replace

    from connector.mapping.compiler import compile_mapping
    from connector.mapping.models import Mapping
    from connector.mapping.schema_data import with_columns

    # Compile the shipped email mapping against a description column limited to 10 characters.
    table = mapping_set.mappings["email"].table
    small = replace(table.columns["description"], max_length=10)
    doc = yaml.safe_load((MAPPINGS / "email.yaml").read_text(encoding="utf-8"))
    compiled = compile_mapping(Mapping.model_validate(doc), with_columns(table, {"description": small}), mapping_set.tables)
    v = compiled.map(sample("message-get-response.json"), ctx)[0].values
    assert v["description"] == "<html>\r\n<h"
    assert v["notifications"] == 2
