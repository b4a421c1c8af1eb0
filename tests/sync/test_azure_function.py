"""The Azure Functions adapter: the timer function is registered, and a pass runs from environment settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from connector.azure_function import SyncFailed, run_sync_from_env
from tests.conftest import APP_ID, APP_SECRET, base_scenario
from tests.emulator.test_mail_delta import messages

FUNCTION_APP = Path(__file__).resolve().parents[2] / "manifest" / "azure-function" / "function_app.py"


def test_function_app_registers_a_timer_trigger() -> None:
    spec = importlib.util.spec_from_file_location("function_app", FUNCTION_APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    functions = module.app.get_functions()
    assert [f.get_function_name() for f in functions] == ["m365sync"]
    trigger = functions[0].get_trigger()
    assert trigger.get_binding_name() == "timerTrigger" and trigger.schedule == "%M365SYNC_SCHEDULE%"


def test_a_pass_from_environment_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_emulator: Any) -> None:
    s = base_scenario()
    s["users"][0]["mailFolders"] = {"inbox": {"messages": messages(3)}}
    emu = make_emulator(s)
    env = {"M365SYNC_TENANT_ID": emu.tenant_id, "M365SYNC_CLIENT_ID": APP_ID, "M365SYNC_CLIENT_SECRET": APP_SECRET,
           "M365SYNC_AUTHORITY_HOST": emu.authority, "M365SYNC_GRAPH_URL": emu.graph_url, "M365SYNC_CA_BUNDLE": emu.ca_bundle,
           "M365SYNC_STORE_URL": f"sqlite:///{tmp_path / 'fn.db'}", "M365SYNC_MAILBOXES": "all", "M365SYNC_RESOURCES": "mail"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    result = run_sync_from_env(tracking={"enabled": False})
    assert result["ok"] and sum(m["resources"]["mail"]["created"] for m in result["mailboxes"]) == 3
    monkeypatch.setenv("M365SYNC_MAILBOXES", "ghost@contoso.com")
    with pytest.raises(SyncFailed, match="ghost@contoso.com"):
        run_sync_from_env(tracking={"enabled": False})
