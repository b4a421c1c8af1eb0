"""The mail hook: the points where the engine asks a plug-in (email tracking) about messages.

`MailHook` does nothing at every point, so the engine writes every synced item as mapped.
`connector.tracking.Tracker` overrides the points it needs. Every call inside a page happens in
that page's transaction (`tx`), so whatever a hook writes commits or rolls back with the page.

Despite its name, the page-level points (`prepare_page`, `evaluate`, `failed`, `removed`, `page_done`)
are called for the containers of every resource (mail, calendar, contacts, tasks): a hook decides by
`container.resource` and returns the mapped records unchanged for what it does not handle. The
mailbox-level points (`discovered`, `after_mailbox`) remain mail-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..mapping import Record

if TYPE_CHECKING:
    from ..graph.client import GraphClient
    from .resources import Container


class MailHook:
    """No-op base: subclass and override what you need."""

    reads_store = False
    """True when `evaluate` reads rows written for earlier messages of the same page; the engine then
    writes each message before evaluating the next instead of writing the page in one batch."""

    async def begin_run(self, client: GraphClient) -> None:
        """Once per `sync_once`, before any mailbox (e.g. to load the tenant's aliases)."""

    def pinned_folders(self, mailbox: str) -> set[str]:
        """Folder ids that must be synced whatever their current path (tracked folders survive renames)."""
        return set()

    def discovered(self, mailbox: str, containers: list[Container]) -> None:
        """The mail containers discovery found for `mailbox` on this run."""

    def prepare_page(self, tx: Any, mailbox: str, container: Container, items: list[dict[str, Any]], keys: list[str] | None = None) -> None:
        """Before `evaluate` runs on a page's items (any resource): a chance to load what they need in a few queries.
        `keys`: the key of each item's first mapped record, in the same order."""

    def evaluate(self, tx: Any, mailbox: str, user_id: str, container: Container, item: dict[str, Any], records: list[Record]) -> list[Record]:
        """The records to write for one item (message, event, contact or task; see `container.resource`): `records` as mapped,
        changed, or [] to write nothing. With [] the engine neither writes nor links the item; a hook that untracks an item
        it wrote earlier and wants its record left alone (not deleted by a later `@removed` or reconciliation) unlinks it
        in `tx` itself (`tx.mark_link_deleted`)."""
        return records

    def failed(self, tx: Any, mailbox: str, container: Container, graph_id: str, reason: str, item: dict[str, Any]) -> None:
        """An item of this page was quarantined."""

    def removed(self, tx: Any, mailbox: str, container: Container, graph_ids: list[str]) -> None:
        """Items this page reports `@removed` from `container` (deleted, or moved out of it)."""

    def page_done(self, tx: Any) -> None:
        """Last call in a page's transaction, before its checkpoint."""

    async def after_mailbox(self, client: GraphClient, mailbox: str, user_id: str, limiter: Any = None) -> None:
        """After all of a mailbox's containers: Graph actions that must not run inside a page transaction."""

    async def end_run(self, client: GraphClient) -> None:
        """Once per `sync_once` that synced mail, after every mailbox's `after_mailbox` (e.g. what one mailbox's mail needs from
        mail another mailbox synced later in the run)."""
