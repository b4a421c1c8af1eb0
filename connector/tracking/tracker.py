"""The email tracker: server-side sync's tracking, correlation and party resolution rules, explained per message.

The sync engine calls `Tracker.evaluate` for every mapped message of a mail container, inside the
page's transaction. The tracker decides whether the message is tracked (and why), correlates it with
earlier tracked mail, resolves its parties, sets the regarding record, and writes one decision row
(`tracking_decision`) in the same transaction. Rules, in the order they apply:

1. Evaluated folders (`EVALUATED_FOLDERS`): the Inbox and every synced folder under it (mail an inbox
   rule or the user moved there before a sync is still evaluated, because delta sees it where it
   landed), tracked folders, and Sent Items when `sent_items` is on. Anything else is only tracked
   through the category.
2. The tracking category tracks the message whatever the filter says; removing it untracks (the
   record stays).
3. Automatic replies are skipped (`ignore_auto_replies`).
4. A tracked folder tracks the message and its regarding record wins.
5. A message tracked earlier stays tracked.
6. Otherwise the To/Cc recipients are resolved to users and queues, and the message is tracked when
   any of their `track` options accepts it (Bcc and distribution-list copies: only `all`).

A new email's owner follows server-side-sync.md §2.13 (`_email_owner`). Messages a later event bears on
are decided again after their mailbox and, to a fixed point, at the end of the run (`after_mailbox`,
`end_run`): a parent tracked later (each message waits, in memory, on the values a better match would
have, and writing such an email marks it late; tracked replies are re-linked from their thread keys,
the rest evaluated again) or a contact created later for one of their parties. So the outcome does not
depend on the order pages, folders and mailboxes sync in.

Calendar events and To Do tasks (`tracking.events`, `tracking.tasks`): with `all` (the default) every
synced one is written as mapped and no decision is recorded; with `category` only those carrying the
mailbox's tracking category are written, each evaluated one gets a decision row (`messageid` = the
event's iCalUId, `folder` = the calendar or list), and one that loses the category is untracked: its
record is kept and unlinked, so neither later changes nor a delete in Outlook nor a full-round
reconciliation touch it (server-side-sync.md §2.8). Contacts are never category-tracked.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson

from ..graph.client import Page
from ..mapping import MappingContext, RecordInvalid
from ..mapping.keys import sibling_uuid5, uuid5_str
from ..mapping.records import PartyRef, Record
from ..settings import TRACK_OPTION_VALUE, RegardingRef, Settings
from ..store.schema import DECISION_UPSERT, decision_key, resolution_id
from ..store.sqlite import SqliteStore
from ..sync.hooks import MailHook
from ..sync.resources import Container
from . import signals
from .parties import CUSTOMER_TABLES, LOOKED_UP, MailboxEntity, PartyIndex, Resolution, address_indexes
from .tokens import TokenFormat

log = logging.getLogger("connector.tracking")

EVALUATED_FOLDERS = ("Inbox", "every synced folder under the Inbox", "tracked folders", "Sent Items (when sent_items is on)")
"""Where mail is evaluated automatically; other folders are tracked only through the category."""

# correlationmethod option values (dataverse.md: email.correlationmethod)
NONE, SKIPPED, IN_REPLY_TO, TOKEN, CONVERSATION_INDEX, SMART = 0, 1, 3, 4, 5, 6
METHOD_NAME = {0: "None", 1: "Skipped", 2: "XHeader", 3: "InReplyTo", 4: "TrackingToken", 5: "ConversationIndex", 6: "SmartMatching", 7: "CustomCorrelation"}

PARTY_NAMESPACE = uuid.UUID("5d8f0c1e-2b3a-4e9d-8f7a-6c5b4a392817")
_PARTY_NS = PARTY_NAMESPACE.bytes
MAILBOX_NAMESPACE = uuid.UUID("9e2d4c6b-8a1f-4b3e-9d7c-5a6b4c3d2e1f")
CONTACT_NAMESPACE = uuid.UUID("3a9b8c7d-6e5f-4a1b-9c2d-8e7f6a5b4c3d")
RECEIVED_SUFFIX = "|received"  # key suffix of the received copy of internal mail (two activities)
MASKS = {1: "from", 2: "to", 3: "cc", 4: "bcc"}


_CLOCK: list[Any] = [-1, ""]


def _now() -> str:
    """UTC now as `YYYY-MM-DDTHH:MM:SSZ` (formatted once per second, not once per message)."""
    t = int(time.time())
    if t != _CLOCK[0]:
        _CLOCK[1] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        _CLOCK[0] = t
    return _CLOCK[1]


_KEY_CONTEXT = MappingContext(mailbox="", folder="")  # for computing an email's key from its Message-ID alone
_BATCH = 20  # messages per JSON batch when re-fetching (Graph's limit)
_REEVALUATE_CHUNK = 1000  # late messages evaluated again per transaction
_NO_DATE = "\uffff"  # sorts after every senton: a message without one can be matched by any
_MAX_PASSES = 10  # end_run's late re-check passes (each must change something to need the next)
LATE_THREAD = "the rest of its thread synced"
LATE_CONTACT = "a contact was created for one of its parties"
_SEEN_CAP = 5_000  # per mailbox: untracked messages of this run kept for the late re-check (instead of fetching them again)
_GID_SLOT = "GraphMessageIdSlot7f3a"  # stands for the message id in the cached message URL
def _ENCODE(value: Any) -> str:  # noqa: N802 - compact JSON text (orjson: several times faster than json on this hot path)
    return orjson.dumps(value).decode()
_NEW_ROW = 1 << 62  # rowid order of emails a page inserts: after every stored row, in the order they are written
_PRELOAD_CAP = 2  # stored emails loaded per correlation value up front; a value with more is read on in SQL when needed
_ROW_COLS = "rowid, activityid, regardingobjectid, regardingobjecttypecode, subject, messageid, trackingtoken, senton, " \
            "baseconversationindexhash, conversationtrackingid, directioncode, acceptingentityid, sender, ownerid"
# email column -> _Row attribute, for the columns correlation and the acceptance rules read
_ROW_ATTR = (("regardingobjectid", "regid"), ("regardingobjecttypecode", "regtype"), ("subject", "subject"), ("messageid", "messageid"),
             ("trackingtoken", "token"), ("senton", "senton"), ("baseconversationindexhash", "chash"), ("conversationtrackingid", "cid"),
             ("directioncode", "direction"), ("acceptingentityid", "accepting"), ("sender", "sender"), ("ownerid", "owner"))
_DIM_ATTR = {"messageid": "messageid", "trackingtoken": "token", "baseconversationindexhash": "chash", "conversationtrackingid": "cid"}
# conversationtrackingid is indexed by its first 8 hex digits (32 bits): a third of the whole GUID's index, and every page
# inserts into it at random. A lookup reads the rows of the prefix and keeps those of the whole value. (Never also write
# `conversationtrackingid = ?` in such a query: SQLite's constant propagation then rewrites the indexed expression and
# walks the whole index.)
_CID_PREFIX = "substr(conversationtrackingid, 1, 8)"
_INDEXED = {"conversationtrackingid": (_CID_PREFIX, 8)}  # column -> (the indexed expression, the prefix length it keeps)
_SENT_ORDER = "CAST(strftime('%s', senton) AS INTEGER)"  # senton's order (emails store it as YYYY-MM-DDTHH:MM:SSZ), as a narrow integer
# columns evaluate may add to an email beyond the mapped ones: a new email gets all of them (None = not set), in this order, so a
# page's new emails share one column list and the engine's batch inserts them in the order they were evaluated
_EXTRA_EMAIL_COLS = ("baseconversationindexhash", "conversationtrackingid", "regardingobjectid", "regardingobjecttypecode", "correlationmethod",
                     "correlatedactivityid", "parentactivityid", "correlatedsubjectchanged", "trackingtoken", "acceptingentityid", "receivingmailboxid",
                     "ownerid", "owneridtype")


def _rank(row: _Row) -> str:
    """The order token and conversation correlation choose in: the earliest sent email (then the lowest activityid), as
    the store's indexes on (value, senton) list them (no senton first). Never the first one stored: that depends on the
    order mailboxes and folders synced in."""
    return f"{row.senton or ''}\x1f{row.activityid}"


def _eligible(row: _Row, strict: tuple[str, str, str], not_thread: int | None) -> bool:
    """`row` may be a token or conversation match for the message `strict` = (its key, its Message-ID, its senton): another
    message, sent no later, [and not sharing the thread hash `not_thread`]."""
    key, own, sent = strict
    return row.activityid != key and (row.messageid is None or row.messageid != own) and (row.senton is None or row.senton <= sent) \
        and (not_thread is None or row.chash != not_thread)


def _no_waiters() -> tuple[dict[Any, tuple[str, tuple[tuple[str, int], ...]]], ...]:
    """`Tracker._waiting` empty: one dict per kind of value (m, t, h, o, c)."""
    return {}, {}, {}, {}, {}


def _enqueue(waiting: dict[Any, tuple[str, tuple[tuple[str, int], ...]]], value: Any, pk: tuple[str, int], sent: str) -> None:
    """Add waiter `pk` on `value`, keeping the latest senton among the value's waiters (`Tracker._satisfy` skips on it)."""
    got = waiting.get(value)
    waiting[value] = (max(got[0], sent), got[1] + (pk,)) if got else (sent, (pk,))


