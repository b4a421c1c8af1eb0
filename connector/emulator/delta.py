"""Delta rounds, opaque tokens and the bounded ring of sync-state generations.

A round is a snapshot (first call) or the changes since a deltaLink's sequence. Its entry list is
fixed when the round starts and paged by offset; items are rendered as they are when the page is
served, as Outlook does. Links are absolute and carry only an opaque, signed token (graph-v1.md §2.8).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import orjson

from .http import GraphError, Request, Response, bad_request
from .render import removed, render
from .store import Collection, Item, Mailbox, Tombstone, b64url

MAX_PAGE_SIZE = 1000  # the emulator's cap on odata.maxpagesize; Graph documents none for Outlook
DEFAULT_PAGE_SIZE = 10  # Outlook's observed default (graph-v1.md §0.4)


@dataclass(frozen=True, slots=True)
class DeltaQuery:
    """What a round tracks: one resource container under the options of its first request."""

    mailbox_id: str
    resource: str  # messages | mailFolders | events | contacts | contactFolders | todoLists | todoTasks
    container: str
    path: str  # the canonical path links are minted on, e.g. /users/{id}/mailFolders/{f}/messages/delta
    options: tuple[tuple[str, str], ...] = ()
    page_size: int | None = None

    def option(self, name: str) -> str | None:
        """One of the initial query options, by lower-case name."""
        for k, v in self.options:
            if k == name:
                return v
        return None

    @property
    def select(self) -> tuple[str, ...] | None:
        """The round's $select list, parsed once (pages render thousands of items with it)."""
        return _parse_select(self.option("$select"))


@lru_cache(maxsize=256)
def _parse_select(raw: str | None) -> tuple[str, ...] | None:
    return tuple(s.strip() for s in (raw or "").split(",") if s.strip()) or None


class DeltaSource(Protocol):
    """A resource kind that can be tracked with delta."""

    odata_type: str
    context: str  # "$metadata#Collection(message)"

    def snapshot(self, mailbox: Mailbox, query: DeltaQuery) -> list[str]:
        """Keys of the items a first round returns."""

    def changes(self, mailbox: Mailbox, query: DeltaQuery, since: int) -> list[str]:
        """Keys changed (created, updated, removed) after sequence `since`."""

    def render(
        self, mailbox: Mailbox, query: DeltaQuery, key: str, request: Request, initial: bool
    ) -> dict[str, Any] | None:
        """The JSON for `key` in a page: full selected item, `@removed` tombstone, or None to skip."""


class CollectionDelta:
    """A `DeltaSource` over one `Collection`: snapshot, change log and rendering, overridable piecewise.

    Subclasses set `odata_type` and `context`, and override `collection`, `item_json` or
    `removed_json` where their resource differs (folders have live counts, To Do has no changeKey...).
    """

    odata_type: str | None = None
    context = ""

    def collection(self, mb: Mailbox, query: DeltaQuery) -> Collection:
        """The container this query tracks."""
        return mb.collection(query.container)

    def snapshot(self, mb: Mailbox, query: DeltaQuery) -> list[str]:
        """Every current item."""
        return list(self.collection(mb, query).items)

    def changes(self, mb: Mailbox, query: DeltaQuery, since: int) -> list[str]:
        """Everything changed after `since`."""
        return self.collection(mb, query).changed_since(since)

    def item_json(self, mb: Mailbox, query: DeltaQuery, item: Item, request: Request) -> dict[str, Any]:
        """A live item as the page shows it."""
        return render(item, self.odata_type, query.select, request.prefer.immutable_id)

    def removed_json(self, tomb: Tombstone, request: Request) -> dict[str, Any]:
        """A tombstone as the page shows it."""
        return removed(tomb, self.odata_type, request.prefer.immutable_id)

    def render(self, mb: Mailbox, query: DeltaQuery, key: str, request: Request, initial: bool) -> dict[str, Any] | None:
        """Full item, `@removed` tombstone, or None (gone before a first round reached it)."""
        coll = self.collection(mb, query)
        item = coll.items.get(key)
        if item is not None:
            return self.item_json(mb, query, item, request)
        tomb = coll.tombstones.get(key)
        if tomb is None or initial:
            return None
        return self.removed_json(tomb, request)


