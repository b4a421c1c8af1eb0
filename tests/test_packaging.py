"""Packaging: the wheel carries the shipped mappings, manifest and schema data, and the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_mappings_and_manifest(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("m365_dataverse_connector-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("email.yaml", "appointment.yaml", "contact.yaml", "task.yaml", "schema/mapping.schema.json"):
        assert f"connector/_data/mappings/{shipped}" in names
    assert "connector/_data/manifest/permissions.yaml" in names
    assert "connector/mapping/dataverse_tables.json" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "m365sync = connector.cli:app" in zipfile.ZipFile(wheel).read(entry).decode()
