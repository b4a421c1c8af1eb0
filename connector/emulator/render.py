"""Turning stored items into the JSON Graph sends: $select projection, ids, etags, annotations."""

from __future__ import annotations

from typing import Any

from .store import Item, Tombstone


def render(
    item: Item,
    odata_type: str | None,
    select: tuple[str, ...] | None,
    immutable: bool,
    *,
    select_only: frozenset[str] = frozenset(),
    with_change_key: bool = True,
    with_etag: bool = True,
) -> dict[str, Any]:
    """The Graph representation of `item`.

    Without $select every property except the select-only ones (internetMessageHeaders,
    uniqueBody...) is returned; with $select only those plus id and the annotations.
    """
    out: dict[str, Any] = {}
    if odata_type:
        out["@odata.type"] = odata_type
    ck = item.change_key() if (with_change_key or with_etag) else None
    if with_etag:
        out["@odata.etag"] = f'W/"{ck}"'
    data = item.data
    if select is None:
        if select_only:
            out.update((k, v) for k, v in data.items() if k not in select_only)
        else:
            out.update(data)
        if with_change_key:
            out["changeKey"] = ck
    else:
        for name in select:
            if name in data:
                out[name] = data[name]
            elif name == "changeKey" and with_change_key:
                out["changeKey"] = ck
    out["id"] = item.public_id(immutable)
    return out


def removed(tomb: Tombstone, odata_type: str | None, immutable: bool) -> dict[str, Any]:
    """A delta tombstone: `{"id": ..., "@removed": {"reason": "deleted"}}`."""
    out: dict[str, Any] = {}
    if odata_type:
        out["@odata.type"] = odata_type
    out["id"] = tomb.key if immutable else tomb.rest_id
    out["@removed"] = {"reason": "deleted"}
    return out
