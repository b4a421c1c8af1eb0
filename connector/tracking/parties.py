"""Party resolution: email addresses -> systemuser, contact, account, lead and queue records (server-side-sync.md §2.12).

`PartyIndex.load` reads the users and queues once per run (the mailboxes that accept mail, a small
set). Contacts, accounts and leads (`LOOKED_UP`, tables the size of a CRM) are never read whole: an
address's records are read when the address is first met, through indexes on the lower-cased email
columns (`address_indexes`; the tracker creates them), then kept in a dict keyed by lower-case address
for the run. So a run's cost and memory follow the addresses its mail uses, not the size of the CRM.
Users also match on their Graph `proxyAddresses` (aliases).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

from ..mapping.records import PartyRef

# Sender resolution order: SystemUser -> Contact -> Account -> Lead -> ... -> other email-enabled tables (queues).
PRIORITY: dict[str, int] = {"systemuser": 0, "contact": 1, "account": 2, "lead": 3, "queue": 9}
MAX_SENDER_MATCHES = 100
CUSTOMER_TABLES = frozenset({"contact", "account", "lead"})  # "known parties" (track option 2)
LOOKED_UP = ("contact", "account", "lead")  # read per address (indexed), never whole


def _folded(column: str) -> str:
    """SQL for a column's address as `PartyIndex` keys it (trimmed, lower-case), written alike in the indexes and the lookups.
    (SQLite folds ASCII only: a stored address with upper-case letters or padding beyond ASCII is not found.)"""
    return f"lower(trim({column}, char(32, 9, 10, 11, 12, 13)))"


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


def _emails_in(table: str, have: Iterable[str]) -> tuple[str, ...]:
    """The table's email-format columns that its SQLite table has."""
    have = set(have)
    return tuple(c for c in email_columns().get(table, ()) if c in have)


def _record_sql(table: str, have: Iterable[str]) -> str:
    """SQL for a record's (id, state, owner), NULL for a column the SQLite table lacks (`_active` reads the state)."""
    state = "isdisabled" if table == "systemuser" else "statecode"
    return f'{table}id, {state if state in have else "NULL"}, {"ownerid" if "ownerid" in have else "NULL"}'


def _active(table: str, state: Any) -> bool:
    return not state if table == "systemuser" else state in (None, 0)


def _key(address: str) -> str:
    """An address as the index keys it."""
    return address.strip().lower()


def address_indexes(columns: Mapping[str, Iterable[str]]) -> list[tuple[str, str, str]]:
    """(index name, table, indexed expression) of the indexes the per-address lookups read: one per email column of each
    `LOOKED_UP` table, on the column trimmed and lower-cased (as `PartyIndex` keys addresses)."""
    return [(f"ix_party_{table}_{col}", table, _folded(col)) for table in LOOKED_UP for col in _emails_in(table, columns.get(table, ()))]


def _lookup_sql(columns: Mapping[str, Iterable[str]]) -> tuple[str, dict[str, tuple[str, ...]]] | None:
    """One statement reading every `LOOKED_UP` record at an address (`?1`, lower-case), as (priority, table, rowid, id, state,
    owner, email values...) in priority then rowid order (as reading each table whole would list them: a sender's tie
    goes to the first), and each table's email columns in that order."""
    emails_of = {t: e for t in LOOKED_UP if (e := _emails_in(t, columns.get(t, ())))}
    width = max((len(e) for e in emails_of.values()), default=0)
    parts = []
    for table, emails in emails_of.items():
        cols = [*emails, *["NULL"] * (width - len(emails))]
        # (written as the indexes are, so SQLite reads each one and unions the rows)
        where = " OR ".join(f"{_folded(c)} = ?1" for c in emails)
        parts.append(f'SELECT {PRIORITY[table]}, \'{table}\', rowid, {_record_sql(table, columns.get(table, ()))}, {", ".join(cols)} '
                     f'FROM "{table}" WHERE {where}')
    return (" UNION ALL ".join(parts) + " ORDER BY 1, 3", emails_of) if parts else None


@dataclass
class PartyIndex:
    """Address -> candidate records, plus the users and queues that accept mail."""

    by_address: dict[str, tuple[tuple[Any, ...], ...]] = field(default_factory=dict)  # candidates as plain tuples (see Candidate)
    mailboxes: dict[str, MailboxEntity] = field(default_factory=dict)
    user_of: dict[str, str] = field(default_factory=dict)  # primary address -> systemuserid
    # `query(sql, args) -> rows` and `_lookup_sql`'s statement: the `LOOKED_UP` records of an address not met yet
    lookup: tuple[Callable[[str, tuple[Any, ...]], Iterable[tuple[Any, ...]]], str, dict[str, tuple[str, ...]]] | None = None
    looked_up: set[str] = field(default_factory=set)  # addresses read so far

    @classmethod
    def load(cls, query: Any, columns: Mapping[str, Iterable[str]], graph_users: Iterable[dict[str, Any]] = ()) -> PartyIndex:
        """Build from the store: its users and queues now, its `LOOKED_UP` records per address when first met.
        `query(sql, args=()) -> rows`; `columns` = the columns each SQLite table has."""
        idx = cls()
        sql = _lookup_sql(columns)
        if sql is not None:
            idx.lookup = (query, *sql)
        for table, prio in PRIORITY.items():
            if table in LOOKED_UP:
                continue
            have = set(columns.get(table, ()))
            emails = _emails_in(table, have)
            if not emails:
                continue
            for row in query(f'SELECT {_record_sql(table, have)}, {", ".join(emails)} FROM "{table}"'):
                rid, st, own = str(row[0]), row[1], row[2]
                active = _active(table, st)
                for col, value in zip(emails, row[3:]):
                    if not value:
                        continue
                    key = idx._insert(str(value), (prio, table, rid, active, own, col))
                    if key is not None and (table == "queue" or col == "internalemailaddress"):
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
        key = _key(address)
        have = self.by_address.get(key, ())
        if any(c[1] == cand[1] and c[2] == cand[2] for c in have):
            return None
        self.by_address[key] = (*have, cand)
        return key

    def candidates(self, address: str) -> list[Candidate]:
        """The records an address belongs to, as indexed."""
        key = address.lower()
        if self.lookup is not None and key not in self.looked_up:
            self._look_up(key)
        return [Candidate._make(t) for t in self.by_address.get(key, ())]

    def _look_up(self, key: str) -> None:
        """Index the `LOOKED_UP` records at the lower-case address `key`."""
        assert self.lookup is not None
        query, sql, emails_of = self.lookup
        self.looked_up.add(key)
        for prio, table, _, rid, st, own, *values in query(sql, (key,)):
            active = _active(table, st)
            for col, value in zip(emails_of[table], values):
                if value and _key(str(value)) == key:
                    self._insert(str(value), (prio, table, str(rid), active, own, col))

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
