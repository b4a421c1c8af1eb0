"""The mail hook: the points where the engine asks a plug-in (email tracking) about messages.

`MailHook` does nothing at every point, so the engine writes every synced message as mapped.
`connector.tracking.Tracker` overrides the points it needs. Every call inside a page happens in
that page's transaction (`tx`), so whatever a hook writes commits or rolls back with the page.
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

    def prepare_page(self, tx: Any, mailbox: str, container: Container, items: list[dict[str, Any]]) -> None:
        """Before `evaluate` runs on a page's messages: a chance to load what they need in a few queries."""

    def evaluate(self, tx: Any, mailbox: str, user_id: str, container: Container, item: dict[str, Any], records: list[Record]) -> list[Record]:
        """The records to write for one message: `records` as mapped, changed, or [] to write nothing."""
        return records

    def failed(self, tx: Any, mailbox: str, container: Container, graph_id: str, reason: str, item: dict[str, Any]) -> None:
        """A message of this page was quarantined."""

    def page_done(self, tx: Any) -> None:
        """Last call in a page's transaction, before its checkpoint."""

    async def after_mailbox(self, client: GraphClient, mailbox: str, user_id: str, limiter: Any = None) -> None:
        """After all of a mailbox's containers: Graph actions that must not run inside a page transaction."""
