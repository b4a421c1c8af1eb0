"""Where the shipped mapping files live: package data in a wheel, ``mappings/`` in a checkout."""

from __future__ import annotations

from importlib.resources.abc import Traversable
from pathlib import Path

from ..data import shipped_dir


def shipped_mappings_dir() -> Traversable | Path:
    """Directory of the shipped ``*.yaml`` mappings (see `connector.data`)."""
    return shipped_dir("mappings")
