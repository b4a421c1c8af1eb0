"""Windows time-zone names (as Graph returns them) to IANA zones, via the CLDR "001" table."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=1)
def windows_zones() -> dict[str, str]:
    """Windows zone id -> IANA zone name (CLDR windowsZones, territory 001)."""
    text = resources.files("connector.mapping").joinpath("windows_zones.json").read_text("utf-8")
    zones: dict[str, str] = json.loads(text)["zones"]
    return zones


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo | None:
    """ZoneInfo for a Windows or IANA zone name; None when unknown.

    Graph's ``dateTimeTimeZone.timeZone`` holds a Windows name ("Pacific Standard Time")
    unless the request sent ``Prefer: outlook.timezone`` with an IANA name.
    """
    iana = windows_zones().get(name, name)
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        return None
