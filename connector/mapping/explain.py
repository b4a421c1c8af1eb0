"""``explain``: the records a Graph item produces and, per column, the rule that produced it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from connector.mapping.compiler import ACTIVITY_PARTY
from connector.mapping.loader import MappingSet, load_mapping_set
from connector.mapping.records import MappingContext

SOURCE_KINDS = ("message", "event", "contact", "todoTask")


def explain(
    kind: str,
    item_json: str | bytes | dict[str, Any],
    *,
    mailbox: str = "user@example.com",
    folder: str | None = None,
    mappings_dir: str | Path | None = None,
    mapping_set: MappingSet | None = None,
) -> dict[str, Any]:
    """Map one item and describe the result.

    Returns:
        ``{"records": [{"table", "key", "mapping", "values", "rules"}]}``; ``rules`` gives,
        per column, the source path and transforms that produced the value.

    Raises:
        ValueError: unknown ``kind``.
        RecordInvalid: the item does not map to schema-valid records.
        MappingValidationError: the mappings themselves are invalid.
    """
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
    item = item_json if isinstance(item_json, dict) else orjson.loads(item_json)
    ms = mapping_set or load_mapping_set(mappings_dir)
    ctx = MappingContext(mailbox=mailbox, folder=folder)
    out: list[dict[str, Any]] = []
    for cm in ms.for_source(kind):
        party_rules = cm.party_rules()
        for rec in cm.map(item, ctx):
            if rec.table == ACTIVITY_PARTY:
                text = party_rules.get(rec.values["participationtypemask"], "")
                rules = {
                    "activitypartyid": "uuid5(activityid + participationtypemask + addressused)",
                    "activityid": f"key of the {cm.target} record",
                    "participationtypemask": text,
                    "addressused": text,
                    "partyid": "party resolver (context hook)",
                    "partyobjecttypecode": "party resolver (context hook)",
                }
                pk = "activitypartyid"
            else:
                pk = cm.table.primary_key
                rules = {pk: f"key: {cm.key_rule}", **cm.rules}
            out.append(
                {
                    "table": rec.table,
                    "key": rec.key,
                    "mapping": cm.name,
                    "values": {pk: rec.key, **rec.values},
                    "rules": {c: rules.get(c, "") for c in (pk, *rec.values)},
                }
            )
    return {"records": out}
