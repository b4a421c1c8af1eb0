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


def uuid5_str(namespace: bytes, name: str) -> str:
    """Same result as ``str(uuid.uuid5(UUID(bytes=namespace), name))``, about 3x faster."""
    digest = bytearray(sha1(namespace + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def record_key(table: str, *parts: str) -> str:
    """Key of a record of ``table`` identified by ``parts`` (joined with U+001F)."""
    return uuid5_str(table_namespace(table), KEY_SEPARATOR.join(parts))
