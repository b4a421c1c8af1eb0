"""Plain values that flow from the mapping layer to stores and sinks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Record(NamedTuple):
    """One Dataverse-style row: target table logical name, primary key and column values.

    A NamedTuple rather than a frozen dataclass: mapping makes several per item (the activity and
    its parties), and a tuple is built about three times faster.

    ``values`` uses Dataverse logical column names and JSON-friendly values
    (str, int, float, bool, None; datetimes as ``YYYY-MM-DDTHH:MM:SSZ``).
    """

    table: str
    key: str
    values: dict[str, Any]


class PartyRef(NamedTuple):
    """A resolved party: the table and primary key of the record an address belongs to (a tuple: cheap, and left
    alone by the garbage collector in the caches that hold many)."""

    table: str
    id: str


PartyResolver = Callable[[str, int], "PartyRef | None"]
"""``resolver(address, participationtypemask) -> PartyRef | None``."""

Lookup = Callable[[str, str, Any], "str | None"]
"""``lookup(table, column, value) -> primary key | None`` (the store provides one)."""


def no_party(address: str, mask: int) -> PartyRef | None:
    """Default party resolver: resolves nothing (every party keeps only ``addressused``)."""
    return None


def no_lookup(table: str, column: str, value: Any) -> str | None:
    """Default lookup: finds nothing."""
    return None


@dataclass(frozen=True, slots=True)
class MappingContext:
    """What a mapping needs to know besides the Graph item itself.

    Attributes:
        mailbox: SMTP address of the mailbox being synced (part of some keys).
        folder: well-known name of the item's container when known
            (``inbox``, ``sentitems`` ...); drives email direction and status.
        resolve_party: party resolution hook (a later issue); default resolves nothing.
        lookup: record lookup hook used by the ``lookup`` transform.
    """

    mailbox: str
    folder: str | None = None
    resolve_party: PartyResolver = field(default=no_party)
    lookup: Lookup = field(default=no_lookup)
