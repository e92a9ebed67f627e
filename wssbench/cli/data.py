"""``wssbench data``: download a dataset, show what a dataset folder holds, generate voc-scale."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
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


@data.command("generate")
@click.argument("name", type=click.Choice(["voc-scale"]))
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write VOCdevkit/ into (it must not hold one yet).")
@click.option("--train-aug", type=click.IntRange(min=1), default=10582, show_default=True, help="train_aug images (VOC + SBD: 10,582).")
@click.option("--train", type=click.IntRange(min=1), default=1464, show_default=True,
              help="Of those, the official train images (VOC: 1,464).")
@click.option("--val", type=click.IntRange(min=1), default=1449, show_default=True, help="val images (VOC: 1,449).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes rendering images.")
def generate(name: str, root: Path, train_aug: int, train: int, val: int, workers: int) -> None:
    """Write a generated dataset with PASCAL VOC 2012's shape (voc-scale: 500 x 375 images, 21 classes,
    VOCdevkit layout, read with --dataset voc2012) and print the folder to pass as --data-root."""
    from wssbench.data import voc_scale  # numpy, PIL: only when asked

    if (root / "VOCdevkit").exists():
        raise click.UsageError(f"--root {root}: holds a VOCdevkit already; remove it or choose another --root")
    spec = voc_scale.VocScaleSpec(n_train=min(train, train_aug), n_train_aug=train_aug, n_val=val)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("generating voc-scale", total=train_aug + val)
        voc = voc_scale.generate(root, spec, workers=workers, progress=lambda done, total: bar.update(task, completed=done))
    click.echo(voc.parent)
