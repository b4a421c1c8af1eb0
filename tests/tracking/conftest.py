"""Fixtures for tracking tests: the real engine with tracking on, against the emulator, with CRM records imported."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.emulator import Emulator
from connector.settings import Settings
from connector.store.sqlite import SqliteStore
from connector.sync.engine import SyncEngine
from connector.sync.report import SyncReport
from connector.tracking import import_records
from connector.tracking.explain import find_decisions
from tests.conftest import APP_ID, APP_SECRET, app_token, base_scenario

CRM = """
systemuser:
  - {systemuserid: u-adele, firstname: Adele, lastname: Vance, internalemailaddress: adele@contoso.com}
  - {systemuserid: u-bob, firstname: Bob, lastname: Kelly, internalemailaddress: bob@contoso.com}
queue:
  - {queueid: q-sales, name: Sales, emailaddress: sales@contoso.com, incomingemailfilteringmethod: 0}
account:
  - {accountid: acc-fab, name: Fabrikam, accountnumber: F-100, emailaddress1: orders@fabrikam.com}
  - {accountid: acc-ada, name: Adatum, accountnumber: A-200, emailaddress1: info@adatum.com}
contact:
  - {contactid: c-dana, firstname: Dana, lastname: Birkby, emailaddress1: dana@fabrikam.com, parentcustomerid: acc-fab, parentcustomeridtype: account}
  - {contactid: c-old, firstname: Old, lastname: Record, emailaddress1: gone@fabrikam.com, statecode: 1, statuscode: 2}
"""


def scenario(**extra: Any) -> dict[str, Any]:
    """Adele, Bob and a shared sales@ mailbox (aliases orders@, quotes@)."""
    s = base_scenario(**extra)
    s["users"].append({"userPrincipalName": "sales@contoso.com", "displayName": "Contoso Sales",
                       "proxyAddresses": ["SMTP:sales@contoso.com", "smtp:orders@contoso.com"]})
    return s


def ext(subject: str, sender: str = "dana@fabrikam.com", to: tuple[str, ...] = ("adele@contoso.com",), **more: Any) -> dict[str, Any]:
    """An incoming message from outside."""
    return {"subject": subject, "from": {"emailAddress": {"name": "Dana Birkby", "address": sender}},
            "toRecipients": [{"emailAddress": {"address": a}} for a in to], **more}


def hdr(**headers: str) -> list[dict[str, str]]:
    """internetMessageHeaders from keyword arguments (In_Reply_To -> In-Reply-To)."""
    return [{"name": k.replace("_", "-"), "value": v} for k, v in headers.items()]


class TrackRunner:
    """Sync passes with tracking against one emulator and one store file."""

    def __init__(self, emu: Emulator, db: Path, tmp: Path) -> None:
        self.emu, self.db = emu, db
        with SqliteStore(f"sqlite:///{db}") as s:
            crm = tmp / "crm.yaml"
            crm.write_text(CRM)
            import_records(s, [crm])

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = dict(tenant_id=self.emu.tenant_id, client_id=APP_ID, client_secret=APP_SECRET, authority_host=self.emu.authority,
                                      graph_url=self.emu.graph_url, ca_bundle=self.emu.ca_bundle, store_url=f"sqlite:///{self.db}",
                                      mailboxes="all", resources=["mail"], max_retries=4)
        values.update(overrides)
        return Settings.load(None, **values)

    def sync(self, **overrides: Any) -> SyncReport:
        async def go() -> SyncReport:
            engine = SyncEngine.from_settings(self.settings(**overrides))
            try:
                return await engine.sync_once()
            finally:
                await engine.aclose()

        rep = asyncio.run(go())
        assert rep.ok, rep.to_dict()
        return rep

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with SqliteStore(f"sqlite:///{self.db}") as s:
            return s.query(sql, args)

    def explain(self, query: str) -> list[dict[str, Any]]:
        with SqliteStore(f"sqlite:///{self.db}") as s:
            return find_decisions(s, query)

    def one(self, query: str, mailbox: str = "adele@contoso.com") -> dict[str, Any]:
        got = [d for d in self.explain(query) if d["mailbox"] == mailbox]
        assert len(got) == 1, got
        return got[0]

    def email(self, subject: str) -> dict[str, Any]:
        with SqliteStore(f"sqlite:///{self.db}") as s:
            keys = s.query("SELECT activityid FROM email WHERE subject = ?", (subject,))
            assert len(keys) == 1, keys
            row = s.get("email", keys[0][0])
            assert row is not None
            return row

    def graph(self) -> httpx.Client:
        return httpx.Client(base_url=self.emu.graph_url, verify=self.emu.ssl_context(), timeout=30,
                            headers={"Authorization": f"Bearer {app_token(self.emu)}", "Prefer": 'IdType="ImmutableId"'})

    def message_id(self, user: str, subject: str) -> str:
        with self.graph() as c:
            got = c.get(f"/users/{user}/messages", params={"$top": "500", "$select": "subject"}).json()["value"]
        return next(m["id"] for m in got if m["subject"] == subject)


@pytest.fixture
def tracking_for(tmp_path: Path, make_emulator: Callable[..., Emulator]) -> Callable[..., TrackRunner]:
    """`tracking_for(scenario_dict)` -> a TrackRunner with the CRM records imported."""

    def make(s: dict[str, Any] | None = None) -> TrackRunner:
        return TrackRunner(make_emulator(s or scenario()), tmp_path / "track.db", tmp_path)

    return make
