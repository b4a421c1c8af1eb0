"""The sync engine: the one orchestrator behind the Python API, the CLI and the Azure Function.

For each mailbox (a bounded number at once) and each of its delta containers, it follows the
round from the saved checkpoint, maps every item through the mapping set, and commits each page's
records together with the page's checkpoint in one SQLite transaction. A crash at any instant
therefore resumes from the last committed page: nothing lost, nothing duplicated (keys are
deterministic and writes are upserts).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import AuthError, ConnectorError, DeltaResetRequired, GraphError, MalformedPageError, UnreachableError
from ..graph.auth import TokenProvider, credential_factory
from ..graph.client import CallStats, GraphClient
from ..graph.pager import DeltaPage, DeltaPager
from ..mapping import MappingContext, MappingSet, Record, RecordInvalid, load_mapping_set
from ..settings import ALL_RESOURCES, Settings
from ..store.sqlite import SqliteStore
from .heap import RunHeap
from .hooks import MailHook
from .report import MailboxReport, ResourceReport, SyncReport
from .resources import Container, Discovery

log = logging.getLogger("connector.sync")

Progress = Callable[["ProgressEvent"], None]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Emitted after every committed page (and when a container starts or fails)."""

    mailbox: str
    resource: str
    container: str
    items: int = 0
    pages: int = 0
    done: bool = False
    error: str | None = None


