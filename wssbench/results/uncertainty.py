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

``n_resamples`` times (1,000 by default) from a fixed random seed, and take the 2.5th and 97.5th
percentiles. The interval so covers both what the images and what the training seed move; with
few seeds (3) the seed level is coarse, and it is the image level that dominates.

Two rows scored on the same images are compared by the same bootstrap applied to the difference
of their numbers, with the same image draws for both rows (paired), and, when both rows ran the
same seeds, the same seed draws too (a seed's classifier is shared by rows that differ only
after it). A difference whose interval contains 0 is a tie.

Vectorised: the image draws are a (B, N) matrix of multiplicities, so the resampled counts of a
run are one matrix product (B, N) @ (N, C); a 20-row leaderboard over 1,449 images takes well
under a second per 1,000 resamples (``benchmarks/bootstrap_speed.py``).
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


def image_draws(n_images: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, N) multiplicities of the images in each resample (each row sums to N): N draws with
    replacement per resample, counted per image."""
    drawn = rng.integers(0, n_images, size=(n_resamples, n_images))  # (B, N) image indices
    offsets = np.arange(n_resamples)[:, None] * n_images
    return np.bincount((drawn + offsets).ravel(), minlength=n_resamples * n_images).reshape(n_resamples, n_images)


def seed_draws(n_seeds: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, R) indices of the seeds drawn in each resample (with replacement)."""
    if n_seeds == 1:
        return np.zeros((n_resamples, 1), np.int64)
    return rng.integers(0, n_seeds, size=(n_resamples, n_seeds))


def resampled_mious(runs: list[ImageCounts], weights: np.ndarray) -> np.ndarray:
    """(B, R): each run's dataset mIoU under each image draw ``weights`` (B, N)."""
    w = weights.astype(np.float64)
    return np.stack([miou(w @ run.intersection, w @ run.union) for run in runs], axis=1)


@dataclass(frozen=True)
class Estimate:
    """A row's number and its interval (percent-free fractions, as records hold mIoU)."""

    mean: float  # mean over seeds of the split's mIoU
    std: float | None  # sample standard deviation over seeds (None with one seed)
    n_seeds: int
    ci95: tuple[float, float]


def _aligned(runs: list[ImageCounts]) -> list[ImageCounts]:
    """The runs with their images in the first run's order; UsageError if they differ."""
    ids = runs[0].ids
    out = []
    for run in runs:
        if run.ids != ids:
            if sorted(run.ids) != sorted(ids):
                raise UsageError("the runs of one row were scored on different images")
            run = run.subset(list(ids))
        out.append(run)
    return out


def estimate(runs: list[ImageCounts], n_resamples: int = DEFAULT_RESAMPLES, seed: int = SEED) -> Estimate:
    """The mean over ``runs`` (one per training seed) and its two-level bootstrap interval."""
    runs = _aligned(runs)
    rng = np.random.default_rng(seed)
    weights = image_draws(len(runs[0].ids), n_resamples, rng)
    seeds = seed_draws(len(runs), n_resamples, rng)
    samples = np.take_along_axis(resampled_mious(runs, weights), seeds, axis=1).mean(1)  # (B,)
    point = np.array([run.miou() for run in runs])
    return Estimate(
        mean=float(point.mean()),
        std=float(point.std(ddof=1)) if len(runs) > 1 else None,
        n_seeds=len(runs),
        ci95=percentile_interval(samples),
    )


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Difference:
    """Row A minus row B, on the same images."""

    mean: float
    ci95: tuple[float, float]

    @property
    def tied(self) -> bool:
        return self.ci95[0] <= 0.0 <= self.ci95[1]


def difference(a: list[ImageCounts], b: list[ImageCounts], n_resamples: int = DEFAULT_RESAMPLES, seed: int = SEED,
               paired_seeds: bool = False) -> Difference:
    """The paired bootstrap of mean(a) - mean(b): the same image draws for both rows and, with
    ``paired_seeds`` (both rows ran the same seeds, in the same order), the same seed draws."""
    a, b = _aligned(a), _aligned(b)
    if sorted(a[0].ids) != sorted(b[0].ids):
        raise UsageError("rows scored on different images cannot be compared pairwise")
    b = [run.subset(list(a[0].ids)) for run in b]
    if paired_seeds and len(a) != len(b):
        raise UsageError("paired seeds need the same number of runs in both rows")
    rng = np.random.default_rng(seed)
    weights = image_draws(len(a[0].ids), n_resamples, rng)
    seeds_a = seed_draws(len(a), n_resamples, rng)
    seeds_b = seeds_a if paired_seeds else seed_draws(len(b), n_resamples, rng)
    sa = np.take_along_axis(resampled_mious(a, weights), seeds_a, axis=1).mean(1)
    sb = np.take_along_axis(resampled_mious(b, weights), seeds_b, axis=1).mean(1)
    point = float(np.mean([r.miou() for r in a]) - np.mean([r.miou() for r in b]))
    return Difference(point, percentile_interval(sa - sb))
