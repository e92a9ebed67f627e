"""Per-image time of every registered fusion and refiner, and the speed-up of a process pool.

Runs on real images of the synthetic dataset (generated if missing) with stand-in maps made
from their ground truth (blurred masks plus noise), so no classifier is needed; the timing of
these steps depends on the image and the number of classes, not on how good the maps are.

    python benchmarks/refine_speed.py [--images 60] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.ndimage import gaussian_filter

from wssbench.host.registry import default_registry
from wssbench.runtime.workers import PredictPool, predict_one
from wssbench.seed.maps import ImageMaps


def stand_in_maps(dataset, ids: list[str], seed: int = 0) -> list[ImageMaps]:
    rng = np.random.default_rng(seed)
    out = []
    for image_id in ids:
        image, mask = dataset.load_pair(image_id)
        labels = np.flatnonzero(dataset.image_labels(image_id)) + 1  # (K,)
        maps = np.stack([gaussian_filter((mask == c).astype(np.float32), 3) for c in labels])  # (K, H, W)
        maps = np.clip(maps + 0.2 * rng.random(maps.shape, dtype=np.float32), 0, None)
        maps /= maps.max(axis=(1, 2), keepdims=True)
        out.append(ImageMaps(image_id, image, mask, labels, maps, maps.copy(), np.zeros(0), np.zeros(0)))
    return out


def per_image_ms(maps: list[ImageMaps], fusion, refiners) -> float:
    start = time.perf_counter()
    for m in maps:
        predict_one(m, fusion, refiners)
    return 1000 * (time.perf_counter() - start) / len(maps)


def pool_seconds(maps: list[ImageMaps], fusion, refiners, workers: int) -> float:
    start = time.perf_counter()
    with PredictPool(fusion, refiners, workers) as pool:
        for m in maps:
            pool.submit(m)
        list(pool.results(finish=True))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    registry = default_registry()
    dataset = registry.create("dataset", "synthetic")
    dataset.prepare()
    maps = stand_in_maps(dataset, dataset.ids("val")[: args.images])
    h, w = maps[0].image.shape[:2]
    print(f"{len(maps)} synthetic val images of {w}x{h}, {np.mean([len(m.labels) for m in maps]):.1f} classes each")

    threshold = registry.create("fusion", "threshold")
    print(f"\n{'component':<22} {'ms/image':>9}")
    for name in registry.names("fusion"):
        fusion = registry.create("fusion", name)
        print(f"{'fusion ' + name:<22} {per_image_ms(maps, fusion, []):9.1f}")
    for name in registry.names("refiner"):
        refiner = registry.create("refiner", name)
        total = per_image_ms(maps, threshold, [(name, refiner)])
        alone = total - per_image_ms(maps, threshold, [])
        print(f"{'refiner ' + name:<22} {alone:9.1f}")

    print(f"\nprocess pool, {args.workers} workers vs 1 (median of {args.repeats}, interleaved):")
    chains = {
        "threshold + densecrf": (threshold, [("densecrf", registry.create("refiner", "densecrf"))]),
        "integer-lp + sppxl-crf": (registry.create("fusion", "integer-lp"), [("sppxl-crf", registry.create("refiner", "sppxl-crf"))]),
    }
    for label, (fusion, refiners) in chains.items():
        one, many = [], []
        for _ in range(args.repeats):
            one.append(pool_seconds(maps, fusion, refiners, 1))
            many.append(pool_seconds(maps, fusion, refiners, args.workers))
        t1, tn = statistics.median(one), statistics.median(many)
        print(f"  {label:<22} 1 worker {t1:6.2f} s   {args.workers} workers {tn:6.2f} s   speed-up {t1 / tn:4.2f}x")


if __name__ == "__main__":
    main()
