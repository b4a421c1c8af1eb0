"""The tracker's compiled modules (connector/_native.py, hatch_build.py): used only while built from the sources beside
them; the same tests pass with the tracker interpreted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connector import _native

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import json, connector._native as n, connector.tracking.tracker as t, connector.tracking.signals as s; "
         "print(json.dumps([n.STATUS, n.COMPILED, t.__file__, s.__file__, s.message_ids('<a@x> <b@y>')]))")


def _probe(copy: Path, **env: str) -> list[Any]:
    """What a fresh process importing the package copy at `copy` runs."""
    environ = {k: v for k, v in os.environ.items() if k != _native.PURE_ENV} | {"PYTHONPATH": str(copy)} | env
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=copy, env=environ, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """The `connector` package as built here (its extensions and manifest, when compiled), copied."""
    shutil.copytree(ROOT / "connector", tmp_path / "connector", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_compiled_modules_run_only_when_they_match_their_sources(package_copy: Path) -> None:
    built = sorted(p.name for p in (package_copy / "connector" / "tracking").glob("*.so"))
    status, compiled, tracker, signals, ids = _probe(package_copy)
    assert ids == ["<a@x>", "<b@y>"]
    if not built:  # (a checkout never compiled: `make test` compiles first)
        assert (status, compiled) == ("interpreted: not compiled", False)
        return
    assert {n.split(".")[0] for n in built} == {"native__mypyc", "tracker", "signals", "parties"}
    assert (status, compiled) == ("compiled (mypyc)", True)
    assert tracker.endswith(".so") and signals.endswith(".so")

    status, compiled, tracker, signals, _ = _probe(package_copy, M365SYNC_PURE_PYTHON="1")
    assert (status, compiled) == ("interpreted: M365SYNC_PURE_PYTHON is set", False)
    assert tracker.endswith("tracker.py") and signals.endswith("signals.py")

    # an edit after the build: all of them run from source (a compiled tracker would call its own compiled signals)
    source = package_copy / "connector" / "tracking" / "signals.py"
    source.write_text(source.read_text("utf-8") + "\n# edited\n", "utf-8")
    status, compiled, tracker, signals, ids = _probe(package_copy)
    assert status == "interpreted: connector/tracking/signals.py changed since it was compiled (run `make compile`)"
    assert not compiled and tracker.endswith("tracker.py") and signals.endswith("signals.py") and ids == ["<a@x>", "<b@y>"]

    (package_copy / "connector" / "tracking" / "native.json").unlink()
    assert _probe(package_copy)[:2] == ["interpreted: no connector/tracking/native.json to check the compiled modules against", False]


@pytest.mark.slow
def test_the_tracking_tests_pass_with_the_tracker_interpreted() -> None:
    """The pure-Python fallback is the same code: the tracking suites, run again with the compiled modules set aside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | {_native.PURE_ENV: "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(ROOT / "tests" / "tracking")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "m365sync tracker: interpreted: M365SYNC_PURE_PYTHON is set" in out.stdout
    assert " passed" in out.stdout.splitlines()[-1] and "failed" not in out.stdout.splitlines()[-1]
