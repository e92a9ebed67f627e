"""``wssbench eval``: score a folder of predicted masks against a dataset's ground truth.

Arguments are checked before any dataset is generated or read: the prediction folder, the
dataset options, the id list. The images scored are the whole split, or ``--limit N`` (the
first N, as ``run --limit N`` takes them), or ``--ids``; when PRED_DIR is the ``masks/``
folder of a ``run --limit N`` (its ``result.json`` beside it says so) and neither is given,
the run's limit is used.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from wssbench.cli import traceback_option
from wssbench.cli.params import ComponentName
from wssbench.cli.tables import result_table
from wssbench.errors import DataError, UsageError
from wssbench.host.options import parse_option_strings
from wssbench.host.registry import default_registry
from wssbench.results.folder import evaluate_folder, run_limit
from wssbench.results.uncertainty import percentile_interval, run_samples


def read_ids(text: str) -> list[str]:
    """``a,b,c`` or ``@FILE`` (one id per line) -> ids, in order, without duplicates."""
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UsageError(f"--ids {text}: file not found")
        items = path.read_text().split()
    else:
        items = [s.strip() for s in text.split(",")]
    ids = list(dict.fromkeys(s for s in items if s))
    if not ids:
        raise UsageError(f"--ids {text!r}: no image id given")
    return ids


@click.command("eval")
@click.argument("pred_dir", type=click.Path(path_type=Path))
@click.option("--dataset", type=ComponentName("dataset"), required=True, help="Dataset holding the ground truth.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (default: the dataset's own).")
@click.option("--split", default="val", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images of the split (as 'run --limit N').")
@click.option("--ids", "ids_text", metavar="ID,ID,...|@FILE", help="Only these images (comma-separated, or a file with one id per line).")
@click.option("-O", "--option", "options", multiple=True, metavar="dataset.KEY=VALUE", help="A dataset option, e.g. -O dataset.preset=tiny.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON on stdout.")
@traceback_option
def eval_command(
    pred_dir: Path, dataset: str, data_root: str | None, split: str, limit: int | None, ids_text: str | None,
    options: tuple[str, ...], as_json: bool,
) -> None:
    """Score PRED_DIR (palette or index PNGs named <id>.png) as the VOC devkit does.

    The whole split by default; --limit N or --ids for part of it. PRED_DIR being the masks/
    folder of a 'run --limit N', its limit is used unless one of them is given.
    """
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder not found")
    if limit is not None and ids_text is not None:
        raise UsageError("--limit and --ids both choose the images; give one")
    registry = default_registry()
    dataset_options = {}
    for stage, key, value in parse_option_strings(options):
        if stage != "dataset":
            raise UsageError(f"-O {stage}.{key}: eval takes dataset options only (-O dataset.KEY=VALUE)")
        dataset_options[key] = value
    registry.parse_options("dataset", dataset, dataset_options)  # names and values, before any data is read
    wanted = read_ids(ids_text) if ids_text is not None else None
    if wanted is None and limit is None:
        limit = run_limit(pred_dir, dataset, split)
        if limit is not None:
            click.echo(f"note: scoring the first {limit} images of {split}, as the run beside {pred_dir} did (--limit {limit})", err=True)

    ds = registry.create("dataset", dataset, root=data_root, **dataset_options)
    ds.prepare()
    ds.check_split(split)
    ids = ds.ids(split)
    if wanted is not None:
        known = set(ids)
        unknown = [i for i in wanted if i not in known]
        if unknown:
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise UsageError(f"--ids: not in split '{split}': {', '.join(unknown[:3])}{more}")
        ids = wanted
    elif limit is not None:
        ids = ids[:limit]
    cm, ids, counts = evaluate_folder(pred_dir, ds, split, ids)
    result = cm.compute()
    whole = len(ids) == len(ds.ids(split))
    record = {
        "dataset": dataset,
        "split": split,
        "protocol": "masks scored against ground truth",
        "n_images": len(ids),
        "images": "split" if whole else ids,
        "miou": result.miou,
        "per_class_iou": {n: (None if v != v else float(v)) for n, v in zip(ds.classes, result.iou)},
        "pixel_accuracy": result.pixel_accuracy,
        "ci95": list(percentile_interval(run_samples(counts))),  # the image bootstrap (wssbench.results.uncertainty)
        "confusion_matrix": cm.matrix.tolist(),
        "pred_dir": str(pred_dir),
    }
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:

        Console().print(result_table(record))
