"""`m365sync`: the command line. A thin adapter: every command calls into the package and formats the result."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .yamlfile import YamlFileError

app = typer.Typer(help="Microsoft 365 -> Dataverse-style records, with an offline Microsoft 365 emulator.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_show_locals=False)
emulator_app = typer.Typer(help="Run the offline Microsoft 365 (Graph + identity) emulator.", no_args_is_help=True)
app.add_typer(emulator_app, name="emulator")
err = Console(stderr=True)

if importlib.util.find_spec("connector.mapping.cli") is not None:
    from .mapping.cli import app as _mappings_app

    app.add_typer(_mappings_app, name="mappings", help="Validate, explain and export the mapping files.")

if importlib.util.find_spec("connector.tracking.cli") is not None:
    from .tracking.cli import register as _register_tracking

    _register_tracking(app)  # explain, records import, tracking alerts


def _load(scenario: Path):  # type: ignore[no-untyped-def]
    from .emulator import Emulator

    try:
        return Emulator(scenario)
    except YamlFileError as exc:
        typer.echo(f"scenario error:\n{exc}", err=True)
        raise typer.Exit(2) from None
    except FileNotFoundError:
        typer.echo(f"scenario not found: {scenario}", err=True)
        raise typer.Exit(2) from None


@emulator_app.command("serve")
def emulator_serve(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario YAML file.")],
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 0,
    tls_dir: Annotated[Path | None, typer.Option(help="Where to write ca.pem and the server key pair (default: a temp dir).")] = None,
) -> None:
    """Serve a scenario. Prints one JSON line (graph_url, authority, tenant_id, ca_bundle, control_url) when ready."""
    emu = _load(scenario)
    emu.host, emu.port, emu._tls_dir = host, port, tls_dir
    try:
        emu.start()
    except OSError as exc:
        err.print(f"[red]cannot listen on {host}:{port}:[/red] {exc.strerror or exc}")
        raise typer.Exit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sys.stdout.write(json.dumps(emu.connection_info()) + "\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()


@emulator_app.command("tour")
def emulator_tour(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario YAML file.")] = Path("samples/tenants/contoso.yaml"),
) -> None:
    """Start the emulator and walk it with the real azure-identity credential: users, folders, one delta round."""
    from .tour import run_tour

    emu = _load(scenario)
    with emu:
        run_tour(emu, Console())


def _run_sync(settings: Any, mailbox: list[str] | None, resource: list[str] | None, full: bool, as_json: bool) -> None:
    """Run one sync pass with progress (or JSON) and exit non-zero when a mailbox failed."""
    from .errors import AuthError, ConfigError, ConnectorError, UnreachableError
    from .mapping import MappingValidationError
    from .progress import LiveProgress, summary_table
    from .sync.engine import SyncEngine

    console = Console()
    # azure-identity logs get_token failures at WARNING; we report them ourselves, once.
    logging.getLogger("azure").setLevel(logging.ERROR)

    async def go() -> Any:
        engine = SyncEngine.from_settings(settings)
        try:
            if as_json:
                return await engine.sync_once(mailbox or None, resource or None, full=full)
            live = LiveProgress(console)
            with live.running():
                return await engine.sync_once(mailbox or None, resource or None, full=full, progress=live)
        finally:
            await engine.aclose()

    try:
        report = asyncio.run(go())
    except AuthError as exc:
        typer.echo(f"error: {exc}" + (f" ({exc.aadsts})" if exc.aadsts and exc.aadsts not in str(exc) else ""), err=True)
        raise typer.Exit(2) from None
    except (UnreachableError, ConfigError, MappingValidationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ConnectorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console.print(summary_table(report))
    if not report.ok:
        raise typer.Exit(1)


@app.command("sync")
def sync(
    mailbox: Annotated[list[str] | None, typer.Option("--mailbox", "-m", help="Mailbox address; repeat for several (default: the configured ones).")] = None,
    resource: Annotated[list[str] | None, typer.Option("--resource", "-r", help="mail, calendar, contacts or tasks; repeat for several.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Ignore saved delta tokens and resync in full (with reconciliation).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of progress and a table.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file (else M365SYNC_CONFIG).")] = None,
) -> None:
    """Sync mailboxes incrementally through Graph delta queries into the store."""
    from .errors import SettingsError
    from .settings import Settings

    try:
        settings = Settings.load(config)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _run_sync(settings, mailbox, resource, full, as_json)


@app.command("permissions")
def permissions(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file (else M365SYNC_CONFIG).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for onboarding scripts.")] = False,
) -> None:
    """List the Graph application permissions the configuration needs (for app registration and admin consent)."""
    from .errors import SettingsError
    from .permissions import required_permissions
    from .settings import Settings

    try:
        needed = required_permissions(Settings.load(config))
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"resource_app_id": "00000003-0000-0000-c000-000000000000", "type": "Role",
                               "permissions": sorted({p.name for p in needed})}))
        return
    from rich.table import Table

    table = Table(title="Microsoft Graph application permissions (admin consent required)", title_justify="left")
    for col in ("permission", "for", "why"):
        table.add_column(col)
    for p in needed:
        table.add_row(p.name, p.feature, p.why)
    Console().print(table)


@app.command("demo")
def demo(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario YAML file.")] = Path("samples/tenants/contoso.yaml"),
    store: Annotated[str, typer.Option(help="Where the records go.")] = "sqlite:///m365sync-demo.db",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Start the emulator with the demo tenant, load the demo CRM records, and sync everything into SQLite."""
    from .settings import Settings
    from .store.sqlite import SqliteStore
    from .tracking.demo import demo_settings, prepare_demo

    emu = _load(scenario)
    app_spec = next((a for a in emu.scenario.apps if a.client_secret and not a.mailboxes and "Mail.ReadWrite" in a.permissions), None)
    if app_spec is None:
        typer.echo("error: the scenario has no unscoped app with a client secret and Mail.ReadWrite", err=True)
        raise typer.Exit(2)
    db = Path(store.removeprefix("sqlite:///"))
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)  # a new emulator mints new links, so the old checkpoints mean nothing
    console = Console()
    with emu:
        settings = Settings.load(None, tenant_id=emu.tenant_id, client_id=app_spec.client_id, client_secret=app_spec.client_secret,
                                 authority_host=emu.authority, graph_url=emu.graph_url, ca_bundle=emu.ca_bundle, store_url=store,
                                 **demo_settings())
        with SqliteStore(store) as st:
            loaded = prepare_demo(st)
        if not as_json:
            console.print(f"Emulated tenant [bold]{emu.scenario.tenant.domain}[/bold] at {emu.graph_url}; syncing into {store}")
            console.print("CRM reference records loaded: " + ", ".join(f"{n} {t}" for t, n in loaded.items()))
        _run_sync(settings, None, None, False, as_json)
    if not as_json:
        _print_tracked(store, console)


