"""The Azure Functions adapter: one sync pass per timer tick. All the work is `SyncEngine`'s.

`manifest/azure-function/function_app.py` registers `run_sync_from_env` on a timer trigger. Settings
come from the Function App's application settings (the same `M365SYNC_*` names as everywhere);
use `M365SYNC_MANAGED_IDENTITY=true` on Azure, and point `M365SYNC_STORE_URL` at persistent storage
(an Azure Files mount), since a Function's local disk does not survive a restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .errors import ConnectorError
from .settings import Settings
from .sync.engine import SyncEngine

log = logging.getLogger("connector.azure_function")


class SyncFailed(ConnectorError):
    """A pass finished but some mailbox failed; raising marks the Function invocation failed (and alertable)."""


def run_sync_from_env(**overrides: Any) -> dict[str, Any]:
    """Run one pass with settings from the environment; returns the report as a dict.

    Raises `SyncFailed` when a mailbox failed, and the engine's own errors (auth, unreachable,
    configuration) unchanged, so the Functions host records the invocation as failed.
    """
    settings = Settings.load(**overrides)

    async def go() -> dict[str, Any]:
        async with SyncEngine.from_settings(settings) as engine:
            report = await engine.sync_once()
        return report.to_dict()

    result = asyncio.run(go())
    totals = {k: sum(r[k] for m in result["mailboxes"] for r in m["resources"].values()) for k in ("created", "updated", "deleted", "requests")}
    log.info("m365sync pass: %d mailboxes in %.1f s, %s", len(result["mailboxes"]), result["seconds"], totals)
    if not result["ok"]:
        failed = [m["address"] for m in result["mailboxes"] if m["failed"]]
        raise SyncFailed(f"{len(failed)} mailbox(es) failed: {', '.join(failed[:10])}")
    return result
