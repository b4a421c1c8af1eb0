"""Packaging: the wheel carries the shipped mappings, manifest and schema data, the console script, and the tracker's
compiled modules (pure Python with M365SYNC_COMPILE=0)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from connector import _native

ROOT = Path(__file__).resolve().parents[1]


def _wheel(tmp_path: Path, **env: str) -> tuple[Path, set[str]]:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=600, env=os.environ | env)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("m365_dataverse_connector-*.whl"))
    return wheel, set(zipfile.ZipFile(wheel).namelist())


def test_wheel_ships_mappings_and_manifest(tmp_path: Path) -> None:
    wheel, names = _wheel(tmp_path)
    for shipped in ("email.yaml", "appointment.yaml", "contact.yaml", "task.yaml", "schema/mapping.schema.json"):
        assert f"connector/_data/mappings/{shipped}" in names
    assert "connector/_data/manifest/permissions.yaml" in names
    assert "connector/mapping/dataverse_tables.json" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "m365sync = connector.cli:app" in zipfile.ZipFile(wheel).read(entry).decode()
    # the tracker compiled: a platform wheel with every extension and the hashes of the sources they were built from
    assert not wheel.name.endswith("-py3-none-any.whl"), wheel.name
    for module in ("tracker", "signals", "parties", "native__mypyc"):
        assert any(n.startswith(f"connector/tracking/{module}.") and n.endswith(".so") for n in names), module
    built = zipfile.ZipFile(wheel).read(_native.MANIFEST).decode()
    assert all(_native.source_hash(m) in built for m in _native.MODULES)


def test_a_wheel_built_without_compiling_is_pure_python(tmp_path: Path) -> None:
    wheel, names = _wheel(tmp_path, M365SYNC_COMPILE="0")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    assert "connector/tracking/tracker.py" in names and not any(n.endswith(".so") for n in names)
