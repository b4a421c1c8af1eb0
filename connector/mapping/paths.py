"""Source paths into Graph JSON: ``subject``, ``body.content``, ``toRecipients[0].emailAddress.address``.

A path starting with ``$`` reads the mapping context instead (``$mailbox``, ``$folder``).
A missing key, a ``null`` on the way or an index out of range all give ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from connector.mapping.records import MappingContext

CONTEXT_VARS = ("mailbox", "folder")

_PATH_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*$")
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEGMENT_RE = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")

Getter = Callable[[Any, MappingContext], Any]


def path_error(path: str) -> str | None:
    """Why ``path`` is not a valid source path, or None if it is."""
    if path.startswith("$"):
        if path[1:] in CONTEXT_VARS:
            return None
        return f"unknown context variable {path!r}; known: " + ", ".join("$" + v for v in CONTEXT_VARS)
    if not _PATH_RE.match(path):
        return f"bad path syntax {path!r}; expected names joined by '.' with optional [index], like toRecipients[0].emailAddress.address"
    return None


def parse_path(path: str) -> tuple[str | int, ...]:
    """Split a valid path into keys (str) and indexes (int)."""
    err = path_error(path)
    if err:
        raise ValueError(err)
    return tuple(name if name else int(idx) for name, idx in _SEGMENT_RE.findall(path))


def top_level_key(path: str) -> str | None:
    """``path`` when it is one top-level field name (``subject``), readable as ``item.get(path)``; else None."""
    return path if not path.startswith("$") and _FIELD_RE.match(path) else None


def compile_path(path: str) -> Getter:
    """A fast getter ``get(item, ctx) -> value | None`` for ``path``."""
    if path.startswith("$"):
        parse_path(path)
        attr = path[1:]
        return lambda item, ctx: getattr(ctx, attr)
    segs = parse_path(path)
    if all(isinstance(s, str) for s in segs):
        return _dict_getter(segs)  # type: ignore[arg-type]

    def get_any(item: Any, ctx: MappingContext) -> Any:
        v = item
        for s in segs:
            if isinstance(s, str):
                if not isinstance(v, dict):
                    return None
                v = v.get(s)
            else:
                if not isinstance(v, list) or s >= len(v):
                    return None
                v = v[s]
        return v

    return get_any


def _dict_getter(segs: tuple[str, ...]) -> Getter:
    # Specialised closures: one ``try`` and direct subscripts are the cheapest lookup in CPython.
    if len(segs) == 1:
        (a,) = segs
        return lambda item, ctx: item.get(a)
    if len(segs) == 2:
        a, b = segs

        def get2(item: Any, ctx: MappingContext) -> Any:
            try:
                return item[a][b]
            except (KeyError, TypeError):
                return None

        return get2
    if len(segs) == 3:
        a, b, c = segs

        def get3(item: Any, ctx: MappingContext) -> Any:
            try:
                return item[a][b][c]
            except (KeyError, TypeError):
                return None

        return get3

    def getn(item: Any, ctx: MappingContext) -> Any:
        v = item
        try:
            for s in segs:
                v = v[s]
        except (KeyError, TypeError):
            return None
        return v

    return getn
