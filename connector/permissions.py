"""The Graph application permissions a configuration needs, from the shipped `manifest/permissions.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from .data import shipped_dir
from .settings import Settings


@dataclass(frozen=True)
class Permission:
    """One application permission and the reason the connector asks for it."""

    name: str
    why: str
    feature: str


def load_manifest() -> dict[str, Any]:
    """The parsed permissions manifest."""
    return yaml.safe_load(shipped_dir("manifest").joinpath("permissions.yaml").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def required_permissions(settings: Settings) -> list[Permission]:
    """Permissions for the configured resources (plus category tracking when tracking is on and mail is synced)."""
    manifest = load_manifest()["permissions"]
    features = ["discover", *settings.resources]
    if "mail" in settings.resources and settings.tracking.enabled:
        features.append("category_tracking")
    out: list[Permission] = []
    for feature in features:
        for entry in manifest.get(feature, []):
            out.append(Permission(entry["name"], entry["why"], feature))
    return out
