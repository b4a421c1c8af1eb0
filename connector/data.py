"""Where shipped data lives: package data in a wheel, the repository's top-level folders in a checkout.

The wheel force-includes `mappings/` and `manifest/` as `connector/_data/...` (see pyproject.toml);
a source checkout has no `_data`, so the repository folders are used.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path


def shipped_dir(name: str) -> Traversable | Path:
    """The shipped folder `name` (`mappings` or `manifest`)."""
    packaged = resources.files("connector").joinpath("_data", name)
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / name
