"""Objectness methods ``ss-boxes`` and ``ss-segments``: Selective Search's hierarchical grouping.

Selective Search (Uijlings et al., IJCV 2013) stands in for the proposal methods the papers used
(BING boxes for MIL-bb, MCG segments for MIL-seg and the poster's FCN+MCG): MCG exists only in
MATLAB and BING only as C++ / OpenCV-contrib code. It is written here on scikit-image's
Felzenszwalb-Huttenlocher superpixels (about 150 lines) rather than taken from a package:

* OpenCV's ``cv2.ximgproc.segmentation`` needs ``opencv-contrib-python-headless``, which
  cannot be installed next to the ``opencv-python-headless`` that ``grad-cam`` pulls in
  (both own the ``cv2`` module and overwrite each other, in an install order we do not
  control), and it returns boxes only;
* the PyPI ``selective-search`` (1.1.0, 2022) returns boxes only, runs its strategies in a
  ``joblib`` pool of every core, and is no longer maintained.

Grouping gives the boxes AND the regions (unions of initial superpixels), so MIL-bb and MIL-seg
take their proposals from the same hierarchy. Which single strategy: Uijlings et al.'s "single
strategy" (HSV colour space, k = 100, similarity colour + texture + size + fill), with their
feature definitions: colour histograms of 25 bins per channel, texture histograms of Gaussian
derivatives (sigma 1) in 8 orientations per channel with 10 bins, both L1-normalised and
merged as size-weighted means; sizes and fills relative to the image. Choices where the paper
leaves room: 4-connected adjacency; ties broken by the order pairs were formed; proposals
ranked by their place in the hierarchy, the last merged (largest) first, WITHOUT the paper's
random re-ranking (wssbench runs are deterministic); identical boxes kept once.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

import wssbench
from wssbench.methods.objectness import BoxProposals, SegmentProposals
from wssbench.methods.superpixels import adjacency

COLOUR_BINS = 25
TEXTURE_BINS = 10
ORIENTATIONS = 8


@dataclass(frozen=True)
class Hierarchy:
    """Every region of one grouping, creation order: the S leaves first, then each merge."""

    leaves: np.ndarray  # (H, W) int, 0 .. S-1
    members: np.ndarray  # (R, S) bool, region r = union of its leaves
    boxes: np.ndarray  # (R, 4) int, x0, y0, x1, y1 (half-open)


def _colour_space(image: np.ndarray, space: str) -> np.ndarray:
    """(H, W, 3) float in [0, 1] per channel."""
    from skimage import color

    if space == "hsv":
        return color.rgb2hsv(image)
    if space == "lab":
        lab = color.rgb2lab(image)
        return np.clip(np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 255, (lab[..., 2] + 128) / 255], -1), 0, 1)
    return image.astype(np.float64) / 255.0


def _histograms(channels: np.ndarray, flat: np.ndarray, n: int, bins: int) -> np.ndarray:
    """Per region, concatenated histograms of the channels (C, H, W) in [0, 1], L1-normalised -> (S, C * bins)."""
    out = []
    for ch in channels:
        b = np.minimum((ch.ravel() * bins).astype(np.int64), bins - 1)
        out.append(np.bincount(flat * bins + b, minlength=n * bins).reshape(n, bins))
    hist = np.concatenate(out, 1).astype(np.float64)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1)


def _texture(image: np.ndarray) -> np.ndarray:
    """Gaussian derivative responses (3 * 8, H, W) in [0, 1]: per channel, sigma 1, 8 orientations
    (the positive part of the derivative along each), each divided by its maximum."""
    from scipy.ndimage import gaussian_filter

    out = []
    for ch in np.moveaxis(image, -1, 0):
        gy, gx = gaussian_filter(ch, 1.0, order=(1, 0)), gaussian_filter(ch, 1.0, order=(0, 1))
        for theta in np.arange(ORIENTATIONS) * 2 * np.pi / ORIENTATIONS:
            r = np.maximum(np.cos(theta) * gx + np.sin(theta) * gy, 0.0)
            out.append(r / r.max() if r.max() > 0 else r)
    return np.stack(out)


def group(image: np.ndarray, scale: float = 100.0, sigma: float = 0.8, min_size: int = 100, color_space: str = "hsv") -> Hierarchy:
    """Hierarchical grouping of a uint8 (H, W, 3) image (Uijlings et al. 2013, one strategy)."""
    from scipy.ndimage import find_objects
    from skimage.segmentation import felzenszwalb

    segments = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)
    leaves = np.unique(segments, return_inverse=True)[1].reshape(segments.shape)  # (H, W)
    s = int(leaves.max()) + 1
    flat = leaves.ravel()
    converted = _colour_space(image, color_space)  # (H, W, 3)
    total = 2 * s - 1
    size = np.zeros(total)
    size[:s] = np.bincount(flat, minlength=s)
    colour = np.zeros((total, 3 * COLOUR_BINS))
    colour[:s] = _histograms(np.moveaxis(converted, -1, 0), flat, s, COLOUR_BINS)
    texture = np.zeros((total, 3 * ORIENTATIONS * TEXTURE_BINS))
    texture[:s] = _histograms(_texture(converted), flat, s, TEXTURE_BINS)
    boxes = np.zeros((total, 4), np.int64)
    for i, (rows, cols) in enumerate(find_objects(leaves + 1)):
        boxes[i] = cols.start, rows.start, cols.stop, rows.stop
    members = np.zeros((total, s), bool)
    members[np.arange(s), np.arange(s)] = True
    area = float(leaves.size)

    def similarity(i: int, j: int) -> float:
        x0, y0 = min(boxes[i, 0], boxes[j, 0]), min(boxes[i, 1], boxes[j, 1])
        x1, y1 = max(boxes[i, 2], boxes[j, 2]), max(boxes[i, 3], boxes[j, 3])
        return (np.minimum(colour[i], colour[j]).sum() + np.minimum(texture[i], texture[j]).sum()
                + 1.0 - (size[i] + size[j]) / area
                + 1.0 - ((x1 - x0) * (y1 - y0) - size[i] - size[j]) / area)

    neighbours: dict[int, set[int]] = {i: set() for i in range(s)}
    heap: list[tuple[float, int, int, int]] = []  # (-similarity, formed, i, j)
    for formed, (i, j) in enumerate(adjacency(leaves).tolist()):
        neighbours[i].add(j), neighbours[j].add(i)
        heap.append((-similarity(i, j), formed, i, j))
    heapq.heapify(heap)
    formed = len(heap)
    alive = np.zeros(total, bool)
    alive[:s] = True
    t = s
    while heap:
        _, _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue  # a pair of a region merged since
        size[t] = size[i] + size[j]
        colour[t] = (size[i] * colour[i] + size[j] * colour[j]) / size[t]
        texture[t] = (size[i] * texture[i] + size[j] * texture[j]) / size[t]
        boxes[t] = np.r_[np.minimum(boxes[i, :2], boxes[j, :2]), np.maximum(boxes[i, 2:], boxes[j, 2:])]
        members[t] = members[i] | members[j]
        alive[i] = alive[j] = False
        alive[t] = True
        neighbours[t] = (neighbours.pop(i) | neighbours.pop(j)) - {i, j}
        for k in sorted(neighbours[t]):
            neighbours[k] -= {i, j}
            neighbours[k].add(t)
            heapq.heappush(heap, (-similarity(t, k), formed, t, k))
            formed += 1
        t += 1
    return Hierarchy(leaves, members[:t], boxes[:t])


@dataclass(frozen=True)
class SelectiveSearch:
    """Selective Search (Uijlings et al. 2013) proposals of one image: single strategy on Felzenszwalb superpixels.

    ``scale``, ``sigma``, ``min_size``: the Felzenszwalb-Huttenlocher superpixels (k = 100,
    sigma 0.8, min size k as Uijlings et al.'s code); ``color_space``: hsv (the single
    strategy's), lab or rgb; ``max_proposals``: the first this many in hierarchy order, the
    largest first (0 = all). Every proposal weighs 1: Selective Search ranks, it does not score.
    """

    scale: float = 100.0
    sigma: float = 0.8
    min_size: int = 100
    color_space: str = "hsv"
    max_proposals: int = 200

    def __post_init__(self) -> None:
        if self.scale <= 0 or self.sigma < 0 or self.min_size < 1:
            raise ValueError(f"need scale > 0, sigma >= 0, min_size >= 1; got {self.scale}, {self.sigma}, {self.min_size}")
        if self.color_space not in ("hsv", "lab", "rgb"):
            raise ValueError(f"color_space must be hsv, lab or rgb, got '{self.color_space}'")
        if self.max_proposals < 0:
            raise ValueError(f"max_proposals must be >= 0 (0 = all), got {self.max_proposals}")

    def hierarchy(self, image: np.ndarray) -> tuple[Hierarchy, np.ndarray]:
        """The grouping and the proposals' indices into it, in rank order."""
        h = group(image, self.scale, self.sigma, self.min_size, self.color_space)
        order = np.arange(len(h.members))[::-1]  # last merged (largest) first
        return h, order


@dataclass(frozen=True)
class SelectiveSearchBoxes(SelectiveSearch):
    """Selective Search boxes (Uijlings et al. 2013): the bounding boxes of the hierarchical grouping's regions, each once."""

    name = "ss-boxes"

    def __call__(self, image: np.ndarray) -> BoxProposals:
        h, order = self.hierarchy(image)
        _, first = np.unique(h.boxes[order], axis=0, return_index=True)
        order = order[np.sort(first)]  # identical boxes once, rank order kept
        order = order[: self.max_proposals or None]
        return BoxProposals(h.boxes[order], None, image.shape[:2])


@dataclass(frozen=True)
class SelectiveSearchSegments(SelectiveSearch):
    """Selective Search segments (Uijlings et al. 2013): the hierarchical grouping's regions themselves (MCG's stand-in)."""

    name = "ss-segments"

    def __call__(self, image: np.ndarray) -> SegmentProposals:
        h, order = self.hierarchy(image)
        order = order[: self.max_proposals or None]
        return SegmentProposals(h.leaves, h.members[order], None)


@wssbench.hookimpl
def register_objectness(register):
    register(SelectiveSearchBoxes)
    register(SelectiveSearchSegments)
