"""The tracker's compiled modules: use them only when they were built from the sources beside them.

`hatch_build.py` compiles `MODULES` with mypyc into C extensions next to their `.py` files (at install, or
`make compile`) and records each source's hash in `native.json`. Python imports an extension before a `.py`
of the same name, so a stale extension (its source edited since) would run silently. `install()` puts a
finder first on `sys.meta_path` that loads every one of `MODULES` from its `.py` instead when:

- `M365SYNC_PURE_PYTHON=1` is set (profiling, debugging, patching the tracker's classes), or
- any extension is missing, or was built from a source that has changed since.

It is all or nothing: compiled modules call each other's compiled code directly, so a mix would not run
what it seems to. `STATUS` says which ran and why.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

MODULES = ("connector.tracking.tracker", "connector.tracking.signals", "connector.tracking.parties")
"""The modules compiled (the tracker's per-message work)."""
GROUP = "connector.tracking.native"
"""mypyc's shared library for the group (`connector/tracking/native__mypyc.*.so`)."""
MANIFEST = "connector/tracking/native.json"
"""Written by the build: {"sources": {module: sha256 of its .py}}."""
PURE_ENV = "M365SYNC_PURE_PYTHON"

_ROOT = Path(__file__).resolve().parent.parent  # the directory holding the `connector` package
COMPILED = False
"""True when the tracker runs compiled."""
STATUS = "interpreted: not imported yet"
"""How the tracker runs, for reports: "compiled (mypyc)" or "interpreted: <why>"."""


def source_path(module: str) -> Path:
    return _ROOT.joinpath(*module.split(".")).with_suffix(".py")


def source_hash(module: str) -> str:
    return hashlib.sha256(source_path(module).read_bytes()).hexdigest()


def _extension(module: str) -> Path | None:
    base = source_path(module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = base.with_suffix(suffix)
        if path.exists():
            return path
    return None


def _why_interpreted() -> str | None:
    """None when every compiled module matches its source; else why the sources must run."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return f"{PURE_ENV} is set"
    missing = [m for m in MODULES if _extension(m) is None]
    if missing:
        return "not compiled" if len(missing) == len(MODULES) else f"no compiled {', '.join(missing)}"
    try:
        built = json.loads((_ROOT / MANIFEST).read_text("utf-8"))["sources"]
    except (OSError, ValueError, KeyError):
        return f"no {MANIFEST} to check the compiled modules against"
    for module in MODULES:
        if built.get(module) != source_hash(module):
            return f"{source_path(module).relative_to(_ROOT)} changed since it was compiled (run `make compile`)"
    return None


class _Sources(importlib.abc.MetaPathFinder):
    """Finds `MODULES` as their `.py` files (ahead of the extensions beside them)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def install() -> None:
    """Decide, once per process, whether the compiled modules run (before any of them is imported)."""
    global COMPILED, STATUS
    if any(m in sys.modules for m in MODULES) or any(isinstance(f, _Sources) for f in sys.meta_path):
        return
    why = _why_interpreted()
    if why is None:
        COMPILED, STATUS = True, "compiled (mypyc)"
    else:
        STATUS = f"interpreted: {why}"
        sys.meta_path.insert(0, _Sources())