def _print_tracked(store: str, console: Console) -> None:
    """The demo's punchline: tracked emails and the customer records they were linked to, and why."""
    from rich.table import Table

    from .store.sqlite import SqliteStore

    with SqliteStore(store) as st:
        rows = st.query(
            "SELECT e.subject, COALESCE(a.name, c.fullname, e.regardingobjecttypecode), e.correlationmethod, "
            "(SELECT reason FROM tracking_decision d WHERE d.activityid = e.activityid LIMIT 1) "
            "FROM email e LEFT JOIN account a ON a.accountid = e.regardingobjectid "
            "LEFT JOIN contact c ON c.contactid = e.regardingobjectid "
            "WHERE e.regardingobjectid IS NOT NULL ORDER BY e.senton LIMIT 12")
        tracked = st.query("SELECT COUNT(*) FROM email")[0][0]
        skipped = st.query("SELECT COUNT(*) FROM tracking_decision WHERE tracked = 0")[0][0]
    table = Table(title=f"{tracked} emails tracked, {skipped} evaluated and not tracked (m365sync explain <subject> says why)",
                  title_justify="left", box=None)
    for col in ("subject", "regarding", "how"):
        table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=40 if col != "how" else 30)
    for subject, regarding, method, reason in rows:
        table.add_row(subject or "", str(regarding), reason or f"correlationmethod {method}")
    console.print(table)


if __name__ == "__main__":
    app()
