"""``wssbench data``: download a dataset, show what a dataset folder holds."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wssbench.data.download import download_voc2012
from wssbench.host.registry import default_registry
from wssbench.storage.cache import cache_dir

DOWNLOADERS = {"voc2012": download_voc2012}  # name -> download(root) -> the dataset folder


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
    if name not in DOWNLOADERS:
        raise click.UsageError(f"unknown dataset '{name}' to download; known: {', '.join(sorted(DOWNLOADERS))}")
    # The default is where VOC2012() looks without a root: cache_dir("data", "VOCdevkit", "VOC2012").
    click.echo(DOWNLOADERS[name](root or cache_dir("data")))


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
