"""A sync killed from outside (SIGKILL) after page k resumes from its last committed page: no loss, no duplicates."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import APP_ID, APP_SECRET, base_scenario
from tests.emulator.test_mail_delta import messages

from .conftest import Runner

PAGE = 5
TOTAL = 60


def _committed(db: Path) -> tuple[int, str | None]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.OperationalError:
        return 0, None
    try:
        n = con.execute("SELECT COUNT(*) FROM item_link WHERE resource = 'messages'").fetchone()[0]
        row = con.execute("SELECT next_link FROM sync_state WHERE resource = 'messages' AND next_link IS NOT NULL").fetchone()
        return int(n), row[0] if row else None
    except sqlite3.OperationalError:
        return 0, None
    finally:
        con.close()


def test_sigkill_mid_round_then_resume(tmp_path: Path, make_emulator: Any) -> None:
    s = base_scenario()
    s["users"][0]["mailFolders"] = {"inbox": {"messages": messages(TOTAL)}}
    emu = make_emulator(s)
    emu.add_fault({"match": {"path": "/v1.0/users/*/mailFolders/*/messages/delta*"}, "delay_ms": 250})
    db = tmp_path / "crash.db"
    config = tmp_path / "m365sync.yaml"
    config.write_text(yaml.safe_dump({
        "tenant_id": emu.tenant_id, "client_id": APP_ID, "client_secret": APP_SECRET, "authority_host": emu.authority,
        "graph_url": emu.graph_url, "ca_bundle": emu.ca_bundle, "store_url": f"sqlite:///{db}",
        "mailboxes": ["adele@contoso.com"], "resources": ["mail"], "page_size": PAGE, "tracking": {"enabled": False}}))
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "sync", "--config", str(config), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            n, next_link = _committed(db)
            if n >= 3 * PAGE and next_link:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # a kill from outside, at whatever instant the sync is in
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at, next_link = _committed(db)
    assert next_link is not None and 3 * PAGE <= killed_at < TOTAL
    assert killed_at % PAGE == 0  # pages commit whole, with their checkpoint
    emu.clear_faults()
    before = len(emu.request_log)
    rep = Runner(emu, db).sync(mailboxes=["adele@contoso.com"], resources=["mail"], page_size=PAGE)
    assert rep.ok, rep.to_dict()
    resumed = [e for e in emu.request_log[before:] if "/messages/delta" in e["path"]]
    assert "$skiptoken=" in resumed[0]["path"]  # it resumed from the saved nextLink, not a new snapshot
    r = Runner(emu, db)
    assert r.rows("SELECT COUNT(*), COUNT(DISTINCT subject) FROM email") == [(TOTAL, TOTAL)]
    assert r.rows("SELECT COUNT(*) FROM item_link WHERE resource = 'messages'") == [(TOTAL,)]
    assert r.rows("SELECT COUNT(*) FROM activityparty") == r.rows("SELECT COUNT(DISTINCT activitypartyid) FROM activityparty")
    assert r.rows("SELECT next_link IS NULL, delta_link IS NOT NULL FROM sync_state WHERE resource = 'messages' AND container != ''")[0] == (1, 1)