@dataclass(slots=True)
class Round:
    """One delta round in progress."""

    gen: int
    query: DeltaQuery
    base_seq: int | None  # None for a first (snapshot) round
    end_seq: int
    entries: list[str]
    delta_gen: int | None = None


@dataclass(slots=True)
class DeltaSettings:
    """Scenario-tunable delta behaviour."""

    ring_size: int = 256  # generations kept per mailbox before the oldest is evicted
    expired_code: str = "SyncStateNotFound"  # or SyncStateInvalid / resyncRequired
    expired_location: bool = False  # send Location with the restart URL on 410
    replays: int = 0  # repeat this many items of each round at its end (Graph may replay)


@dataclass(slots=True)
class _Checkpoint:
    query: DeltaQuery
    seq: int


class SyncStates:
    """Holds every live round and deltaLink, bounded per mailbox."""

    def __init__(self, settings: DeltaSettings | None = None, secret: bytes = b"emulator") -> None:
        self.settings = settings or DeltaSettings()
        self._secret = secret
        self._gen = itertools.count(1)
        self._rounds: dict[int, Round] = {}
        self._checkpoints: dict[int, _Checkpoint] = {}
        self._ring: dict[str, deque[int]] = {}
        self._evicted: OrderedDict[int, str] = OrderedDict()  # gen -> path, for the 410's Location
        self.highest: dict[str, int] = {}

    # tokens ---------------------------------------------------------------------------------
    def token(self, gen: int, offset: int = 0) -> str:
        """An opaque token naming a generation and a page offset, signed so edits are detected."""
        raw = struct.pack(">QI", gen, offset)
        mac = hmac.new(self._secret, raw, hashlib.sha256).digest()[:10]
        return b64url(b"\x01" + raw + mac)

    def parse(self, token: str, param: str) -> tuple[int, int]:
        """(generation, offset) of a token; 400 when it is not one of ours."""
        import base64

        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body, mac = raw[1:13], raw[13:]
            ok = raw[:1] == b"\x01" and hmac.compare_digest(
                mac, hmac.new(self._secret, body, hashlib.sha256).digest()[:10]
            )
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise GraphError(400, "InvalidDeltaToken", f"The value '{token}' of parameter '{param}' is invalid.")
        gen, offset = struct.unpack(">QI", body)
        return gen, offset

    # generations ----------------------------------------------------------------------------
    def _admit(self, mailbox_id: str, gen: int) -> None:
        ring = self._ring.setdefault(mailbox_id, deque())
        ring.append(gen)
        self.highest[mailbox_id] = gen
        while len(ring) > self.settings.ring_size:
            self._drop(ring.popleft())

    def _drop(self, gen: int) -> None:
        rnd = self._rounds.pop(gen, None)
        cp = self._checkpoints.pop(gen, None)
        query = rnd.query if rnd else cp.query if cp else None
        if query is not None:
            self._evicted[gen] = query.path
            if len(self._evicted) > 100_000:
                self._evicted.popitem(last=False)

    def evict(self, mailbox_id: str) -> int:
        """Forget every generation of a mailbox (as Outlook's token cache may); returns how many."""
        ring = self._ring.pop(mailbox_id, deque())
        for gen in ring:
            self._drop(gen)
        return len(ring)

    def gone(self, mailbox_id: str, gen: int, request: Request, query_path: str | None) -> GraphError:
        """The 410 an evicted or unknown generation gets."""
        ring = self._ring.get(mailbox_id, deque())
        hi = self.highest.get(mailbox_id, gen)
        recent = "".join(f"[{g}]" for g in list(ring)[-3:])
        code = self.settings.expired_code
        if code == "resyncRequired":
            msg = "The delta token is no longer valid, and the app must reset the sync state."
        else:
            msg = f"The sync state generation is not found; generation={gen};[highest={hi}]{recent}."
        headers = {}
        if self.settings.expired_location and query_path:
            headers["Location"] = f"{request.graph_base}{query_path}?$deltatoken="
        return GraphError(410, code, msg, headers=headers)

    def start(self, source: DeltaSource, mailbox: Mailbox, query: DeltaQuery, base_seq: int | None) -> Round:
        """Begin a round: fix its entries now, page them later."""
        if base_seq is None:
            entries = source.snapshot(mailbox, query)
        else:
            entries = source.changes(mailbox, query, base_seq)
        if self.settings.replays and entries:
            entries = entries + entries[: self.settings.replays]
        rnd = Round(next(self._gen), query, base_seq, mailbox.seq, entries)
        self._rounds[rnd.gen] = rnd
        self._admit(query.mailbox_id, rnd.gen)
        return rnd

    # serving --------------------------------------------------------------------------------
    def serve(
        self,
        request: Request,
        mailbox: Mailbox,
        source: DeltaSource,
        make_query: Callable[[], DeltaQuery],
    ) -> Response:
        """Answer a delta request: a first call, a nextLink ($skiptoken) or a deltaLink ($deltatoken)."""
        skip = request.query.get("$skiptoken")
        delta = request.query.get("$deltatoken")
        if skip:
            gen, offset = self.parse(skip, "$skipToken")
            rnd = self._rounds.get(gen)
            if rnd is None or rnd.query.mailbox_id != mailbox.id:
                raise self.gone(mailbox.id, gen, request, self._evicted.get(gen))
        elif delta:
            gen, _ = self.parse(delta, "$deltaToken")
            cp = self._checkpoints.get(gen)
            if cp is None or cp.query.mailbox_id != mailbox.id:
                raise self.gone(mailbox.id, gen, request, cp.query.path if cp else self._evicted.get(gen))
            rnd = self.start(source, mailbox, cp.query, cp.seq)
            offset = 0
        else:
            rnd = self.start(source, mailbox, make_query(), None)
            offset = 0
        return self._page(request, mailbox, source, rnd, offset)

    def _page(self, request: Request, mailbox: Mailbox, source: DeltaSource, rnd: Round, offset: int) -> Response:
        query = rnd.query
        size = request.prefer.maxpagesize or query.page_size or DEFAULT_PAGE_SIZE
        size = max(1, min(size, MAX_PAGE_SIZE))
        end = offset + size
        initial = rnd.base_seq is None
        values = []
        for key in rnd.entries[offset:end]:
            v = source.render(mailbox, query, key, request, initial)
            if v is not None:
                values.append(v)
        body: dict[str, Any] = {"@odata.context": f"{request.graph_base}/{source.context}"}
        if end < len(rnd.entries):
            body["@odata.nextLink"] = f"{request.graph_base}{query.path}?$skiptoken={self.token(rnd.gen, end)}"
        else:
            if rnd.delta_gen is None:
                rnd.delta_gen = next(self._gen)
                self._checkpoints[rnd.delta_gen] = _Checkpoint(query, rnd.end_seq)
                self._admit(query.mailbox_id, rnd.delta_gen)
            body["@odata.deltaLink"] = f"{request.graph_base}{query.path}?$deltatoken={self.token(rnd.delta_gen)}"
        body["value"] = values
        headers = {}
        applied = []
        if request.prefer.maxpagesize:
            applied.append(f"odata.maxpagesize={size}")
        if request.prefer.immutable_id:
            applied.append('IdType="ImmutableId"')
        if applied:
            headers["Preference-Applied"] = ", ".join(applied)
        return Response(200, orjson.dumps(body), headers)


def reject_options(request: Request, allowed: set[str], resource: str) -> None:
    """400 for query options Graph does not accept on this delta function."""
    for key in request.query:
        if key.startswith("$") and key not in allowed and key not in ("$skiptoken", "$deltatoken"):
            if key == "$search":
                raise bad_request(f"The query parameter '$search' is not supported with change tracking over the '{resource}' resource.", "ErrorInvalidUrlQuery")
            raise bad_request(f"The query parameter '{key}' is not supported with change tracking over the '{resource}' resource.", "ErrorInvalidUrlQuery")


def select_fields(request: Request) -> tuple[str, ...] | None:
    """The $select list, or None when absent."""
    raw = request.query.get("$select")
    if not raw:
        return None
    return tuple(s.strip() for s in raw.split(",") if s.strip())


