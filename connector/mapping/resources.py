"""Where the shipped mapping files live: package data in a wheel, ``mappings/`` in a checkout."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path


def shipped_mappings_dir() -> Traversable | Path:
    """Directory of the shipped ``*.yaml`` mappings.

    The wheel force-includes the repository's ``mappings/`` as ``connector/_data/mappings``;
    a source checkout has no ``_data`` package, so fall back to ``<repo>/mappings``.
    """
    try:
        packaged = resources.files("connector").joinpath("_data", "mappings")
        if packaged.is_dir():
            return packaged
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - defensive
        pass
    return Path(__file__).resolve().parents[2] / "mappings"
