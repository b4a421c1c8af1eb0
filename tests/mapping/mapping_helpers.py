"""Helpers shared by the mapping and store tests (imported by module name; tests/mapping is on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
MAILBOX = "alexw@contoso.onmicrosoft.com"


def sample(name: str) -> dict[str, Any]:
    """One Graph sample (copied from the Graph docs); for delta pages, the first item."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data["value"][0] if "value" in data else data
