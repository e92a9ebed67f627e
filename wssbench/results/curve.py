"""Threshold-free seeds: mIoU over a grid of background thresholds, from the maps in hand.

WSSS code bases report a seed's mIoU at a background threshold chosen against the ground truth
of the split they score (SEAM's ``--curve``, CLIP-ES's ``eval_cam.py``); Choe et al. (CVPR 2020)
showed that this reorders methods. A run whose fusion has a background threshold (a fusion
declaring ``threshold_option``) therefore also records the whole curve: the fusion is applied
again at every threshold of the grid (default 0.00 to 0.95 in steps of 0.05) to the maps the
run already computed (no network pass is repeated), and each threshold's label maps are scored
into a confusion matrix of their own.

The curve is the fusion's output, before refiners: applying a dense CRF twenty times per image
would multiply the run's cost. With no refiner, the curve at the run's own threshold is the
run's mIoU exactly. The record holds:

- ``threshold_curve``: ``[{"threshold", "miou"}, ...]`` over the grid;
- ``threshold_auc``: the mean mIoU over the grid (the area under the curve over a grid of
  equal steps, divided by its width): a summary no threshold choice can flatter;
- ``threshold_max``: the best point, ``{"threshold", "miou", "oracle": true}``: chosen on the
  scored split's truth, so an oracle, never a result;
- ``threshold_used``: ``{"threshold", "miou"}`` at the run's own threshold (before refiners).
"""

from __future__ import annotations

import numpy as np

from wssbench.errors import UsageError
from wssbench.results.metrics import confusion, scores

DEFAULT_GRID = tuple(round(0.05 * i, 2) for i in range(20))


def check_grid(grid: tuple[float, ...]) -> tuple[float, ...]:
    grid = tuple(float(t) for t in grid)
    if len(grid) < 2 or any(not 0.0 <= t <= 1.0 for t in grid) or list(grid) != sorted(set(grid)):
        raise UsageError(f"threshold grid: expected at least two increasing values in [0, 1], got {grid}")
    return grid


class CurveAccumulator:
    """Confusion matrices (T, C, C + 1), one per threshold, accumulated over the images.

    ``points`` is the grid, followed by the run's own threshold ``used`` when the grid lacks it:
    the fusion is applied at each point, in this order."""

    def __init__(self, grid: tuple[float, ...], num_classes: int, used: float | None = None):
        self.grid = check_grid(grid)
        self.used = None if used is None else float(used)
        extra = () if self.used is None or any(abs(t - self.used) < 1e-9 for t in self.grid) else (self.used,)
        self.points = self.grid + extra
        self.num_classes = num_classes
        self.matrices = np.zeros((len(self.points), num_classes, num_classes + 1), np.int64)

    def update(self, gt: np.ndarray, predictions: list[np.ndarray]) -> None:
        """One image: its truth and its label map at each of ``points``, in that order."""
        for t, pred in enumerate(predictions):
            self.matrices[t] += confusion(gt, pred, self.num_classes)

    def add(self, matrices: np.ndarray) -> "CurveAccumulator":
        """Counts accumulated elsewhere (a worker process); returns self."""
        self.matrices += matrices
        return self

    def merged(self, others: list["CurveAccumulator"]) -> "CurveAccumulator":
        """This and other ranks' accumulations of the same points, summed."""
        for other in others:
            self.matrices += other.matrices
        return self

    def summary(self) -> dict:
        """The record's ``threshold_*`` fields (module docstring)."""
        mious = [scores(m).miou for m in self.matrices]
        on_grid = mious[: len(self.grid)]
        finite = [(v, t) for t, v in zip(self.grid, on_grid) if v == v]
        out: dict = {
            "threshold_curve": [{"threshold": t, "miou": _number(v)} for t, v in zip(self.grid, on_grid)],
            "threshold_auc": float(np.mean(on_grid)) if len(finite) == len(on_grid) else None,
            "threshold_max": None,
            "threshold_used": None,
        }
        if finite:
            best, at = max(finite)
            out["threshold_max"] = {"threshold": at, "miou": best, "oracle": True}
        if self.used is not None:
            at = next(k for k, t in enumerate(self.points) if abs(t - self.used) < 1e-9)
            out["threshold_used"] = {"threshold": self.used, "miou": _number(mious[at])}
        return out


def _number(x: float) -> float | None:
    return None if x != x else float(x)
