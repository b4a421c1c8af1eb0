"""The typed result of a sync run: per mailbox and resource, what changed and what it cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ResourceReport:
    """Counters for one resource (mail, calendar, contacts, tasks) of one mailbox."""

    resource: str
    created: int = 0
    updated: int = 0
    deleted: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    quarantined: int = 0
    resyncs: int = 0
    containers: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def items(self) -> int:
        """Items written (created + updated + deleted)."""
        return self.created + self.updated + self.deleted


@dataclass
class MailboxReport:
    """Everything that happened to one mailbox."""

    address: str
    resources: dict[str, ResourceReport] = field(default_factory=dict)
    error: str | None = None

    @property
    def failed(self) -> bool:
        """True when the mailbox or any of its containers failed."""
        return self.error is not None or any(r.errors for r in self.resources.values())

    def resource(self, name: str) -> ResourceReport:
        """The report of one resource, created on first use."""
        if name not in self.resources:
            self.resources[name] = ResourceReport(name)
        return self.resources[name]


@dataclass
class SyncReport:
    """The outcome of `SyncEngine.sync_once`."""

    started_at: str
    finished_at: str = ""
    seconds: float = 0.0
    mailboxes: list[MailboxReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no mailbox failed."""
        return not any(m.failed for m in self.mailboxes)

    def totals(self) -> ResourceReport:
        """Counters summed over every mailbox and resource."""
        total = ResourceReport("all")
        for m in self.mailboxes:
            for r in m.resources.values():
                for f in ("created", "updated", "deleted", "pages", "requests", "retries", "throttled", "quarantined", "resyncs", "containers"):
                    setattr(total, f, getattr(total, f) + getattr(r, f))
                total.errors.extend(r.errors)
        return total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `m365sync sync --json` prints)."""
        out = asdict(self)
        out["ok"] = self.ok
        for m, mo in zip(self.mailboxes, out["mailboxes"]):
            mo["failed"] = m.failed
        return out
