"""Party resolution: email addresses -> systemuser, contact, account, lead and queue records (server-side-sync.md §2.12).

`PartyIndex.load` reads every email-format column of the email-enabled tables once (a run's
precomputation) into a dict keyed by lower-case address, so resolving is a dict lookup, never a scan.
Users also match on their Graph `proxyAddresses` (aliases).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

from ..mapping.records import PartyRef

# Sender resolution order: SystemUser -> Contact -> Account -> Lead -> ... -> other email-enabled tables (queues).
PRIORITY: dict[str, int] = {"systemuser": 0, "contact": 1, "account": 2, "lead": 3, "queue": 9}
MAX_SENDER_MATCHES = 100
CUSTOMER_TABLES = frozenset({"contact", "account", "lead"})  # "known parties" (track option 2)


class Candidate(NamedTuple):
    """One record an address belongs to.

    Tuples (of candidates too) rather than objects and lists: a tuple of plain values is left alone by the
    garbage collector, and the index holds one per email-format value of every CRM record."""

    priority: int
    table: str
    id: str
    active: bool
    owner: str | None
    via: str  # the column (or "alias") the address matched on


class MailboxEntity(NamedTuple):
    """A user or queue that can accept mail: the record (if any) and its primary SMTP address."""

    table: str  # systemuser | queue
    id: str | None  # None: a tenant user with no systemuser row
    address: str


@dataclass(slots=True)
class Resolution:
    """The outcome for one address: the records it resolved to (maybe none) and why."""

    address: str
    refs: list[PartyRef]
    why: str
    inactive: int = 0

    def to_dict(self, role: str) -> dict[str, Any]:
        """The JSON form used in decision records."""
        return {"role": role, "address": self.address, "resolved": [{"table": r.table, "id": r.id} for r in self.refs], "why": self.why}


@lru_cache(maxsize=1)
def email_columns() -> dict[str, tuple[str, ...]]:
    """Table -> its columns of format Email, from the packaged schema (every such column takes part)."""
    raw = json.loads(resources.files("connector.mapping").joinpath("dataverse_tables.json").read_text("utf-8"))["tables"]
    out: dict[str, tuple[str, ...]] = {}
    for name in PRIORITY:
        cols = raw.get(name, {}).get("columns", {})
        out[name] = tuple(c for c, spec in cols.items() if spec.get("format") == "Email")
    return out


@dataclass
class PartyIndex:
    """Address -> candidate records, plus the users and queues that accept mail."""

    by_address: dict[str, tuple[tuple[Any, ...], ...]] = field(default_factory=dict)  # candidates as plain tuples (see Candidate)
    mailboxes: dict[str, MailboxEntity] = field(default_factory=dict)
    user_of: dict[str, str] = field(default_factory=dict)  # primary address -> systemuserid

    @classmethod
    def load(cls, query: Any, columns: Mapping[str, Iterable[str]], graph_users: Iterable[dict[str, Any]] = ()) -> PartyIndex:
        """Build from the store. `query(sql) -> rows`; `columns` = the columns each SQLite table has."""
        idx = cls()
        wanted = email_columns()
        for table, prio in PRIORITY.items():
            have = set(columns.get(table, ()))
            if not have:
                continue
            emails = [c for c in wanted.get(table, ()) if c in have]
            if not emails:
                continue
            pk = f"{table}id"
            state = "isdisabled" if table == "systemuser" else "statecode"
            owner = "ownerid" if "ownerid" in have else "NULL"
            sel = ", ".join([pk, state if state in have else "NULL", owner, *emails])
            mailbox_table = table in ("systemuser", "queue")
            for row in query(f'SELECT {sel} FROM "{table}"'):
                rid, st, own = str(row[0]), row[1], row[2]
                active = not st if table == "systemuser" else st in (None, 0)
                for col, value in zip(emails, row[3:]):
                    if not value:
                        continue
                    key = idx._insert(str(value), (prio, table, rid, active, own, col))
                    if key is not None and mailbox_table and (table == "queue" or col == "internalemailaddress"):
                        if table == "systemuser":
                            idx.user_of.setdefault(key, rid)
                        idx.mailboxes.setdefault(key, MailboxEntity(table, rid, key))
        idx.add_aliases(graph_users)
        return idx

    def add(self, address: str, cand: Candidate) -> None:
        """Index one address of one record."""
        self._insert(address, tuple(cand))

    def _insert(self, address: str, cand: tuple[Any, ...]) -> str | None:
        """Index a candidate given as a plain tuple (exact tuples of plain values: the collector untracks them); the
        normalised address, or None when that record was indexed at the address already."""
        key = address.strip().lower()
        have = self.by_address.get(key, ())
        if any(c[1] == cand[1] and c[2] == cand[2] for c in have):
            return None
        self.by_address[key] = (*have, cand)
        return key

    def candidates(self, address: str) -> list[Candidate]:
        """The records an address belongs to, as indexed."""
        return [Candidate._make(t) for t in self.by_address.get(address.lower(), ())]

    def add_aliases(self, users: Iterable[dict[str, Any]]) -> None:
        """Tenant users from Graph: every proxy address resolves like the primary one (to its systemuser or queue)."""
        for u in users:
            primary = (u.get("mail") or "").strip().lower()
            if not primary:
                continue
            aliases = {primary, (u.get("userPrincipalName") or "").strip().lower()}
            for p in u.get("proxyAddresses") or ():
                if isinstance(p, str) and p.lower().startswith("smtp:"):
                    aliases.add(p[5:].strip().lower())
            aliases.discard("")
            owners = [c for c in self.candidates(primary) if c.table in ("systemuser", "queue")]
            entity = self.mailboxes.get(primary) or MailboxEntity("systemuser", None, primary)
            for a in aliases:
                self.mailboxes.setdefault(a, entity)
                for c in owners:
                    if a != primary:
                        self.add(a, Candidate(c.priority, c.table, c.id, c.active, c.owner, "alias"))

    def matches(self, address: str) -> list[Candidate]:
        """Every record the address belongs to, in priority order."""
        return sorted(self.candidates(address), key=lambda c: c.priority)

    def sender(self, address: str, mailbox_owner: str | None, *, unresolve_multiple: bool = False) -> Resolution:
        """The sender's single record: the first active match by priority, the mailbox owner's records first."""
        cands = self.candidates(address)
        if not cands:
            return Resolution(address, [], "no record has this address")
        if len(cands) > MAX_SENDER_MATCHES:
            return Resolution(address, [], f"{len(cands)} records match (more than {MAX_SENDER_MATCHES}): left unresolved")
        active = [c for c in cands if c.active]
        inactive = len(cands) - len(active)
        if not active:
            return Resolution(address, [], f"only inactive records match ({inactive})", inactive)
        if unresolve_multiple and len(active) > 1:
            return Resolution(address, [], f"{len(active)} records match: left unresolved (unresolve_sender_on_multiple_match)", inactive)
        best = min(active, key=lambda c: (not (mailbox_owner and c.owner == mailbox_owner), c.priority))
        why = f"first active match by priority ({best.table} via {best.via})"
        if mailbox_owner and best.owner == mailbox_owner:
            why = f"owned by the mailbox owner ({best.table} via {best.via})"
        if len(active) > 1:
            why += f"; {len(active) - 1} other match(es) lower in order"
        if inactive:
            why += f"; {inactive} inactive skipped"
        return Resolution(address, [PartyRef(best.table, best.id)], why, inactive)

    def recipient(self, address: str, *, unresolve_multiple: bool = False) -> Resolution:
        """Every active record the address belongs to (or none, with `unresolve_multiple` and several matches)."""
        cands = self.candidates(address)
        if not cands:
            return Resolution(address, [], "no record has this address")
        active = sorted((c for c in cands if c.active), key=lambda c: c.priority)
        inactive = len(cands) - len(active)
        if not active:
            return Resolution(address, [], f"only inactive records match ({inactive})", inactive)
        if unresolve_multiple and len(active) > 1:
            return Resolution(address, [], f"{len(active)} records match: left unresolved (unresolve_on_multiple_match)", inactive)
        why = "all active matches" + (f"; {inactive} inactive skipped" if inactive else "")
        return Resolution(address, [PartyRef(c.table, c.id) for c in active], why, inactive)

    def mailbox(self, address: str) -> MailboxEntity | None:
        """The user or queue receiving mail at this address (aliases included)."""
        return self.mailboxes.get(address.lower())
