"""Localisation metrics of a saliency map against a ground-truth object: pointing game and energy.

Both take ONE map ``(H, W)`` of one class and the boolean region ``(H, W)`` of that class's
object in the same image, at the same resolution.

* Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016,
  sec. 5.1): the map's maximum is a *hit* when it lies within ``tolerance`` pixels (15 in the
  paper) of the object, else a *miss*; a class's accuracy is hits / (hits + misses) and the
  reported number is the mean of the class accuracies. Details follow TorchRay's
  re-implementation (``torchray.benchmark.pointing_game``, by Fong and Vedaldi, which
  reproduces the paper's numbers): a hit when some object pixel lies at a Euclidean distance
  *strictly* below ``tolerance`` from the point. The point is the FIRST maximum in row-major
  order (``np.argmax``, as TorchRay's argmax), so a constant map points at the top-left pixel
  and cannot score by ties (Quantus's ``PointingGame`` counts a hit when ANY maximal pixel is
  on the object instead).
* The "difficult" subset (Zhang et al. 2016): images where the class's object covers less
  than a quarter of the image and at least one object of another category is present (a
  distractor). The paper measured area with bounding boxes; here it is the class's pixels
  of the segmentation mask (see :func:`is_difficult`).
* Energy-based pointing game (Wang et al., "Score-CAM", CVPR-W 2020, sec. 4.2): the share of
  the map's mass inside the object, ``sum(map * region) / sum(map)``. Score-CAM used
  bounding boxes; here the region is the class's segmentation mask, or with ``box=True`` its
  bounding box (of all the class's pixels together). Negative values are clipped to 0 first
  (the Score-CAM maps are non-negative; a signed map's negative part is not "energy"). This
  equals Quantus's ``RelevanceMassAccuracy`` on a non-negative map.

On PASCAL VOC the region of class ``c`` (model output index) is ``mask == c + 1``; pixels
labelled 255 (object borders, "ignore") belong to no object, so a point on a border counts
only through the tolerance, and they count in the image area of the difficult rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wssbench.errors import UsageError

TOLERANCE = 15  # pixels, Zhang et al. 2016
DIFFICULT_AREA = 0.25  # the object covers less than this fraction of the image


def max_point(saliency: np.ndarray) -> tuple[int, int]:
    """(row, column) of the first maximum of ``saliency`` (H, W) in row-major order."""
    row, col = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    return int(row), int(col)


def pointing_hit(saliency: np.ndarray, region: np.ndarray, tolerance: float = TOLERANCE) -> bool:
    """Whether the map's maximum (H, W) lies within ``tolerance`` pixels of ``region`` (H, W) bool.

    Within: some region pixel at Euclidean distance < ``tolerance`` (TorchRay's rule); with
    ``tolerance=0`` nothing is within, so use a value in (0, 1] for "exactly on the object".
    """
    if saliency.shape != region.shape:
        raise UsageError(f"pointing game: map {saliency.shape} and region {region.shape} differ in shape")
    row, col = max_point(saliency)
    rows, cols = np.nonzero(region)
    return bool(np.any((rows - row) ** 2 + (cols - col) ** 2 < tolerance**2))


def energy_inside(saliency: np.ndarray, region: np.ndarray) -> float:
    """Share of the map's non-negative mass (H, W) inside ``region`` (H, W) bool, in [0, 1].

    A map with no positive mass puts none on the object: 0.
    """
    if saliency.shape != region.shape:
        raise UsageError(f"energy pointing game: map {saliency.shape} and region {region.shape} differ in shape")
    mass = np.clip(saliency.astype(np.float64), 0.0, None)
    total = mass.sum()
    return float(mass[region].sum() / total) if total > 0 else 0.0


def bounding_box(region: np.ndarray) -> np.ndarray:
    """The filled bounding box (H, W) bool of all True pixels of ``region``; empty stays empty."""
    box = np.zeros_like(region, dtype=bool)
    rows, cols = np.nonzero(region)
    if len(rows):
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    return box


def is_difficult(mask: np.ndarray, label: int, ignore: int = 255) -> bool:
    """Whether the object of ``label`` in the label mask (H, W) is a "difficult" pointing case.

    Difficult (Zhang et al. 2016): the label's pixels cover less than a quarter of the image,
    and another foreground label (not 0, not ``ignore``) is present.
    """
    area = np.count_nonzero(mask == label) / mask.size
    others = set(np.unique(mask).tolist()) - {0, ignore, label}
    return area < DIFFICULT_AREA and bool(others)


@dataclass
class PointingGame:
    """Hits and misses per class, over all images and on the difficult subset; the mean of the
    class accuracies over the classes that were tested at least once.

    (TorchRay averages over all classes, counting an untested class as 0; on a full VOC split
    every class is tested and the two agree.)
    """

    num_classes: int
    tolerance: float = TOLERANCE
    hits: np.ndarray = field(init=False)
    misses: np.ndarray = field(init=False)
    difficult_hits: np.ndarray = field(init=False)
    difficult_misses: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        for name in ("hits", "misses", "difficult_hits", "difficult_misses"):
            setattr(self, name, np.zeros(self.num_classes, dtype=np.int64))

    def update(self, saliency: np.ndarray, mask: np.ndarray, cls: int) -> bool:
        """Score one map (H, W) of model class ``cls`` against the label mask (H, W); returns the hit."""
        hit = pointing_hit(saliency, mask == cls + 1, self.tolerance)
        (self.hits if hit else self.misses)[cls] += 1
        if is_difficult(mask, cls + 1):
            (self.difficult_hits if hit else self.difficult_misses)[cls] += 1
        return hit

    def accuracy(self, difficult: bool = False) -> float:
        """Mean over the tested classes of hits / (hits + misses); NaN when none was tested."""
        return mean_class_accuracy(*(self.difficult_hits, self.difficult_misses) if difficult else (self.hits, self.misses))

    def class_accuracies(self, difficult: bool = False) -> list[float | None]:
        hits, misses = (self.difficult_hits, self.difficult_misses) if difficult else (self.hits, self.misses)
        tested = hits + misses
        return [float(h / t) if t else None for h, t in zip(hits, tested)]


def mean_class_accuracy(hits: np.ndarray, misses: np.ndarray) -> float:
    """Mean over classes with hits + misses > 0 of hits / (hits + misses); NaN when there is none."""
    tested = hits + misses
    return float(np.mean(hits[tested > 0] / tested[tested > 0])) if np.any(tested > 0) else float("nan")
