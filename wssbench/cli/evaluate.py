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
from wssbench.errors import DataError, UsageError
from wssbench.host.options import parse_option_strings
from wssbench.host.registry import default_registry


def evaluate_folder(pred_dir: Path, dataset, split: str, ids: list[str] | None = None):
    """One confusion matrix over ``ids`` (default: every image of ``split``); each needs ``pred_dir/<id>.png``."""
    from wssbench.results.metrics import ConfusionMatrix
    from wssbench.storage.io import read_mask

    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder not found")
    ids = dataset.ids(split) if ids is None else ids
    cm = ConfusionMatrix(dataset.num_classes)
    for image_id in ids:
        path = pred_dir / f"{image_id}.png"
        if not path.is_file():
            raise DataError(f"{path}: prediction missing for image '{image_id}' of split '{split}'")
        pred = read_mask(path)
        gt = dataset.load_mask(image_id)
        if pred.shape != gt.shape:
            raise DataError(
                f"{path}: prediction size {pred.shape[1]}x{pred.shape[0]} differs from ground truth "
                f"{gt.shape[1]}x{gt.shape[0]}"
            )
        try:
            cm.update(gt, pred)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
    return cm, ids


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


def run_limit(pred_dir: Path, dataset: str, split: str) -> int | None:
    """The ``--limit`` of the run whose ``masks/`` folder ``pred_dir`` is, when it scored this dataset and split."""
    path = pred_dir.parent / "result.json"
    if pred_dir.name != "masks" or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        config = record["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if config.get("dataset") != dataset or config.get("split") != split:
        return None
    limit = config.get("limit")
    return limit if isinstance(limit, int) and limit > 0 else None


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
    cm, ids = evaluate_folder(pred_dir, ds, split, ids)
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
        "confusion_matrix": cm.matrix.tolist(),
        "pred_dir": str(pred_dir),
    }
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        from wssbench.cli.tables import result_table

        Console().print(result_table(record))
