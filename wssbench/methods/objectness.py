"""Object proposals and what the objectness plugins compute from them.

An objectness method (hook ``register_objectness``) turns a uint8 image (H, W, 3) into
proposals: :class:`BoxProposals` (boxes, MIL-bb) or :class:`SegmentProposals` (segments,
MIL-seg, FCN+MCG), each proposal with a non-negative weight. Both offer the two operations the
formulas below need, so every consumer works with either:

* ``paint(values (L, N)) -> (L, H, W)``: ``sum_n values[l, n] * [x in P_n]``;
* ``means(probs (L, H, W)) -> (L, N)``: the mean of each row of ``probs`` over each proposal.

Formulas (Pinheiro & Collobert 2015's smoothing priors SP-bb / SP-seg as wssbench reads them;
see :func:`objectness_map` and :func:`smooth` for the choices):

* objectness ``O(x) = sum_n w_n [x in P_n] / max_y sum_n w_n [y in P_n]``, in [0, 1]: how much
  proposal mass covers x;
* smoothed probabilities ``m_l(x) = sum_n w_n [x in P_n] s_n(l) / sum_n w_n [x in P_n]`` with
  ``s_n(l)`` the mean of ``p_l`` over ``P_n``: each pixel takes the weighted mean of the mean
  class probabilities of the proposals covering it.

What could not be checked against Pinheiro & Collobert's text (no code was released): they
threshold a per-pixel score built from the proposals covering a pixel, with per-class
thresholds found by grid search. wssbench reads that score as ``O(x) * m_k(x)`` against the
smoothed background probability (the classifier's background output in the MIL-bb / MIL-seg
presets) and takes the per-pixel argmax, with no threshold (the presets list the per-class
thresholds as a departure): the smoothing keeps their "smoothing prior" (as the superpixel
prior averages within superpixels), the objectness factor keeps "how much proposal mass covers
a pixel". Both are options of the refiner (``power = 0`` drops the factor), so either reading
can be run.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from wssbench.storage.arrays import pack_arrays, unpack_arrays
from wssbench.storage.cache import cache_dir, fingerprint, seal, unseal
from wssbench.storage.mapcache import code_digests


class Proposals(Protocol):
    weights: np.ndarray  # (N,) non-negative

    @property
    def shape(self) -> tuple[int, int]: ...

    def paint(self, values: np.ndarray) -> np.ndarray: ...

    def means(self, probs: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class BoxProposals:
    """Boxes ``(N, 4)`` int as ``x0, y0, x1, y1`` (half-open: columns x0 .. x1-1, rows y0 .. y1-1)
    on an image of ``size`` (H, W), with weights (N,). Both operations run on integral images:
    O(L * H * W + L * N), whatever the boxes' sizes."""

    boxes: np.ndarray
    weights: np.ndarray
    size: tuple[int, int]

    def __post_init__(self) -> None:
        h, w = self.size
        b = np.asarray(self.boxes, np.int64).reshape(-1, 4)
        b = np.stack([b[:, 0].clip(0, w), b[:, 1].clip(0, h), b[:, 2].clip(0, w), b[:, 3].clip(0, h)], 1)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])  # empty boxes cover nothing: dropped
        object.__setattr__(self, "boxes", b[keep])
        object.__setattr__(self, "weights", _weights(self.weights, len(keep))[keep])

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.size)

    def paint(self, values: np.ndarray) -> np.ndarray:
        h, w = self.size
        values = np.asarray(values, np.float64).reshape(-1, len(self.boxes))  # (L, N)
        diff = np.zeros((len(values), h + 1, w + 1))  # corners of each box, then a 2-D cumulative sum
        x0, y0, x1, y1 = self.boxes.T
        for ys, xs, sign in ((y0, x0, 1), (y0, x1, -1), (y1, x0, -1), (y1, x1, 1)):
            for l, v in enumerate(values):
                np.add.at(diff[l], (ys, xs), sign * v)
        return diff.cumsum(1).cumsum(2)[:, :h, :w]  # (L, H, W)

    def means(self, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, np.float64)  # (L, H, W)
        integral = np.zeros((len(probs), probs.shape[1] + 1, probs.shape[2] + 1))
        integral[:, 1:, 1:] = probs.cumsum(1).cumsum(2)
        x0, y0, x1, y1 = self.boxes.T
        sums = integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0]  # (L, N)
        return sums / ((x1 - x0) * (y1 - y0))


