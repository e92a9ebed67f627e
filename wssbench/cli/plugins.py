"""``wssbench plugins`` and ``wssbench list KIND``."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ..registry import KINDS, default_registry
from . import traceback_option


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@traceback_option
def plugins_command(as_json: bool) -> None:
    """List every registered component by kind, with the plugin that registered it."""
    registry = default_registry()
    rows = [{"kind": e.kind, "name": e.name, "plugin": e.plugin, "description": e.description} for e in registry.entries()]
    failures = [{"plugin": f.plugin, "error": f.error} for f in registry.failures]
    if as_json:
        click.echo(json.dumps({"components": rows, "failed": failures}, indent=2))
        return
    table = Table(title="wssbench plugins")
    for col in ("kind", "name", "plugin", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kind"], r["name"], r["plugin"], r["description"])
    Console().print(table)


@click.command("list")
@click.argument("kind", type=click.Choice(list(KINDS)))
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@traceback_option
def list_command(kind: str, as_json: bool) -> None:
    """List the names of one KIND of component, with a one-line description each."""
    entries = default_registry().entries(kind)
    if as_json:
        click.echo(json.dumps({e.name: e.description for e in entries}, indent=2))
        return
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        click.echo(f"{e.name:<{width}}  {e.description}")
