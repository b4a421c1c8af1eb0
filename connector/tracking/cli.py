"""CLI commands of email tracking: `explain`, `records import` and `tracking alerts` (registered on the main app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

records_app = typer.Typer(help="Reference records (contacts, accounts, leads, users, queues) used by tracking.", no_args_is_help=True)
tracking_app = typer.Typer(help="Email tracking: mailbox alerts.", no_args_is_help=True)

StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL (default: the configured store_url).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file (else M365SYNC_CONFIG).")]


def _store(store: str | None, config: Path | None):  # type: ignore[no-untyped-def]
    from ..errors import SettingsError
    from ..settings import Settings
    from ..store.sqlite import SqliteStore

    if store is None:
        try:
            store = Settings.load(config).store_url
        except SettingsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    return SqliteStore(store)


@records_app.command("import")
def records_import(
    files: Annotated[list[Path], typer.Argument(help="YAML/JSON files ({table: [rows]}), <table>.csv files, or directories of them.")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Load Dataverse-style rows into the store (upsert by primary key)."""
    from .reference import ReferenceFileError, import_records

    with _store(store, config) as s:
        try:
            counts = import_records(s, files)
        except (ReferenceFileError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "nothing to import")


def explain(
    query: Annotated[str, typer.Argument(help="An internetMessageId, or text of the subject.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print {\"decisions\": [...]} as JSON.")] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Why an email was or was not tracked: the rule, correlation, parties and regarding record."""
    from .explain import find_decisions, render_text

    with _store(store, config) as s:
        decisions = find_decisions(s, query)
    if as_json:
        typer.echo(json.dumps({"decisions": decisions}, indent=2))
        return
    if not decisions:
        typer.echo(f"no decision matches {query!r}", err=True)
        raise typer.Exit(1)
    typer.echo(render_text(decisions), nl=False)


@tracking_app.command("alerts")
def tracking_alerts(
    mailbox: Annotated[str | None, typer.Option("--mailbox", "-m", help="Only this mailbox.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Mailbox alerts raised by tracking (folders moved outside the Inbox, missing regarding records, Undeliverable)."""
    from .explain import alerts

    with _store(store, config) as s:
        rows = alerts(s, mailbox)
    if as_json:
        typer.echo(json.dumps({"alerts": rows}, indent=2))
        return
    names = {1: "Information", 2: "Warning", 3: "Error"}
    for a in rows:
        typer.echo(f"{a['created_at']}  {names.get(a['level'], a['level']):<11} {a['mailbox']}  {a['code']}: {a['text']}")


def register(app: typer.Typer) -> None:
    """Add `explain`, `records` and `tracking` to the main CLI."""
    app.command("explain")(explain)
    app.add_typer(records_app, name="records")
    app.add_typer(tracking_app, name="tracking")
