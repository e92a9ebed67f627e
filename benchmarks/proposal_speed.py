"""Per-image time of every registered objectness method (object proposals) at PASCAL VOC sizes.

The photographs that ship with scikit-image (astronaut, chelsea, coffee, rocket, ...), resized
to 500 x 375 (VOC's typical size) with antialiasing; each method is timed on every image
``--repeats`` times without the proposal cache (the best repeat per image counts, so a busy
machine inflates the figure less), and the proposals' count and the objectness map's time
are shown too.

    python benchmarks/proposal_speed.py [--size 500x375] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from wssbench.host.registry import default_registry
from wssbench.methods.objectness import objectness_map

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def photos(width: int, height: int) -> list[np.ndarray]:
    from skimage import data, transform

    out = []
    for name in PHOTOS:
        image = getattr(data, name)()
        resized = transform.resize(image, (height, width), anti_aliasing=True, preserve_range=True)
        out.append(np.clip(resized, 0, 255).round().astype(np.uint8))  # (H, W, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="500x375", help="WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    images = photos(width, height)
    registry = default_registry()
    print(f"{len(images)} photographs at {width}x{height}, best of {args.repeats} per image")
    print(f"{'method':<14} {'ms/image':>9} {'min':>7} {'max':>7} {'proposals':>10} {'map ms':>7}")
    for name in registry.names("objectness"):
        method = registry.create("objectness", name)
        times, counts, map_times = [], [], []
        for image in images:
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                proposals = method(image)
                best = min(best, time.perf_counter() - start)
            times.append(1000 * best)
            counts.append(len(proposals.weights))
            start = time.perf_counter()
            objectness_map(proposals)
            map_times.append(1000 * (time.perf_counter() - start))
        print(f"{name:<14} {statistics.mean(times):>9.0f} {min(times):>7.0f} {max(times):>7.0f} "
              f"{statistics.mean(counts):>10.0f} {statistics.mean(map_times):>7.1f}")


if __name__ == "__main__":
    main()
