"""The emulator's in-memory mailbox store: items, containers and their ordered change logs.

Every mutation takes the next sequence number of its mailbox. A delta round remembers the
sequence it started at, so "what changed since" is a walk back along a container's log.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


def b64url(data: bytes) -> str:
    """Unpadded base64url, the alphabet of Outlook REST ids."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def stable_bytes(*parts: str, n: int = 16) -> bytes:
    """Deterministic bytes from strings (ids stay stable across runs of one scenario)."""
    return hashlib.sha256("\x1f".join(parts).encode()).digest()[:n]


def change_key(seq: int, salt: str) -> str:
    """An Exchange-looking changeKey that advances with every change."""
    return "CQAAABYAAAAR" + b64url(stable_bytes(salt, str(seq), n=9))


class Item:
    """One Graph entity. `data` holds its Graph JSON without id, etag and @odata annotations."""

    __slots__ = ("key", "rest_id", "data", "seq", "created_seq", "container", "moves", "hidden", "_ck")

    def __init__(self, key: str, data: dict[str, Any], container: str) -> None:
        self.key = key  # the immutable id
        self.rest_id = key  # the id without Prefer IdType="ImmutableId"; changes on move
        self.data = data
        self.seq = 0
        self.created_seq = 0
        self.container = container
        self.moves = 0
        self.hidden: dict[str, Any] = {}  # emulator-only facts (e.g. MIME headers, extended props)
        self._ck: tuple[int, str] = (-1, "")

    def change_key(self) -> str:
        """The changeKey for the item's current version (hashed once per version)."""
        if self._ck[0] != self.seq:
            self._ck = (self.seq, change_key(self.seq, self.key))
        return self._ck[1]

    def public_id(self, immutable: bool) -> str:
        """The id Graph reports for this item under the request's IdType preference."""
        return self.key if immutable else self.rest_id


@dataclass(slots=True)
class Tombstone:
    """What a delta round reports for an item deleted from, or moved out of, a container."""

    key: str
    rest_id: str
    seq: int
    data: dict[str, Any] = field(default_factory=dict)  # last known data, for window checks


class Collection:
    """A delta container (a mail folder, the calendar, a contact folder, a To Do list...)."""

    def __init__(self, mailbox: Mailbox, name: str) -> None:
        self.mailbox = mailbox
        self.name = name
        self.items: dict[str, Item] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self._log: dict[str, int] = {}  # key -> seq of last change, kept in seq order

    def _touch(self, key: str, seq: int) -> None:
        self._log.pop(key, None)
        self._log[key] = seq

    def put(self, item: Item) -> Item:
        """Insert or replace `item` as a change now."""
        seq = self.mailbox.next_seq()
        if item.key not in self.items:
            item.created_seq = seq
        item.seq = seq
        item.container = self.name
        self.items[item.key] = item
        self.tombstones.pop(item.key, None)
        self._touch(item.key, seq)
        return item

    def remove(self, key: str) -> Item | None:
        """Delete (or move out) `key`; later rounds report it as @removed."""
        item = self.items.pop(key, None)
        if item is None:
            return None
        seq = self.mailbox.next_seq()
        self.tombstones[key] = Tombstone(key, item.rest_id, seq, item.data)
        self._touch(key, seq)
        return item

    def changed_since(self, seq: int) -> list[str]:
        """Keys changed after `seq`, oldest first."""
        out: list[str] = []
        for key, s in reversed(self._log.items()):
            if s <= seq:
                break
            out.append(key)
        out.reverse()
        return out

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items.values())


class Mailbox:
    """One user of the tenant with everything Graph exposes under /users/{id}."""

    def __init__(self, user: dict[str, Any], on_change: Callable[..., None] | None = None) -> None:
        self.user = user  # Graph user JSON (id, userPrincipalName, mail, displayName, proxyAddresses...)
        self.id: str = user["id"]
        self.upn: str = user["userPrincipalName"]
        self._seq = itertools.count(1)
        self.seq = 0
        self.on_change = on_change
        self.collections: dict[str, Collection] = {}
        self.index: dict[str, Item] = {}  # any id form -> item, across all collections
        self.extra: dict[str, Any] = {}  # per-resource state owned by the route modules

    @property
    def address(self) -> str:
        """Primary SMTP address."""
        return self.user.get("mail") or self.upn

    def next_seq(self) -> int:
        """Advance and return this mailbox's change sequence."""
        self.seq = next(self._seq)
        return self.seq

    def collection(self, name: str) -> Collection:
        """The container called `name`, created empty on first use."""
        coll = self.collections.get(name)
        if coll is None:
            coll = self.collections[name] = Collection(self, name)
        return coll

    def register(self, item: Item) -> None:
        """Make `item` findable by its immutable and REST ids."""
        self.index[item.key] = item
        self.index[item.rest_id] = item

    def forget(self, item: Item) -> None:
        """Drop `item` from the id index."""
        self.index.pop(item.key, None)
        self.index.pop(item.rest_id, None)

    def notify(self, resource: str, container: str, item: Item, change_type: str) -> None:
        """Tell subscribers that `item` changed."""
        if self.on_change is not None:
            self.on_change(self, resource, container, item, change_type)


class Tenant:
    """All mailboxes of one emulated tenant; `lock` guards every read and write."""

    def __init__(self, tenant_id: str, domain: str) -> None:
        self.id = tenant_id
        self.domain = domain
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self._by_name: dict[str, Mailbox] = {}

    def add(self, mailbox: Mailbox) -> None:
        """Index a mailbox by id, UPN, mail and every proxy address."""
        self.mailboxes[mailbox.id] = mailbox
        names = [mailbox.id, mailbox.upn, mailbox.user.get("mail") or ""]
        names += [p.split(":", 1)[-1] for p in mailbox.user.get("proxyAddresses") or []]
        for name in names:
            if name:
                self._by_name[name.lower()] = mailbox

    def find(self, name: str) -> Mailbox | None:
        """A mailbox by object id, UPN, primary address or alias (case-insensitive)."""
        return self._by_name.get(name.lower())
