"""How sure a number is: image-bootstrap intervals of mIoU, over one or several training seeds,
and paired comparisons of rows scored on the same images.

A row of the leaderboard is a method run with one or more training seeds; each run kept its
per-image counts (:mod:`wssbench.results.counts`). Its number is the mean over its seeds of the
split's mIoU. Its 95 % interval comes from a two-level percentile bootstrap:

1. draw the split's images with replacement (the same draw for every seed of the row: the seeds
   were scored on the same images);
2. draw the row's seeds with replacement (with one seed, that seed);
3. recompute each drawn seed's dataset-level mIoU from its counts summed over the drawn images
   (one confusion matrix over the resampled split, as the metric is defined: not a mean of
   per-image IoUs), and average over the drawn seeds;

``n_resamples`` times (1,000 by default), and take the 2.5th and 97.5th percentiles. The
interval so covers both what the images and what the training seed move; with few seeds (3)
the seed level is coarse, and it is the image level that dominates.

The image draws are *canonical*: a fixed random seed, the images in sorted-id order. Every run
scored on the same images therefore sees the same draws, so a run's resampled mIoUs
(:func:`run_samples`, B numbers) can be computed once, when the run ends, and stored with its
counts; the leaderboard then combines stored samples without re-reading any count. Two rows on
the same images are compared by the difference of their samples, resample by resample (a
paired bootstrap: the same image draws for both rows and, when both rows ran the same seeds,
the same seed draws too, since a seed's classifier is shared by rows that differ only after
it). A difference whose interval contains 0 is a tie.

Vectorised: the image draws are a (B, N) matrix of multiplicities, so a run's resampled counts
are one matrix product (B, N) @ (N, C) (``benchmarks/bootstrap_speed.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wssbench.errors import UsageError
from wssbench.results.counts import ImageCounts, miou

DEFAULT_RESAMPLES = 1000
MIN_RESAMPLES = 100
LEVEL = 0.95
SEED = 0  # the bootstrap's own random seed: the same records give the same intervals


def check_resamples(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < MIN_RESAMPLES:
        raise UsageError(f"--bootstrap: expected an integer of at least {MIN_RESAMPLES} resamples, got {n!r}")
    return n


def image_draws(n_images: int, n_resamples: int, seed: int = SEED) -> np.ndarray:
    """(B, N) multiplicities of the images in each resample (each row sums to N): N draws with
    replacement per resample, counted per image; the same for the same (N, B, seed)."""
    rng = np.random.default_rng([seed, n_images])
    drawn = rng.integers(0, n_images, size=(n_resamples, n_images))  # (B, N) image indices
    offsets = np.arange(n_resamples)[:, None] * n_images
    return np.bincount((drawn + offsets).ravel(), minlength=n_resamples * n_images).reshape(n_resamples, n_images)


def run_samples(counts: ImageCounts, n_resamples: int = DEFAULT_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(B,) the run's dataset mIoU under each canonical image draw (images in sorted-id order)."""
    ordered = counts.subset(sorted(counts.ids))
    w = image_draws(len(ordered.ids), n_resamples, seed).astype(np.float64)
    return miou(w @ ordered.intersection, w @ ordered.union)


def seed_draws(n_seeds: int, n_resamples: int, seed: int = SEED) -> np.ndarray:
    """(B, R) indices of the seeds drawn in each resample (with replacement)."""
    if n_seeds == 1:
        return np.zeros((n_resamples, 1), np.int64)
    return np.random.default_rng([seed, n_seeds, 1]).integers(0, n_seeds, size=(n_resamples, n_seeds))


def combine(samples: np.ndarray, seed: int = SEED) -> np.ndarray:
    """(B, R) per-run samples (one column per seed) -> (B,) the row's resampled mean over seeds."""
    draws = seed_draws(samples.shape[1], samples.shape[0], seed)
    return np.take_along_axis(samples, draws, axis=1).mean(1)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Estimate:
    """A row's number and its interval (fractions, as records hold mIoU)."""

    mean: float  # mean over seeds of the split's mIoU
    std: float | None  # sample standard deviation over seeds (None with one seed)
    n_seeds: int
    ci95: tuple[float, float]


def estimate_from(points: list[float], samples: np.ndarray) -> Estimate:
    """A row from its runs' mIoUs (R,) and their stored samples (B, R)."""
    points = np.asarray(points, np.float64)
    return Estimate(
        mean=float(points.mean()),
        std=float(points.std(ddof=1)) if len(points) > 1 else None,
        n_seeds=len(points),
        ci95=percentile_interval(combine(samples)),
    )


@dataclass(frozen=True)
class Difference:
    """Row A minus row B, on the same images."""

    mean: float
    ci95: tuple[float, float]

    @property
    def tied(self) -> bool:
        return self.ci95[0] <= 0.0 <= self.ci95[1]


def difference_from(points_a: list[float], samples_a: np.ndarray, points_b: list[float], samples_b: np.ndarray,
                    paired_seeds: bool = False) -> Difference:
    """mean(a) - mean(b) and its paired-bootstrap interval from stored samples (B, R_a), (B, R_b)
    computed on the same images with the same canonical draws. With ``paired_seeds`` (the same
    seeds in the same order) the seed draws are shared too; else independent."""
    if samples_a.shape[0] != samples_b.shape[0]:
        raise UsageError("rows bootstrapped with different numbers of resamples cannot be compared")
    if paired_seeds and samples_a.shape[1] != samples_b.shape[1]:
        raise UsageError("paired seeds need the same number of runs in both rows")
    a = combine(samples_a)
    b = combine(samples_b) if paired_seeds else combine(samples_b, seed=SEED + 1)
    return Difference(float(np.mean(points_a) - np.mean(points_b)), percentile_interval(a - b))


def _check_same_images(runs: list[ImageCounts]) -> None:
    ids = sorted(runs[0].ids)
    if any(sorted(run.ids) != ids for run in runs[1:]):
        raise UsageError("runs scored on different images cannot be combined or compared")


def estimate(runs: list[ImageCounts], n_resamples: int = DEFAULT_RESAMPLES) -> Estimate:
    """The mean over ``runs`` (one per training seed) and its two-level bootstrap interval."""
    _check_same_images(runs)
    samples = np.stack([run_samples(run, n_resamples) for run in runs], axis=1)  # (B, R)
    return estimate_from([run.miou() for run in runs], samples)


def difference(a: list[ImageCounts], b: list[ImageCounts], n_resamples: int = DEFAULT_RESAMPLES,
               paired_seeds: bool = False) -> Difference:
    """The paired bootstrap of mean(a) - mean(b) on the same images (module docstring)."""
    _check_same_images([*a, *b])
    sa = np.stack([run_samples(run, n_resamples) for run in a], axis=1)
    sb = np.stack([run_samples(run, n_resamples) for run in b], axis=1)
    return difference_from([r.miou() for r in a], sa, [r.miou() for r in b], sb, paired_seeds)
