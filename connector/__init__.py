"""m365-dataverse-connector: Microsoft Graph delta sync of mail, calendar, contacts and To Do into Dataverse-style records.

The supported names are below; everything else is an implementation detail. They are imported on
first use, so `import connector` stays cheap (msgraph-sdk alone takes a third of a second to import).

    from connector import Settings, SyncEngine

    async with SyncEngine.from_settings(Settings.load("m365sync.yaml")) as engine:
        report = await engine.sync_once()
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AuthError": "connector.errors",
    "ConfigError": "connector.errors",
    "ConnectorError": "connector.errors",
    "DeltaResetRequired": "connector.errors",
    "Emulator": "connector.emulator",
    "FatalGraphError": "connector.errors",
    "GraphError": "connector.errors",
    "MailHook": "connector.sync.hooks",
    "MappingValidationError": "connector.mapping",
    "Record": "connector.mapping",
    "RecordInvalid": "connector.mapping",
    "Settings": "connector.settings",
    "SettingsError": "connector.errors",
    "SqliteStore": "connector.store.sqlite",
    "SyncEngine": "connector.sync.engine",
    "SyncReport": "connector.sync.report",
    "TransientGraphError": "connector.errors",
    "UnreachableError": "connector.errors",
    "load_mapping_set": "connector.mapping",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'connector' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
