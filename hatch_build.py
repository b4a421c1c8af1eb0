"""Build hook: compiles the email tracker's per-message modules with mypyc (`connector._native.MODULES`).

Hatchling runs it for every wheel build, editable ones included; `python hatch_build.py` (`make compile`) runs the
same compilation on its own. The extensions are built in place, next to their `.py` files, with `native.json`
holding the hash of each source they were built from (`connector._native` uses them only while those match).

Compiling needs mypy (mypyc), setuptools and a C compiler. Without them, or with `M365SYNC_COMPILE=0`, the build
goes on and the package runs its pure-Python modules: the same code, slower.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent


def _load_native() -> ModuleType:
    """`connector/_native.py` on its own (which modules, the group, the manifest), without importing the package."""
    spec = importlib.util.spec_from_file_location("_m365sync_native", ROOT / "connector" / "_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


native = _load_native()

# mypyc type-checks only these modules: imports from elsewhere are typed Any (following them through msgraph-sdk
# takes minutes, and a class compiled here may not derive from one that is not)
_SETUP = """
import sys
from mypyc.build import mypycify
from setuptools import setup
paths, target = sys.argv[1].split(","), sys.argv[2]
setup(name="m365sync-native", packages=[], py_modules=[], script_args=sys.argv[3:],
      ext_modules=mypycify(["--follow-imports=skip", "--ignore-missing-imports", *paths], opt_level="3", group_name=%r, target_dir=target))
""" % native.GROUP


def built_files() -> list[Path]:
    """The extensions and the manifest a build leaves in the source tree."""
    pkg = ROOT / "connector" / "tracking"
    return sorted(p for p in pkg.iterdir() if p.suffix in (".so", ".pyd")) + [ROOT / native.MANIFEST]


def compile_native(quiet: bool = False) -> list[Path]:
    """Compile `connector._native.MODULES` in place; returns the files written. Raises CalledProcessError or ImportError when it cannot."""
    import mypyc  # noqa: F401  (fail early, with a clear ImportError, where mypy is not installed)
    import setuptools  # noqa: F401

    for stale in built_files():
        stale.unlink(missing_ok=True)
    paths = [str(native.source_path(m)) for m in native.MODULES]
    with tempfile.TemporaryDirectory(prefix="m365sync-mypyc-") as tmp:
        # (built away from the project, whose pyproject.toml setuptools would read, then copied next to the sources)
        lib = Path(tmp, "lib")
        subprocess.run([sys.executable, "-c", _SETUP, ",".join(paths), str(Path(tmp, "c")), "build_ext", "--build-lib", str(lib),
                        "--build-temp", str(Path(tmp, "o"))], cwd=tmp, check=True, stdout=subprocess.DEVNULL if quiet else None)
        for built in lib.rglob("*"):
            if built.is_file():
                shutil.copy2(built, ROOT / built.relative_to(lib))
    sources = {m: native.source_hash(m) for m in native.MODULES}
    (ROOT / native.MANIFEST).write_text(json.dumps({"sources": sources}, indent=1) + "\n", "utf-8")
    return built_files()


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]


class CompileTracker(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatchling's hook: the wheel carries the extensions when they build (platform-specific), else it stays pure."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:  # noqa: D102
        if self.target_name != "wheel" or os.environ.get("M365SYNC_COMPILE", "1") == "0":
            return
        try:
            files = compile_native(quiet=True)
        except (ImportError, OSError, subprocess.CalledProcessError) as exc:
            self.app.display_warning(f"m365sync: the tracker is not compiled, it runs as pure Python ({exc})")
            return
        if version == "editable":
            return  # imported from the source tree, where they were built
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"].extend(str(p.relative_to(ROOT)) for p in files)  # (ignored by git, so listed here)


if __name__ == "__main__":
    for path in compile_native():
        print(f"built {path.relative_to(ROOT)}")
