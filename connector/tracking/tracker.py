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
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..mapping.records import PartyRef, Record
from ..settings import TRACK_OPTION_VALUE, RegardingRef, Settings
from ..store.sqlite import SqliteStore
from ..sync.hooks import MailHook
from ..sync.resources import Container
from . import signals
from .parties import CUSTOMER_TABLES, PartyIndex, Resolution
from .tokens import TokenFormat

log = logging.getLogger("connector.tracking")

EVALUATED_FOLDERS = ("Inbox", "every synced folder under the Inbox", "tracked folders", "Sent Items (when sent_items is on)")
"""Where mail is evaluated automatically; other folders are tracked only through the category."""

# correlationmethod option values (dataverse.md: email.correlationmethod)
NONE, SKIPPED, IN_REPLY_TO, TOKEN, CONVERSATION_INDEX, SMART = 0, 1, 3, 4, 5, 6
METHOD_NAME = {0: "None", 1: "Skipped", 2: "XHeader", 3: "InReplyTo", 4: "TrackingToken", 5: "ConversationIndex", 6: "SmartMatching", 7: "CustomCorrelation"}

PARTY_NAMESPACE = uuid.UUID("5d8f0c1e-2b3a-4e9d-8f7a-6c5b4a392817")
MAILBOX_NAMESPACE = uuid.UUID("9e2d4c6b-8a1f-4b3e-9d7c-5a6b4c3d2e1f")
CONTACT_NAMESPACE = uuid.UUID("3a9b8c7d-6e5f-4a1b-9c2d-8e7f6a5b4c3d")
RECEIVED_SUFFIX = "|received"  # key suffix of the received copy of internal mail (two activities)
MASKS = {1: "from", 2: "to", 3: "cc", 4: "bcc"}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


@dataclass(slots=True)
class Correlation:
    """What correlation found: the method, the matched email and its regarding record."""

    method: int = NONE
    activityid: str | None = None
    regarding: PartyRef | None = None
    subject: str | None = None
    detail: str = ""


