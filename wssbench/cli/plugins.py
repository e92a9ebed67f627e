"""``wssbench plugins`` and ``wssbench list KIND``: what is installed, without importing torch."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wssbench.cli import traceback_option
from wssbench.host.options import REQUIRED, describe_options
from wssbench.host.registry import KINDS, default_registry


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@traceback_option
def plugins_command(as_json: bool) -> None:
    """List every registered component by kind, with the plugin that registered it.

    Plugins that failed to import or to register are listed after the components, with the
    error; their components are missing.
    """
    registry = default_registry()
    rows = [{"kind": e.kind, "name": e.name, "plugin": e.plugin, "description": e.description} for e in registry.entries()]
    failures = [{"plugin": f.plugin, "stage": f.stage, "error": f.error} for f in registry.failures]
    clashes = [{"kind": k, "name": n, "plugins": [e.plugin for e in entries], "descriptions": [e.description for e in entries]}
               for (k, n), entries in sorted(registry.clashes.items())]
    if as_json:
        click.echo(json.dumps({"components": rows, "failed": failures, "clashes": clashes}, indent=2))
        return
    table = Table(title="wssbench plugins")
    for col in ("kind", "name", "plugin", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(escape(r[c]) for c in ("kind", "name", "plugin", "description")))
    if clashes:
        table.add_section()
        for c in clashes:
            for plugin, description in zip(c["plugins"], c["descriptions"]):
                table.add_row(escape(c["kind"]), f"[red]{escape(c['name'])}[/red]", escape(plugin),
                              escape(f"clash: '{c['name']}' is registered by {' and '.join(c['plugins'])}; unusable until one is uninstalled. "
                                     f"{description}"))
    if failures:
        table.add_section()
        for f in failures:
            what = "failed to import" if f["stage"] == "import" else f"failed in {f['stage']}"
            table.add_row("[red]failed[/red]", "-", escape(f["plugin"]), escape(f"{what}, skipped: {f['error']}"))
    Console().print(table)


@click.command("list")
@click.argument("kind", type=click.Choice(list(KINDS)))
@click.option("--options", "with_options", is_flag=True, help="Also list each component's options (-O keys) with types and defaults.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@traceback_option
def list_command(kind: str, with_options: bool, as_json: bool) -> None:
    """List the names of one KIND of component, with a one-line description each.

    With --options, each component's options follow its name: ``-O STAGE.KEY=VALUE`` sets one
    (STAGE is the kind, or a refiner's name).
    """
    registry = default_registry()
    entries = registry.entries(kind)
    clashes = {n: es for (k, n), es in registry.clashes.items() if k == kind}
    if as_json:
        if with_options:
            data = {e.name: {"description": e.description, "options": _options_json(e.factory)} for e in entries}
        else:
            data = {e.name: e.description for e in entries}
        data.update({n: f"clash: registered by {' and '.join(e.plugin for e in es)}; unusable" for n, es in clashes.items()})
        click.echo(json.dumps(data, indent=2, default=repr))
        return
    width = max((len(e.name) for e in [*entries, *(es[0] for es in clashes.values())]), default=0)
    for name, es in sorted(clashes.items()):
        click.echo(f"{name:<{width}}  clash: registered by {' and '.join(e.plugin for e in es)}; unusable until one is uninstalled")
    for e in entries:
        click.echo(f"{e.name:<{width}}  {e.description}")
        if with_options:
            stage = e.name if kind == "refiner" else kind
            for o in describe_options(e.factory):
                default = "" if o.default is REQUIRED else f" = {_show(o.default)}"
                help_text = f"  # {o.help}" if o.help else ""
                if kind == "objectness":  # no stage of its own: options of the consumer's ``proposer``
                    click.echo(f"    -O proposals.proposer={o.name}=VALUE (or saliency.proposer=...): {o.type}{default}{help_text}")
                else:
                    click.echo(f"    -O {stage}.{o.name}: {o.type}{default}{help_text}")


def _show(value) -> str:
    """A default as it is written after ``-O KEY=`` (booleans lower case, sequences comma-separated)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(_show(v) for v in value) or '""'
    return json.dumps(value) if isinstance(value, str) else str(value)


def _options_json(factory) -> list[dict]:
    return [
        {"name": o.name, "type": o.type, "required": o.default is REQUIRED,
         **({} if o.default is REQUIRED else {"default": o.default}), "help": o.help}
        for o in describe_options(factory)
    ]
