"""`m365sync sync`: JSON report, exit codes, and one clear line for configuration, credential and network failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import APP_ID, APP_SECRET, base_scenario
from tests.emulator.test_mail_delta import messages


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("M365SYNC_")}
    return subprocess.run([sys.executable, "-m", "connector.cli", *args], capture_output=True, text=True, timeout=120, env={**clean, **env}, cwd=cwd)


def env_for(emu: Any, db: Path, **extra: str) -> dict[str, str]:
    return {"M365SYNC_TENANT_ID": emu.tenant_id, "M365SYNC_CLIENT_ID": APP_ID, "M365SYNC_CLIENT_SECRET": APP_SECRET,
            "M365SYNC_AUTHORITY_HOST": emu.authority, "M365SYNC_GRAPH_URL": emu.graph_url, "M365SYNC_CA_BUNDLE": emu.ca_bundle,
            "M365SYNC_STORE_URL": f"sqlite:///{db}", "M365SYNC_MAILBOXES": "all", "M365SYNC_TRACKING__ENABLED": "false", **extra}


def test_json_report_and_exit_codes(tmp_path: Path, make_emulator: Any) -> None:
    s = base_scenario()
    s["users"][0]["mailFolders"] = {"inbox": {"messages": messages(4)}}
    emu = make_emulator(s)
    env = env_for(emu, tmp_path / "a.db")
    p = run_cli(["sync", "--json", "--resource", "mail"], env, tmp_path)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["ok"] is True and {m["address"] for m in report["mailboxes"]} == {"adele@contoso.com", "bob@contoso.com"}
    adele = next(m for m in report["mailboxes"] if m["address"] == "adele@contoso.com")
    assert adele["resources"]["mail"]["created"] == 4
    p = run_cli(["sync", "--json", "--mailbox", "ghost@contoso.com", "--mailbox", "adele@contoso.com"], env, tmp_path)
    assert p.returncode == 1 and json.loads(p.stdout)["ok"] is False
    p = run_cli(["sync", "--resource", "mail"], env, tmp_path)  # the rich display and summary table
    assert p.returncode == 0 and "Sync summary" in p.stdout and "adele@contoso.com" in p.stdout


def test_bad_secret_is_one_line_with_the_aadsts_code(tmp_path: Path, make_emulator: Any) -> None:
    emu = make_emulator(base_scenario())
    p = run_cli(["sync"], env_for(emu, tmp_path / "b.db", M365SYNC_CLIENT_SECRET="wrong-secret"), tmp_path)
    assert p.returncode == 2
    assert "AADSTS7000215" in p.stderr and "Traceback" not in p.stderr
    assert "wrong-secret" not in p.stderr + p.stdout  # secrets never appear


def test_unreachable_graph_is_one_line(tmp_path: Path, make_emulator: Any) -> None:
    emu = make_emulator(base_scenario())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # nothing listens here once the socket closes
    p = run_cli(["sync"], env_for(emu, tmp_path / "c.db", M365SYNC_GRAPH_URL=f"https://127.0.0.1:{dead}/v1.0", M365SYNC_MAX_RETRIES="1"), tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach" in lines[0]


def test_unreachable_authority_is_one_line(tmp_path: Path, make_emulator: Any) -> None:
    emu = make_emulator(base_scenario())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    p = run_cli(["sync"], env_for(emu, tmp_path / "d.db", M365SYNC_AUTHORITY_HOST=f"https://127.0.0.1:{dead}"), tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len([line for line in p.stderr.splitlines() if line.strip()]) == 1


def test_bad_setting_names_the_setting_and_the_fix(tmp_path: Path) -> None:
    p = run_cli(["sync"], {"M365SYNC_PAGE_SIZE": "5000", "M365SYNC_CLIENT_SECRET": "s3cr3t-value"}, tmp_path)
    assert p.returncode == 2
    assert "page_size" in p.stderr and "M365SYNC_PAGE_SIZE" in p.stderr and "fix:" in p.stderr
    assert "s3cr3t-value" not in p.stderr
    p = run_cli(["sync"], {}, tmp_path)
    assert p.returncode == 2 and "M365SYNC_TENANT_ID" in p.stderr


def test_yaml_config_with_env_override(tmp_path: Path, make_emulator: Any) -> None:
    import yaml

    s = base_scenario()
    s["users"][0]["mailFolders"] = {"inbox": {"messages": messages(2)}}
    emu = make_emulator(s)
    env = env_for(emu, tmp_path / "e.db")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"mailboxes": [{"address": "bob@contoso.com"}], "resources": ["mail"], "page_size": 3}))
    env.pop("M365SYNC_MAILBOXES")
    p = run_cli(["sync", "--json", "--config", str(config)], env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert [m["address"] for m in json.loads(p.stdout)["mailboxes"]] == ["bob@contoso.com"]
    p = run_cli(["sync", "--json", "--config", str(config)], {**env, "M365SYNC_MAILBOXES": "adele@contoso.com"}, tmp_path)
    assert [m["address"] for m in json.loads(p.stdout)["mailboxes"]] == ["adele@contoso.com"]  # env overrides the file
