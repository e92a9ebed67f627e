"""SLIC superpixels and what the superpixel plugins compute on them: means, areas, neighbours.

A labelling ``segments`` is an int array (H, W) with values 0 .. S-1, every value used.
"""

from __future__ import annotations

import functools

import numpy as np

from wssbench.storage.cache import cache_dir
from wssbench.storage.segcache import SegmentCache


def check_slic(n_segments: int, compactness: float) -> None:
    """The SLIC options of a component, checked when it is created."""
    if n_segments < 1:
        raise ValueError(f"n_segments must be at least 1, got {n_segments}")
    if compactness <= 0:
        raise ValueError(f"compactness must be positive, got {compactness}")


def slic_segments(image: np.ndarray, n_segments: int, compactness: float) -> np.ndarray:
    """SLIC superpixels of a uint8 (H, W, 3) image, relabelled to 0 .. S-1; read back from the
    superpixel cache (``wssbench.storage.segcache``) when this image was segmented before with
    these options (on a 640 x 480 photo SLIC takes about half a second, once per tuning value
    and row without the cache)."""
    cache = _slic_cache(n_segments, float(compactness), str(cache_dir("superpixels")))
    found = cache.get(image)
    if found is not None:
        return found
    from skimage.segmentation import slic  # imported here: listing the plugins stays fast

    segments = slic(image, n_segments=n_segments, compactness=compactness, start_label=0)
    segments = np.unique(segments, return_inverse=True)[1].reshape(segments.shape)  # (H, W)
    cache.put(image, segments)
    return segments


@functools.lru_cache(maxsize=16)
def _slic_cache(n_segments: int, compactness: float, home: str) -> SegmentCache:
    """One cache folder per SLIC options (and ``$WSSBENCH_HOME``, named by ``home``)."""
    return SegmentCache("slic", {"n_segments": n_segments, "compactness": compactness, "start_label": 0})


def segment_means(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Mean of each channel of ``values`` (C, H, W) over each superpixel -> (C, S)."""
    flat = segments.ravel()
    n = int(flat.max()) + 1
    areas = np.bincount(flat, minlength=n)  # (S,)
    sums = np.stack([np.bincount(flat, weights=v.ravel(), minlength=n) for v in values])  # (C, S)
    return sums / areas


def segment_areas(segments: np.ndarray) -> np.ndarray:
    """Number of pixels of each superpixel -> (S,)."""
    return np.bincount(segments.ravel())


def adjacency(segments: np.ndarray) -> np.ndarray:
    """Pairs (i, j), i < j, of superpixels that touch (4-neighbourhood) -> (E, 2), sorted."""
    pairs = np.concatenate([
        np.stack([segments[:, :-1].ravel(), segments[:, 1:].ravel()], 1),  # horizontal neighbours
        np.stack([segments[:-1, :].ravel(), segments[1:, :].ravel()], 1),  # vertical neighbours
    ])  # (P, 2)
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    return np.unique(pairs, axis=0).reshape(-1, 2)  # (E, 2)
