"""``wssbench data``: download a dataset, show what a dataset folder holds."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wssbench.host.registry import default_registry
from wssbench.storage.cache import cache_dir


def downloaders() -> dict:
    """What can be downloaded: every registered dataset's ``downloads`` capability
    (``{name: download(root) -> the folder to pass as --data-root}``)."""
    out = {}
    for entry in default_registry().entries("dataset"):
        out.update(getattr(entry.factory, "downloads", None) or {})
    return out


@click.group("data")
def data() -> None:
    """Download and inspect datasets."""


@data.command("download")
@click.argument("name")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to download into (VOCdevkit/ goes inside); default: the wssbench cache.",
)
def download(name: str, root: Path | None) -> None:
    """Download dataset NAME and print the folder to pass as --data-root."""
    known = downloaders()
    if name not in known:
        raise click.UsageError(f"unknown dataset '{name}' to download; known: {', '.join(sorted(known))}")
    # The default is where each dataset looks without a root (VOC2012: cache_dir("data", "VOCdevkit", "VOC2012")).
    default = cache_dir("data", "coco") if name.startswith("coco") else cache_dir("data")
    click.echo(known[name](root or default))


@data.command("info")
@click.argument("name")
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset folder; default: the dataset's own (in the wssbench cache).",
)
def info(name: str, data_root: Path | None) -> None:
    """Show the splits of dataset NAME with their sizes, and its classes."""
    dataset = default_registry().create("dataset", name, root=None if data_root is None else str(data_root))
    dataset.prepare()
    table = Table()
    table.add_column("split")
    table.add_column("images", justify="right")
    for split in dataset.splits():
        table.add_row(split, str(len(dataset.ids(split))))
    console = Console()
    console.print(escape(f"{name}: {dataset.root}"), soft_wrap=True)
    console.print(table)
    console.print(escape(f"{dataset.num_classes} classes: {', '.join(dataset.classes)}"), soft_wrap=True)
