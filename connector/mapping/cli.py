"""``m365sync mappings``: validate mapping files, print their JSON Schema, explain an item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from connector.mapping.errors import MappingValidationError, RecordInvalid
from connector.mapping.explain import SOURCE_KINDS, explain as explain_item
from connector.mapping.loader import validate_dir
from connector.mapping.models import json_schema

app = typer.Typer(help="Validate, inspect and explain Graph -> Dataverse mapping files.", no_args_is_help=True)


@app.command()
def validate(
    directory: Annotated[Optional[Path], typer.Argument(help="Overlay mapping directory (default: shipped mappings).")] = None,
) -> None:
    """Validate mapping files; print ``file:line:col: problem (hint)`` per problem."""
    problems = validate_dir(directory)
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(code=1)
    typer.echo(f"OK: mappings in {directory or 'shipped mappings'} are valid")


@app.command()
def schema() -> None:
    """Print the JSON Schema of mapping files."""
    typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def explain(
    item: Annotated[Path, typer.Argument(help="Graph item JSON file.", exists=True, dir_okay=False)],
    kind: Annotated[str, typer.Option("--kind", help="message | event | contact | todoTask")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    mailbox: Annotated[str, typer.Option("--mailbox", help="Mailbox the item belongs to.")] = "user@example.com",
    folder: Annotated[Optional[str], typer.Option("--folder", help="Well-known folder name (e.g. sentitems).")] = None,
    mappings_dir: Annotated[Optional[Path], typer.Option("--mappings-dir", help="User overlay directory.")] = None,
) -> None:
    """Show the records an item produces and the rule behind each column."""
    if kind not in SOURCE_KINDS:
        raise typer.BadParameter(f"expected one of {', '.join(SOURCE_KINDS)}", param_hint="--kind")
    try:
        result = explain_item(kind, item.read_bytes(), mailbox=mailbox, folder=folder, mappings_dir=mappings_dir)
    except MappingValidationError as exc:
        for p in exc.problems:
            typer.echo(str(p), err=True)
        raise typer.Exit(code=1) from None
    except RecordInvalid as exc:
        typer.echo(f"record invalid: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    console = Console()
    for rec in result["records"]:
        table = Table(title=f"{rec['table']} {rec['key']}  (mapping {rec['mapping']})")
        table.add_column("column", style="bold")
        table.add_column("value", overflow="fold", max_width=60)
        table.add_column("rule", overflow="fold")
        for col, value in rec["values"].items():
            shown = "" if value is None else repr(value)
            table.add_row(col, shown[:200], rec["rules"].get(col, ""))
        console.print(table)
