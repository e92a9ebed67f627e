"""``wssbench cache show|prune``: what the cache holds, and removing it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..cache import cache_dir
from . import traceback_option

SECTIONS = {
    "data": "generated and downloaded datasets",
    "classifiers": "trained classifiers (one .pt per configuration)",
    "classmaps": "fitted class-map producers (e.g. zoom-out mi-SVMs)",
    "maps": "class and saliency maps, per classifier and method",
}


def _entries(section: str) -> list[Path]:
    root = cache_dir(section)
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@click.group("cache")
def cache() -> None:
    """Show and prune wssbench's cache ($WSSBENCH_HOME, default ~/.cache/wssbench)."""


@cache.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@traceback_option
def show(as_json: bool) -> None:
    """Entries per section with their size and age."""
    rows = [
        {"section": s, "entry": p.name, "bytes": _size(p), "modified": p.stat().st_mtime}
        for s in SECTIONS for p in _entries(s)
    ]
    if as_json:
        click.echo(json.dumps({"root": str(cache_dir()), "entries": rows}, indent=2))
        return
    table = Table(title=f"wssbench cache: {cache_dir()}")
    for col, justify in (("section", "left"), ("entry", "left"), ("size", "right"), ("age", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        age = (time.time() - r["modified"]) / 86400
        table.add_row(r["section"], r["entry"], _human(r["bytes"]), f"{age:.1f} d")
    table.caption = f"total {_human(sum(r['bytes'] for r in rows))}"
    Console().print(table)


@cache.command("prune")
@click.argument("sections", nargs=-1, type=click.Choice(list(SECTIONS)))
@click.option("--older-than", type=click.FloatRange(min=0), default=0.0, help="Only entries not modified for this many days.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, remove nothing.")
@traceback_option
def prune(sections: tuple[str, ...], older_than: float, dry_run: bool) -> None:
    """Remove cached SECTIONS (default: maps only; name several, e.g. maps classifiers)."""
    cutoff = time.time() - older_than * 86400
    freed = 0
    for section in sections or ("maps",):
        for path in _entries(section):
            if path.stat().st_mtime > cutoff:
                continue
            freed += _size(path)
            click.echo(f"{'would remove' if dry_run else 'removed'} {section}/{path.name}")
            if not dry_run:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    click.echo(f"{'would free' if dry_run else 'freed'} {_human(freed)}", err=True)
