"""Errors raised by the mapping layer, organised by what the caller does next.

::

    MappingError
    ├── MappingValidationError  – config error: the user must fix a mapping file
    │                             (carries one ``Problem`` per ``file:line:col``)
    └── RecordInvalid           – skippable: one Graph item cannot become a valid
                                  record; the engine quarantines it and goes on
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class MappingError(Exception):
    """Base class of every error raised by ``connector.mapping``."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a mapping file."""

    file: str
    line: int
    col: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}:{self.col}: {self.message}{hint}"


class MappingValidationError(MappingError):
    """A mapping file (or an overlay) is invalid; the user must fix it.

    Attributes:
        problems: every problem found, each printable as ``file:line:col: problem (hint)``.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid mapping")


class RecordInvalid(MappingError):
    """A mapped record fails the Dataverse schema (too long, wrong type, bad option ...).

    The item is skipped and quarantined; nothing of it is written.

    Attributes:
        reason: human-readable reason.
        table: target table of the failing record.
        column: failing column, when one column is to blame.
    """

    def __init__(self, reason: str, *, table: str | None = None, column: str | None = None) -> None:
        self.reason = reason
        self.table = table
        self.column = column
        where = ".".join(p for p in (table, column) if p)
        super().__init__(f"{where}: {reason}" if where else reason)
