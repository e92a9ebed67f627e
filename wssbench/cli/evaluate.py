"""``wssbench eval``: score a folder of predicted masks against a dataset's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from ..config import parse_option_strings
from ..errors import DataError, UsageError
from ..io import read_mask
from ..metrics import ConfusionMatrix
from ..registry import default_registry
from . import traceback_option
from .params import ComponentName
from .tables import result_table


def evaluate_folder(pred_dir: Path, dataset, split: str) -> tuple[ConfusionMatrix, list[str]]:
    """One confusion matrix over every image of ``split``; each needs ``pred_dir/<id>.png``."""
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder not found")
    ids = dataset.ids(split)
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


@click.command("eval")
@click.argument("pred_dir", type=click.Path(path_type=Path))
@click.option("--dataset", type=ComponentName("dataset"), required=True, help="Dataset holding the ground truth.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (default: the dataset's own).")
@click.option("--split", default="val", show_default=True)
@click.option("-O", "--option", "options", multiple=True, metavar="dataset.KEY=VALUE", help="A dataset option, e.g. -O dataset.preset=tiny.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON on stdout.")
@traceback_option
def eval_command(pred_dir: Path, dataset: str, data_root: str | None, split: str, options: tuple[str, ...], as_json: bool) -> None:
    """Score PRED_DIR (palette or index PNGs named <id>.png) as the VOC devkit does."""
    dataset_options = {}
    for stage, key, value in parse_option_strings(options):
        if stage != "dataset":
            raise UsageError(f"-O {stage}.{key}: eval takes dataset options only (-O dataset.KEY=VALUE)")
        dataset_options[key] = value
    ds = default_registry().create("dataset", dataset, root=data_root, **dataset_options)
    ds.prepare()
    cm, ids = evaluate_folder(pred_dir, ds, split)
    result = cm.compute()
    record = {
        "dataset": dataset,
        "split": split,
        "protocol": "masks scored against ground truth",
        "n_images": len(ids),
        "miou": result.miou,
        "per_class_iou": {n: (None if v != v else float(v)) for n, v in zip(ds.classes, result.iou)},
        "pixel_accuracy": result.pixel_accuracy,
        "confusion_matrix": cm.matrix.tolist(),
        "pred_dir": str(pred_dir),
    }
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        Console().print(result_table(record))
