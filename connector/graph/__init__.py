"""Talking to Microsoft Graph: credentials, the msgraph-sdk request adapter, retry, and delta paging."""

from __future__ import annotations

from .client import GraphClient, Page
from .pager import DeltaPager

__all__ = ["DeltaPager", "GraphClient", "Page"]