def parties_of(query: Any, texts: list[str | None]) -> list[list[dict[str, Any]]]:
    """Decision rows' `parties` as lists of resolutions (role, address, resolved, why): ids are read from
    `tracking_resolution` (`query(sql, args) -> rows`), JSON written by earlier versions is taken as it is."""
    lists = [orjson.loads(t) if t else [] for t in texts]
    ids = list({p for lst in lists for p in lst if isinstance(p, int)})
    found: dict[int, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        found.update((rid, orjson.loads(party)) for rid, party in query(f"SELECT id, party FROM tracking_resolution WHERE id IN ({','.join('?' * len(chunk))})", chunk))
    return [[found.get(p, {"role": "?", "address": None, "resolved": [], "why": "resolution not stored"}) if isinstance(p, int) else p for p in lst]
            for lst in lists]


def received_key(email_key: str) -> str:
    """The key of the received copy of internal mail (two activities), from the sent copy's."""
    return uuid5_str(_PARTY_NS, email_key + RECEIVED_SUFFIX)


async def _done(value: Any) -> Any:
    return value


@lru_cache(maxsize=4096)
def mailbox_record_id(address: str) -> str:
    """The `receivingmailboxid` of a mailbox: a stable GUID of its address."""
    return str(uuid.uuid5(MAILBOX_NAMESPACE, address.lower()))


@dataclass(slots=True)
class FolderRule:
    """A tracked folder bound to its folder id."""

    folder_id: str
    path: str
    regarding: PartyRef | None
    regarding_error: str | None = None
    active: bool = True


@dataclass(slots=True)
class _MailboxState:
    address: str
    inbox_label: str = "Inbox"
    rules: dict[str, FolderRule] = field(default_factory=dict)  # folder id -> rule
    places: dict[str, tuple[str, FolderRule | None]] = field(default_factory=dict)  # container id -> (place, rule)
    containers: dict[str, Container] = field(default_factory=dict)
    owner_id: str | None = None
    owner_loaded: bool = False
    config: Any = None  # (MailboxSettings, sent_items, category name, category lower-case), read once
    key: str = ""  # the address, lower-case


@dataclass(slots=True)
class Correlation:
    """What correlation found: the method, the matched email and its regarding record."""

    method: int = NONE
    activityid: str | None = None
    regarding: PartyRef | None = None
    subject: str | None = None
    detail: str = ""
    value: Any = None  # what matched: the header message id, or "hash" / "cid" for the conversation
    received: str | None = None  # the Message-ID, when the match is the received copy of internal mail (its sent copy may come later)
    owner: str | None = None  # the matched email's owner
    rank: str | None = None  # a token or conversation match's `_rank`: an eligible email ranking before it is a better match


class _Row:
    """An email as correlation sees it: stored, or as the current page writes it (`order` = rowid order)."""

    __slots__ = ("order", "activityid", "regid", "regtype", "subject", "messageid", "token", "senton", "chash", "cid", "direction", "accepting",
                 "sender", "owner")

    def __init__(self, order: int, activityid: str, regid: Any = None, regtype: Any = None, subject: Any = None, messageid: Any = None,
                 token: Any = None, senton: Any = None, chash: Any = None, cid: Any = None, direction: Any = None, accepting: Any = None,
                 sender: Any = None, owner: Any = None) -> None:
        self.order, self.activityid, self.regid, self.regtype, self.subject, self.messageid = order, activityid, regid, regtype, subject, messageid
        self.token, self.senton, self.chash, self.cid, self.direction, self.accepting = token, senton, chash, cid, direction, accepting
        self.sender, self.owner = sender, owner

    def copy(self) -> _Row:
        return _Row(self.order, self.activityid, self.regid, self.regtype, self.subject, self.messageid, self.token, self.senton, self.chash,
                    self.cid, self.direction, self.accepting, self.sender, self.owner)

    def as_match(self) -> tuple[Any, ...]:
        return (self.activityid, self.regid, self.regtype, self.subject, self.owner)


class _Sig(NamedTuple):
    """What evaluate reads from one message's headers and thread properties (computed once)."""

    reply_ids: tuple[str, ...]  # In-Reply-To, then References from the nearest ancestor back
    chash: int | None
    cid: str | None
    token: str | None
    auto: str | None  # why it is an automatic reply (None: it is not, or they are not skipped)
    root: bool = False  # it starts its thread (`signals.thread_header`): the thread hash finds none of its ancestors


class _PartySet(NamedTuple):
    """What one message's (role, address) pairs resolve to (from resolutions cached per address)."""

    resolutions: dict[tuple[int, str], Resolution]  # (participationtypemask, address) -> resolution
    json: str  # the decision row's `parties`: the resolutions' ids (`tracking_resolution`), as a JSON array
    frags: tuple[tuple[int, str], ...]  # (id, JSON) of each resolution, written with the decision
    sender: str | None  # the from address, as the mapping normalised it
    sender_res: Resolution | None
    internal: bool  # the sender is a user or queue of the tenant
    users: tuple[str, ...]  # systemuser ids of the To, then Cc, then Bcc recipients (the email owner's candidates)
    recipients: tuple[MailboxEntity, ...]  # the To and Cc users and queues, in order, one per mailbox (acceptance)


class _Thread(NamedTuple):
    """What a later write needs to tell that a message now has a better match than it found (`Tracker._thread_keys`)."""

    ids: tuple[str, ...]  # header message ids ranked before the one matched (all of them when none matched)
    h: int | None  # the thread hash, when a hash match would rank before the method used
    t: str | None  # the token, likewise
    o: str | None  # the Message-ID of the received copy of internal mail it matched (its sent copy would be better)
    s: str | None  # its senton
    m: str | None  # its own Message-ID
    activityid: str | None  # its email, when tracked
    c: str | None = None  # its conversationtrackingid, when a Graph conversationId match would rank before the method used
    k: str | None = None  # which of t / h / c it matched on, when one did ...
    r: str | None = None  # ... and that match's `_rank`: only an email ranking before it is a better match on the same value


class _Page:
    """One page's view of the store for evaluate: stored rows loaded in a few queries, plus what the page writes itself.

    The engine writes the page's records in one batch after every `evaluate`; emails tracked earlier in the page are
    seen here (`written`, `parties`) exactly as the store would show them, rowid order included.
    """

    __slots__ = ("tx", "prev", "dkeys", "stored", "capped", "written", "windex", "parties", "seq", "sigs", "emails")

    def __init__(self, tx: Any) -> None:
        self.tx = tx
        self.prev: dict[tuple[str, str], tuple[Any, ...] | None] = {}  # (mailbox, graph id) -> earlier decision (None: none)
        self.dkeys: dict[tuple[str, str], int] = {}  # (mailbox, graph id) -> its decision_key
        self.stored: dict[str, dict[Any, list[_Row]]] = {d: {} for d in _DIM_ATTR}  # column -> value -> stored rows (`_load_rows`)
        self.capped: dict[str, dict[Any, str]] = {d: {} for d in _DIM_ATTR}  # value -> the senton of the last row loaded, when more follow
        self.written: dict[str, _Row] = {}  # emails this page writes, by activityid (their values once written)
        self.windex: dict[str, dict[Any, list[str]]] = {d: {} for d in _DIM_ATTR}  # column -> value -> activityids written with it
        self.parties: dict[str, list[Record]] = {}  # activityid -> the records written with it (its activityparty rows)
        self.seq = 0
        self.sigs: dict[tuple[str, str], _Sig] = {}  # (mailbox, graph id) -> its signals
        self.emails: dict[str, _Row | None] = {}  # activityid -> the stored email (None: none), loaded up front


class Tracker(MailHook):
    """The `MailHook` implementing email tracking. Build it with `Tracker.from_settings(settings, store)`."""

    reads_store = False  # emails tracked earlier in the page are kept in memory (`_Page`), so the engine writes the page in one batch

    def __init__(self, settings: Settings, store: SqliteStore, *, mappings: Any = None) -> None:
        self.settings = settings
        self.cfg = settings.tracking
        self.store = store
        self.mappings = mappings
        self.tokens = TokenFormat.from_settings(self.cfg.token)
        self.graph_users: list[dict[str, Any]] = []
        self._index: PartyIndex | None = None
        self._mailboxes: dict[str, _MailboxState] = {}
        self._run_started = _now()
        self._failed_now: set[tuple[str, str]] = set()
        # mailbox -> graph id -> (message as synced in this run, its container): late re-check candidates, most recent last
        self._seen: dict[str, OrderedDict[str, tuple[dict[str, Any], Container]]] = {}
        # A message whose thread may get a better match later in the run (its parent, or a closer ancestor, not tracked yet)
        # waits on the values that match would have: per kind, value -> (mailbox, decision key) pairs, kinds m (a header message id),
        # t (token), h (thread hash) and o (the sent copy of internal mail). Writing an email with such a value marks the
        # waiters it satisfies `late`, for the late re-check.
        # (mailbox, decision key) -> its _Thread as a plain tuple: a large run keeps one per message, so neither the ~150-character
        # Graph id (looked up for late ones only, `_late_matches`) nor an object the garbage collector keeps tracking
        self._threads: dict[tuple[str, int], tuple[Any, ...]] = {}
        # by kind (m, t, h, o, c): value -> (the latest senton among its waiters, used for t, h and c; the waiters)
        self._waiting = _no_waiters()
        self._late: dict[str, dict[int, str]] = {}  # mailbox -> decision key -> why it is decided again
        self._created: set[str] = set()  # addresses given a contact in this run (auto_create_contacts)
        self._received_keys: set[str] = set()  # received copies of internal mail written in this run (two activities)
        self._rechecked: dict[str, tuple[str, str, int]] = {}  # mailbox -> (address, user id, contacts created when it was last re-checked)
        self._pending: list[tuple[Any, ...]] = []  # decision rows of the page, written by page_done
        self._pending_frags: dict[int, str] = {}  # tracking_resolution rows the page's decisions list
        self._pending_tx: Any = None
        self._queue_filter: dict[str, str] | None = None
        self._has = {t: store.columns(t) if t in store.tables else set() for t in ("email", "activityparty", "contact")}
        self._cat = self.cfg.category.lower()
        self._page: _Page | None = None
        self._res_cache: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # (mask, address[, owner]) -> what `_resolve` returns
        self._res_index: PartyIndex | None = None  # the index the cache was filled from
        self._options: dict[tuple[str, str, str | None], str] = {}
        self._cids: dict[str, str | None] = {}
        self._topics: dict[str, str] = {}
        self._mid_keys: dict[str, tuple[str, str]] = {}  # Message-ID -> (its email's key, the received copy's key)
        self._canon: tuple[tuple[str, ...], dict[str, None]] | None = None  # (column names, a template of them all set to None)
        self._message_url: tuple[str, str] | None = None
        self._email_mapping: Any = None
        self._has_owner = {"ownerid", "owneridtype"} <= self._has["email"]
        self._record_owners: dict[tuple[str, PartyRef], str | None] = {}
        with store.transaction() as tx:
            # each value's emails in the order `_first` chooses in (`_rank`): the earliest sent first, by senton in whole
            # seconds (an integer: a third of the text's width in the index, which every page inserts into at random)
            for name, table, cols in (
                ("ix_tracking_email_token_by_sent", "email", f"trackingtoken, {_SENT_ORDER}) WHERE (trackingtoken IS NOT NULL"),
                ("ix_tracking_email_convhash_by_sent", "email", f"baseconversationindexhash, {_SENT_ORDER}"),
                ("ix_tracking_email_convid8_by_sent", "email", f"{_CID_PREFIX}, {_SENT_ORDER}"),
            ):
                if table in store.tables:
                    tx.execute(f'CREATE INDEX IF NOT EXISTS {name} ON "{table}" ({cols})')
            for old in ("token", "convhash", "convid8", "token_sent", "convhash_sent", "convid8_sent"):  # (rowid order, or senton as text)
                tx.execute(f"DROP INDEX IF EXISTS ix_tracking_email_{old}")
            # activityparty(activityid) is indexed by the store (ix_activityparty_activityid); a second copy only slows every write
            tx.execute("DROP INDEX IF EXISTS ix_tracking_party_activity")
            # emails are found by Message-ID through their keys (`_load_messageids`), not through a messageid index
            tx.execute("DROP INDEX IF EXISTS ix_tracking_email_messageid")
            tx.execute("DROP INDEX IF EXISTS ix_tracking_email_convid")  # the whole GUID: replaced by ix_tracking_email_convid8
            # contacts, accounts and leads are read per address (`PartyIndex`), through these
            for name, table, expr in address_indexes({t: store.columns(t) for t in LOOKED_UP if t in store.tables}):
                tx.execute(f'CREATE INDEX IF NOT EXISTS {name} ON "{table}" ({expr})')

    @classmethod
    def from_settings(cls, settings: Settings, store: SqliteStore, mappings: Any = None) -> Tracker:
        """The tracker for these settings (the engine passes its store and mapping set)."""
        return cls(settings, store, mappings=mappings)

    # run lifecycle ----------------------------------------------------------------------------
    async def begin_run(self, client: Any) -> None:
        """Load the tenant's users with their proxy addresses (aliases), once per run; reset per-run caches."""
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        from ..sync.resources import request_config

        self._run_started = _now()
        users: list[dict[str, Any]] = []
        request = client.sdk.users.to_get_request_information(
            request_config([], _params=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters, select=["id", "mail", "userPrincipalName", "proxyAddresses"], top=999))
        while True:
            page = (await client.get(request)).data
            users.extend(page.get("value") or [])
            if not page.get("@odata.nextLink"):
                break
            request = client.url_request(page["@odata.nextLink"])
        self.graph_users = users
        self._index = None
        self._queue_filter = None
        self._mailboxes = {}
        self._res_cache, self._res_index, self._options, self._record_owners = {}, None, {}, {}
        self._seen = {}
        self._threads, self._waiting, self._late, self._created, self._received_keys, self._rechecked = {}, _no_waiters(), {}, set(), set(), {}

    @property
    def index(self) -> PartyIndex:
        """The party index (built on first use in a run)."""
        if self._index is None:
            self._index = PartyIndex.load(self.store.query, {t: self.store.columns(t) for t in self.store.tables}, self.graph_users)
        return self._index

    def _state(self, mailbox: str) -> _MailboxState:
        st = self._mailboxes.get(mailbox.lower())
        if st is None:
            st = self._mailboxes[mailbox.lower()] = _MailboxState(mailbox, key=mailbox.lower())
            st.rules = self._load_rules(mailbox)
        return st

    # folders ----------------------------------------------------------------------------------
    def pinned_folders(self, mailbox: str) -> set[str]:
        """Folder ids of active tracked-folder rules: discovery syncs them even after a rename."""
        rows = self.store.query("SELECT folder_id FROM tracking_folder WHERE mailbox = ? AND status = 'active'", (mailbox.lower(),))
        return {r[0] for r in rows}

    def _load_rules(self, mailbox: str) -> dict[str, FolderRule]:
        wanted = {f.key for f in self.settings.mailbox(mailbox).tracked_folders}
        out: dict[str, FolderRule] = {}
        for fid, path, rt, rid, status in self.store.query(
                "SELECT folder_id, rule_path, regarding_table, regarding_id, status FROM tracking_folder WHERE mailbox = ?", (mailbox.lower(),)):
            if path in wanted:
                out[fid] = FolderRule(fid, path, PartyRef(rt, rid) if rt and rid else None, active=status == "active")
        return out

    def discovered(self, mailbox: str, containers: list[Container]) -> None:
        """Bind tracked-folder rules to folder ids, follow renames and moves, raise alerts (after mail discovery)."""
        st = self._state(mailbox)
        st.places.clear()
        st.containers = {c.container: c for c in containers}
        inbox = next((c for c in containers if c.folder == "inbox"), None)
        if inbox is not None:
            st.inbox_label = inbox.label
        rules = {f.key: f for f in self.settings.mailbox(mailbox).tracked_folders}
        mb = mailbox.lower()
        bound = {row[1]: row for row in self.store.query(
            "SELECT folder_id, rule_path, status FROM tracking_folder WHERE mailbox = ?", (mb,))}
        by_rel = {self._relative(st, c.label): c for c in containers}
        new_rules: dict[str, FolderRule] = {}
        with self.store.transaction() as tx:
            for path in set(bound) - set(rules):
                tx.execute("DELETE FROM tracking_folder WHERE mailbox = ? AND rule_path = ?", (mb, path))  # rule removed from config
            for key, spec in rules.items():
                row = bound.get(key)
                ref, err = self._regarding(spec.regarding)
                if err:
                    self._alert(tx, mailbox, 2, "FolderRegardingNotFound", f"tracked folder {spec.path}: {err}")
                if row is None:
                    c = by_rel.get(key)
                    if c is None or any(r[0] == c.container for r in bound.values()):
                        self._alert(tx, mailbox, 2, "TrackedFolderNotFound", f"tracked folder {spec.path} does not exist under the Inbox")
                        continue
                    tx.execute("INSERT INTO tracking_folder (mailbox, folder_id, rule_path, current_path, regarding_table, regarding_id, status, updated_at) "
                               "VALUES (?, ?, ?, ?, ?, ?, 'active', ?)",
                               (mb, c.container, key, c.label, ref.table if ref else None, ref.id if ref else None, _now()))
                    new_rules[c.container] = FolderRule(c.container, key, ref, err)
                    continue
                fid, _, status = row
                c = st.containers.get(fid)
                if c is None:
                    if status != "missing":
                        self._alert(tx, mailbox, 3, "TrackedFolderDeleted", f"tracked folder {spec.path} was deleted; its rule is disabled")
                    status = "missing"
                elif not self._relative(st, c.label).startswith("inbox/"):
                    if status == "active":
                        self._alert(tx, mailbox, 3, "TrackedFolderMovedOutsideInbox",
                                    f"tracked folder {spec.path} was moved outside the Inbox (now {c.label}); its rule is disabled")
                    status = "disabled"
                else:
                    if status != "active":
                        self._alert(tx, mailbox, 1, "TrackedFolderEnabled", f"tracked folder {spec.path} is under the Inbox again ({c.label}); its rule is enabled")
                    status = "active"
                tx.execute("UPDATE tracking_folder SET current_path = ?, regarding_table = ?, regarding_id = ?, status = ?, updated_at = ? "
                           "WHERE mailbox = ? AND folder_id = ?",
                           (c.label if c else None, ref.table if ref else None, ref.id if ref else None, status, _now(), mb, fid))
                new_rules[fid] = FolderRule(fid, key, ref, err, active=status == "active")
        st.rules = new_rules

    @staticmethod
    def _relative(st: _MailboxState, label: str) -> str:
        low, inbox = label.lower(), st.inbox_label.lower()
        if low == inbox:
            return "inbox"
        if low.startswith(inbox + "/"):
            return "inbox/" + low[len(inbox) + 1:]
        return low

    def _regarding(self, ref: RegardingRef | None) -> tuple[PartyRef | None, str | None]:
        if ref is None:
            return None, None
        if ref.table not in self.store.tables:
            return None, f"unknown table {ref.table!r}"
        if ref.id:
            return PartyRef(ref.table, ref.id), None
        found: str | None = None
        for col, value in (ref.key or {}).items():
            hit = self.store.lookup(ref.table, col, value)
            if hit is None or (found is not None and hit != found):
                return None, f"no {ref.table} with {col} = {value!r}"
            found = hit
        return (PartyRef(ref.table, found), None) if found else (None, "empty key")

    def _place(self, st: _MailboxState, c: Container) -> tuple[str, FolderRule | None]:
        got = st.places.get(c.container)
        if got is not None:
            return got
        rule = st.rules.get(c.container)
        if rule is None and not st.rules and self.settings.mailbox(st.address).tracked_folders:
            # no discovery pass (direct use): match the rule by path
            rel = self._relative(st, c.label)
            spec = next((f for f in self.settings.mailbox(st.address).tracked_folders if f.key == rel), None)
            if spec is not None:
                ref, err = self._regarding(spec.regarding)
                rule = FolderRule(c.container, spec.key, ref, err)
        if rule is not None and rule.active:
            got = ("tracked", rule)
        elif c.folder == "inbox":
            got = ("inbox", None)
        elif c.folder == "sentitems":
            got = ("sentitems", None)
        elif self._relative(st, c.label).startswith("inbox/"):
            got = ("inbox", None)  # under the Inbox: where rules move mail before a sync
        else:
            got = ("other", None)
        st.places[c.container] = got
        return got

    def _owner(self, st: _MailboxState) -> str | None:
        if not st.owner_loaded:
            st.owner_id = self.index.user_of.get(st.address.lower())
            if st.owner_id is None:
                ent = self.index.mailbox(st.address)
                st.owner_id = ent.id if ent and ent.table == "systemuser" else None
            st.owner_loaded = True
        return st.owner_id

    # the page's view of the store ---------------------------------------------------------------
    def prepare_page(self, tx: Any, mailbox: str, container: Container, items: list[dict[str, Any]], keys: list[str] | None = None) -> None:
        """Load what the page's messages need in a few queries: earlier decisions, their stored emails (`keys`: the mapped
        records' keys) and the stored emails they may correlate with."""
        if container.resource != "mail":
            if self._item_mode(container) == "category":
                self._load_prev(self._page_of(tx), mailbox.lower(), [str(item.get("id")) for item in items])
            return
        page = self._page_of(tx)
        mb = mailbox.lower()
        gids = [str(item.get("id")) for item in items]
        self._load_prev(page, mb, gids)
        if keys:
            self._load_emails(page, keys)
        cc = self.cfg.correlation
        sigs = [self._sig(item) for item in items]
        page.sigs.update(zip([(mb, gid) for gid in gids], sigs))
        # Correlation tries headers, then the token, then the conversation, and stops at the first match: load each
        # method's rows only for the messages the methods before it will not match (whatever is skipped here and
        # turns out to be needed is read when it is).
        todo = sigs
        if cc.headers:
            here = {item.get("internetMessageId") for item in items}  # parents in this page match once written
            self._load_dim(page, "messageid", {v for sig in todo for v in sig.reply_ids})
            stored = page.stored["messageid"]
            todo = [sig for sig in todo if not any(stored.get(v) or v in here for v in sig.reply_ids)]
        if cc.token and self.tokens.enabled:
            self._load_dim(page, "trackingtoken", {sig.token for sig in todo if sig.token})
            stored = page.stored["trackingtoken"]
            todo = [sig for sig in todo if not (sig.token and stored.get(sig.token))]
        if cc.conversation:
            self._load_dim(page, "baseconversationindexhash", {sig.chash for sig in todo if sig.chash is not None and not sig.root})
            stored = page.stored["baseconversationindexhash"]
            self._load_dim(page, "conversationtrackingid", {sig.cid for sig in todo if sig.cid is not None and (sig.root or not stored.get(sig.chash))})

    def _load_dim(self, page: _Page, dim: str, values: set[Any]) -> None:
        stored = page.stored[dim]
        todo = [v for v in values if v not in stored]
        if todo:
            self._load_rows(page, dim, todo)

    def _page_of(self, tx: Any) -> _Page:
        """The view of the transaction `tx` (a new one: evaluate without prepare_page loads rows as needed)."""
        page = self._page
        if page is None or page.tx is not tx:
            page = self._page = _Page(tx)
        return page

    def _load_prev(self, page: _Page, mailbox: str, gids: list[str]) -> None:
        prev = page.prev
        for i in range(0, len(gids), 500):
            chunk = gids[i:i + 500]
            for gid in chunk:
                prev[(mailbox, gid)] = None
            keys = [decision_key(mailbox, gid) for gid in chunk]
            page.dkeys.update(zip([(mailbox, gid) for gid in chunk], keys))
            for mb, gid, *rest in page.tx.execute("SELECT mailbox, graph_id, tracked, tracked_by, reason, activityid FROM tracking_decision "
                                                  f"WHERE key IN ({','.join('?' * len(keys))})", keys):
                if mb == mailbox:  # (a different message with the same 64-bit key: as unlikely as it is harmless here)
                    prev[(mailbox, gid)] = tuple(rest)

    @staticmethod
    def _load_emails(page: _Page, keys: list[str]) -> None:
        emails = page.emails
        todo = [k for k in dict.fromkeys(keys) if k not in emails]
        for i in range(0, len(todo), 500):
            chunk = todo[i:i + 500]
            for k in chunk:
                emails[k] = None
            for r in page.tx.execute(f"SELECT {_ROW_COLS} FROM email WHERE activityid IN ({','.join('?' * len(chunk))})", chunk):
                emails[r[1]] = _Row(*r)

    def _load_messageids(self, page: _Page, mids: list[str]) -> None:
        """The stored emails of each Message-ID (rowid order), found by primary key: the key the email mapping gives that
        Message-ID, the received copy's derived from it, and the keys `tracking_email_alias` lists for it (imported emails,
        and emails stored before this lookup existed). No index on email(messageid) is kept: every page inserted into it
        at random, the widest index tracking wrote."""
        stored = page.stored["messageid"]
        keys: list[str] = []
        exact = self.mappings is None
        for mid in mids:
            stored[mid] = []
            got = self._keys_of(mid)
            if got is None:
                exact = True
            else:
                keys.extend(got)
        rows: dict[str, tuple[Any, ...]] = {}
        tx = page.tx
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows.update((r[1], r) for r in tx.execute(f"SELECT {_ROW_COLS} FROM email WHERE activityid IN ({','.join('?' * len(chunk))})", chunk))
        for i in range(0, len(mids), 500):
            chunk = mids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            if exact:  # no email mapping to compute keys with (the tracker used on its own): read them by value
                found = tx.execute(f"SELECT {_ROW_COLS} FROM email WHERE messageid IN ({marks})", chunk)
            else:
                found = tx.execute(f"SELECT {', '.join('e.' + c for c in _ROW_COLS.split(', '))} FROM tracking_email_alias a "
                                   f"JOIN email e ON e.activityid = a.activityid WHERE a.messageid IN ({marks})", chunk)
            rows.update((r[1], r) for r in found)
        for r in sorted(rows.values()):
            lst = stored.get(r[5])  # the row's messageid: a key's email is the Message-ID's only when its messageid says so
            if lst is not None:
                lst.append(_Row(*r))

    def _keys_of(self, mid: str) -> tuple[str, str] | None:
        """(the key the email mapping gives this Message-ID, the received copy's key), or None without a mapping."""
        got = self._mid_keys.get(mid)
        if got is None:
            base = self._email_key(mid)
            if base is None:
                return None
            if len(self._mid_keys) > 50_000:
                self._mid_keys.clear()
            got = self._mid_keys[mid] = (base, received_key(base))
        return got

    def _load_rows(self, page: _Page, dim: str, values: list[Any]) -> None:
        """The first `_PRELOAD_CAP` stored emails of each value of `dim`, in `_rank` order (senton, then rowid: `_first` breaks
        ties)."""
        if dim == "messageid":
            self._load_messageids(page, values)
            return
        stored, capped = page.stored[dim], page.capped[dim]
        tx = page.tx
        expr, cut = _INDEXED.get(dim, (dim, 0))
        attr = _DIM_ATTR[dim]
        for i in range(0, len(values), 500):
            chunk = values[i:i + 500]
            probes = list(dict.fromkeys(v[:cut] for v in chunk)) if cut else chunk  # what the index holds
            marks = ",".join("?" * len(probes))
            # Two steps: each value's rowids from the index alone (no table row is read), then the rows of only the first
            # `_PRELOAD_CAP` of them. Correlation nearly always takes a value's first eligible row, and reading an email's row
            # is the expensive part (its large columns spread rows over many pages).
            first: dict[Any, list[int]] = {p: [] for p in probes}
            more: set[Any] = set()
            for p, rid in tx.execute(f"SELECT {expr}, rowid FROM email WHERE {expr} IN ({marks}) ORDER BY {expr}, {_SENT_ORDER}, rowid", probes):
                ids = first[p]
                if len(ids) < _PRELOAD_CAP:
                    ids.append(rid)
                else:
                    more.add(p)  # more rows follow, sent no earlier: `_first` reads them (`_scan`) when they could rank first
            want = [rid for ids in first.values() for rid in ids]
            rows: dict[int, _Row] = {}
            for j in range(0, len(want), 500):
                part = want[j:j + 500]
                rows.update((r[0], _Row(*r)) for r in tx.execute(f"SELECT {_ROW_COLS} FROM email WHERE rowid IN ({','.join('?' * len(part))})", part))
            for v in chunk:
                p = v[:cut] if cut else v
                stored[v] = [row for row in (rows.get(rid) for rid in first[p]) if row is not None and (not cut or getattr(row, attr) == v)]
                if p in more:
                    last = rows.get(first[p][-1])
                    capped[v] = (last.senton or "") if last is not None else ""

    def _first(self, page: _Page, dim: str, value: Any, strict: tuple[str, str, str] | None, not_thread: int | None = None) -> _Row | None:
        """The email a `dim = value` match correlates with, with the rows this page wrote as written.

        Without `strict` (Message-ID): the first one stored. With `strict` = (key, own Message-ID, senton): the first in `_rank`
        order of the emails that are another message, sent no later, [and not sharing the thread hash `not_thread`]; so the
        match does not depend on which of them synced first."""
        rows = page.stored[dim].get(value)
        if rows is None:
            self._load_rows(page, dim, [value])
            rows = page.stored[dim][value]
        written = page.written
        ids = page.windex[dim].get(value)
        if strict is None:
            best: _Row | None = None
            for row in rows:
                if row.activityid not in written:
                    best = row
                    break
            if ids:
                for aid in ids:
                    row = written[aid]
                    if (best is None or row.order < best.order) and row.messageid == value:
                        best = row
            return best
        best = None
        for row in rows:  # (at most `_PRELOAD_CAP`)
            if row.activityid not in written and _eligible(row, strict, not_thread) and (best is None or _rank(row) < _rank(best)):
                best = row
        cap = page.capped[dim].get(value)
        if cap is not None and (best is None or (best.senton or "") >= cap):  # a row not loaded may rank first
            best = self._scan(page, dim, value, strict, not_thread)
        if ids:
            attr = _DIM_ATTR[dim]
            for aid in ids:
                row = written[aid]
                if getattr(row, attr) == value and (best is None or _rank(row) < _rank(best)) and _eligible(row, strict, not_thread):
                    best = row
        return best

    def _scan(self, page: _Page, dim: str, value: Any, strict: tuple[str, str, str], not_thread: int | None = None) -> _Row | None:
        """`_first`'s stored match read in SQL, past the preloaded rows of a value with many emails (rows this page rewrote
        are judged as written)."""
        expr, cut = _INDEXED.get(dim, (dim, 0))
        sql = (f"SELECT {_ROW_COLS} FROM email WHERE {expr} = ? AND activityid != ? AND (messageid IS NULL OR messageid != ?) "
               "AND (senton IS NULL OR senton <= ?) ORDER BY senton, activityid")
        attr = _DIM_ATTR[dim]
        for r in page.tx.execute(sql, (value[:cut] if cut else value, *strict)):
            if r[1] not in page.written:
                row = _Row(*r)
                if (not cut or getattr(row, attr) == value) and (not_thread is None or row.chash != not_thread):
                    return row
        return None

    def _existing(self, page: _Page, key: str) -> _Row | None:
        row = page.written.get(key)
        if row is not None:
            return row
        if key in page.emails:
            return page.emails[key]
        r = page.tx.execute(f"SELECT {_ROW_COLS} FROM email WHERE activityid = ?", (key,)).fetchone()
        return _Row(*r) if r else None

    def _wrote(self, page: _Page, key: str, values: dict[str, Any], existing: _Row | None, parties: list[Record]) -> None:
        """Remember an email (and its party rows) as the page's batch will store it."""
        row = page.written.get(key)
        if row is None and existing is None:
            page.seq += 1
            g = values.get
            row = page.written[key] = _Row(_NEW_ROW + page.seq, key, g("regardingobjectid"), g("regardingobjecttypecode"), g("subject"),
                                           g("messageid"), g("trackingtoken"), g("senton"), g("baseconversationindexhash"),
                                           g("conversationtrackingid"), g("directioncode"), g("acceptingentityid"), g("sender"), g("ownerid"))
        else:
            if row is None:
                row = page.written[key] = existing.copy()  # type: ignore[union-attr]
            for col, attr in _ROW_ATTR:
                if col in values:
                    setattr(row, attr, values[col])
        windex = page.windex
        if row.messageid is not None:
            windex["messageid"].setdefault(row.messageid, []).append(key)
        if row.token is not None:
            windex["trackingtoken"].setdefault(row.token, []).append(key)
        if row.chash is not None:
            windex["baseconversationindexhash"].setdefault(row.chash, []).append(key)
        if row.cid is not None:
            windex["conversationtrackingid"].setdefault(row.cid, []).append(key)
        page.parties[key] = parties
        if self._threads:
            self._written_thread(row)

    def _sig(self, item: dict[str, Any]) -> _Sig:
        headers = signals.headers_of(item, signals.TRACKING_HEADERS)
        irt, refs = headers.get("in-reply-to"), headers.get("references")
        if refs:
            ids = tuple(dict.fromkeys(signals.message_ids(irt) + signals.message_ids(refs)[::-1]))
        else:
            ids = tuple(signals.message_ids(irt)) if irt else ()
        conv = item.get("conversationId")
        if conv:
            cid = self._cids.get(conv)
            if cid is None:
                if len(self._cids) > 50_000:
                    self._cids.clear()
                cid = self._cids[conv] = signals.conversation_tracking_id(conv)
        else:
            cid = None
        subject = item.get("subject")
        header = signals.thread_header(item.get("conversationIndex"))
        return _Sig(ids, header[0] if header else None, cid, self.tokens.find(subject),
                    signals.auto_reply_reason(headers, subject) if self.cfg.ignore_auto_replies else None, header is not None and header[1])

    def _mailbox_config(self, st: _MailboxState) -> tuple[Any, bool, str, str]:
        if st.config is None:
            mcfg = self.settings.mailbox(st.address)
            cat = mcfg.category or self.cfg.category
            st.config = (mcfg, self.cfg.sent_items if mcfg.sent_items is None else mcfg.sent_items, cat,
                         mcfg.category.lower() if mcfg.category else self._cat)
        return st.config

    def _resolve(self, index: PartyIndex, mask: Any, addr: str, owner: str | None) -> tuple[Resolution, tuple[int, str], MailboxEntity | None, tuple[str, ...]]:
        """One (role, address): its resolution, (its `tracking_resolution` id, its JSON), the user or queue receiving mail at
        it, and the systemuser ids it resolved to; cached until the index changes."""
        ck = (mask, addr, owner) if mask == 1 else (mask, addr)
        hit = self._res_cache.get(ck)
        if hit is None:
            if mask == 1:
                res = index.sender(addr, owner, unresolve_multiple=self.cfg.unresolve_sender_on_multiple_match)
            else:
                res = index.recipient(addr, unresolve_multiple=self.cfg.unresolve_on_multiple_match)
            if len(self._res_cache) > 50_000:
                self._res_cache.clear()
            frag = _ENCODE(res.to_dict(MASKS.get(mask, str(mask))))
            hit = self._res_cache[ck] = (res, (resolution_id(frag), frag), index.mailboxes.get(addr.lower()),
                                         tuple(ref.id for ref in res.refs if ref.table == "systemuser"))
        return hit

    def _party_set(self, records: list[Record], owner: str | None) -> _PartySet:
        """What the activityparty records among `records` resolve to."""
        index = self.index
        if self._res_index is not index:
            self._res_cache, self._res_index = {}, index
        resolutions: dict[tuple[int, str], Resolution] = {}
        frags: list[tuple[int, str]] = []
        sender: str | None = None
        users: tuple[list[str], list[str], list[str]] = ([], [], [])  # To, Cc, Bcc
        recipients: dict[str, MailboxEntity] = {}
        for r in records:
            if r.table != "activityparty":
                continue
            rv = r.values
            mask, addr = rv.get("participationtypemask"), rv.get("addressused")
            pair = (mask, addr)
            if not isinstance(addr, str) or pair in resolutions:
                continue
            res, frag, ent, uids = self._resolve(index, mask, addr, owner)
            resolutions[pair] = res
            frags.append(frag)
            if mask == 1:
                if sender is None:
                    sender = addr  # the mapping's from party, normalised as signals.addresses would
            elif 2 <= mask <= 4:
                if uids:
                    users[mask - 2].extend(uids)
                if ent is not None and mask != 4:
                    recipients.setdefault(ent.address, ent)
        return _PartySet(resolutions, _ENCODE([rid for rid, _ in frags]), tuple(frags), sender, resolutions.get((1, sender)) if sender else None,
                         sender is not None and index.mailbox(sender) is not None, (*users[0], *users[1], *users[2]), tuple(recipients.values()))

    # the decision -------------------------------------------------------------------------------
    def evaluate(self, tx: Any, mailbox: str, user_id: str, container: Container, item: dict[str, Any], records: list[Record]) -> list[Record]:
        """Decide one message (or, per `tracking.events` / `tracking.tasks`, one event or task): the records to write
        ([] = not tracked), with its decision row written in `tx`."""
        if container.resource != "mail":
            return self._evaluate_item(tx, mailbox, container, item, records)
        if not records or records[0].table != "email":
            return records
        st = self._state(mailbox)
        place, rule = self._place(st, container)
        page = self._page_of(tx)
        email = records[0]
        values = dict(email.values)
        gid = str(item.get("id"))
        subject = item.get("subject")
        messageid = values.get("messageid") or item.get("internetMessageId")
        categories = item.get("categories") or ()
        mcfg, sent_items, cat_name, cat_low = self._mailbox_config(st)
        by_category = any(isinstance(c, str) and c.lower() == cat_low for c in categories) if categories else False
        mb = st.key
        pk = (mb, gid)
        if pk not in page.prev:
            self._load_prev(page, mb, [gid])
        prev = page.prev[pk]
        dk = page.dkeys[pk]

        if not by_category and (place == "other" or (place == "sentitems" and not sent_items)):
            base = dict(mailbox=mb, graph_id=gid, messageid=messageid, subject=subject, folder=container.label)
            why = "Sent Items tracking is off" if place == "sentitems" else f"{container.label} is not an evaluated folder (evaluated: {', '.join(EVALUATED_FOLDERS)})"
            if prev and prev[0]:
                self._decide(tx, **base, tracked=True, tracked_by=prev[1], activityid=prev[3],
                             reason=f"tracked earlier ({prev[2]}); now in {container.label}: record kept, not updated")
            else:
                self._decide(tx, **base, tracked=False, reason=why)
            return []

        sig = page.sigs.get(pk)
        if sig is None:
            sig = self._sig(item)
        outgoing = bool(values.get("directioncode"))
        owner = self._owner(st)
        ps = self._party_set(records, owner)
        resolutions, party_json, sender_addr, sender_res, internal = ps.resolutions, ps.json, ps.sender, ps.sender_res, ps.internal
        if sender_addr is None:  # a mapping without a from party
            sender_addr = (signals.addresses(item, "from") or [None])[0]
            sender_res = resolutions.get((1, sender_addr)) if sender_addr else None
            internal = sender_addr is not None and self.index.mailbox(sender_addr) is not None

        h = sig.chash
        if h is not None:
            values["baseconversationindexhash"] = h
        cid = sig.cid
        if cid:
            values["conversationtrackingid"] = cid
        corr = self._correlate(page, item, values, sig, subject, messageid, email.key)

        tracked, tracked_by, reason = False, None, ""
        accepting: tuple[str, str | None] | None = None
        auto = sig.auto
        if by_category:
            tracked, tracked_by, reason = True, "category", f"category {cat_name!r} (manual tracking)"
        elif auto:
            reason = f"skipped {auto}"
        elif rule is not None:
            tracked, tracked_by, reason = True, "folder", f"tracked folder {rule.path} (manual tracking)"
        elif prev and prev[0] and prev[1] == "category":
            reason = f"category {cat_name!r} removed: untracked (the record is kept)"
        elif prev and prev[0]:
            tracked, tracked_by, reason = True, prev[1], f"already tracked ({prev[2]})"
        else:
            tracked, reason, accepting = self._accept(mailbox, outgoing, corr, sender_res, ps, owner)
            tracked_by = "filter" if tracked else None

        if not tracked:
            self._record(mb, gid, messageid, subject, container.label, False, None, reason, prev[3] if prev else None, corr.method,
                         corr.activityid, None, None, None, party_json, tx, dk, ps.frags)
            if self._wait(mb, dk, None if auto else self._thread_keys(sig, values, corr, None)):
                self._remember_seen(mb, gid, item, container)
            return []
        self._forget_seen(mb, gid)  # tracked: a later match re-links it from its thread keys, without the message

        # one email per Message-ID; internal mail makes a sent and a received activity when configured
        key = email.key
        if internal and not outgoing and self.cfg.two_activities_for_internal_mail:
            key = received_key(email.key)
            self._received_keys.add(key)
            reason += "; internal mail: the received activity (two activities)"
        thread = None if auto else self._thread_keys(sig, values, corr, key)
        self._threads.pop((mb, dk), None)  # (its own write is never a better match for itself: it waits once written)
        existing = self._existing(page, key)
        if existing is not None and prev is None:
            reason += "; same Message-ID already tracked: merged into that email (no duplicate)"

        # regarding
        regarding, regarding_why = None, None
        if rule is not None and rule.regarding is not None:
            regarding, regarding_why = rule.regarding, f"tracked folder {rule.path} (folder rules win over manual edits)"
        elif rule is not None and rule.regarding_error:
            regarding_why = f"tracked folder {rule.path}: {rule.regarding_error}"
        elif corr.regarding is not None and (existing is None or not existing.regid):
            regarding, regarding_why = corr.regarding, f"copied from the correlated email ({METHOD_NAME[corr.method]})"
        elif existing is not None and existing.regid:
            regarding, regarding_why = PartyRef(existing.regtype or "", existing.regid), "kept (set earlier)"
            values.pop("regardingobjectid", None)
        if regarding is not None and regarding_why != "kept (set earlier)":
            values["regardingobjectid"], values["regardingobjecttypecode"] = regarding.id, regarding.table

        # correlation and thread columns
        values.update(self._correlation_columns(corr, subject))
        token = sig.token if self.tokens.enabled or self.tokens.previous_prefixes else None
        if token:
            values["trackingtoken"] = token
        else:
            values.pop("trackingtoken", None)

        # acceptance columns: the first mailbox to track it sets them. The accepting user's or queue's own mailbox then takes
        # receivingmailboxid over, so it does not depend on which mailbox synced first.
        if existing is None or not existing.accepting:
            if accepting is not None and accepting[1]:
                values["acceptingentityid"] = accepting[1]
            values["receivingmailboxid"] = mailbox_record_id(mailbox)
        elif accepting is not None and accepting[1] == existing.accepting and self._receives_as(mailbox, accepting):
            values["receivingmailboxid"] = mailbox_record_id(mailbox)
        if existing is None and self._has_owner:
            owner_id = self._email_owner(outgoing, owner, ps.users, sender_addr, sender_res, corr.owner)
            if owner_id is not None:
                values["ownerid"], values["owneridtype"] = owner_id, "systemuser"
        if existing is not None and existing.direction and not outgoing:
            values.pop("directioncode", None)  # the sent copy stays Outgoing when both copies merge
            values.pop("statuscode", None)

        # parties
        if self.cfg.auto_create_contacts and sender_addr and not outgoing and not internal and sender_res is not None and not sender_res.refs \
                and not sender_res.inactive and "contact" in self.store.tables:  # no record at all (not even an inactive one)
            resolutions = dict(resolutions)  # (the party set's own stays as it was)
            sender_res = resolutions[(1, sender_addr)] = self._create_contact(tx, mb, item, sender_addr)
            party_json = _ENCODE([res.to_dict(MASKS.get(m, str(m))) for (m, _), res in resolutions.items()])
        parties = self._parties(key, records[1:], resolutions)
        if existing is not None:
            parties = self._merge_parties(page, key, parties)
        else:
            values = self._canonical(values)
        self._wrote(page, key, values, existing, parties)
        self._wait(mb, dk, thread)
        out = [Record("email", key, values), *parties]
        if self.cfg.correlation.smart_matching:
            self._remember_smart(tx, key, subject, item)
        self._record(mb, gid, messageid, subject, container.label, True, tracked_by, reason, key, corr.method, corr.activityid,
                     regarding, regarding_why, accepting, party_json, tx, dk, ps.frags)
        return out

    # events and tasks ----------------------------------------------------------------------------
    def _item_mode(self, container: Container) -> str:
        """`tracking.events` for calendar containers, `tracking.tasks` for To Do lists, `all` for anything else (contacts)."""
        if container.resource == "calendar":
            return self.cfg.events
        if container.resource == "tasks":
            return self.cfg.tasks
        return "all"

    def _evaluate_item(self, tx: Any, mailbox: str, container: Container, item: dict[str, Any], records: list[Record]) -> list[Record]:
        """Category tracking of an event or a task (`category` mode): written only while it carries the tracking category.

        One that is not tracked and was written before (tracked by the category, or synced under `all`) is untracked: its
        record is kept and its link marked deleted, so later changes, an Outlook delete or a full-round reconciliation
        leave the record alone. Adding the category again tracks (and links) it again."""
        mode = self._item_mode(container)
        if mode != "category" or not records:
            return records
        st = self._state(mailbox)
        _, _, cat_name, cat_low = self._mailbox_config(st)
        categories = item.get("categories") or ()
        by_category = any(isinstance(c, str) and c.lower() == cat_low for c in categories)
        page = self._page_of(tx)
        mb = st.key
        gid = str(item.get("id"))
        pk = (mb, gid)
        if pk not in page.prev:
            self._load_prev(page, mb, [gid])
        prev = page.prev[pk]
        calendar = container.resource == "calendar"
        setting = f"tracking.{'events' if calendar else 'tasks'} = category"
        subject = item.get("subject") if calendar else item.get("title")
        uid = item.get("iCalUId") if calendar else None
        key = records[0].key
        if by_category:
            reason = f"category {cat_name!r} ({setting})"
            if prev is not None and not prev[0] and prev[3]:
                reason += "; tracked again"
            self._record(mb, gid, uid, subject, container.label, True, "category", reason, key, None, None, None, None, None, "[]", tx)
            return records
        link = tx.execute("SELECT deleted FROM item_link WHERE mailbox = ? AND resource = ? AND graph_id = ?",
                          (mailbox, container.kind, gid)).fetchone()
        linked = link is not None and not link[0]
        kept: str | None = None
        if prev is not None and prev[0]:
            reason, kept = f"category {cat_name!r} removed: untracked (the record is kept)", prev[3] or key
        elif linked:
            reason, kept = f"no category {cat_name!r} ({setting}): untracked; the record written earlier is kept", key
        elif prev is not None and prev[3]:
            reason, kept = f"no category {cat_name!r} ({setting}); untracked earlier: the record is kept, not updated", prev[3]
        else:
            reason = f"no category {cat_name!r} ({setting})"
        if linked:
            tx.mark_link_deleted(mailbox, container.kind, gid)  # unlinked: an Outlook delete or a reconciliation no longer reaches the record
        self._record(mb, gid, uid, subject, container.label, False, None, reason, kept, None, None, None, None, None, "[]", tx)
        return []

    def _canonical(self, values: dict[str, Any]) -> dict[str, Any]:
        """A new email's values with every column evaluate may set, in one order (None = not set, as an INSERT leaves it)."""
        canon = self._canon
        if canon is not None:
            out = canon[1].copy()
            out.update(values)  # every key already in the template keeps its place
            if len(out) == len(canon[0]):
                return out
        names = tuple(canon[1]) if canon is not None else ()  # a column the template lacks: widen it (rare)
        names += tuple(k for k in values if k not in names)
        names += tuple(c for c in _EXTRA_EMAIL_COLS if c not in names and c in self._has["email"])
        canon = self._canon = (names, dict.fromkeys(names))
        out = canon[1].copy()
        out.update(values)
        return out

    def _topic(self, subject: str | None) -> str:
        subject = subject or ""
        got = self._topics.get(subject)
        if got is None:
            if len(self._topics) > 10_000:
                self._topics.clear()
            got = self._topics[subject] = signals.topic(self.tokens.strip(subject) if ":" in subject and self.tokens.find(subject) else subject)
        return got

    def _thread_keys(self, sig: _Sig, values: dict[str, Any], corr: Correlation, activityid: str | None) -> _Thread | None:
        """What a later correlation pass needs to find a better match than `corr` (the message's parent, or a closer
        ancestor, may sync later in the run): the header ids ranked before the one matched, and the token and thread hash
        when they rank before the method used. None when nothing could do better."""
        method = corr.method
        if method == SKIPPED:
            return None
        ranked = sig.reply_ids  # in the order correlation tries them
        if method == IN_REPLY_TO:
            ids = ranked[:ranked.index(corr.value)] if corr.value in ranked else ()
        else:
            ids = ranked
        # a token, thread hash or conversationId match waits on that value too: an email sent earlier may sync later. A thread's
        # first message waits on neither of its conversation's values: every other email of its thread shares them (its
        # replies), and one sharing only the conversationId is as rare as waiting on it for every thread would be large
        token = sig.token if method != IN_REPLY_TO else None
        h = sig.chash if not sig.root and method not in (IN_REPLY_TO, TOKEN) else None
        c = sig.cid if not sig.root and (method in (NONE, SMART) or (method == CONVERSATION_INDEX and corr.value == "cid")) else None
        if not (ids or token or h is not None or c or corr.received):
            return None
        kind = None  # the value it matched on: a better match on that value must rank before it
        if method == TOKEN:
            kind = "t"
        elif method == CONVERSATION_INDEX:
            kind = "h" if corr.value == "hash" else "c"
        return _Thread(ids, h, token, corr.received, values.get("senton"), values.get("messageid"), activityid, c, kind, corr.rank if kind else None)

    def _wait(self, mb: str, dkey: int, thread: _Thread | None) -> bool:
        """Make the message with decision key `dkey` in mailbox `mb` wait on the values of `thread` (or on nothing): a
        later write of a matching email marks it late."""
        pk = (mb, dkey)
        if thread is None:
            self._threads.pop(pk, None)
            return False
        self._threads[pk] = (*thread,)
        cc = self.cfg.correlation
        m, t, h, o, c = self._waiting
        sent = thread.s or _NO_DATE
        if cc.headers:
            for mid in thread.ids:
                _enqueue(m, mid, pk, _NO_DATE)
        if thread.t is not None and cc.token and self.tokens.enabled:
            _enqueue(t, thread.t, pk, sent)
        if thread.h is not None and cc.conversation:
            _enqueue(h, thread.h, pk, sent)
        if thread.o is not None:
            _enqueue(o, thread.o, pk, _NO_DATE)
        if thread.c is not None and cc.conversation:
            _enqueue(c, thread.c, pk, sent)
        return True

    def _thread(self, mb: str, gid: str) -> _Thread | None:
        """The thread keys (mb, gid) waits with (None: it does not wait)."""
        return self._thread_at((mb, decision_key(mb, gid)))

    def _thread_at(self, pk: tuple[str, int]) -> _Thread | None:
        raw = self._threads.get(pk)
        return None if raw is None else _Thread._make(raw)

    def _written_thread(self, row: _Row) -> None:
        """An email written with these values: mark the messages it is a better match for late (the late re-check's input)."""
        m, t, h, o, c = self._waiting
        mid = row.messageid
        if mid in m:
            self._satisfy(m, mid, None, lambda thread: mid != thread.m and mid in thread.ids)
        if row.direction and mid in o:
            self._satisfy(o, mid, None, lambda thread: thread.o == mid)
        if row.token in t:
            self._satisfy(t, row.token, row.senton, lambda thread: thread.t == row.token and self._later(row, thread) and self._better(row, thread, "t"))
        if row.chash in h:
            self._satisfy(h, row.chash, row.senton, lambda thread: thread.h == row.chash and self._later(row, thread) and self._better(row, thread, "h"))
        if row.cid in c:
            self._satisfy(c, row.cid, row.senton, lambda thread: thread.c == row.cid and self._later(row, thread) and self._better(row, thread, "c"))

    @staticmethod
    def _better(row: _Row, thread: _Thread, kind: str) -> bool:
        """`row` ranks before the match `thread`'s message found on the same kind of value (any row of a kind ranking before
        the method used is better)."""
        return thread.k != kind or _rank(row) < thread.r  # type: ignore[operator]  (r is set whenever k is)

    @staticmethod
    def _later(row: _Row, thread: _Thread) -> bool:
        """`row` is a match for the message of `thread` as token and thread-hash correlation require: another message, sent no later."""
        return (row.messageid is None or row.messageid != thread.m) and (row.senton is None or thread.s is None or row.senton <= thread.s)

    def _satisfy(self, waiting: dict[Any, tuple[str, tuple[tuple[str, int], ...]]], value: Any, sent: str | None, ok: Any) -> None:
        """Mark late the messages waiting on `value` that the email just written (sent at `sent`, when that decides) is a
        better match for (`ok(thread)`); the rest wait on, and stale ones (decided again since) are dropped."""
        latest, pks = waiting[value]
        if sent is not None and sent > latest:
            return  # every waiter was sent before this email (the usual case: a later reply in the thread)
        keep: list[tuple[str, int]] = []
        latest = ""
        for pk in pks:
            thread = self._thread_at(pk)
            if thread is None:
                continue
            if ok(thread):
                self._late.setdefault(pk[0], {})[pk[1]] = LATE_THREAD
            else:
                keep.append(pk)
                latest = max(latest, thread.s or _NO_DATE)
        if keep:
            waiting[value] = (latest, tuple(keep))
        else:
            del waiting[value]

    @staticmethod
    def _accepts(option: str, parties: list[PartyRef], corr: Correlation) -> tuple[bool, str]:
        if option == "all":
            return True, "all email messages"
        if option == "none":
            return False, "no email messages"
        if option == "responses":
            return (True, f"a response to tracked email ({METHOD_NAME[corr.method]})") if corr.activityid is not None else (False, "not a response to tracked email")
        if option == "known_parties":
            hit = next((p for p in parties if p.table in CUSTOMER_TABLES), None)
            return (True, f"{hit.table} {hit.id}") if hit else (False, "no lead, contact or account")
        hit = next(iter(parties), None)
        return (True, f"email-enabled record {hit.table} {hit.id}") if hit else (False, "no email-enabled record")

    def _accept(self, mailbox: str, outgoing: bool, corr: Correlation, sender: Resolution | None, ps: _PartySet,
                owner: str | None) -> tuple[bool, str, tuple[str, str | None] | None]:
        """The automatic filter: does any recipient user/queue's `track` option accept the message?"""
        index = self.index
        accepts = self._accepts
        if outgoing:
            own_ent = index.mailbox(mailbox)
            option = self._option(mailbox, own_ent.table, own_ent.id) if own_ent else self.settings.track_option(mailbox)
            ok, why = accepts(option, [ref for (m, _), r in ps.resolutions.items() if m != 1 for ref in r.refs], corr)
            verdict = f"sent by the mailbox owner; track={option} ({TRACK_OPTION_VALUE[option]}): {why}"
            return ok, ("tracked: " if ok else "not tracked: ") + verdict, ("systemuser", owner) if ok else None
        sender_refs = sender.refs if sender else []
        tried: list[str] = []
        for ent in ps.recipients:
            option = self._option(ent.address, ent.table, ent.id)
            ok, why = accepts(option, sender_refs, corr)
            tried.append(f"{ent.address} track={option}: {why}")
            if ok:
                return True, f"accepted by {ent.table} {ent.address} (track={option} ({TRACK_OPTION_VALUE[option]}): {why})", (ent.table, ent.id)
        own = index.mailbox(mailbox)
        own_addr = own.address if own else mailbox.lower()
        if not any(ent.address == own_addr for ent in ps.recipients):
            option = self._option(mailbox, own.table, own.id) if own else self.settings.track_option(mailbox)
            if option == "all":
                return True, f"accepted by {mailbox}: received as Bcc or through a distribution list, and it tracks all email", \
                    (own.table, own.id) if own else None
            tried.append(f"{mailbox} received it as Bcc or through a distribution list (only track=all tracks those)")
        return False, "not tracked: " + ("; ".join(tried) if tried else "no To/Cc recipient is a user or queue (NoRecipientMatch)"), None

    def _receives_as(self, mailbox: str, entity: tuple[str, str | None]) -> bool:
        """`mailbox` is the mailbox of the user or queue `entity` (table, id)."""
        own = self.index.mailbox(mailbox)
        return own is not None and (own.table, own.id) == entity

    def _option(self, address: str, table: str, rid: str | None) -> str:
        """A user's or queue's `track` option: its mailbox setting, else a queue's incomingemailfilteringmethod, else the default."""
        ck = (address.lower(), table, rid)
        got = self._options.get(ck)
        if got is None:
            got = self._options[ck] = self._option_of(address, table, rid)
        return got

    def _option_of(self, address: str, table: str, rid: str | None) -> str:
        own = self.settings.mailbox(address).track
        if own is not None:
            return own
        if table == "queue" and rid:
            if self._queue_filter is None:
                self._queue_filter = {}
                if "incomingemailfilteringmethod" in self.store.columns("queue"):
                    names = {v: k for k, v in TRACK_OPTION_VALUE.items()}
                    for qid, m in self.store.query('SELECT queueid, incomingemailfilteringmethod FROM "queue"'):
                        if m in names:
                            self._queue_filter[str(qid)] = names[m]
            if rid in self._queue_filter:
                return self._queue_filter[rid]
        return self.cfg.track

    # correlation -------------------------------------------------------------------------------
    def _correlate(self, page: _Page, item: dict[str, Any], values: dict[str, Any], sig: _Sig, subject: str | None,
                   messageid: str | None, key: str) -> Correlation:
        cc = self.cfg.correlation
        if not (cc.headers or cc.token or cc.conversation or cc.smart_matching):
            return Correlation(SKIPPED, detail="correlation is off")
        own = messageid or ""
        sent = values.get("senton") or "9999"
        if cc.headers:
            for mid in sig.reply_ids:
                if mid == own:
                    continue
                row = self._first(page, "messageid", mid, None)
                if row:
                    return self._found(IN_REPLY_TO, page, row, f"header message id {mid}", mid)
        if cc.token and self.tokens.enabled:
            token = sig.token
            if token:
                row = self._first(page, "trackingtoken", token, (key, own, sent))
                if row:
                    return self._found(TOKEN, page, row, f"token {token}")
        if cc.conversation:
            h = values.get("baseconversationindexhash")
            cid = values.get("conversationtrackingid")
            if h is not None or cid:
                # as SQLite's multi-index OR runs `hash = h OR conversationtrackingid = cid`: the thread header's rows, then Graph's conversationId's
                # (a thread's first message: the rows of its thread hash are its replies, never its parent, so it is not
                # matched on it, nor waits on it)
                row = self._first(page, "baseconversationindexhash", h, (key, own, sent)) if h is not None and not sig.root else None
                if row:
                    return self._found(CONVERSATION_INDEX, page, row, "conversationIndex thread header", "hash")
                # (a thread's first message: none of its replies, which share its thread hash)
                row = self._first(page, "conversationtrackingid", cid, (key, own, sent), h if sig.root else None) if cid is not None else None
                if row:
                    return self._found(CONVERSATION_INDEX, page, row, "Graph conversationId", "cid")
        if cc.smart_matching:
            tx = page.tx
            sig_ = signals.subject_signature(self.tokens.strip(subject or ""), cc.smart_max_words)
            addrs = signals.addresses(item, "from", "toRecipients", "ccRecipients", "bccRecipients")
            if addrs and signals.subject_words(subject, 1):
                marks = ",".join("?" * len(addrs))
                rows = tx.execute(
                    f"SELECT s.activityid FROM tracking_smart s JOIN tracking_smart_address a ON a.activityid = s.activityid "
                    f"WHERE s.subject_sig = ? AND a.address IN ({marks}) AND s.activityid != ? GROUP BY s.activityid "
                    f"HAVING COUNT(*) >= ? ORDER BY s.rowid DESC LIMIT 5", (sig_, *addrs, key, cc.smart_min_addresses)).fetchall()
                for (aid,) in rows:
                    written = page.written.get(aid)
                    if written is not None:
                        ok = (written.messageid is None or written.messageid != own) and (written.senton is None or written.senton <= sent)
                        full = written.as_match() if ok else None
                    else:
                        full = tx.execute("SELECT activityid, regardingobjectid, regardingobjecttypecode, subject, ownerid FROM email WHERE activityid = ? "
                                          "AND (messageid IS NULL OR messageid != ?) AND (senton IS NULL OR senton <= ?)", (aid, own, sent)).fetchone()
                    if full:
                        return self._match(SMART, full, f"same subject words and at least {cc.smart_min_addresses} shared addresses")
        return Correlation(NONE, detail="no tracked email matched")

    def _sent_copy(self, page: _Page, row: _Row) -> _Row:
        """Internal mail tracked as two activities: correlate with the sent one, whichever copy synced first (so the
        result does not depend on the order mailboxes synced in)."""
        mid = row.messageid
        if row.direction or mid is None or not self.cfg.two_activities_for_internal_mail:
            return row
        if not row.sender or self.index.mailbox(row.sender) is None:
            return row  # not internal mail: there is no second copy
        keys = self._keys_of(mid)  # (the sent copy's key, the received one's)
        if keys is None or keys[0] == row.activityid:
            return row
        sent = self._existing(page, keys[0])
        return sent if sent is not None and sent.direction and sent.messageid == mid else row

    def _email_key(self, messageid: str) -> str | None:
        """The key the email mapping gives a message with this Message-ID (None without a mapping set)."""
        cm = self._email_mapping
        if cm is None:
            if self.mappings is None:
                return None
            cm = self._email_mapping = next((m for m in self.mappings.for_source("message") if m.target == "email"), None)
            if cm is None:
                return None
        try:
            return cm.key_of({"internetMessageId": messageid}, _KEY_CONTEXT)
        except RecordInvalid:
            return None

    def _found(self, method: int, page: _Page, row: _Row, detail: str, value: Any = None) -> Correlation:
        rank = _rank(row) if method != IN_REPLY_TO else None
        row = self._sent_copy(page, row)
        corr = self._match(method, row.as_match(), detail, value)
        corr.rank = rank
        if not row.direction and row.activityid in self._received_keys:
            corr.received = row.messageid
        return corr

    @staticmethod
    def _match(method: int, row: tuple[Any, ...], detail: str, value: Any = None) -> Correlation:
        reg = PartyRef(row[2] or "", row[1]) if row[1] else None
        return Correlation(method, row[0], reg, row[3], detail, value, owner=row[4])

    def _remember_smart(self, tx: Any, key: str, subject: str | None, item: dict[str, Any]) -> None:
        cc = self.cfg.correlation
        if not signals.subject_words(subject, 1):
            return
        sig = signals.subject_signature(self.tokens.strip(subject or ""), cc.smart_max_words)
        tx.execute("INSERT INTO tracking_smart (activityid, subject_sig) VALUES (?, ?) ON CONFLICT(activityid) DO UPDATE SET subject_sig = excluded.subject_sig",
                   (key, sig))
        addrs = signals.addresses(item, "from", "toRecipients", "ccRecipients", "bccRecipients")[: cc.smart_max_words]
        for a in addrs:
            tx.execute("INSERT OR IGNORE INTO tracking_smart_address (activityid, address) VALUES (?, ?)", (key, a))

    # parties -------------------------------------------------------------------------------------
    @staticmethod
    def _parties(key: str, mapped: Iterable[Record], res: dict[tuple[int, str], Resolution]) -> list[Record]:
        """The email's activityparty rows: one per record each party resolved to (the mapping's own row, set in place, for
        the first), or the mapping's row unresolved."""
        out: list[Record] = []
        for r in mapped:
            if r.table != "activityparty":
                out.append(r)
                continue
            rv = r.values
            mask, addr = rv.get("participationtypemask"), rv.get("addressused")
            found = res.get((mask, addr)) if isinstance(addr, str) else None
            refs: list[PartyRef] | list[None] = found.refs if found is not None and found.refs else [None]
            if rv.get("activityid") == key:
                ref = refs[0]
                if ref is not None:
                    rv["partyid"], rv["partyobjecttypecode"] = ref.id, ref.table
                elif rv.get("partyid") is not None:
                    rv["partyid"] = rv["partyobjecttypecode"] = None
                out.append(r)  # the mapping's key: one row per (activity, role, address) when it resolves to one record
                more = refs[1:]
            else:
                more = refs
            for ref in more:
                v = rv.copy()
                v["activityid"] = key
                if ref is None:
                    v["partyid"] = v["partyobjecttypecode"] = None
                else:
                    v["partyid"], v["partyobjecttypecode"] = ref.id, ref.table
                # keyed next to the mapping's row in the primary key's index: an extra record's row lands on its sibling's index
                # page, not on a random one (at 100,000 messages, 12,000 fewer pages written)
                out.append(Record("activityparty", sibling_uuid5(r.key, _PARTY_NS, f"{key}\x1f{mask}\x1f{addr}\x1f{ref.table + ':' + ref.id if ref else ''}"), v))
        return out

    def _merge_parties(self, page: _Page, key: str, parties: list[Record]) -> list[Record]:
        """Union with the parties already stored for this email (another mailbox's copy): no party is lost."""
        have = {p.key for p in parties}
        same = {(v.get("participationtypemask"), v.get("addressused"), v.get("partyid"), v.get("partyobjecttypecode"))
                for v in (p.values for p in parties if p.table == "activityparty")}
        merged = list(parties)
        written = page.parties.get(key)
        if written is not None:  # written earlier in this page: its rows as the batch stores them
            stored = [(p.key, p.values.get("participationtypemask"), p.values.get("addressused"), p.values.get("partyid"),
                       p.values.get("partyobjecttypecode")) for p in written if p.table == "activityparty" and p.values.get("activityid") == key]
        else:
            stored = page.tx.execute("SELECT activitypartyid, participationtypemask, addressused, partyid, partyobjecttypecode FROM activityparty "
                                     "WHERE activityid = ?", (key,)).fetchall()
        for pid, mask, addr, partyid, ptype in stored:
            if pid in have or (mask, addr, partyid, ptype) in same:
                continue  # (the same party under another key: one an earlier version derived)
            if partyid is None and any(p.values.get("addressused") == addr and p.values.get("participationtypemask") == mask for p in parties):
                continue
            merged.append(Record("activityparty", pid, {"activityid": key, "participationtypemask": mask, "addressused": addr,
                                                        "partyid": partyid, "partyobjecttypecode": ptype}))
        return merged

    def _create_contact(self, tx: Any, mailbox: str, item: dict[str, Any], address: str) -> Resolution:
        first, last = signals.split_name(signals.display_name(item), address)
        cid = str(uuid.uuid5(CONTACT_NAMESPACE, address.lower()))
        values = {"firstname": first, "lastname": last, "fullname": " ".join(p for p in (first, last) if p),
                  "emailaddress1": address, "statecode": 0, "statuscode": 1}
        tx.upsert_records([Record("contact", cid, {k: v for k, v in values.items() if k in self._has["contact"]})])
        from .parties import Candidate

        self.index.add(address, Candidate(1, "contact", cid, True, None, "emailaddress1"))
        self._res_cache = {}  # resolutions change with the index
        self._created.add(address.lower())
        return Resolution(address, [PartyRef("contact", cid)], f"contact created for the unresolved sender ({values['fullname']})")

    # tokens --------------------------------------------------------------------------------------
    def outgoing_subject(self, tx: Any, mailbox: str, subject: str | None) -> str:
        """The subject for mail sent from this mailbox: with a fresh tracking token (or unchanged when tokens are off)."""
        if not self.tokens.enabled:
            return (subject or "")[: self.tokens.max_subject_length]
        return self.tokens.apply(subject, self.next_token(tx, mailbox))

    def next_token(self, tx: Any, mailbox: str) -> str:
        """The mailbox owner's next token (user number allocated on first use; the counter wraps, skipping tokens in use)."""
        for _ in range(10 ** self.tokens.counter_digits):
            token = self._new_token(tx, mailbox)
            if tx.execute("SELECT 1 FROM email WHERE trackingtoken = ? LIMIT 1", (token,)).fetchone() is None:
                return token
        return token

    def _new_token(self, tx: Any, mailbox: str) -> str:
        addr = mailbox.lower()
        row = tx.execute("SELECT number, counter FROM tracking_token_user WHERE address = ?", (addr,)).fetchone()
        if row is None:
            number = (tx.execute("SELECT COALESCE(MAX(number), 0) FROM tracking_token_user").fetchone()[0] or 0) + 1
            counter = 1
            tx.execute("INSERT INTO tracking_token_user (address, number, counter) VALUES (?, ?, ?)", (addr, number, counter))
        else:
            number, counter = row[0], row[1] + 1
            tx.execute("UPDATE tracking_token_user SET counter = ? WHERE address = ?", (counter, addr))
        return self.tokens.make(number, counter)

    # decisions and alerts ------------------------------------------------------------------------
    def _decide(self, tx: Any, *, mailbox: str, graph_id: str, messageid: str | None, subject: str | None, folder: str, tracked: bool,
                reason: str, tracked_by: str | None = None, activityid: str | None = None, correlationmethod: int | None = None,
                correlated: str | None = None, regarding: PartyRef | None = None, regarding_why: str | None = None,
                accepting: tuple[str, str | None] | None = None, parties: list[dict[str, Any]] | None = None) -> None:
        self._record(mailbox, graph_id, messageid, subject, folder, tracked, tracked_by, reason, activityid, correlationmethod, correlated,
                     regarding, regarding_why, accepting, _ENCODE(parties or []), tx)

    def _record(self, mailbox: str, graph_id: str, messageid: str | None, subject: str | None, folder: str, tracked: bool, tracked_by: str | None,
                reason: str, activityid: str | None, correlationmethod: int | None, correlated: str | None, regarding: PartyRef | None,
                regarding_why: str | None, accepting: tuple[str, str | None] | None, parties_json: str, tx: Any, dkey: int | None = None,
                frags: tuple[tuple[int, str], ...] = ()) -> None:
        """Buffer one decision row (`parties_json`: the resolutions as JSON, or their ids with `frags` giving each id's
        JSON); `page_done` writes them. (The `thread` column is no longer written: thread keys live in memory for the
        run, see `_wait`.)"""
        if self._pending_tx is not tx:
            # rows of a rolled-back page never leak into the next one; a page writes every resolution its rows list
            self._pending, self._pending_frags, self._pending_tx = [], {}, tx
        if frags:
            self._pending_frags.update(frags)
        self._pending.append(
            (decision_key(mailbox, graph_id) if dkey is None else dkey, mailbox, graph_id, messageid, subject, folder, int(tracked), tracked_by, reason, activityid, correlationmethod, correlated,
             regarding.table if regarding else None, regarding.id if regarding else None, regarding_why,
             accepting[0] if accepting else None, accepting[1] if accepting else None, parties_json, None, _now()))
        if len(self._pending) >= 1000:
            self.page_done(tx)

    def page_done(self, tx: Any) -> None:
        """Write the page's decision rows (the engine calls this inside the page's transaction, before its checkpoint)."""
        if self._pending_frags:
            frags, self._pending_frags = self._pending_frags, {}
            tx.executemany("INSERT OR IGNORE INTO tracking_resolution (id, party) VALUES (?, ?)", frags.items())
        if self._pending:
            rows, self._pending = self._pending, []
            tx.executemany(DECISION_UPSERT, rows)

    @staticmethod
    def _alert(tx: Any, mailbox: str, level: int, code: str, text: str) -> None:
        """A mailbox alert (tracelog-style: 1 Information, 2 Warning, 3 Error); repeated alerts are not duplicated."""
        last = tx.execute("SELECT text FROM tracking_alert WHERE mailbox = ? AND code = ? ORDER BY id DESC LIMIT 1", (mailbox.lower(), code)).fetchone()
        if last and last[0] == text:
            return
        tx.execute("INSERT INTO tracking_alert (mailbox, level, code, text, created_at) VALUES (?, ?, ?, ?, ?)", (mailbox.lower(), level, code, text[:2000], _now()))

    # failures and the Undeliverable category -------------------------------------------------------
    def failed(self, tx: Any, mailbox: str, container: Container, graph_id: str, reason: str, item: dict[str, Any]) -> None:
        """A message that could not become a record (quarantined): count an attempt; retried in later runs."""
        if container.resource != "mail":
            return  # events and tasks are not retried or tagged: the engine's quarantine (sync_error) has them
        st = self._state(mailbox)
        place, _ = self._place(st, container)
        if place == "other" and not any(isinstance(c, str) and c.lower() == self._cat for c in item.get("categories") or ()):
            return
        self._failed_now.add((mailbox.lower(), graph_id))
        tx.execute("INSERT INTO tracking_attempt (mailbox, graph_id, attempts, last_error, status, updated_at) VALUES (?, ?, 1, ?, 'retrying', ?) "
                   "ON CONFLICT(mailbox, graph_id) DO UPDATE SET attempts = tracking_attempt.attempts + 1, last_error = excluded.last_error, "
                   "updated_at = excluded.updated_at", (mailbox.lower(), graph_id, reason[:500], _now()))
        self._decide(tx, mailbox=mailbox.lower(), graph_id=graph_id, messageid=item.get("internetMessageId"), subject=item.get("subject"),
                     folder=container.label, tracked=False, reason=f"failed: {reason}")
        self.page_done(tx)

    async def after_mailbox(self, client: Any, mailbox: str, user_id: str, limiter: Any = None) -> None:
        """Retry failed messages from earlier runs; after `max_attempts`, tag them "<category> (Undeliverable)" in Outlook."""
        rows = self.store.query("SELECT graph_id, attempts FROM tracking_attempt WHERE mailbox = ? AND status = 'retrying'", (mailbox.lower(),))
        todo = [(gid, attempts) for gid, attempts in rows if (mailbox.lower(), gid) not in self._failed_now]  # failed in this run: next run
        async for gid, attempts, fetched in self._fetch_ahead(client, user_id, todo, limiter):
            try:
                await self._retry(client, mailbox, user_id, gid, attempts, limiter, fetched=fetched)
            except Exception as exc:  # noqa: BLE001 - a retry must never fail the run
                log.warning("%s: retrying %s failed: %s", mailbox, gid, exc)
        await self._late_recheck(client, mailbox, user_id, limiter, self._seen.pop(mailbox.lower(), None) or {})

    async def end_run(self, client: Any) -> None:
        """The late re-check again, to a fixed point, for mailboxes something bears on since their last re-check: a message
        of theirs got a better match (a parent tracked by a mailbox synced later), or a contact was created. Each pass
        re-checks those mailboxes, `parallel_mailboxes` at a time; a pass that leaves nothing to do ends it, so the outcome
        does not depend on the order the mailboxes synced in."""
        gate = asyncio.Semaphore(self.settings.parallel_mailboxes)

        async def one(address: str, user_id: str) -> None:
            async with gate:
                try:
                    await self._late_recheck(client, address, user_id, asyncio.Semaphore(self.settings.mailbox_concurrency), {})
                except Exception as exc:  # noqa: BLE001 - never fails the run
                    log.warning("%s: late re-check at the end of the run failed: %s", address, exc)
                    self._rechecked.pop(address.lower(), None)
                    self._late.pop(address.lower(), None)

        for _ in range(_MAX_PASSES):
            todo = [(address, user_id) for mb, (address, user_id, created) in self._rechecked.items()
                    if self._late.get(mb) or created < len(self._created)]
            if not todo:
                break
            await asyncio.gather(*(one(address, user_id) for address, user_id in todo))
        self._rechecked, self._threads, self._waiting, self._late = {}, {}, _no_waiters(), {}

    async def _late_recheck(self, client: Any, mailbox: str, user_id: str, limiter: Any, seen: dict[str, tuple[dict[str, Any], Container]]) -> None:
        """Re-evaluate this run's messages a later event bears on: ones whose thread now has a better match than they found
        (none, or an ancestor instead of the parent), and tracked or rejected ones with a party that now has a contact.
        `seen`: copies synced in this run (used instead of fetching them again)."""
        from ..errors import GraphError

        mb = mailbox.lower()
        created = len(self._created)
        late = self._late_matches(mailbox)
        relink = [(gid, thread) for gid, why in late.items() if why == LATE_THREAD
                  for thread in (self._thread(mb, gid),) if thread is not None and thread.activityid]
        if relink:
            for gid in self._relink(mailbox, relink):
                late.pop(gid, None)
        entries: list[tuple[str, dict[str, Any], Container | None]] = []
        misses: list[tuple[str, int]] = []
        for gid in late:
            hit = seen.get(gid)
            if hit is not None:
                entries.append((gid, hit[0], hit[1]))
            else:
                misses.append((gid, 0))  # only these are fetched again
        async for gid, _, fetched in self._fetch_ahead(client, user_id, misses, limiter):
            try:
                entries.append((gid, (await fetched).data, None))
            except GraphError as exc:
                if getattr(exc, "status", None) != 404:  # gone since: nothing to re-evaluate
                    log.warning("%s: fetching %s again failed: %s", mailbox, gid, exc)
        # parents before replies, so late messages correlate with each other as a sync in order would
        entries.sort(key=lambda e: str(e[1].get("sentDateTime") or e[1].get("receivedDateTime") or ""))
        for i in range(0, len(entries), _REEVALUATE_CHUNK):
            try:
                self._reevaluate(mailbox, user_id, entries[i:i + _REEVALUATE_CHUNK], late)
            except Exception as exc:  # noqa: BLE001 - never fails the run
                log.warning("%s: re-evaluating %d messages failed: %s", mailbox, len(entries[i:i + _REEVALUATE_CHUNK]), exc)
        # end_run re-checks it when a later write marks one of its messages late, or a contact is created after `late` was read
        self._rechecked[mb] = (mailbox, user_id, created)

    def _relink(self, mailbox: str, hits: list[tuple[str, _Thread]]) -> list[str]:
        """Correlate tracked emails again from their thread keys, without fetching them: a better match synced later in the
        run (the parent instead of an ancestor, or any match instead of none) updates their correlation columns, and their
        regarding record when they have none. The graph ids done; the rest are re-evaluated in full."""
        mb = mailbox.lower()
        has = self._has["email"]
        done: list[str] = []
        hits = sorted(hits, key=lambda h: str(h[1].s or ""))  # parents first: a relinked parent's regarding reaches its replies
        with self.store.transaction() as tx:
            for gid, thread in hits:
                key = thread.activityid or ""
                page = _Page(tx)  # read through SQL: each relink sees the ones before it
                row = self._existing(page, key)
                if row is None:
                    continue
                sig = _Sig(thread.ids + ((thread.o,) if thread.o else ()), thread.h, thread.c, thread.t, None)
                values = {"senton": thread.s, "messageid": thread.m, "baseconversationindexhash": thread.h, "conversationtrackingid": thread.c}
                corr = self._correlate(page, {}, values, sig, row.subject, thread.m, key)
                if corr.activityid is None:
                    continue
                dk = decision_key(mb, gid)
                regarding = corr.regarding if corr.regarding is not None and not row.regid else None
                if regarding is None and tx.execute("SELECT 1 FROM email WHERE activityid = ? AND correlationmethod IS ? AND correlatedactivityid IS ?",
                                                    (key, corr.method, corr.activityid)).fetchone():
                    self._wait(mb, dk, self._thread_keys(sig, values, corr, key))  # the same match as before (an equal one synced): unchanged
                    done.append(gid)
                    continue
                cols = self._correlation_columns(corr, row.subject)
                if regarding is not None:
                    cols["regardingobjectid"], cols["regardingobjecttypecode"] = regarding.id, regarding.table
                if corr.owner and corr.owner != row.owner and row.direction in (0, None) and tx.execute(
                        "SELECT 1 FROM activityparty WHERE activityid = ? AND partyid = ? AND partyobjecttypecode = 'systemuser' "
                        "AND participationtypemask IN (2, 3, 4) LIMIT 1", (key, corr.owner)).fetchone():
                    cols["ownerid"], cols["owneridtype"] = corr.owner, "systemuser"  # §2.13: the recipient owning the correlated email
                cols = {c: v for c, v in cols.items() if c in has}
                tx.execute(f"UPDATE email SET {', '.join(f'{c} = ?' for c in cols)} WHERE activityid = ?", (*cols.values(), key))
                why = f"copied from the correlated email ({METHOD_NAME[corr.method]})" if regarding is not None else None
                tx.execute("UPDATE tracking_decision SET correlationmethod = ?, correlated_activityid = ?, "
                           "regarding_table = COALESCE(?, regarding_table), regarding_id = COALESCE(?, regarding_id), regarding_why = COALESCE(?, regarding_why), "
                           "reason = reason || ? WHERE key = ?",
                           (corr.method, corr.activityid, regarding.table if regarding else None,
                            regarding.id if regarding else None, why, f"; correlated again after {LATE_THREAD} ({corr.detail})", dk))
                self._wait(mb, dk, self._thread_keys(sig, values, corr, key))
                done.append(gid)
        return done

    def _email_owner(self, outgoing: bool, mailbox_owner: str | None, users: tuple[str, ...], sender_addr: str | None,
                     sender: Resolution | None, correlated_owner: str | None) -> str | None:
        """The owner of a new email (server-side-sync.md §2.13): sent mail belongs to the mailbox owner. Received mail goes to
        a user among its To, then Cc, then Bcc recipients (`users`): the one owning the correlated email, else the one owning
        the sender's record, else the first; with no user recipient, to the receiving mailbox's owner."""
        if outgoing or not users:
            return mailbox_owner
        if correlated_owner is not None and correlated_owner in users:
            return correlated_owner
        if sender is not None and sender.refs and sender_addr:
            owner = self._record_owner(sender_addr, sender.refs[0])
            if owner is not None and owner in users:
                return owner
        return users[0]

    def _record_owner(self, address: str, ref: PartyRef) -> str | None:
        """The ownerid of the record `ref` that `address` resolved to (remembered for the run's index)."""
        ck = (address, ref)
        cache = self._record_owners
        if ck not in cache:
            if len(cache) > 50_000:
                cache.clear()
            cache[ck] = next((c.owner for c in self.index.candidates(address) if c.table == ref.table and c.id == ref.id), None)
        return cache[ck]

    def _correlation_columns(self, corr: Correlation, subject: str | None) -> dict[str, Any]:
        """The email columns a correlation sets."""
        cols: dict[str, Any] = {"correlationmethod": corr.method}
        if corr.activityid:
            cols["correlatedactivityid"] = corr.activityid
            if corr.method in (IN_REPLY_TO, CONVERSATION_INDEX):
                cols["parentactivityid"] = corr.activityid
            cols["correlatedsubjectchanged"] = self._topic(subject) != self._topic(corr.subject)
        return cols

    def _reevaluate(self, mailbox: str, user_id: str, entries: list[tuple[str, dict[str, Any], Container | None]], why: dict[str, str]) -> None:
        """Map and evaluate messages again in one transaction, as the engine commits a page: one view of the store, the
        records written in one batch, each decision's reason saying what prompted it."""
        if self.mappings is None:
            return
        st = self._state(mailbox)
        mapped: list[tuple[str, dict[str, Any], Container, list[Record]]] = []
        for gid, item, container in entries:
            container = st.containers.get(str(item.get("parentFolderId"))) or container
            if container is None:
                continue
            try:
                records = self.mappings.map_item("message", item, MappingContext(mailbox=mailbox, folder=container.folder, lookup=self.store.lookup))
            except RecordInvalid as exc:
                log.info("%s: %s no longer maps (%s); not re-evaluated", mailbox, gid, exc)
                continue
            mapped.append((gid, item, container, records))
        if not mapped:
            return
        with self.store.transaction() as tx:
            by_container: dict[str, tuple[Container, list[dict[str, Any]], list[str]]] = {}
            for _, item, container, records in mapped:
                _, items, keys = by_container.setdefault(container.container, (container, [], []))
                items.append(item)
                keys.append(records[0].key)
            for container, items, keys in by_container.values():
                self.prepare_page(tx, mailbox, container, items, keys)
            pending: list[Record] = []
            batched: set[tuple[str, str]] = set()
            links: dict[str, list[tuple[str, str, str, str | None]]] = {}
            for gid, item, container, records in mapped:
                out = self.evaluate(tx, mailbox, user_id, container, item, records)
                if not out:
                    continue
                rk = (out[0].table, out[0].key)
                if rk in batched:  # as the engine does: a second copy of one record waits for the first
                    tx.upsert_records(pending)
                    pending, batched = [], set()
                batched.add(rk)
                pending.extend(out)
                links.setdefault(container.container, []).append((gid, out[0].table, out[0].key, item.get("changeKey")))
            if pending:
                tx.upsert_records(pending)
            for cid, rows in links.items():
                tx.link_items(mailbox, by_container[cid][0].kind, rows, container=cid)
            self.page_done(tx)
            tx.executemany("UPDATE tracking_decision SET reason = reason || ? WHERE key = ?",
                           [(f"; re-evaluated after {why[gid]}", decision_key(st.key, gid)) for gid, _, _, _ in mapped])

    def _remember_seen(self, mb: str, gid: str, item: dict[str, Any], container: Container) -> None:
        """Keep an untracked message of this run for the late re-check (the last `_SEEN_CAP` per mailbox)."""
        seen = self._seen.get(mb)
        if seen is None:
            seen = self._seen[mb] = OrderedDict()
        seen[gid] = (item, container)
        seen.move_to_end(gid)
        if len(seen) > _SEEN_CAP:
            seen.popitem(last=False)

    def _forget_seen(self, mb: str, gid: str) -> None:
        seen = self._seen.get(mb)
        if seen:
            seen.pop(gid, None)

    def removed(self, tx: Any, mailbox: str, container: Container, graph_ids: list[str]) -> None:
        """Messages gone from a container: their copy kept for the late re-check is stale (the re-check fetches them instead)."""
        seen = self._seen.get(mailbox.lower())
        if not seen:
            return
        for gid in graph_ids:
            hit = seen.get(gid)
            if hit is not None and hit[1].container == container.container:
                del seen[gid]

    async def _fetch_ahead(self, client: Any, user_id: str, todo: list[tuple[str, int]], limiter: Any) -> AsyncIterator[tuple[str, int, Any]]:
        """Each (gid, attempts) of `todo` with an awaitable of its message: fetched 20 at a time in JSON batches (the next batch is
        under way while one is evaluated). A message the batch did not return as 200 is fetched on its own, with the usual retries;
        messages are still evaluated one at a time, in order."""
        chunks = iter([todo[i:i + _BATCH] for i in range(0, len(todo), _BATCH)])
        inflight: deque[tuple[list[tuple[str, int]], asyncio.Task[dict[str, Any]]]] = deque()

        def start(chunk: list[tuple[str, int]]) -> None:
            inflight.append((chunk, asyncio.ensure_future(self._get_many(client, user_id, [g for g, _ in chunk], limiter))))

        try:
            for chunk in chunks:
                start(chunk)
                break
            while inflight:
                chunk, task = inflight.popleft()
                nxt = next(chunks, None)
                if nxt is not None:
                    start(nxt)
                got = await task
                for gid, attempts in chunk:
                    page = got.get(gid)
                    yield gid, attempts, (_done(page) if page is not None else client.get(self._message_request(client, user_id, gid), limiter=limiter))
        finally:
            for _, task in inflight:
                task.cancel()

    async def _get_many(self, client: Any, user_id: str, gids: list[str], limiter: Any) -> dict[str, Any]:
        """gid -> Page of the messages one `POST /$batch` returned with 200 (none when the batch itself fails)."""
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation

        base = client.adapter.base_url
        url = self._message_request(client, user_id, _GID_SLOT).url
        if len(gids) < 2 or not url.startswith(base + "/"):
            return {}
        rel = url[len(base):]
        body = {"requests": [{"id": str(n), "method": "GET", "url": rel.replace(_GID_SLOT, quote(gid, safe="")), "headers": {"Prefer": 'IdType="ImmutableId"'}}
                             for n, gid in enumerate(gids)]}
        ri = RequestInformation(Method.POST)
        ri.url = base + "/$batch"
        ri.headers.try_add("Accept", "application/json")
        ri.headers.try_add("Content-Type", "application/json")
        ri.content = _ENCODE(body).encode()
        try:
            data = (await client.get(ri, limiter=limiter)).data
        except Exception as exc:  # noqa: BLE001 - each message is then fetched on its own
            log.debug("batch of %d messages failed: %s", len(gids), exc)
            return {}
        out: dict[str, Any] = {}
        for r in data.get("responses") or ():
            try:
                gid = gids[int(r.get("id"))]
            except (TypeError, ValueError, IndexError):
                continue
            if r.get("status") == 200 and isinstance(r.get("body"), dict):
                out[gid] = Page(r["body"], 0)
        return out

    def _message_request(self, client: Any, user_id: str, gid: str) -> Any:
        """GET one message by id ($select, immutable ids), the URL built as the SDK builds it, without its URI-template cost per message."""
        tmpl = self._message_url
        if tmpl is None or tmpl[0] != user_id:
            from kiota_abstractions.base_request_configuration import RequestConfiguration
            from msgraph.generated.users.item.messages.item.message_item_request_builder import MessageItemRequestBuilder

            from ..sync.resources import MESSAGE_SELECT

            cfg: RequestConfiguration[Any] = RequestConfiguration()
            cfg.query_parameters = MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(select=MESSAGE_SELECT)
            ri = client.sdk.users.by_user_id(user_id).messages.by_message_id(_GID_SLOT).to_get_request_information(cfg)
            ri.path_parameters["baseurl"] = client.adapter.base_url
            tmpl = self._message_url = (user_id, ri.url)
        return client.url_request(tmpl[1].replace(_GID_SLOT, quote(gid, safe="")), prefer=['IdType="ImmutableId"'])

    def _late_matches(self, mailbox: str) -> dict[str, str]:
        """This run's messages of `mailbox` to evaluate again, each with why: ones a later write gave a better match than
        correlation found (a parent synced later in the run), and tracked ones or ones the filter rejected with an
        unresolved party that now has a contact (created later in the run)."""
        mb = mailbox.lower()
        threads = self._threads
        late = {key: why for key, why in (self._late.pop(mb, None) or {}).items() if (mb, key) in threads}  # not decided again since
        out: dict[str, str] = {}
        keys = list(late)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for key, owner, gid in self.store.query(f"SELECT key, mailbox, graph_id FROM tracking_decision WHERE key IN ({','.join('?' * len(chunk))})", chunk):
                if owner == mb:
                    out[gid] = late[key]
        if self._created:
            rows = self.store.query("SELECT graph_id, parties FROM tracking_decision WHERE mailbox = ? AND (tracked = 1 "
                                    "OR reason LIKE 'not tracked:%') AND decided_at >= ?", (mb, self._run_started))
            for (gid, _), parties in zip(rows, parties_of(self.store.query, [p for _, p in rows])):
                if any(not p.get("resolved") and str(p.get("address", "")).lower() in self._created for p in parties):
                    # evaluated again in full (its parties resolve anew), even when its thread alone would only re-link it
                    out[gid] = LATE_CONTACT if gid not in out else f"{LATE_CONTACT} and {LATE_THREAD}"
        return out

    async def _retry(self, client: Any, mailbox: str, user_id: str, gid: str, attempts: int, limiter: Any, *, fetched: Any = None) -> bool:
        """Fetch a message that failed earlier and evaluate it again; after `max_attempts` tag it "<category> (Undeliverable)".

        `fetched`: the message's GET, already sent (`_fetch_ahead`). True when it is now tracked."""
        from ..errors import GraphError

        u = client.sdk.users.by_user_id(user_id)
        try:
            if fetched is None:
                fetched = client.get(self._message_request(client, user_id, gid), limiter=limiter)
            item = (await fetched).data
        except GraphError as exc:
            if getattr(exc, "status", None) == 404:
                with self.store.transaction() as tx:
                    tx.execute("UPDATE tracking_attempt SET status = 'gone', updated_at = ? WHERE mailbox = ? AND graph_id = ?", (_now(), mailbox.lower(), gid))
                return False
            raise
        st = self._state(mailbox)
        container = st.containers.get(str(item.get("parentFolderId")))
        error: str | None = None
        if self.mappings is not None and container is not None:
            try:
                records = self.mappings.map_item("message", item, MappingContext(mailbox=mailbox, folder=container.folder, lookup=self.store.lookup))
            except RecordInvalid as exc:
                error = str(exc)
            else:
                with self.store.transaction() as tx:
                    out = self.evaluate(tx, mailbox, user_id, container, item, records)
                    self.page_done(tx)
                    if out:
                        tx.upsert_records(out)
                        tx.link_item(mailbox, "messages", gid, out[0].table, out[0].key, change_key=item.get("changeKey"), container=container.container)
                    tx.execute("UPDATE tracking_attempt SET status = 'done', updated_at = ? WHERE mailbox = ? AND graph_id = ?",
                               (_now(), mailbox.lower(), gid))
                return bool(out)
        if error is None:
            error = "cannot re-map the message here"
        attempts += 1
        if attempts < self.cfg.max_attempts:
            with self.store.transaction() as tx:
                tx.execute("UPDATE tracking_attempt SET attempts = ?, last_error = ?, updated_at = ? WHERE mailbox = ? AND graph_id = ?",
                           (attempts, error, _now(), mailbox.lower(), gid))
            return False
        cat = self.settings.mailbox(mailbox).category or self.cfg.category
        bad = f"{cat} (Undeliverable)"
        await self._ensure_category(client, u, bad, limiter)
        cats = [c for c in item.get("categories") or [] if isinstance(c, str) and c.lower() != cat.lower() and c != bad] + [bad]
        from msgraph.generated.models.message import Message

        req = u.messages.by_message_id(gid).to_patch_request_information(Message(categories=cats))
        await client.get(req, limiter=limiter)
        with self.store.transaction() as tx:
            tx.execute("UPDATE tracking_attempt SET attempts = ?, last_error = ?, status = 'undeliverable', updated_at = ? WHERE mailbox = ? AND graph_id = ?",
                       (attempts, error, _now(), mailbox.lower(), gid))
            self._alert(tx, mailbox, 2, "Undeliverable", f"message {gid} failed {attempts} times ({error}); tagged {bad!r}")
        return False

    async def _ensure_category(self, client: Any, u: Any, name: str, limiter: Any) -> None:
        from msgraph.generated.models.category_color import CategoryColor
        from msgraph.generated.models.outlook_category import OutlookCategory

        got = (await client.get(u.outlook.master_categories.to_get_request_information(), limiter=limiter)).data
        if any((c.get("displayName") or "").lower() == name.lower() for c in got.get("value") or []):
            return
        await client.get(u.outlook.master_categories.to_post_request_information(OutlookCategory(display_name=name, color=CategoryColor.Preset0)),
                         limiter=limiter)

