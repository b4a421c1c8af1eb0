"""The demo tenant's tracking set-up: reference records from samples/crm/ and per-mailbox options that exercise every rule."""

from __future__ import annotations

from typing import Any

from ..store.sqlite import SqliteStore
from .reference import import_demo_records

DEMO_MAILBOXES: list[dict[str, Any]] = [
    # Adele: replies only (the default), with two tracked customer folders linked to their accounts.
    {"address": "adele@contoso.com", "track": "responses", "folders": [
        {"path": "inbox/Customers/Fabrikam", "regarding": {"table": "account", "key": {"accountnumber": "F-100"}}},
        {"path": "inbox/Customers/Adatum", "regarding": {"table": "account", "key": {"accountnumber": "A-200"}}},
    ]},
    {"address": "alex@contoso.com", "track": "email_enabled"},  # anything from a known record
    {"address": "megan@contoso.com", "track": "known_parties"},  # from leads, contacts and accounts
    {"address": "nestor@contoso.com"},
    {"address": "lynne@contoso.com", "sent_items": False},
    {"address": "sales@contoso.com", "track": "all"},  # the queue-style shared mailbox
]


def demo_settings() -> dict[str, Any]:
    """Settings overrides for `m365sync demo` (merge into `Settings.load(None, **overrides)`)."""
    return {"mailboxes": DEMO_MAILBOXES, "tracking": {"auto_create_contacts": True}}


def prepare_demo(store: SqliteStore) -> dict[str, int]:
    """Load samples/crm/ into the demo store before the first sync; returns rows per table."""
    return import_demo_records(store)