@dataclass(slots=True)
class _Mailbox:
    address: str
    user_id: str
    limiter: asyncio.Semaphore


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class SyncEngine:
    """Mirrors mailboxes into Dataverse-style records. Use `from_settings`, then `await sync_once()`."""

    def __init__(self, settings: Settings, client: GraphClient, store: SqliteStore, mappings: MappingSet, *, mail_hook: MailHook | None = None) -> None:
        self.settings = settings
        self.mail_hook: MailHook = mail_hook or MailHook()
        self.client = client
        self.store = store
        self.mappings = mappings
        self.prefer = [f"odata.maxpagesize={settings.page_size}", 'IdType="ImmutableId"']
        self.discovery = Discovery(client, settings, self.prefer)
        self.discovery.pinned = self.mail_hook.pinned_folders  # tracked folders, by id (rename-safe)
        self.pager = DeltaPager(client, self.prefer)
        self.policies = {cm.target: cm.delete_policy for cm in mappings.mappings.values()}
        self._heap = RunHeap()  # the current run's (sync_once makes one per run)
        store.ensure_tables(mappings.tables)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> SyncEngine:
        """Build the engine (credential, Graph client, store, mappings) from settings."""
        settings = settings or Settings.load(**overrides)
        tokens = TokenProvider(credential_factory(settings))
        client = GraphClient(tokens, graph_url=settings.graph_url, ca_bundle=str(settings.ca_bundle) if settings.ca_bundle else None,
                             timeout=settings.request_timeout, max_retries=settings.max_retries)
        mappings = load_mapping_set(settings.mappings_dir)
        store = SqliteStore(settings.store_url, tables=mappings.tables)
        hook: MailHook | None = None
        if settings.tracking.enabled:
            from ..tracking import Tracker

            hook = Tracker.from_settings(settings, store, mappings)
        return cls(settings, client, store, mappings, mail_hook=hook)

    async def aclose(self) -> None:
        """Release the HTTP client, the credential and the store."""
        await self.client.close()
        self.store.close()

    async def __aenter__(self) -> SyncEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # the run --------------------------------------------------------------------------------
    async def sync_once(self, mailboxes: Iterable[str] | None = None, resources: Iterable[str] | None = None, *,
                        full: bool = False, progress: Progress | None = None) -> SyncReport:
        """One pass over every mailbox and resource. Raises only for tenant-wide failures (auth, unreachable)."""
        started = time.perf_counter()
        report = SyncReport(started_at=_now())
        wanted = list(resources or self.settings.resources)
        for r in wanted:
            if r not in ALL_RESOURCES:
                raise ConnectorError(f"unknown resource {r!r}; choose from {', '.join(ALL_RESOURCES)}")
        addresses = list(mailboxes) if mailboxes else await self._configured_mailboxes()
        await self.mail_hook.begin_run(self.client)
        gate = asyncio.Semaphore(self.settings.parallel_mailboxes)

        async def one(address: str) -> MailboxReport:
            async with gate:
                return await self._sync_mailbox(address, wanted, full, progress)

        heap = self._heap = RunHeap()
        try:
            report.mailboxes = list(await asyncio.gather(*(one(a) for a in addresses)))
            if "mail" in wanted:
                await self.mail_hook.end_run(self.client)
        finally:
            heap.close()
        report.finished_at = _now()
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    async def _configured_mailboxes(self) -> list[str]:
        if self.settings.mailboxes != "all":
            return [m.address for m in self.settings.mailboxes]  # type: ignore[union-attr]
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        from .resources import request_config

        request = self.client.sdk.users.to_get_request_information(
            request_config([], _params=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters, select=["id", "mail", "userPrincipalName"], top=999))
        out: list[str] = []
        while True:
            page = (await self.client.get(request)).data
            out.extend(u["mail"] for u in page.get("value", []) if u.get("mail"))
            if not page.get("@odata.nextLink"):
                return out
            request = self.client.url_request(page["@odata.nextLink"])

    async def _sync_mailbox(self, address: str, resources: list[str], full: bool, progress: Progress | None) -> MailboxReport:
        rep = MailboxReport(address)
        limiter = asyncio.Semaphore(self.settings.mailbox_concurrency)  # every request of this mailbox shares it
        stats = CallStats()
        try:
            user = (await self.client.get(self.client.sdk.users.by_user_id(address).to_get_request_information(), limiter=limiter, stats=stats)).data
        except (AuthError, UnreachableError):
            raise
        except (GraphError, MalformedPageError) as exc:
            rep.error = f"mailbox {address}: {exc}"
            return rep
        mb = _Mailbox(address, user["id"], limiter)
        with self.store.transaction() as tx:
            tx.upsert_mailbox(address, user_id=user["id"], display_name=user.get("displayName"))
        tasks = []
        for resource in resources:
            rrep = rep.resource(resource)
            try:
                containers = await self._discover(mb, resource, rrep)
            except (AuthError, UnreachableError):
                raise
            except (GraphError, MalformedPageError) as exc:
                rrep.errors.append(f"discovery: {exc}")
                continue
            rrep.containers = len(containers)
            tasks.extend(self._sync_container(mb, c, rrep, full, progress) for c in containers)
        await asyncio.gather(*tasks)
        if "mail" in resources:
            await self.mail_hook.after_mailbox(self.client, mb.address, mb.user_id, mb.limiter)  # Graph actions outside page transactions
        return rep

    async def _discover(self, mb: _Mailbox, resource: str, rrep: ResourceReport) -> list[Container]:
        stats = CallStats()
        try:
            if resource == "mail":
                found = await self.discovery.mail(mb.user_id, mb.limiter, stats, mb.address)
                self.mail_hook.discovered(mb.address, found)  # tracking binds folder rules to folder ids
                return found
            if resource == "calendar":
                return self.discovery.calendar(mb.user_id)
            if resource == "contacts":
                return await self.discovery.contacts(mb.user_id, mb.limiter, stats)
            return await self.discovery.tasks(mb.user_id, mb.limiter, stats)
        finally:
            self._add_stats(rrep, stats)

    @staticmethod
    def _add_stats(rrep: ResourceReport, stats: CallStats) -> None:
        rrep.requests += stats.requests
        rrep.retries += stats.retries
        rrep.throttled += stats.throttled

    async def _sync_container(self, mb: _Mailbox, c: Container, rrep: ResourceReport, full: bool, progress: Progress | None) -> None:
        resets = 0
        stats = CallStats()
        try:
            while True:
                cp = self.store.get_checkpoint(mb.address, c.kind, c.container)
                if full or cp is None or not (cp.next_link or cp.delta_link):
                    start: Any = c.first_request()
                    round_id: str | None = uuid.uuid4().hex  # a full round: reconcile when it ends
                    with self.store.transaction() as tx:
                        tx.set_checkpoint(mb.address, c.kind, c.container, next_link=None, delta_link=None, round_id=round_id)
                elif cp.next_link:
                    start, round_id = cp.next_link, cp.round_id  # resume mid-round
                else:
                    start, round_id = cp.delta_link, None
                try:
                    async for page in self.pager.pages(start, limiter=mb.limiter, stats=stats):
                        n = self._commit(mb, c, page, round_id, rrep)
                        rrep.pages += 1
                        if progress:
                            progress(ProgressEvent(mb.address, c.resource, c.label, items=n, pages=1))
                    break
                except DeltaResetRequired as exc:
                    resets += 1
                    rrep.resyncs += 1
                    log.info("%s %s: %s; resyncing in full", mb.address, c.label, exc.code)
                    if resets > 2:
                        raise
                    full = True
        except (AuthError, UnreachableError):
            raise
        except (GraphError, MalformedPageError) as exc:
            rrep.errors.append(f"{c.label}: {exc}")
            if progress:
                progress(ProgressEvent(mb.address, c.resource, c.label, error=str(exc)))
        finally:
            self._add_stats(rrep, stats)

    # one page, one transaction --------------------------------------------------------------
    def _commit(self, mb: _Mailbox, c: Container, page: DeltaPage, round_id: str | None, rrep: ResourceReport) -> int:
        ctx = MappingContext(mailbox=mb.address, folder=c.folder, lookup=self.store.lookup)
        latest: dict[str, dict[str, Any]] = {}
        for item in page.items:
            gid = item.get("id")
            if isinstance(gid, str):
                latest[gid] = item  # a replayed item: the last copy wins
        mapped = []
        quarantined = []
        removals = []
        for gid, item in latest.items():
            if "@removed" in item:
                removals.append(gid)
                continue
            try:
                records = self.mappings.map_item(c.source, item, ctx)
            except RecordInvalid as exc:
                quarantined.append((gid, str(exc), item))
                continue
            if records:
                mapped.append((gid, item, records))
        written = 0
        links = self.store.links_for(mb.address, c.kind, [gid for gid, _, _ in mapped] + removals)
        hook = self.mail_hook  # every resource: the hook decides by c.resource (tracking: mail, events, tasks)
        # A hook that reads the store (tracking correlates against earlier emails) sees each message
        # written before the next is evaluated; otherwise the page is written in one batch.
        per_item = hook.reads_store
        pending: list[Record] = []
        batched: set[tuple[str, str]] = set()  # (table, key) of the hook's records in `pending`
        link_rows: list[tuple[str, str, str, str | None]] = []
        with self.store.transaction() as tx:
            hook.prepare_page(tx, mb.address, c, [item for _, item, _ in mapped], [records[0].key for _, _, records in mapped])
            for gid, item, records in mapped:
                records = hook.evaluate(tx, mb.address, mb.user_id, c, item, records)
                if not records:
                    continue  # not tracked: the hook recorded why
                if per_item:
                    tx.upsert_records(records)
                else:
                    # two messages of the page writing the same record (copies of one Message-ID): the earlier one is
                    # written first, so the batch ends as writing each message in turn would
                    rk = (records[0].table, records[0].key)
                    if rk in batched:
                        tx.upsert_records(pending)
                        pending, batched = [], set()
                    batched.add(rk)
                    pending.extend(records)
                link_rows.append((gid, records[0].table, records[0].key, item.get("changeKey")))
                link = links.get(gid)
                if link is None or link.deleted:
                    rrep.created += 1
                else:
                    rrep.updated += 1
                written += 1
            if pending:
                tx.upsert_records(pending)
            tx.link_items(mb.address, c.kind, link_rows, container=c.container, seen_round=round_id)
            if removals:
                hook.removed(tx, mb.address, c, removals)
            for gid in removals:
                link = links.get(gid)
                if link is None or link.deleted or link.container != c.container:
                    continue  # unknown, already gone, or moved on to another synced container
                if self._remove(tx, c, link.table, link.record_key):
                    rrep.deleted += 1
                tx.mark_link_deleted(mb.address, c.kind, gid)
                written += 1
            for gid, reason, item in quarantined:
                tx.quarantine(mb.address, c.kind, gid, reason, item)
                rrep.quarantined += 1
                hook.failed(tx, mb.address, c, gid, reason, item)
            hook.page_done(tx)  # the hook's buffered rows (tracking decisions), in this page's transaction
            if page.delta_link and round_id is not None:
                for link in self.store.unseen_links(mb.address, c.kind, c.container, round_id):
                    if self._remove(tx, c, link.table, link.record_key):
                        rrep.deleted += 1
                    tx.mark_link_deleted(mb.address, c.kind, link.graph_id)
            tx.set_checkpoint(mb.address, c.kind, c.container, next_link=page.next_link, delta_link=page.delta_link,
                              round_id=round_id if page.next_link else None)
        self._heap.page_committed()
        return written

    def _remove(self, tx: Any, c: Container, table: str, key: str) -> bool:
        policy = self.policies.get(table, "keep")
        if c.window is not None and not self._in_window(table, key, c.window):
            return False  # calendarView reports changes outside the window as @removed (graph-v1.md §2.4)
        if policy == "keep":
            return True
        return bool(tx.apply_delete_policy(table, key, policy))

    def _in_window(self, table: str, key: str, window: tuple[datetime, datetime]) -> bool:
        row = self.store.get(table, key)
        if row is None:
            return False
        start, end = row.get("scheduledstart"), row.get("scheduledend")
        lo, hi = window[0].strftime("%Y-%m-%dT%H:%M:%SZ"), window[1].strftime("%Y-%m-%dT%H:%M:%SZ")
        if start is None or end is None:
            return True
        return str(end) >= lo and str(start) <= hi


__all__ = ["MailHook", "ProgressEvent", "SyncEngine"]
