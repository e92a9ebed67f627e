"""The leaderboard's bootstrap at VOC val size: 20 rows, 1,449 images, 21 classes, 1,000 resamples.

Prints the wall time of the whole leaderboard's intervals (every row's interval and the paired
difference of each row from the one above) computed from the counts, the same from the samples
each run stores with its counts (what `wssbench leaderboard` does), and the speed-up of the
vectorised bootstrap (`wssbench.results.uncertainty`) over a plain loop that sums the counts of
each resample's drawn images, measured side by side on the same rows in this run.

    python benchmarks/bootstrap_speed.py [--rows 20] [--images 1449] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from wssbench.results.counts import ImageCounts, miou
from wssbench.results.uncertainty import difference, difference_from, estimate, estimate_from, run_samples


def fake_run(rng: np.random.Generator, n: int, c: int, quality: float) -> ImageCounts:
    truth = rng.integers(0, 20_000, (n, c)) * (rng.random((n, c)) < 0.3)
    truth[:, 0] = rng.integers(50_000, 150_000, n)
    inter = (truth * rng.uniform(quality - 0.2, quality, (n, c))).astype(np.int64)
    union = truth + rng.integers(0, 5_000, (n, c)) * (truth > 0)
    return ImageCounts(tuple(f"{k:06d}" for k in range(n)), inter, union, truth.astype(np.int64), np.full(n, 187_500))


def loop_interval(run: ImageCounts, n_resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    n = len(run.ids)
    samples = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, n)
        samples.append(miou(run.intersection[idx].sum(0), run.union[idx].sum(0)))
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--images", type=int, default=1449)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [[fake_run(rng, args.images, args.classes, 0.3 + 0.02 * r)] for r in range(args.rows)]

    start = time.perf_counter()
    for k, row in enumerate(rows):
        estimate(row, args.resamples)
        if k:
            difference(rows[k - 1], row, args.resamples)
    board = time.perf_counter() - start
    print(f"leaderboard of {args.rows} rows x {args.images} images x {args.classes} classes, {args.resamples} resamples: "
          f"{board:.2f} s (intervals and paired differences)")

    start = time.perf_counter()
    stored = [run_samples(row[0], args.resamples)[:, None] for row in rows]  # what each run stores when it ends
    per_run = (time.perf_counter() - start) / len(rows)
    start = time.perf_counter()
    for k, row in enumerate(rows):
        estimate_from([row[0].miou()], stored[k])
        if k:
            difference_from([rows[k - 1][0].miou()], stored[k - 1], [row[0].miou()], stored[k])
    from_samples = time.perf_counter() - start
    print(f"the same from stored samples: {from_samples * 1000:.1f} ms (each run pays {per_run * 1000:.0f} ms once, when it ends)")

    probe = rows[:2]
    start = time.perf_counter()
    for row in probe:
        estimate(row, args.resamples)
    vectorised = time.perf_counter() - start
    start = time.perf_counter()
    for row in probe:
        loop_interval(row[0], args.resamples, np.random.default_rng(0))
    loop = time.perf_counter() - start
    print(f"interval of 2 rows: vectorised {vectorised:.3f} s, loop {loop:.3f} s")
    print(f"speed-up of the vectorised bootstrap over a loop: {loop / vectorised:.1f}x")


if __name__ == "__main__":
    main()