@dataclass(frozen=True, eq=False)
class SegmentProposals:
    """Segments as unions of the cells of a partition: ``leaves`` int (H, W) in 0 .. S-1 and
    ``members`` bool (N, S), proposal n = the pixels whose leaf is in ``members[n]``; weights (N,).

    The form hierarchical grouping gives for free (every region is a union of initial
    superpixels) and that keeps thousands of segments in O(N * S) memory instead of O(N * H * W).
    :meth:`from_masks` builds it from arbitrary masks."""

    leaves: np.ndarray
    members: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        leaves = np.asarray(self.leaves)
        n = int(leaves.max()) + 1 if leaves.size else 0
        object.__setattr__(self, "leaves", leaves.astype(np.uint16 if n <= 1 << 16 else np.int64))  # 4x smaller cached
        members = np.asarray(self.members, bool).reshape(-1, n)
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "weights", _weights(self.weights, len(members)))

    @classmethod
    def from_masks(cls, masks: np.ndarray, weights: Any = None) -> "SegmentProposals":
        """From bool masks (N, H, W): the leaves are the sets of pixels covered by the same proposals."""
        masks = np.asarray(masks, bool)
        n, h, w = masks.shape
        signature = np.packbits(masks.reshape(n, -1).T, axis=1)  # (H*W, ceil(N/8))
        unique, leaves = np.unique(signature, axis=0, return_inverse=True)
        members = np.unpackbits(unique, axis=1, count=n).T.astype(bool)  # (N, S)
        return cls(leaves.reshape(h, w), members, weights)

    @property
    def shape(self) -> tuple[int, int]:
        return self.leaves.shape

    def paint(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float64).reshape(-1, len(self.members))  # (L, N)
        return (values @ self.members)[:, self.leaves]  # (L, H, W)

    def means(self, probs: np.ndarray) -> np.ndarray:
        flat = self.leaves.ravel()
        s = self.members.shape[1]
        areas = np.bincount(flat, minlength=s) @ self.members.T  # (N,)
        sums = np.stack([np.bincount(flat, weights=p.ravel(), minlength=s) for p in probs]) @ self.members.T  # (L, N)
        return sums / np.maximum(areas, 1)


def _weights(weights: Any, n: int) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} proposals")
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("proposal weights must be finite and non-negative")
    return w


def coverage(proposals: Proposals) -> np.ndarray:
    """``sum_n w_n [x in P_n]`` (H, W): the proposal mass covering each pixel."""
    return proposals.paint(proposals.weights[None])[0]


def objectness_map(proposals: Proposals) -> np.ndarray:
    """Per-pixel objectness (H, W) float32 in [0, 1]: :func:`coverage` divided by its maximum
    (all zeros without proposals).

    MIL-bb's "how much proposal mass covers a pixel". Choice: normalised by the image's
    maximum, so that the map is comparable across images whatever the number of proposals
    (the paper thresholds a per-pixel box score with per-class thresholds found by grid
    search; its exact normalisation could not be checked)."""
    cover = coverage(proposals)
    top = cover.max() if cover.size else 0.0
    return (cover / top if top > 0 else np.zeros_like(cover)).astype(np.float32)


