"""Local stores of mapped records (SQLite today)."""

from __future__ import annotations

from connector.store.sqlite import Checkpoint, ItemLink, SqliteStore, StoreVersionError, Transaction

__all__ = ["Checkpoint", "ItemLink", "SqliteStore", "StoreVersionError", "Transaction"]
