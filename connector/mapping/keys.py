"""Deterministic record keys (UUIDv5) so replays and several mailboxes converge on one row."""

from __future__ import annotations

import uuid
from functools import lru_cache
from hashlib import sha1

PROJECT_NAMESPACE = uuid.UUID("6f1c7c52-3b8e-5d36-9a57-2b0f3f6d1c11")
"""Root namespace of every key this connector derives; never change it (keys would move)."""

KEY_SEPARATOR = "\x1f"


@lru_cache(maxsize=None)
def table_namespace(table: str) -> bytes:
    """Namespace bytes for one table: ``uuid5(PROJECT_NAMESPACE, table)``."""
    return uuid.uuid5(PROJECT_NAMESPACE, table).bytes


# RFC 4122 variant bits (10xx) applied to the first hex digit of the clock_seq field.
_VARIANT = {c: format((int(c, 16) & 0x3) | 0x8, "x") for c in "0123456789abcdef"}


def uuid5_str(namespace: bytes, name: str) -> str:
    """Same result as ``str(uuid.uuid5(UUID(bytes=namespace), name))``, several times faster."""
    return hex_to_uuid5(sha1(namespace + name.encode("utf-8")).hexdigest())


def hex_to_uuid5(h: str) -> str:
    """The UUIDv5 text form of a SHA-1 hex digest (version and variant bits set as RFC 4122 says)."""
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def sibling_uuid5(base: str, namespace: bytes, name: str) -> str:
    """A UUIDv5-style key for `name` that shares its first 64 bits with the GUID `base` (its last 64 bits are those of
    ``uuid5_str(namespace, name)``), so it sorts next to `base` in a primary key's index: a row added beside another row
    of the same parent then lands on the same index page instead of a random one. Without a GUID to share: `uuid5_str`."""
    own = uuid5_str(namespace, name)
    if len(base) == 36 and base[8] == base[13] == base[18] == base[23] == "-":
        return base[:19] + own[19:]
    return own


def record_key(table: str, *parts: str) -> str:
    """Key of a record of ``table`` identified by ``parts`` (joined with U+001F)."""
    return uuid5_str(table_namespace(table), KEY_SEPARATOR.join(parts))
