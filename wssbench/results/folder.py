"""Scoring a folder of predicted masks (``<id>.png``) against a dataset's ground truth, as the VOC
devkit does (``wssbench eval``): one confusion matrix over the images, and the per-image counts
behind it for the bootstrap interval."""

from __future__ import annotations

import json
from pathlib import Path

from wssbench.errors import DataError
from wssbench.results.counts import CountsAccumulator
from wssbench.results.metrics import ConfusionMatrix
from wssbench.storage.io import read_mask


def evaluate_folder(pred_dir: Path, dataset, split: str, ids: list[str] | None = None):
    """One confusion matrix over ``ids`` (default: every image of ``split``), and the per-image
    counts behind it (:class:`~wssbench.results.counts.ImageCounts`); each id needs
    ``pred_dir/<id>.png``."""
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder not found")
    ids = dataset.ids(split) if ids is None else ids
    cm = ConfusionMatrix(dataset.num_classes)
    counts = CountsAccumulator(dataset.num_classes)
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
            cm.matrix += counts.update(image_id, gt, pred)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
    return cm, ids, counts.result(list(ids))


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
