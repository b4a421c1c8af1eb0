"""Fixtures for engine tests: an emulator, settings pointing at it, and an engine on a temp SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.emulator import Emulator
from connector.settings import Settings
from connector.store.sqlite import SqliteStore
from connector.sync.engine import SyncEngine
from connector.sync.report import SyncReport
from tests.conftest import APP_ID, APP_SECRET


def settings_for(emu: Emulator, store: Path, **overrides: Any) -> Settings:
    """Settings that point the engine at `emu`."""
    values: dict[str, Any] = dict(tenant_id=emu.tenant_id, client_id=APP_ID, client_secret=APP_SECRET, authority_host=emu.authority,
                                  graph_url=emu.graph_url, ca_bundle=emu.ca_bundle, store_url=f"sqlite:///{store}", mailboxes="all",
                                  max_retries=8, tracking={"enabled": False})  # every message written (tests/tracking covers tracking)
    values.update(overrides)
    return Settings.load(None, **values)


class Runner:
    """Runs sync passes against one emulator and one store file."""

    def __init__(self, emu: Emulator, db: Path) -> None:
        self.emu = emu
        self.db = db

    def sync(self, **kwargs: Any) -> SyncReport:
        settings_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in Settings.model_fields}

        async def go() -> SyncReport:
            engine = SyncEngine.from_settings(settings_for(self.emu, self.db, **settings_kw))
            try:
                return await engine.sync_once(**kwargs)
            finally:
                await engine.aclose()

        return asyncio.run(go())

    def store(self) -> SqliteStore:
        return SqliteStore(f"sqlite:///{self.db}")

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.store() as s:
            return list(s._conn.execute(sql, args).fetchall())


@pytest.fixture
def runner_for(tmp_path: Path, make_emulator: Callable[..., Emulator]) -> Iterator[Callable[..., Runner]]:
    """`runner_for(scenario_dict)` -> a Runner over a fresh emulator and store."""

    def make(scenario: dict[str, Any] | None = None) -> Runner:
        return Runner(make_emulator(scenario), tmp_path / "sync.db")

    yield make
