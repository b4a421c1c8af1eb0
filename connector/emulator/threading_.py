"""Mail threading as Exchange does it: internetMessageId, conversationId and conversationIndex.

A reply found through In-Reply-To/References (or, failing that, through its normalised subject)
joins the parent's conversation and extends its conversationIndex by a 5-byte child block.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|vs|antw|tr|rif|r)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)


def normalise_subject(subject: str | None) -> str:
    """The conversation topic: subject without RE:/FW:/AW:-style prefixes, case-folded."""
    return _PREFIX.sub("", subject or "").strip().casefold()


def has_reply_prefix(subject: str | None) -> bool:
    """True when the subject starts with RE:/FW:/AW: and the like."""
    return bool(_PREFIX.match(subject or ""))


def _filetime(dt: datetime) -> int:
    return int((dt - _FILETIME_EPOCH).total_seconds() * 10_000_000)


def root_index(dt: datetime, guid: uuid.UUID) -> bytes:
    """A 22-byte conversation index header: reserved byte, 5 bytes of FILETIME, 16-byte GUID."""
    ft = _filetime(dt)
    return b"\x01" + struct.pack(">Q", ft)[1:6] + guid.bytes


def child_index(parent: bytes, parent_time: datetime, dt: datetime) -> bytes:
    """Append a 5-byte child block encoding the time since the parent."""
    delta = max(0, _filetime(dt) - _filetime(parent_time)) >> 18
    block = (delta & 0x7FFFFFFF) << 8 | (hashlib.sha1(parent + str(dt).encode()).digest()[0] & 0xFF)  # noqa: S324
    return parent + struct.pack(">Q", block)[3:]


def _conversation_id(guid: uuid.UUID) -> str:
    return "AAQkA" + base64.urlsafe_b64encode(hashlib.sha256(guid.bytes).digest()[:30]).decode().rstrip("=")


@dataclass
class Thread:
    """One conversation across the tenant."""

    conversation_id: str
    index: bytes
    started: datetime
    message_ids: set[str] = field(default_factory=set)


class Threads:
    """Tenant-wide conversation index, keyed by internetMessageId and by topic."""

    def __init__(self) -> None:
        self.by_message_id: dict[str, tuple[Thread, bytes, datetime]] = {}
        self.by_topic: dict[str, Thread] = {}

    def place(
        self,
        internet_message_id: str,
        subject: str | None,
        sent: datetime,
        in_reply_to: str | None,
        references: list[str],
    ) -> tuple[str, str]:
        """(conversationId, base64 conversationIndex) for a message, remembering it for later replies."""
        known = self.by_message_id.get(internet_message_id)
        if known:
            thread, index, _ = known
            return thread.conversation_id, base64.b64encode(index).decode()
        parent = None
        for ref in [in_reply_to, *reversed(references)]:
            if ref and ref in self.by_message_id:
                parent = self.by_message_id[ref]
                break
        refs = [r for r in dict.fromkeys([*references, in_reply_to]) if r]
        if parent is None and refs:
            # A reply seen before its parent (a scenario loads mailboxes one after another): start the
            # thread at the referenced root, so the parent joins it with the root index when it comes.
            guid = uuid.uuid5(uuid.NAMESPACE_URL, f"conversation:{refs[0]}")
            root = Thread(_conversation_id(guid), root_index(sent, guid), sent)
            for ref in refs:
                self.by_message_id[ref] = (root, root.index, sent)
            self.by_topic.setdefault(normalise_subject(subject), root)
            parent = (root, root.index, sent)
        topic = normalise_subject(subject)
        if parent is None and has_reply_prefix(subject) and topic in self.by_topic:
            thread = self.by_topic[topic]
            parent = (thread, thread.index, thread.started)
        if parent is not None:
            thread, pindex, ptime = parent
            index = child_index(pindex, ptime, sent)
        else:
            guid = uuid.uuid5(uuid.NAMESPACE_URL, f"conversation:{internet_message_id}")
            index = root_index(sent, guid)
            thread = Thread(_conversation_id(guid), index, sent)
            self.by_topic.setdefault(topic, thread)
        thread.message_ids.add(internet_message_id)
        self.by_message_id[internet_message_id] = (thread, index, sent)
        return thread.conversation_id, base64.b64encode(index).decode()
