"""Re-fetching messages for the late re-check: JSON batches, one batch under way ahead of the one evaluated.

An async generator, so it lives outside the tracker's compiled modules (mypyc does not compile async generators)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Protocol

BATCH = 20  # messages per JSON batch (Graph's limit)


class _Fetcher(Protocol):
    async def _get_many(self, client: Any, user_id: str, gids: list[str], limiter: Any) -> dict[str, Any]: ...

    def _message_request(self, client: Any, user_id: str, gid: str) -> Any: ...


async def _done(value: Any) -> Any:
    return value


async def fetch_ahead(tracker: _Fetcher, client: Any, user_id: str, todo: list[tuple[str, int]], limiter: Any) -> AsyncIterator[tuple[str, int, Any]]:
    """Each (gid, attempts) of `todo` with an awaitable of its message: fetched `BATCH` at a time in JSON batches (the next
    batch is under way while one is evaluated). A message the batch did not return as 200 is fetched on its own, with the
    usual retries; messages are still evaluated one at a time, in order."""
    chunks = iter([todo[i:i + BATCH] for i in range(0, len(todo), BATCH)])
    inflight: deque[tuple[list[tuple[str, int]], asyncio.Task[dict[str, Any]]]] = deque()

    def start(chunk: list[tuple[str, int]]) -> None:
        inflight.append((chunk, asyncio.ensure_future(tracker._get_many(client, user_id, [g for g, _ in chunk], limiter))))

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
                yield gid, attempts, (_done(page) if page is not None else client.get(tracker._message_request(client, user_id, gid), limiter=limiter))
    finally:
        for _, task in inflight:
            task.cancel()
