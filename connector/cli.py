"""`m365sync`: the command line. A thin adapter: every command calls into the package and formats the result."""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .yamlfile import YamlFileError

app = typer.Typer(help="Microsoft 365 -> Dataverse-style records, with an offline Microsoft 365 emulator.", no_args_is_help=True, add_completion=False)
emulator_app = typer.Typer(help="Run the offline Microsoft 365 (Graph + identity) emulator.", no_args_is_help=True)
app.add_typer(emulator_app, name="emulator")
err = Console(stderr=True)

if importlib.util.find_spec("connector.mapping.cli") is not None:
    from .mapping.cli import app as _mappings_app

    app.add_typer(_mappings_app, name="mappings", help="Validate, explain and export the mapping files.")


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


if __name__ == "__main__":
    app()
