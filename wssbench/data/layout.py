"""A segmentation dataset stored in the VOCdevkit layout.

    ROOT/JPEGImages/<id>.jpg
    ROOT/SegmentationClass/<id>.png          palette PNG, 0 = background, 255 = ignore
    ROOT/ImageSets/Segmentation/<split>.txt  one id per line
    ROOT/cls_labels.npy (or ROOT/../cls_labels.npy)   optional image labels: a pickled dict
                                              id -> float32 (C,) multi-hot, as psa and irn use,
                                              read without running its pickle (``cls_labels``)

Image-level labels come from ``cls_labels.npy`` when present, otherwise from
:meth:`SegmentationDataset.labels_fallback` (the VOC XML annotations for VOC 2012, the masks
for a dataset without either). psa and irn keep the file in ``VOCdevkit/``, one level above the
``VOC2012`` root; a file found there is used, with a warning naming it when it lies outside the
folder the user pointed at (``--data-root .../VOC2012``).
"""

from __future__ import annotations

import warnings
from functools import cached_property
from pathlib import Path

import numpy as np

from wssbench.data.cls_labels import read_cls_labels
from wssbench.errors import DataError, UsageError
from wssbench.storage.io import read_image, read_mask


class UnknownSplitError(UsageError, DataError):
    """A split the dataset does not have: a usage error (exit 2) that names the available splits.

    Also a :class:`DataError`, which it was before the split became a command-line argument.
    """


class SegmentationDataset:
    """Reads a VOCdevkit-style folder. Subclasses set ``name`` and ``classes``."""

    name = "voc-layout"
    classes: tuple[str, ...] = ()  # background first
    image_dir = "JPEGImages"
    mask_dir = "SegmentationClass"
    image_ext = ".jpg"

    def __init__(self, root: str | Path, given: str | Path | None = None):
        self.root = Path(root)
        self.given = Path(given) if given is not None else self.root  # the folder the user named

    @property
    def num_classes(self) -> int:
        """Number of labels including background."""
        return len(self.classes)

    def prepare(self) -> None:
        """Check the layout; raise DataError naming what is missing."""
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset root not found")
        for sub in (self.image_dir, self.mask_dir, "ImageSets/Segmentation"):
            if not (self.root / sub).is_dir():
                raise DataError(
                    f"{self.root}: not a VOC-layout root (missing {sub}/); expected "
                    f"JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/"
                )

    def splits(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "ImageSets/Segmentation").glob("*.txt"))

    def check_split(self, split: str) -> None:
        """Raise :class:`UnknownSplitError` (exit 2) naming the available splits unless ``split`` is one.

        Call it after :meth:`prepare`, before any work: ``--split nosuch`` is a usage error.
        """
        available = self.splits()
        if split not in available:
            path = self.root / "ImageSets/Segmentation" / f"{split}.txt"
            raise UnknownSplitError(f"{path}: split '{split}' not found; available: {', '.join(available) or 'none'}")

    def ids(self, split: str) -> list[str]:
        path = self.root / "ImageSets/Segmentation" / f"{split}.txt"
        if not path.is_file():
            self.check_split(split)  # raises unless the split's list is missing for another reason
            raise DataError(f"{path}: split '{split}' has no image list")
        return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]

    def check_files(self, ids: list[str]) -> None:
        """A cheap check, before any work, that every id has its image and mask (DataError naming
        the first missing file and how many are missing)."""
        for describe, path_of in (("image", self.image_path), ("mask", self.mask_path)):
            missing = [path_of(i) for i in ids if not path_of(i).is_file()]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise DataError(f"{missing[0]}: {describe} not found{more}")

    def image_path(self, image_id: str) -> Path:
        return self.root / self.image_dir / f"{image_id}{self.image_ext}"

    def mask_path(self, image_id: str) -> Path:
        return self.root / self.mask_dir / f"{image_id}.png"

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id))  # (H, W, 3) uint8

    def load_mask(self, image_id: str) -> np.ndarray:
        mask = read_mask(self.mask_path(image_id))  # (H, W) uint8
        bad = (mask >= self.num_classes) & (mask != 255)
        if bad.any():
            raise DataError(
                f"{self.mask_path(image_id)}: label {int(mask[bad][0])} out of range; "
                f"expected 0..{self.num_classes - 1} or 255"
            )
        return mask

    def load_pair(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask, checked to be the same size."""
        image, mask = self.load_image(image_id), self.load_mask(image_id)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{self.mask_path(image_id)}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                f"image size {image.shape[1]}x{image.shape[0]}"
            )
        return image, mask

    @cached_property
    def _cls_labels(self) -> dict[str, np.ndarray] | None:
        inside, above = self.root / "cls_labels.npy", self.root.parent / "cls_labels.npy"
        if inside.is_file():
            return read_cls_labels(inside)
        if above.is_file():
            if not above.resolve().is_relative_to(self.given.resolve()):
                warnings.warn(f"image labels read from {above}, outside the data root {self.given} (psa/irn keep it there)",
                              stacklevel=2)
            return read_cls_labels(above)
        return None

    def image_labels(self, image_id: str) -> np.ndarray:
        """Multi-hot foreground labels, bool (C-1,): index c is label c + 1."""
        table = self._cls_labels
        if table is not None and image_id in table:
            labels = table[image_id].astype(bool)
            if labels.shape != (self.num_classes - 1,):
                raise DataError(
                    f"cls_labels.npy: labels of {image_id} have shape {labels.shape}, "
                    f"expected ({self.num_classes - 1},)"
                )
            return labels
        return self.labels_fallback(image_id)

    def labels_fallback(self, image_id: str) -> np.ndarray:
        """Image labels read off the mask: every foreground label present."""
        return labels_from_mask(self.load_mask(image_id), self.num_classes)


def labels_from_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """The foreground labels present in a mask (H, W) -> bool (num_classes - 1,); 0 and 255 ignored."""
    present = np.zeros(num_classes - 1, dtype=bool)
    values = np.unique(mask)
    present[values[(values > 0) & (values < num_classes)] - 1] = True
    return present
