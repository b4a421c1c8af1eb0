"""m365-dataverse-connector: Microsoft Graph delta sync into Dataverse-style records.

The public surface is re-exported here; everything else is an implementation detail.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
