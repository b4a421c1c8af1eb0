"""Following a delta round: nextLink to deltaLink, refusing pages that break the contract."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from kiota_abstractions.request_information import RequestInformation

from ..errors import MalformedPageError
from .client import CallStats, GraphClient, Page


@dataclass(slots=True)
class DeltaPage:
    """One page of a round: its items and exactly one of next_link / delta_link."""

    items: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None
    size: int


def check_page(data: dict[str, Any]) -> None:
    """Graph's paging contract: a `value` array and exactly one of nextLink / deltaLink (graph-v1.md §2.1)."""
    nxt, delta = data.get("@odata.nextLink"), data.get("@odata.deltaLink")
    if nxt and delta:
        raise MalformedPageError("a delta page carried both @odata.nextLink and @odata.deltaLink")
    if not nxt and not delta:
        raise MalformedPageError("a delta page carried neither @odata.nextLink nor @odata.deltaLink")
    if not isinstance(data.get("value"), list):
        raise MalformedPageError("a delta page has no 'value' array")


_WRITE_WAIT = 1.0  # seconds page k waits at most for page k+1's request to be written


class DeltaPager:
    """Yields the pages of one round. It reports links; it never writes state (the caller commits)."""

    def __init__(self, client: GraphClient, prefer: list[str]) -> None:
        self.client = client
        self.prefer = prefer

    async def pages(self, first: RequestInformation | str, *, limiter: Any = None, stats: CallStats | None = None) -> AsyncIterator[DeltaPage]:
        """Pages from `first` (a built request or a saved link) to the page carrying the deltaLink.

        Page k+1 is requested, and the request written to its connection, before page k is handed over, so Graph
        prepares page k+1 while the caller commits page k (the commit never yields to the event loop: a request only
        scheduled would not leave before it ends). Page k+1 is only ever yielded after page k's commit.
        """
        request = first if isinstance(first, RequestInformation) else self.client.url_request(first, prefer=self.prefer)
        seen: set[str] = set()
        fetch: asyncio.Future[Page] | None = asyncio.ensure_future(self.client.get(request, limiter=limiter, stats=stats, validate=check_page))
        try:
            while fetch is not None:
                page = await fetch
                fetch = None
                data = page.data
                nxt, delta = data.get("@odata.nextLink"), data.get("@odata.deltaLink")
                if nxt:
                    if nxt in seen:
                        raise MalformedPageError(f"the nextLink repeated itself: {nxt.split('?')[0]}")
                    seen.add(nxt)
                    following = self.client.url_request(nxt, prefer=self.prefer)
                    fetch, written = self.client.start(following, limiter=limiter, stats=stats, validate=check_page)
                    if limiter is None or not limiter.locked():  # (with no free slot it cannot leave before a reply frees one)
                        # at most a moment: a retry's back-off, or a new connection to a slow host, must not hold page k
                        await asyncio.wait((fetch, written), timeout=_WRITE_WAIT, return_when=asyncio.FIRST_COMPLETED)
                yield DeltaPage(data["value"], nxt, delta, page.size)
        finally:
            if fetch is not None and not fetch.done():
                fetch.cancel()
                with contextlib.suppress(BaseException):
                    await fetch
