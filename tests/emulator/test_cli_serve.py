"""`m365sync emulator serve`: one JSON line when ready, serves until SIGTERM; clear scenario errors."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.conftest import base_scenario

CLI = [sys.executable, "-m", "connector.cli"]


def test_serve_prints_connection_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    scenario = tmp_path / "tenant.yaml"
    scenario.write_text(yaml.safe_dump(base_scenario()))
    proc = subprocess.Popen([*CLI, "emulator", "serve", "--scenario", str(scenario), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        info = json.loads(line)
        assert set(info) == {"graph_url", "authority", "tenant_id", "ca_bundle", "control_url"}
        ctx = ssl.create_default_context(cafile=info["ca_bundle"])
        r = httpx.get(f"{info['authority']}/{info['tenant_id']}/v2.0/.well-known/openid-configuration", verify=ctx)
        assert r.status_code == 200 and r.json()["token_endpoint"].startswith(info["authority"])
        r = httpx.get(f"{info['graph_url']}/users", verify=ctx)
        assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert httpx.get(f"{info['control_url']}/stats", verify=ctx).json()["requests"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert out == ""  # exactly one line was printed


def test_serve_reports_a_bad_scenario_with_file_line_and_field(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("tenant:\n  id: t\nusers:\n  - userPrincipalName: a@b.c\n    mailFolder: {}\n")
    proc = subprocess.run([*CLI, "emulator", "serve", "--scenario", str(scenario)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{scenario}:5:5: users.0.mailFolder" in proc.stderr and "Traceback" not in proc.stderr
