"""Per-image pixel counts: the split's mIoU on any subset of its images, without the masks.

For every scored image and class, three counts over the image's counted pixels (ground truth
not 255):

- ``intersection`` (N, C): pixels of the class in both truth and prediction (TP);
- ``union`` (N, C): pixels of the class in truth or prediction (TP + FP + FN; a counted pixel
  predicted 255 is a miss of its true class, as in :mod:`wssbench.results.metrics`);
- ``truth`` (N, C): pixels of the class in the truth (TP + FN);

and ``pixels`` (N,), the image's size H x W (what a region's size is a fraction of). Summed
over the images they give the split's confusion-matrix scores exactly: IoU_c = sum I / sum U
(:func:`miou`), so a bootstrap (:mod:`wssbench.results.uncertainty`) or an error analysis
(:mod:`wssbench.results.diagnostics`) never re-reads a mask. Predicted pixels of a class are
``union - truth + intersection`` (TP + FP).

A run writes them as ``counts.npz`` beside ``result.json`` (named in the record's
``counts.file``), compressed: about 30 kB for VOC val, with the run's bootstrap samples (its
mIoU under the canonical image draws of :mod:`wssbench.results.uncertainty`, 1,000 numbers) so
that a leaderboard never recomputes them. They are read with ``allow_pickle=False`` and checked;
a missing or damaged file is a :class:`DataError` naming it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wssbench.errors import DataError
from wssbench.results.metrics import confusion

COUNTS_FILE = "counts.npz"
COUNTS_VERSION = 1
ARRAYS = ("intersection", "union", "truth")


def image_counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's confusion matrix (C, C + 1) -> its (intersection, union, truth), each (C,)."""
    c = cm.shape[0]
    tp = np.diag(cm[:, :c])
    truth = cm.sum(axis=1)  # TP + FN (abstentions count as FN)
    predicted = cm[:, :c].sum(axis=0)  # TP + FP
    return tp, truth + predicted - tp, truth


class CountsAccumulator:
    """Collects one image at a time (any order); ``result()`` is the :class:`ImageCounts`."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self._rows: dict[str, tuple[np.ndarray, int]] = {}

    def update(self, image_id: str, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Count one image; returns its confusion matrix (C, C + 1), for the split's total."""
        cm = confusion(gt, pred, self.num_classes)
        self.add(image_id, cm, gt.size)
        return cm

    def add(self, image_id: str, cm: np.ndarray, pixels: int) -> None:
        if image_id in self._rows:
            raise DataError(f"image '{image_id}' counted twice")
        self._rows[image_id] = (np.asarray(cm, np.int64), int(pixels))

    def merge(self, other: "CountsAccumulator") -> None:
        for image_id, (cm, pixels) in other._rows.items():
            self.add(image_id, cm, pixels)

    def result(self, order: list[str] | None = None) -> "ImageCounts":
        """The counts in ``order`` (the split's order; default: as added)."""
        ids = list(order) if order is not None else list(self._rows)
        missing = [i for i in ids if i not in self._rows]
        if missing:
            raise DataError(f"no counts for image '{missing[0]}'")
        per_image = [image_counts(self._rows[i][0]) for i in ids]
        arrays = [np.array([p[k] for p in per_image], np.int64).reshape(len(ids), self.num_classes) for k in range(3)]
        pixels = np.array([self._rows[i][1] for i in ids], np.int64)
        return ImageCounts(tuple(ids), *arrays, pixels)


@dataclass(frozen=True)
class ImageCounts:
    """Per-image, per-class pixel counts of one scored split (see the module docstring)."""

    ids: tuple[str, ...]
    intersection: np.ndarray  # (N, C) int64
    union: np.ndarray  # (N, C) int64
    truth: np.ndarray  # (N, C) int64
    pixels: np.ndarray  # (N,) int64, H x W per image

    @property
    def num_classes(self) -> int:
        return self.intersection.shape[1]

    @property
    def predicted(self) -> np.ndarray:
        """(N, C) predicted pixels of each class (TP + FP)."""
        return self.union - self.truth + self.intersection

    def subset(self, ids: list[str]) -> "ImageCounts":
        """The counts of ``ids`` (in that order); DataError for an id not scored here."""
        index = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise DataError(f"image '{missing[0]}' was not scored in this run")
        rows = np.array([index[i] for i in ids], np.int64)
        return ImageCounts(tuple(ids), self.intersection[rows], self.union[rows], self.truth[rows], self.pixels[rows])

    def miou(self) -> float:
        """The split's mIoU from these counts (equal to the confusion matrix's)."""
        return float(miou(self.intersection.sum(0), self.union.sum(0)))

    def save(self, path: Path, samples: np.ndarray | None = None) -> None:
        """Write ``path`` (npz, compressed), with the run's bootstrap ``samples`` (B,) if given;
        the caller makes it atomic."""
        extra = {} if samples is None else {"samples": np.asarray(samples, np.float64)}
        with open(path, "wb") as f:
            np.savez_compressed(
                f, version=np.array(COUNTS_VERSION), ids=np.array(self.ids, dtype=str),
                intersection=self.intersection.astype(np.uint32), union=self.union.astype(np.uint32),
                truth=self.truth.astype(np.uint32), pixels=self.pixels.astype(np.int64), **extra,
            )

    @staticmethod
    def load_samples(path: Path) -> np.ndarray | None:
        """The bootstrap samples stored with the counts (B,), or None when the file has none;
        DataError naming the file when it cannot be read."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["samples"].astype(np.float64) if "samples" in data.files else None
        except FileNotFoundError:
            raise DataError(f"{path}: count file not found (named in the record's 'counts')") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: not a readable wssbench count file ({type(e).__name__}: {e})") from None

    @classmethod
    def load(cls, path: Path) -> "ImageCounts":
        """Read and check a counts file; DataError naming it when missing, truncated or inconsistent."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("version", "ids", *ARRAYS, "pixels")}
        except FileNotFoundError:
            raise DataError(f"{path}: count file not found (named in the record's 'counts')") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: not a readable wssbench count file ({type(e).__name__}: {e})") from None
        n = arrays["ids"].shape[0]
        shapes = {k: arrays[k].shape for k in ARRAYS}
        if arrays["ids"].ndim != 1 or len({*shapes.values()}) != 1 or shapes["union"][:1] != (n,) or len(shapes["union"]) != 2 \
                or arrays["pixels"].shape != (n,):
            raise DataError(f"{path}: count arrays of inconsistent shapes ({n} ids, {shapes}, pixels {arrays['pixels'].shape})")
        inter, union, truth = (arrays[k].astype(np.int64) for k in ARRAYS)
        if (inter > union).any() or (inter > truth).any() or (truth > union).any():
            raise DataError(f"{path}: counts are inconsistent (intersection above union or truth)")
        return cls(tuple(str(i) for i in arrays["ids"]), inter, union, truth, arrays["pixels"].astype(np.int64))


def miou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """mIoU from summed counts (..., C) -> (...): the mean over the classes with a union
    (present in truth or prediction), as :func:`wssbench.results.metrics.scores`; NaN when none."""
    intersection = np.asarray(intersection, np.float64)
    union = np.asarray(union, np.float64)
    present = union > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, intersection / np.where(present, union, 1.0), 0.0)
        return iou.sum(-1) / present.sum(-1)
