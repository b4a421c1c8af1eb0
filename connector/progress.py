"""Rich rendering of a sync run: live progress per mailbox and resource, then a summary table."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .sync.engine import ProgressEvent
from .sync.report import SyncReport


class LiveProgress:
    """A `Progress` callback for `SyncEngine.sync_once` that draws one line per (mailbox, resource)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[cyan]{task.fields[mailbox]}[/cyan]"),
            TextColumn("{task.fields[resource]:<8}"),
            BarColumn(bar_width=None, pulse_style="green"),
            TextColumn("{task.fields[items]:>7} items  {task.fields[pages]:>5} pages  {task.fields[rate]:>7}/s"),
            TextColumn("[red]{task.fields[error]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._started: dict[tuple[str, str], float] = {}
        self._counts: dict[tuple[str, str], list[int]] = {}

    def __call__(self, ev: ProgressEvent) -> None:
        key = (ev.mailbox, ev.resource)
        if key not in self._tasks:
            self._tasks[key] = self.progress.add_task("", total=None, mailbox=ev.mailbox, resource=ev.resource, items=0, pages=0, rate="-", error="")
            self._started[key] = time.perf_counter()
            self._counts[key] = [0, 0]
        counts = self._counts[key]
        counts[0] += ev.items
        counts[1] += ev.pages
        elapsed = max(1e-6, time.perf_counter() - self._started[key])
        fields = {"items": counts[0], "pages": counts[1], "rate": f"{counts[0] / elapsed:,.0f}"}
        if ev.error:
            fields["error"] = ev.error[:60]
        self.progress.update(self._tasks[key], **fields)

    @contextmanager
    def running(self) -> Iterator[LiveProgress]:
        """Show the live display while the block runs."""
        with self.progress:
            yield self
        for task in self._tasks.values():
            self.progress.update(task, total=1, completed=1)


def summary_table(report: SyncReport) -> Table:
    """One row per mailbox and resource with the report's counters."""
    table = Table(title=f"Sync summary ({report.seconds:.1f} s)")
    for col in ("mailbox", "resource", "created", "updated", "deleted", "pages", "requests", "retries", "quarantined", "status"):
        table.add_column(col, justify="left" if col in ("mailbox", "resource", "status") else "right")
    for m in report.mailboxes:
        if m.error:
            table.add_row(m.address, "-", "", "", "", "", "", "", "", f"[red]{m.error}[/red]")
            continue
        for r in m.resources.values():
            status = "[green]ok[/green]" if not r.errors else "[red]" + "; ".join(r.errors)[:80] + "[/red]"
            table.add_row(m.address, r.resource, str(r.created), str(r.updated), str(r.deleted), str(r.pages), str(r.requests),
                          str(r.retries), str(r.quarantined), status)
    t = report.totals()
    table.add_section()
    table.add_row("total", "", str(t.created), str(t.updated), str(t.deleted), str(t.pages), str(t.requests), str(t.retries), str(t.quarantined),
                  "[green]ok[/green]" if report.ok else "[red]failed[/red]")
    return table
