"""What kind of errors a run makes, from its per-image counts (:mod:`wssbench.results.counts`).

- ``precision`` and ``recall`` per class over the split: TP / (TP + FP) and TP / (TP + FN)
  (None where the denominator is 0), from the same confusion matrix as the IoU.
- ``iou_by_size``: every (image, foreground class) pair whose class is in the image's truth is a
  *region*, small (< 5 % of the image's H x W pixels), medium (5-25 %) or large (> 25 %); per
  size, the IoU pooled over its regions (their intersections summed over their unions summed;
  a region's union includes the class's false positives in that image) and the number of
  regions. Background is no region. The bounds follow COCO's idea of object sizes, as fractions
  of the image because WSSS images vary in size.
- ``absent_class_rate``: of the (image, foreground class) pairs the run predicted (at least one
  counted pixel), the fraction whose class is not in the image's truth: classes made up.
"""

from __future__ import annotations

import numpy as np

from wssbench.results.counts import ImageCounts

SIZES = (("small", 0.0, 0.05), ("medium", 0.05, 0.25), ("large", 0.25, 1.0 + 1e-9))  # [lo, hi) of the image


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [float(n / d) if d > 0 else None for n, d in zip(num, den)]


def diagnostics(counts: ImageCounts, classes: list[str]) -> dict:
    """The record's ``diagnostics``: per-class precision and recall, IoU by region size, and the
    rate of predicted classes absent from the image (module docstring)."""
    tp = counts.intersection.sum(0)
    predicted = counts.predicted.sum(0)
    truth = counts.truth.sum(0)
    fg_truth = counts.truth[:, 1:]  # (N, C-1)
    fraction = fg_truth / counts.pixels[:, None]  # (N, C-1)
    by_size = {}
    for name, lo, hi in SIZES:
        region = (fg_truth > 0) & (fraction >= lo) & (fraction < hi)
        inter = counts.intersection[:, 1:][region].sum()
        union = counts.union[:, 1:][region].sum()
        by_size[name] = {"iou": float(inter / union) if union > 0 else None, "regions": int(region.sum())}
    made = counts.predicted[:, 1:] > 0
    absent = made & (fg_truth == 0)
    return {
        "precision": dict(zip(classes, _ratio(tp, predicted))),
        "recall": dict(zip(classes, _ratio(tp, truth))),
        "iou_by_size": by_size,
        "size_rule": "a region is an (image, foreground class) pair in the truth; small < 5 %, medium 5-25 %, "
                     "large > 25 % of the image's pixels; IoU pooled over the regions of a size",
        "absent_class_rate": float(absent.sum() / made.sum()) if made.any() else None,
        "predicted_classes": int(made.sum()),
    }
