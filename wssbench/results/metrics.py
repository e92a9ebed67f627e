"""Segmentation metrics the VOC way: one confusion matrix over the whole split.

Functional core (``confusion``, ``scores``) and a thin stateful wrapper (``ConfusionMatrix``),
as torchmetrics does. Ground-truth pixels labelled ``ignore_index`` (255) are not counted.
A predicted 255 on a counted pixel is scored as wrong (a miss of the true class); the VOC
devkit would drop such a pixel, which lets a method abstain for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wssbench.errors import DataError

IGNORE = 255


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = IGNORE) -> np.ndarray:
    """Confusion matrix (num_classes, num_classes + 1): rows = truth, columns = prediction.

    The extra last column counts counted pixels predicted as ``ignore_index``.
    """
    gt, keep = counted_truth(gt, pred.shape, num_classes, ignore_index)
    pred = pred.reshape(-1).astype(np.int64)[keep]
    bad = (pred >= num_classes) & (pred != ignore_index)
    if bad.any():
        raise DataError(f"predicted label {int(pred[bad][0])} out of range 0..{num_classes - 1} or {ignore_index}")
    pred = np.where(pred == ignore_index, num_classes, pred)
    counts = np.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def counted_truth(gt: np.ndarray, shape: tuple[int, ...], num_classes: int, ignore_index: int = IGNORE) -> tuple[np.ndarray, np.ndarray]:
    """The counted pixels' truth (N,) int64 and which pixels they are (a mask over the flattened
    image), after checking the prediction's ``shape`` and the truth's labels."""
    if gt.shape != tuple(shape):
        raise DataError(f"prediction shape {tuple(shape)} differs from ground truth {gt.shape}")
    gt = gt.reshape(-1).astype(np.int64)
    keep = gt != ignore_index
    gt = gt[keep]
    if gt.size and gt.max() >= num_classes:
        raise DataError(f"ground-truth label {int(gt.max())} out of range 0..{num_classes - 1}")
    return gt, keep


def confusions_at(gt: np.ndarray, evidence: np.ndarray, label: np.ndarray, thresholds: tuple[float, ...] | list[float],
                  num_classes: int, ignore_index: int = IGNORE) -> np.ndarray:
    """The confusion matrices (T, C, C + 1) of the label maps ``where(evidence > t, label, 0)`` at
    every threshold ``t``, equal to ``confusion`` of each, in one pass over the pixels instead of T.

    Each counted pixel falls in bucket ``b``, the number of thresholds strictly below its evidence:
    it is ``label`` at the ``b`` smallest thresholds and background at the others. One histogram
    over (truth, label, bucket), summed from the top bucket down, gives every threshold's counts.
    """
    if label.shape != evidence.shape:
        raise DataError(f"label map shape {label.shape} differs from its evidence's {evidence.shape}")
    gt, keep = counted_truth(gt, evidence.shape, num_classes, ignore_index)
    evidence, label = evidence.reshape(-1)[keep], label.reshape(-1)[keep].astype(np.int64)
    if label.size and label.max() >= num_classes:
        raise DataError(f"predicted label {int(label.max())} out of range 0..{num_classes - 1}")
    # the thresholds in the evidence's precision, as ``evidence > t`` compares a Python float with float32 maps
    points = np.asarray(thresholds, np.result_type(evidence.dtype, np.float32))
    order = np.argsort(points, kind="stable")
    n = len(points)
    bucket = np.searchsorted(points[order], evidence.astype(points.dtype), side="left")  # thresholds < evidence
    bucket[np.isnan(evidence)] = 0  # NaN exceeds no threshold: background everywhere, as `evidence > t` says
    cells = num_classes * (num_classes + 1)
    hist = np.bincount((gt * (num_classes + 1) + label) * (n + 1) + bucket, minlength=cells * (n + 1))
    hist = hist.reshape(num_classes, num_classes + 1, n + 1)
    above = hist[..., ::-1].cumsum(-1)[..., ::-1]  # above[..., b]: pixels in bucket b or higher
    out = np.empty((n, num_classes, num_classes + 1), np.int64)
    total = hist.sum((1, 2))  # (C,) counted pixels per true class
    for j in range(n):  # the j-th smallest threshold: buckets above j are foreground
        matrix = above[..., j + 1].copy()
        matrix[:, 0] += total - matrix.sum(1)
        out[order[j]] = matrix
    return out


@dataclass(frozen=True)
class Scores:
    iou: np.ndarray  # (C,) NaN where a class is in neither truth nor prediction
    miou: float  # mean over the classes that occur
    pixel_accuracy: float


def scores(cm: np.ndarray) -> Scores:
    """Per-class IoU = TP / (TP + FP + FN), mean IoU over present classes, pixel accuracy."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm[:, : cm.shape[0]])
    gt_total = cm.sum(axis=1)  # TP + FN (abstentions count as FN)
    pred_total = cm[:, : cm.shape[0]].sum(axis=0)  # TP + FP
    union = gt_total + pred_total - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    present = ~np.isnan(iou)
    miou = float(iou[present].mean()) if present.any() else float("nan")
    total = cm.sum()
    accuracy = float(tp.sum() / total) if total > 0 else float("nan")
    return Scores(iou=iou, miou=miou, pixel_accuracy=accuracy)


class ConfusionMatrix:
    """Accumulates one confusion matrix over many images; ``compute()`` scores it."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        self.matrix += confusion(gt, pred, self.num_classes, self.ignore_index)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix

    def compute(self) -> Scores:
        return scores(self.matrix)
