"""Email tracking: which mail becomes a Dataverse email, its thread, its parties and its regarding record, and why.

`Tracker` plugs into the sync engine as its mail hook; `import_records` loads reference records
(contacts, accounts, leads, users, queues) that party resolution and regarding records use.
"""

from __future__ import annotations

from .reference import import_demo_records, import_records
from .tokens import TokenFormat
from .tracker import EVALUATED_FOLDERS, Tracker

__all__ = ["EVALUATED_FOLDERS", "TokenFormat", "Tracker", "import_demo_records", "import_records"]
