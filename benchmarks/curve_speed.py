"""The threshold curve of one image: one pass over the pixels against a label map per threshold.

A run scores the fusion's label maps at every threshold of its curve grid (the threshold-free
summary, ``wssbench.results.curve``). Before, each threshold's label map was made and scored in
turn (``labels_at`` + ``confusion``, T passes); now ``threshold_evidence`` + ``confusions_at`` do
it in one histogram. On the H200 machine's VOC-sized run the curve was a fifth of the CPU time
per image (``benchmarks/README.md``). Both paths run here alternately on the same stand-in maps
(VOC's 500 x 375, 21 classes, the image's classes' blurred blobs plus noise); their matrices
must be equal.

    python benchmarks/curve_speed.py [--images 20] [--classes 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.ndimage import gaussian_filter

import wssbench
from wssbench.results.metrics import confusion, confusions_at

NUM_CLASSES = 21


def stand_ins(n: int, k: int, rng: np.random.Generator) -> list[tuple]:
    out = []
    for _ in range(n):
        image = rng.integers(0, 255, (375, 500, 3), np.uint8)
        labels = np.sort(rng.choice(np.arange(1, NUM_CLASSES), k, replace=False))
        mask = np.zeros((375, 500), np.uint8)
        maps = []
        for c in labels:
            y, x = rng.integers(50, 325), rng.integers(50, 450)
            blob = np.zeros((375, 500), np.float32)
            blob[max(0, y - 60):y + 60, max(0, x - 80):x + 80] = 1
            mask[blob > 0] = c
            maps.append(np.clip(gaussian_filter(blob, 15) + 0.2 * rng.random(blob.shape, dtype=np.float32), 0, 1))
        mask[rng.random(mask.shape) < 0.02] = 255
        maps = np.stack(maps)
        out.append((image, mask, labels, maps, maps.copy()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--classes", type=int, default=2, help="classes per image")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    fusion = wssbench.create("fusion", "threshold")
    points = tuple(fusion.curve) + (fusion.bg_threshold,)
    data = stand_ins(args.images, args.classes, np.random.default_rng(0))

    def per_threshold() -> list[np.ndarray]:
        return [np.stack([confusion(mask, p, NUM_CLASSES) for p in fusion.labels_at(points, image, labels, cm, sal)])
                for image, mask, labels, cm, sal in data]

    def one_pass() -> list[np.ndarray]:
        return [confusions_at(mask, *fusion.threshold_evidence(image, labels, cm, sal), points, NUM_CLASSES)
                for image, mask, labels, cm, sal in data]

    same = all(np.array_equal(a, b) for a, b in zip(per_threshold(), one_pass()))
    times: dict[str, list[float]] = {"per threshold": [], "one pass": []}
    ratios = []
    for repeat in range(args.repeats):  # alternate, the first rotating: the machine is shared
        order = [("per threshold", per_threshold), ("one pass", one_pass)][:: 1 if repeat % 2 == 0 else -1]
        measured = {}
        for name, fn in order:
            start = time.perf_counter()
            fn()
            measured[name] = (time.perf_counter() - start) / len(data) * 1000
            times[name].append(measured[name])
        ratios.append(measured["per threshold"] / measured["one pass"])
    print(f"{len(data)} images of 500x375, {args.classes} classes each, {len(points)} thresholds, {NUM_CLASSES} classes; "
          f"median of {args.repeats}; the fusion's evidence is computed in both")
    for name, values in times.items():
        print(f"  {name:<14} {statistics.median(values):8.1f} ms/image")
    print(f"speed-up {statistics.median(ratios):.2f}x (median of per-repeat ratios); matrices equal: {same}")


if __name__ == "__main__":
    main()
