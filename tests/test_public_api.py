"""The public surface is small, explicit and pinned (a change here is an API change)."""

from __future__ import annotations

import subprocess
import sys

import connector

EXPECTED = [
    "AuthError", "ConfigError", "ConnectorError", "DeltaResetRequired", "Emulator", "FatalGraphError", "GraphError", "MailHook",
    "MappingValidationError", "Record", "RecordInvalid", "Settings", "SettingsError", "SqliteStore", "SyncEngine", "SyncReport",
    "TransientGraphError", "UnreachableError", "__version__", "load_mapping_set",
]


def test_exported_names_are_pinned_and_resolve() -> None:
    assert connector.__all__ == sorted(EXPECTED)
    for name in connector.__all__:
        assert getattr(connector, name) is not None


def test_import_connector_stays_light() -> None:
    code = "import sys, connector; print('msgraph' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