class Tracker(MailHook):
    """The `MailHook` implementing email tracking. Build it with `Tracker.from_settings(settings, store)`."""

    reads_store = True  # correlation looks up emails written for earlier messages of the same page

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
        self._pending: list[tuple[Any, ...]] = []  # decision rows of the page, written by page_done
        self._pending_tx: Any = None
        self._queue_filter: dict[str, str] | None = None
        self._has = {t: store.columns(t) if t in store.tables else set() for t in ("email", "activityparty", "contact")}
        self._cat = self.cfg.category.lower()
        with store.transaction() as tx:
            for name, table, cols in (
                ("ix_tracking_email_messageid", "email", "messageid"),
                ("ix_tracking_email_token", "email", "trackingtoken) WHERE (trackingtoken IS NOT NULL"),
                ("ix_tracking_email_convhash", "email", "baseconversationindexhash"),
                ("ix_tracking_email_convid", "email", "conversationtrackingid"),
                ("ix_tracking_party_activity", "activityparty", "activityid"),
            ):
                if table in store.tables:
                    tx.execute(f'CREATE INDEX IF NOT EXISTS {name} ON "{table}" ({cols})')

    @classmethod
    def from_settings(cls, settings: Settings, store: SqliteStore, mappings: Any = None) -> Tracker:
        """The tracker for these settings (the engine passes its store and mapping set)."""
        return cls(settings, store, mappings=mappings)

    # run lifecycle ----------------------------------------------------------------------------
    async def begin_run(self, client: Any) -> None:
        """Load the tenant's users with their proxy addresses (aliases), once per run; reset per-run caches."""
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        from ..sync.resources import _cfg

        self._run_started = _now()
        users: list[dict[str, Any]] = []
        request = client.sdk.users.to_get_request_information(
            _cfg([], _params=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters, select=["id", "mail", "userPrincipalName", "proxyAddresses"], top=999))
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

    @property
    def index(self) -> PartyIndex:
        """The party index (built on first use in a run)."""
        if self._index is None:
            self._index = PartyIndex.load(self.store.query, {t: self.store.columns(t) for t in self.store.tables}, self.graph_users)
        return self._index

    def _state(self, mailbox: str) -> _MailboxState:
        st = self._mailboxes.get(mailbox.lower())
        if st is None:
            st = self._mailboxes[mailbox.lower()] = _MailboxState(mailbox)
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

    # the decision -------------------------------------------------------------------------------
    def evaluate(self, tx: Any, mailbox: str, user_id: str, container: Container, item: dict[str, Any], records: list[Record]) -> list[Record]:
        """Decide one message: the records to write ([] = not tracked), with its decision row written in `tx`."""
        if not records or records[0].table != "email":
            return records
        st = self._state(mailbox)
        place, rule = self._place(st, container)
        email = records[0]
        values = dict(email.values)
        gid = str(item.get("id"))
        subject = item.get("subject")
        messageid = values.get("messageid") or item.get("internetMessageId")
        categories = item.get("categories") or ()
        by_category = any(isinstance(c, str) and c.lower() == self._cat for c in categories)
        mcfg = self.settings.mailbox(mailbox)
        sent_items = self.cfg.sent_items if mcfg.sent_items is None else mcfg.sent_items
        cat_name = mcfg.category or self.cfg.category
        if mcfg.category:
            by_category = any(isinstance(c, str) and c.lower() == mcfg.category.lower() for c in categories)
        prev = tx.execute("SELECT tracked, tracked_by, reason, activityid FROM tracking_decision WHERE mailbox = ? AND graph_id = ?",
                          (mailbox.lower(), gid)).fetchone()
        base = dict(mailbox=mailbox.lower(), graph_id=gid, messageid=messageid, subject=subject, folder=container.label)

        if not by_category and (place == "other" or (place == "sentitems" and not sent_items)):
            why = "Sent Items tracking is off" if place == "sentitems" else f"{container.label} is not an evaluated folder (evaluated: {', '.join(EVALUATED_FOLDERS)})"
            if prev and prev[0]:
                self._decide(tx, **base, tracked=True, tracked_by=prev[1], activityid=prev[3],
                             reason=f"tracked earlier ({prev[2]}); now in {container.label}: record kept, not updated")
            else:
                self._decide(tx, **base, tracked=False, reason=why)
            return []

        headers = signals.headers_of(item)
        outgoing = bool(values.get("directioncode"))
        index = self.index
        owner = self._owner(st)
        sender_addr = (signals.addresses(item, "from") or [None])[0]
        resolutions: dict[tuple[int, str], Resolution] = {}
        for r in records[1:]:
            if r.table != "activityparty":
                continue
            mask, addr = r.values.get("participationtypemask"), r.values.get("addressused")
            if not isinstance(addr, str) or (mask, addr) in resolutions:
                continue
            if mask == 1:
                resolutions[(mask, addr)] = index.sender(addr, owner, unresolve_multiple=self.cfg.unresolve_sender_on_multiple_match)
            else:
                resolutions[(mask, addr)] = index.recipient(addr, unresolve_multiple=self.cfg.unresolve_on_multiple_match)
        sender_res = resolutions.get((1, sender_addr)) if sender_addr else None
        internal = sender_addr is not None and index.mailbox(sender_addr) is not None

        h = signals.base_conversation_hash(item.get("conversationIndex"))
        if h is not None:
            values["baseconversationindexhash"] = h
        cid = signals.conversation_tracking_id(item.get("conversationId"))
        if cid:
            values["conversationtrackingid"] = cid
        corr = self._correlate(tx, item, values, headers, subject, messageid, email.key)

        tracked, tracked_by, reason = False, None, ""
        accepting: tuple[str, str | None] | None = None
        auto = signals.auto_reply_reason(headers, subject) if self.cfg.ignore_auto_replies else None
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
            tracked, reason, accepting = self._accept(mailbox, item, outgoing, corr, sender_res, resolutions, owner)
            tracked_by = "filter" if tracked else None

        party_json = [res.to_dict(MASKS.get(m, str(m))) for (m, _), res in resolutions.items()]
        thread = self._thread_keys(item, headers, subject, values) if corr.method == NONE and not auto else None
        if not tracked:
            self._decide(tx, **base, tracked=False, reason=reason, correlationmethod=corr.method, correlated=corr.activityid,
                         parties=party_json, activityid=prev[3] if prev else None, thread=thread)
            return []

        # one email per Message-ID; internal mail makes a sent and a received activity when configured
        key = email.key
        if internal and not outgoing and self.cfg.two_activities_for_internal_mail:
            key = str(uuid.uuid5(PARTY_NAMESPACE, email.key + RECEIVED_SUFFIX))
            reason += "; internal mail: the received activity (two activities)"
        existing = tx.execute("SELECT directioncode, regardingobjectid, regardingobjecttypecode, acceptingentityid FROM email WHERE activityid = ?",
                              (key,)).fetchone()
        if existing is not None and prev is None:
            reason += "; same Message-ID already tracked: merged into that email (no duplicate)"

        # regarding
        regarding, regarding_why = None, None
        if rule is not None and rule.regarding is not None:
            regarding, regarding_why = rule.regarding, f"tracked folder {rule.path} (folder rules win over manual edits)"
        elif rule is not None and rule.regarding_error:
            regarding_why = f"tracked folder {rule.path}: {rule.regarding_error}"
        elif corr.regarding is not None and (existing is None or not existing[1]):
            regarding, regarding_why = corr.regarding, f"copied from the correlated email ({METHOD_NAME[corr.method]})"
        elif existing is not None and existing[1]:
            regarding, regarding_why = PartyRef(existing[2] or "", existing[1]), "kept (set earlier)"
            values.pop("regardingobjectid", None)
        if regarding is not None and regarding_why != "kept (set earlier)":
            values["regardingobjectid"], values["regardingobjecttypecode"] = regarding.id, regarding.table

        # correlation and thread columns
        values["correlationmethod"] = corr.method
        if corr.activityid:
            values["correlatedactivityid"] = corr.activityid
            if corr.method in (IN_REPLY_TO, CONVERSATION_INDEX):
                values["parentactivityid"] = corr.activityid
            values["correlatedsubjectchanged"] = self._topic(subject) != self._topic(corr.subject)
        token = self.tokens.find(subject) if self.tokens.enabled or self.tokens.previous_prefixes else None
        if token:
            values["trackingtoken"] = token
        else:
            values.pop("trackingtoken", None)

        # acceptance columns: the first mailbox to track it keeps them
        if existing is None or not existing[3]:
            if accepting is not None and accepting[1]:
                values["acceptingentityid"] = accepting[1]
            values["receivingmailboxid"] = mailbox_record_id(mailbox)
        if existing is not None and existing[0] and not outgoing:
            values.pop("directioncode", None)  # the sent copy stays Outgoing when both copies merge
            values.pop("statuscode", None)

        # parties
        if self.cfg.auto_create_contacts and sender_addr and not outgoing and not internal and sender_res is not None and not sender_res.refs \
                and not sender_res.inactive and "contact" in self.store.tables:  # no record at all (not even an inactive one)
            sender_res = resolutions[(1, sender_addr)] = self._create_contact(tx, item, sender_addr)
            party_json = [res.to_dict(MASKS.get(m, str(m))) for (m, _), res in resolutions.items()]
        parties = self._parties(key, records[1:], resolutions)
        if existing is not None:
            parties = self._merge_parties(tx, key, parties)
        out = [Record("email", key, values), *parties]
        if self.cfg.correlation.smart_matching:
            self._remember_smart(tx, key, subject, item)
        self._decide(tx, **base, tracked=True, tracked_by=tracked_by, reason=reason, activityid=key, correlationmethod=corr.method,
                     correlated=corr.activityid, regarding=regarding, regarding_why=regarding_why,
                     accepting=accepting, parties=party_json, thread=thread)
        return out

    def _topic(self, subject: str | None) -> str:
        subject = subject or ""
        return signals.topic(self.tokens.strip(subject) if ":" in subject and self.tokens.find(subject) else subject)

    def _thread_keys(self, item: dict[str, Any], headers: dict[str, str], subject: str | None, values: dict[str, Any]) -> str | None:
        """What a later correlation pass needs, for messages nothing matched yet (their parent may sync later in the run)."""
        ids = signals.message_ids(headers.get("in-reply-to")) + signals.message_ids(headers.get("references"))
        keys = {"ids": list(dict.fromkeys(ids)), "h": signals.base_conversation_hash(item.get("conversationIndex")),
                "t": self.tokens.find(subject), "s": values.get("senton"), "m": values.get("messageid")}
        if not (keys["ids"] or keys["t"] or keys["h"] is not None):
            return None
        return json.dumps(keys, separators=(",", ":"))

    def _accept(self, mailbox: str, item: dict[str, Any], outgoing: bool, corr: Correlation, sender: Resolution | None,
                res: dict[tuple[int, str], Resolution], owner: str | None) -> tuple[bool, str, tuple[str, str | None] | None]:
        """The automatic filter: does any recipient user/queue's `track` option accept the message?"""
        index = self.index
        correlated = corr.activityid is not None

        def accepts(option: str, parties: list[PartyRef]) -> tuple[bool, str]:
            if option == "all":
                return True, "all email messages"
            if option == "none":
                return False, "no email messages"
            if option == "responses":
                return (True, f"a response to tracked email ({METHOD_NAME[corr.method]})") if correlated else (False, "not a response to tracked email")
            if option == "known_parties":
                hit = next((p for p in parties if p.table in CUSTOMER_TABLES), None)
                return (True, f"{hit.table} {hit.id}") if hit else (False, "no lead, contact or account")
            hit = next(iter(parties), None)
            return (True, f"email-enabled record {hit.table} {hit.id}") if hit else (False, "no email-enabled record")

        if outgoing:
            own_ent = index.mailbox(mailbox)
            option = self._option(mailbox, own_ent.table, own_ent.id) if own_ent else self.settings.track_option(mailbox)
            others = [ref for (m, _), r in res.items() if m != 1 for ref in r.refs]
            ok, why = accepts(option, others)
            verdict = f"sent by the mailbox owner; track={option} ({TRACK_OPTION_VALUE[option]}): {why}"
            return ok, ("tracked: " if ok else "not tracked: ") + verdict, ("systemuser", owner) if ok else None
        sender_refs = sender.refs if sender else []
        tried: list[str] = []
        seen: set[str] = set()
        for (mask, addr), _ in res.items():
            if mask not in (2, 3):
                continue
            ent = index.mailbox(addr)
            if ent is None or ent.address in seen:
                continue
            seen.add(ent.address)
            option = self._option(ent.address, ent.table, ent.id)
            ok, why = accepts(option, sender_refs)
            tried.append(f"{ent.address} track={option}: {why}")
            if ok:
                return True, f"accepted by {ent.table} {ent.address} (track={option} ({TRACK_OPTION_VALUE[option]}): {why})", (ent.table, ent.id)
        own = index.mailbox(mailbox)
        own_addr = own.address if own else mailbox.lower()
        if own_addr not in seen:
            option = self._option(mailbox, own.table, own.id) if own else self.settings.track_option(mailbox)
            if option == "all":
                return True, f"accepted by {mailbox}: received as Bcc or through a distribution list, and it tracks all email", \
                    (own.table, own.id) if own else None
            tried.append(f"{mailbox} received it as Bcc or through a distribution list (only track=all tracks those)")
        return False, "not tracked: " + ("; ".join(tried) if tried else "no To/Cc recipient is a user or queue (NoRecipientMatch)"), None

    def _option(self, address: str, table: str, rid: str | None) -> str:
        """A user's or queue's `track` option: its mailbox setting, else a queue's incomingemailfilteringmethod, else the default."""
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
    def _correlate(self, tx: Any, item: dict[str, Any], values: dict[str, Any], headers: dict[str, str], subject: str | None,
                   messageid: str | None, key: str) -> Correlation:
        cc = self.cfg.correlation
        if not (cc.headers or cc.token or cc.conversation or cc.smart_matching):
            return Correlation(SKIPPED, detail="correlation is off")
        own = messageid or ""
        sent = values.get("senton") or "9999"
        cols = "activityid, regardingobjectid, regardingobjecttypecode, subject"
        if cc.headers:
            ids = signals.message_ids(headers.get("in-reply-to")) + list(reversed(signals.message_ids(headers.get("references"))))
            for mid in dict.fromkeys(ids):
                if mid == own:
                    continue
                row = tx.execute(f"SELECT {cols} FROM email WHERE messageid = ? LIMIT 1", (mid,)).fetchone()
                if row:
                    return self._match(IN_REPLY_TO, row, f"header message id {mid}")
        if cc.token and self.tokens.enabled:
            token = self.tokens.find(subject)
            if token:
                row = tx.execute(f"SELECT {cols} FROM email WHERE trackingtoken = ? AND activityid != ? AND (messageid IS NULL OR messageid != ?) "
                                 "AND (senton IS NULL OR senton <= ?) LIMIT 1", (token, key, own, sent)).fetchone()
                if row:
                    return self._match(TOKEN, row, f"token {token}")
        if cc.conversation:
            h = values.get("baseconversationindexhash")
            cid = values.get("conversationtrackingid")
            if h is not None or cid:
                # one statement, two indexes (SQLite's multi-index OR): the thread header, else Graph's conversationId
                row = tx.execute(f"SELECT {cols}, baseconversationindexhash = ? FROM email WHERE (baseconversationindexhash = ? OR conversationtrackingid = ?) "
                                 "AND activityid != ? AND (messageid IS NULL OR messageid != ?) AND (senton IS NULL OR senton <= ?) LIMIT 1",
                                 (h, h, cid, key, own, sent)).fetchone()
                if row:
                    return self._match(CONVERSATION_INDEX, row, "conversationIndex thread header" if row[4] else "Graph conversationId")
        if cc.smart_matching:
            sig = signals.subject_signature(self.tokens.strip(subject or ""), cc.smart_max_words)
            addrs = signals.addresses(item, "from", "toRecipients", "ccRecipients", "bccRecipients")
            if addrs and signals.subject_words(subject, 1):
                marks = ",".join("?" * len(addrs))
                row = tx.execute(
                    f"SELECT s.activityid FROM tracking_smart s JOIN tracking_smart_address a ON a.activityid = s.activityid "
                    f"WHERE s.subject_sig = ? AND a.address IN ({marks}) AND s.activityid != ? GROUP BY s.activityid "
                    f"HAVING COUNT(*) >= ? ORDER BY s.rowid DESC LIMIT 5", (sig, *addrs, key, cc.smart_min_addresses)).fetchall()
                for (aid,) in row:
                    full = tx.execute(f"SELECT {cols} FROM email WHERE activityid = ? AND (messageid IS NULL OR messageid != ?) AND (senton IS NULL OR senton <= ?)",
                                      (aid, own, sent)).fetchone()
                    if full:
                        return self._match(SMART, full, f"same subject words and at least {cc.smart_min_addresses} shared addresses")
        return Correlation(NONE, detail="no tracked email matched")

    @staticmethod
    def _match(method: int, row: tuple[Any, ...], detail: str) -> Correlation:
        reg = PartyRef(row[2] or "", row[1]) if row[1] else None
        return Correlation(method, row[0], reg, row[3], detail)

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
        out: list[Record] = []
        for r in mapped:
            if r.table != "activityparty":
                out.append(r)
                continue
            mask, addr = r.values.get("participationtypemask"), r.values.get("addressused")
            found = res.get((mask, addr)) if isinstance(addr, str) else None
            refs: list[PartyRef | None] = list(found.refs) if found and found.refs else [None]
            same = r.values.get("activityid") == key
            for i, ref in enumerate(refs):
                if same and i == 0:
                    pid = r.key  # the mapping's key: one row per (activity, role, address) when it resolves to one record
                else:
                    pid = str(uuid.uuid5(PARTY_NAMESPACE, f"{key}\x1f{mask}\x1f{addr}\x1f{ref.table + ':' + ref.id if ref else ''}"))
                v = dict(r.values)
                v.update(activityid=key, partyid=ref.id if ref else None, partyobjecttypecode=ref.table if ref else None)
                out.append(Record("activityparty", pid, v))
        return out

    def _merge_parties(self, tx: Any, key: str, parties: list[Record]) -> list[Record]:
        """Union with the parties already stored for this email (another mailbox's copy): no party is lost."""
        have = {p.key for p in parties}
        merged = list(parties)
        for pid, mask, addr, partyid, ptype in tx.execute(
                "SELECT activitypartyid, participationtypemask, addressused, partyid, partyobjecttypecode FROM activityparty WHERE activityid = ?", (key,)):
            if pid in have:
                continue
            if partyid is None and any(p.values.get("addressused") == addr and p.values.get("participationtypemask") == mask for p in parties):
                continue
            merged.append(Record("activityparty", pid, {"activityid": key, "participationtypemask": mask, "addressused": addr,
                                                        "partyid": partyid, "partyobjecttypecode": ptype}))
        return merged

    def _create_contact(self, tx: Any, item: dict[str, Any], address: str) -> Resolution:
        first, last = signals.split_name(signals.display_name(item), address)
        cid = str(uuid.uuid5(CONTACT_NAMESPACE, address.lower()))
        values = {"firstname": first, "lastname": last, "fullname": " ".join(p for p in (first, last) if p),
                  "emailaddress1": address, "statecode": 0, "statuscode": 1}
        tx.upsert_records([Record("contact", cid, {k: v for k, v in values.items() if k in self._has["contact"]})])
        from .parties import Candidate

        self.index.add(address, Candidate(1, "contact", cid, True, None, "emailaddress1"))
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
                accepting: tuple[str, str | None] | None = None, parties: list[dict[str, Any]] | None = None, thread: str | None = None) -> None:
        if self._pending_tx is not tx:
            self._pending, self._pending_tx = [], tx  # rows of a rolled-back page never leak into the next one
        self._pending.append(
            (mailbox, graph_id, messageid, subject, folder, int(tracked), tracked_by, reason, activityid, correlationmethod, correlated,
             regarding.table if regarding else None, regarding.id if regarding else None, regarding_why,
             accepting[0] if accepting else None, accepting[1] if accepting else None,
             json.dumps(parties or [], separators=(",", ":")), thread, _now()))
        if len(self._pending) >= 1000:
            self.page_done(tx)

    def page_done(self, tx: Any) -> None:
        """Write the page's decision rows (the engine calls this inside the page's transaction, before its checkpoint)."""
        if self._pending:
            rows, self._pending = self._pending, []
            tx.executemany(
                "INSERT OR REPLACE INTO tracking_decision (mailbox, graph_id, messageid, subject, folder, tracked, tracked_by, reason, activityid, "
                "correlationmethod, correlated_activityid, regarding_table, regarding_id, regarding_why, accepting_table, accepting_id, parties, thread, "
                "decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

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
        for gid, attempts in rows:
            if (mailbox.lower(), gid) in self._failed_now:
                continue  # failed in this run: retried in the next one
            try:
                await self._retry(client, mailbox, user_id, gid, attempts, limiter)
            except Exception as exc:  # noqa: BLE001 - a retry must never fail the run
                log.warning("%s: retrying %s failed: %s", mailbox, gid, exc)
        for gid in self._late_matches(mailbox):
            try:
                await self._retry(client, mailbox, user_id, gid, 0, limiter, late=True)
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: re-evaluating %s failed: %s", mailbox, gid, exc)

    def _late_matches(self, mailbox: str) -> list[str]:
        """Messages of this run that nothing correlated with, whose thread now has a tracked email (synced later in the run)."""
        out: list[str] = []
        cc = self.cfg.correlation
        for gid, thread in self.store.query("SELECT graph_id, thread FROM tracking_decision WHERE mailbox = ? AND correlationmethod = 0 "
                                            "AND thread IS NOT NULL AND decided_at >= ?", (mailbox.lower(), self._run_started)):
            keys = json.loads(thread)
            own, sent = keys.get("m") or "", keys.get("s") or "9999"
            hit = False
            if cc.headers and keys["ids"]:
                marks = ",".join("?" * len(keys["ids"]))
                hit = bool(self.store.query(f"SELECT 1 FROM email WHERE messageid IN ({marks}) AND messageid != ? LIMIT 1", (*keys["ids"], own)))
            if not hit and cc.token and self.tokens.enabled and keys.get("t"):
                hit = bool(self.store.query("SELECT 1 FROM email WHERE trackingtoken = ? AND (messageid IS NULL OR messageid != ?) AND (senton IS NULL OR senton <= ?) "
                                            "LIMIT 1", (keys["t"], own, sent)))
            if not hit and cc.conversation and keys.get("h") is not None:
                hit = bool(self.store.query("SELECT 1 FROM email WHERE baseconversationindexhash = ? AND (messageid IS NULL OR messageid != ?) "
                                            "AND (senton IS NULL OR senton <= ?) LIMIT 1", (keys["h"], own, sent)))
            if hit:
                out.append(gid)
        return out

    async def _retry(self, client: Any, mailbox: str, user_id: str, gid: str, attempts: int, limiter: Any, *, late: bool = False) -> None:
        """Fetch one message again and re-evaluate it (a failed one, or `late`: one whose thread got a tracked email)."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        from ..errors import GraphError
        from ..mapping import MappingContext, RecordInvalid
        from ..sync.resources import MESSAGE_SELECT

        u = client.sdk.users.by_user_id(user_id)
        cfg: RequestConfiguration[Any] = RequestConfiguration()
        cfg.headers.add("Prefer", 'IdType="ImmutableId"')
        from msgraph.generated.users.item.messages.item.message_item_request_builder import MessageItemRequestBuilder

        cfg.query_parameters = MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(select=MESSAGE_SELECT)
        try:
            item = (await client.get(u.messages.by_message_id(gid).to_get_request_information(cfg), limiter=limiter)).data
        except GraphError as exc:
            if getattr(exc, "status", None) == 404:
                with self.store.transaction() as tx:
                    tx.execute("UPDATE tracking_attempt SET status = 'gone', updated_at = ? WHERE mailbox = ? AND graph_id = ?", (_now(), mailbox.lower(), gid))
                return
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
                    if late:
                        tx.execute("UPDATE tracking_decision SET reason = reason || '; re-evaluated after the rest of its thread synced', thread = NULL "
                                   "WHERE mailbox = ? AND graph_id = ?", (mailbox.lower(), gid))
                    else:
                        tx.execute("UPDATE tracking_attempt SET status = 'done', updated_at = ? WHERE mailbox = ? AND graph_id = ?",
                                   (_now(), mailbox.lower(), gid))
                return
        if late:
            return
        else:
            error = "cannot re-map the message here"
        attempts += 1
        if attempts < self.cfg.max_attempts:
            with self.store.transaction() as tx:
                tx.execute("UPDATE tracking_attempt SET attempts = ?, last_error = ?, updated_at = ? WHERE mailbox = ? AND graph_id = ?",
                           (attempts, error, _now(), mailbox.lower(), gid))
            return
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

    async def _ensure_category(self, client: Any, u: Any, name: str, limiter: Any) -> None:
        from msgraph.generated.models.category_color import CategoryColor
        from msgraph.generated.models.outlook_category import OutlookCategory

        got = (await client.get(u.outlook.master_categories.to_get_request_information(), limiter=limiter)).data
        if any((c.get("displayName") or "").lower() == name.lower() for c in got.get("value") or []):
            return
        await client.get(u.outlook.master_categories.to_post_request_information(OutlookCategory(display_name=name, color=CategoryColor.Preset0)),
                         limiter=limiter)