def smooth(probs: np.ndarray, proposals: Proposals, power: float = 1.0) -> np.ndarray:
    """Class probabilities (L, H, W) (row 0 background) smoothed over proposals, then weighted
    by objectness; float32, summing to 1 over the first axis.

    1. ``m_l(x)``: the weighted mean, over the proposals covering x, of each proposal's mean
       probability of label l (see the module docstring); a pixel no proposal covers keeps
       its probabilities. Every row is smoothed, background included, as MIL-sppxl's
       superpixel averaging smooths all of them.
    2. The foreground rows times ``O(x) ** power`` (:func:`objectness_map`), background left
       as it is, and renormalised: where little proposal mass lies, background wins; a pixel
       no proposal covers is background. ``power = 0`` skips this step (smoothing alone).
    """
    probs = np.asarray(probs, np.float64)  # (L, H, W)
    if probs.shape[1:] != tuple(proposals.shape):
        raise ValueError(f"probabilities {probs.shape[1:]} and proposals {tuple(proposals.shape)} differ in size")
    cover = coverage(proposals)  # (H, W)
    covered = cover > 0
    weighted = proposals.means(probs) * proposals.weights  # (L, N)
    out = np.where(covered, proposals.paint(weighted) / np.where(covered, cover, 1.0), probs)  # (L, H, W)
    if power > 0:
        top = cover.max() if cover.size else 0.0
        objectness = cover / top if top > 0 else np.zeros_like(cover)  # (H, W)
        out[1:] *= objectness**power
    total = out.sum(0, keepdims=True)
    empty = total[0] <= 0  # no evidence left at all: background
    out[0][empty], total[0][empty] = 1.0, 1.0
    return (out / total).astype(np.float32)


# --- a cache of proposals per image ---------------------------------------------------------


def cached(method: Any, name: str, options: dict, image: np.ndarray) -> Proposals:
    """``method(image)``, cached under ``$WSSBENCH_HOME/proposals/`` by the image's content and
    the method's name, options and code, so that a bench tuning a threshold over many runs
    computes each image's proposals once.

    An entry is the proposals' arrays as a zlib-compressed ``.npz`` (a segment partition of a
    VOC image: about 30 kB; :mod:`wssbench.storage.arrays`, never a pickle) sealed with a
    checksum (:func:`wssbench.storage.cache.seal`): a damaged one is recomputed. Proposals of a
    type other than :class:`BoxProposals` and :class:`SegmentProposals` are not cached. Where the
    cache cannot be written, the proposals are used as computed.
    """
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(image.tobytes() + repr(image.shape).encode()).hexdigest()[:24]
    key = fingerprint({"method": name, "options": options, "code": code_digests(type(method))})
    path = cache_dir("proposals", f"{name}-{key}", f"{digest}.npz")
    if path.exists():
        payload = unseal(path.read_bytes())
        arrays = unpack_arrays(zlib.decompress(payload)) if payload is not None else None
        if arrays is not None:
            return from_arrays(arrays)
    proposals = method(image)
    if not isinstance(proposals, (BoxProposals, SegmentProposals)):
        return proposals
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{id(proposals)}")  # per writer: workers may race
        tmp.write_bytes(seal(zlib.compress(pack_arrays(to_arrays(proposals)), 1)))
        tmp.replace(path)
    except OSError as e:  # a read-only cache: compute every time, said once per process
        if not _unwritable:
            _unwritable.append(str(path.parent))
            warnings.warn(f"proposals are not cached: cannot write {path.parent} ({e})", stacklevel=2)
    return proposals


_unwritable: list[str] = []


def to_arrays(proposals: Proposals) -> dict[str, np.ndarray]:
    """Box or segment proposals as named arrays (what the cache stores)."""
    if isinstance(proposals, BoxProposals):
        return {"kind": np.array("boxes"), "boxes": proposals.boxes, "weights": proposals.weights, "size": np.array(proposals.size)}
    return {"kind": np.array("segments"), "leaves": proposals.leaves, "members": proposals.members, "weights": proposals.weights}


def from_arrays(arrays: dict[str, np.ndarray]) -> Proposals:
    """The inverse of :func:`to_arrays`."""
    if str(arrays["kind"]) == "boxes":
        return BoxProposals(arrays["boxes"], arrays["weights"], tuple(int(v) for v in arrays["size"]))
    return SegmentProposals(arrays["leaves"], arrays["members"], arrays["weights"])
