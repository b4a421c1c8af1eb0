"""Tracking tokens: `CRM:0001001` = prefix, online digit, user number, message counter (server-side-sync.md §2.5)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from ..settings import TokenSettings


@dataclass(frozen=True)
class TokenFormat:
    """Builds and parses tracking tokens for one deployment's settings."""

    prefix: str = "CRM"
    previous_prefixes: tuple[str, ...] = ()
    base_number: int = 0
    user_digits: int = 3
    counter_digits: int = 3
    max_subject_length: int = 255
    enabled: bool = True

    @classmethod
    def from_settings(cls, s: TokenSettings) -> TokenFormat:
        """The format the `tracking.token` settings describe."""
        return cls(s.prefix, tuple(s.previous_prefixes), s.base_number, s.user_digits, s.counter_digits, s.max_subject_length, s.enabled)

    @cached_property
    def prefixes(self) -> tuple[str, ...]:
        """Every prefix the deployment has used (parsing honours all of them)."""
        seen: dict[str, None] = {self.prefix: None}
        for p in self.previous_prefixes:
            seen.setdefault(p, None)
        return tuple(seen)

    @cached_property
    def _markers(self) -> tuple[str, ...]:
        """`prefix:` of every prefix, case-folded: a subject without one of them has no token."""
        return tuple(f"{p.casefold()}:" for p in self.prefixes)

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Matches a token anywhere in a subject: group 1 is the prefix, group 2 the digits."""
        alts = "|".join(re.escape(p) for p in sorted(self.prefixes, key=len, reverse=True))
        return _compiled(alts)

    def make(self, user_index: int, counter: int) -> str:
        """The token for the `user_index`-th user (1-based) and its `counter`-th message (wraps around)."""
        user = (self.base_number + user_index) % 10**self.user_digits
        count = counter % 10**self.counter_digits
        return f"{self.prefix}:0{user:0{self.user_digits}d}{count:0{self.counter_digits}d}"

    def find(self, subject: str | None) -> str | None:
        """The last token in a subject (the one appended last), normalised to the prefix as written in settings."""
        if not subject:
            return None
        folded = subject.casefold()
        if not any(p in folded for p in self._markers):
            return None  # most subjects carry no token: a substring test spares the regular expression
        found = self.pattern.findall(subject)
        if not found:
            return None
        prefix, digits = found[-1]
        canonical = next((p for p in self.prefixes if p.lower() == prefix.lower()), prefix)
        return f"{canonical}:{digits}"

    def strip(self, subject: str) -> str:
        """The subject without any tracking token."""
        return re.sub(r"\s+", " ", self.pattern.sub(" ", subject)).strip()

    def apply(self, subject: str | None, token: str | None) -> str:
        """Subject with the token appended, capped at `max_subject_length`: the subject is cut, the token kept.

        With tokens off, or a token longer than the cap by itself, the subject is returned unchanged
        (capped), as server-side sync drops such a token.
        """
        subject = subject or ""
        cap = self.max_subject_length
        if not token or not self.enabled or len(token) + 1 > cap:
            return subject[:cap]
        base = self.strip(subject) if self.find(subject) else subject
        room = cap - len(token) - 1
        return f"{base[:room].rstrip()} {token}".lstrip()


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(alts: str) -> re.Pattern[str]:
    pat = _CACHE.get(alts)
    if pat is None:
        pat = re.compile(rf"(?<![\w:])({alts}):(\d{{3,20}})(?!\w)", re.IGNORECASE)
        _CACHE[alts] = pat
    return pat


def tokens_in(subjects: Iterable[str], fmt: TokenFormat) -> list[str | None]:
    """`fmt.find` over many subjects (benchmarks and tests)."""
    return [fmt.find(s) for s in subjects]
