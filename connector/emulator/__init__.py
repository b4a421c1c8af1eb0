"""An offline Microsoft 365 tenant: Microsoft Graph v1.0 and the identity platform over TLS on loopback.

The real azure-identity, msal and msgraph-sdk talk to it unmodified. See `Emulator`.
"""

from __future__ import annotations

from .runner import ControlError, Emulator, build_state
from .scenario import Scenario, load_scenario

__all__ = ["ControlError", "Emulator", "Scenario", "build_state", "load_scenario"]
