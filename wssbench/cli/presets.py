"""``wssbench presets [NAME] [--json]``: the named methods, and one's recipe as a run uses it."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from wssbench.cli import traceback_option
from wssbench.engine.description import option_triples
from wssbench.errors import UsageError
from wssbench.seed.presets import PRESETS
from wssbench.seed.presets import WHY as SEED_WHY
from wssbench.segmentation.presets import SEGMENT_PRESETS
from wssbench.segmentation.presets import WHY as SEGMENT_WHY


def describe(name: str) -> dict[str, Any]:
    """A preset as ``--json`` prints it: every pinned option as a run uses it, what is still a
    choice (with the reason), what wssbench does differently, and the published numbers."""
    if name in PRESETS:
        preset, stage, why = PRESETS[name], "seed", SEED_WHY
    elif name in SEGMENT_PRESETS:
        preset, stage, why = SEGMENT_PRESETS[name], "segmentation", SEGMENT_WHY
    else:
        raise UsageError(f"unknown preset '{name}'; available: {', '.join([*PRESETS, *SEGMENT_PRESETS])}")
    options = {k: v for k, v in preset.options.items() if k not in ("options", "recipe")}
    options.update({f"recipe.{k}": v for k, v in (preset.options.get("recipe") or {}).items()})
    options.update({f"{s}.{k}": v for s, k, v in option_triples(preset.options.get("options"))})
    return {
        "name": name, "stage": stage, "description": preset.description,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "unverified": preset.reasons(why),
        "departures": [dict(d) for d in preset.departures],
        "published": {"miou": preset.published, "dataset": "voc2012"},
    }


@click.command("presets")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@traceback_option
def presets_command(name: str | None, as_json: bool) -> None:
    """List the presets (the published methods), or show one's recipe exactly as a run uses it."""
    if name is not None:
        data = describe(name)
        if as_json:
            click.echo(json.dumps(data, indent=2))
            return
        console = Console()
        console.print(f"[bold]{name}[/bold] ({data['stage']} stage): {data['description']}", highlight=False)
        console.print(f"published (VOC 2012 mIoU %): {data['published']['miou']}", highlight=False)
        for title, rows in (("options", data["options"]), ("unverified (a choice: why)", data["unverified"])):
            table = Table(title=title, title_justify="left")
            table.add_column("option")
            table.add_column("value" if title == "options" else "why")
            for key, value in rows.items():
                table.add_row(key, str(value))
            console.print(table)
        table = Table(title="departures (what wssbench does differently)", title_justify="left")
        for column in ("option", "published", "used"):
            table.add_column(column, overflow="fold")
        for d in data["departures"]:
            table.add_row(d["option"], d["published"], d["used"])
        console.print(table)
        return
    rows = [describe(n) for n in [*PRESETS, *SEGMENT_PRESETS]]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(caption="VOC 2012 mIoU % as published; 'wssbench presets NAME' shows a recipe; presets are VOC recipes "
                          "with ImageNet weights (README, 'Presets', for the synthetic-data flags)")
    for column in ("preset", "stage", "method", "published"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["stage"], r["description"], r["published"]["miou"])
    Console().print(table)
