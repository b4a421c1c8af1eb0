"""Rich rendering of a sync run: live progress per mailbox and resource, then a summary table."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .sync.engine import ProgressEvent
from .sync.report import ResourceReport, SyncReport


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
        rate = f"{counts[0] / elapsed:,.0f}" if elapsed >= 0.25 else "-"  # a first page alone says nothing about a rate
        fields = {"items": counts[0], "pages": counts[1], "rate": rate}
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


def _cell(r: ResourceReport | None) -> str:
    if r is None:
        return ""
    if r.errors:
        return "[red]failed[/red]"
    parts = [f"+{r.created}" if r.created else "", f"~{r.updated}" if r.updated else "", f"-{r.deleted}" if r.deleted else ""]
    return " ".join(p for p in parts if p) or "[dim]0[/dim]"


def summary_table(report: SyncReport, *, max_rows: int = 25) -> Table:
    """One row per mailbox: +created ~updated -deleted per resource (mail, cal, cont, tasks), then requests,
    retries, quarantined items and status. Narrow headers keep it readable in 80 columns."""
    table = Table(title=f"Sync summary: {len(report.mailboxes)} mailboxes in {report.seconds:.1f} s", title_justify="left", box=box.SIMPLE_HEAD)
    resources = sorted({name for m in report.mailboxes for name in m.resources}, key=["mail", "calendar", "contacts", "tasks"].index)
    table.add_column("mailbox", no_wrap=True, overflow="ellipsis", max_width=24)
    short = {"mail": "mail", "calendar": "cal", "contacts": "cont", "tasks": "tasks"}
    for name in resources:
        table.add_column(short[name], justify="right", no_wrap=True)
    for col in ("req", "retry", "quar"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("status")
    rows = sorted(report.mailboxes, key=lambda m: (not m.failed, -sum(r.items for r in m.resources.values()), m.address))
    for m in rows[:max_rows]:
        requests = sum(r.requests for r in m.resources.values())
        retries = sum(r.retries for r in m.resources.values())
        quarantined = sum(r.quarantined for r in m.resources.values())
        errors = [m.error] if m.error else [e for r in m.resources.values() for e in r.errors]
        status = "[green]ok[/green]" if not errors else "[red]" + "; ".join(str(e) for e in errors)[:100] + "[/red]"
        table.add_row(m.address, *(_cell(m.resources.get(n)) for n in resources), str(requests), str(retries), str(quarantined), status)
    if len(rows) > max_rows:
        table.add_row(f"[dim]... {len(rows) - max_rows} more mailboxes (see --json)[/dim]", *([""] * (len(resources) + 4)))
    t = report.totals()
    table.add_section()
    totals = {n: ResourceReport(n) for n in resources}
    for m in report.mailboxes:
        for n, r in m.resources.items():
            for f in ("created", "updated", "deleted"):
                setattr(totals[n], f, getattr(totals[n], f) + getattr(r, f))
    table.add_row("total", *(_cell(totals[n]) for n in resources), str(t.requests), str(t.retries), str(t.quarantined),
                  "[green]ok[/green]" if report.ok else "[red]failed[/red]")
    return table
