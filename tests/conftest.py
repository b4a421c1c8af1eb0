"""Shared fixtures: a running emulator built from a scenario dict, and app tokens for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from connector.emulator import Emulator, Scenario

TENANT_ID = "11111111-1111-1111-1111-111111111111"
APP_ID = "22222222-2222-2222-2222-222222222222"
APP_SECRET = "emulator-test-secret"
ALL_PERMISSIONS = [
    "User.Read.All", "Mail.ReadWrite", "Mail.Send", "MailboxSettings.ReadWrite",
    "Calendars.ReadWrite", "Contacts.ReadWrite", "Tasks.ReadWrite.All",
]


def base_scenario(**overrides: Any) -> dict[str, Any]:
    """A small tenant: one all-permission app and two users, Adele and Bob."""
    data: dict[str, Any] = {
        "tenant": {"id": TENANT_ID, "domain": "contoso.com"},
        "apps": [{"client_id": APP_ID, "client_secret": APP_SECRET, "permissions": ALL_PERMISSIONS}],
        "users": [
            {"userPrincipalName": "adele@contoso.com", "displayName": "Adele Vance",
             "proxyAddresses": ["SMTP:adele@contoso.com", "smtp:adele.vance@contoso.com"]},
            {"userPrincipalName": "bob@contoso.com", "displayName": "Bob Kelly"},
        ],
    }
    data.update(overrides)
    return data


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Factory: `make_emulator(scenario_dict_or_path)` returns a started emulator, stopped after the test."""
    started: list[Emulator] = []

    def make(scenario: dict[str, Any] | str | None = None) -> Emulator:
        src = scenario if scenario is not None else base_scenario()
        emu = Emulator(Scenario.model_validate(src) if isinstance(src, dict) else src).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """The base scenario, running."""
    return make_emulator()


def app_token(emu: Emulator, client_id: str = APP_ID, secret: str = APP_SECRET) -> str:
    """A client-credentials access token for Graph."""
    r = httpx.post(
        f"{emu.authority}/{emu.tenant_id}/oauth2/v2.0/token",
        data={"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials",
              "scope": "https://graph.microsoft.com/.default"},
        verify=emu.ssl_context(),
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def graph_client(emu: Emulator, client_id: str = APP_ID, secret: str = APP_SECRET, **headers: str) -> httpx.Client:
    """An httpx client on `emu`'s Graph root, authorised as an app (extra headers such as Prefer by keyword)."""
    return httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context(), timeout=30,
                        headers={"Authorization": f"Bearer {app_token(emu, client_id, secret)}", **headers})


@pytest.fixture
def graph(emulator: Emulator) -> Iterator[httpx.Client]:
    """An httpx client on the base emulator's Graph root, authorised as the test app."""
    with httpx.Client(base_url=emulator.graph_url, verify=emulator.ssl_context(),
                      headers={"Authorization": f"Bearer {app_token(emulator)}"}, timeout=30) as client:
        yield client


def round_trip(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], str, int]:
    """Follow a delta round's nextLinks to its deltaLink; returns (items, deltaLink, pages)."""
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        r = client.get(url, headers=headers or {})
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        assert not ("@odata.nextLink" in page and "@odata.deltaLink" in page)
        items.extend(page["value"])
        if "@odata.nextLink" in page:
            url = page["@odata.nextLink"]
            continue
        return items, page["@odata.deltaLink"], pages
