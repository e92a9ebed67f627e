"""Choose the ``threshold`` fusion's defaults on the TRAIN split (never on val).

Computes the class maps and saliency maps of the train split once, then grid-searches the
fusion's options (followed by ``--refine``, default none) and prints the best settings:
overall (class map + saliency map), class map alone (weight 1) and saliency map alone
(weight 0). The defaults in plugins/fusion.py come from

    python benchmarks/tune_fusion.py --refine densecrf --limit 160

(the main job refines with the dense CRF, so the threshold is chosen for that pipeline).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

import wssbench
from wssbench.results.metrics import ConfusionMatrix
from wssbench.runtime.workers import predict_one

GRID = {
    "bg_threshold": [0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6],
    "weight": [0.0, 0.25, 0.5, 0.75, 1.0],
    "sigma": [0.0, 0.015, 0.03, 0.06],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=240)
    parser.add_argument("--saliency", default="gbp")
    parser.add_argument("--classmap", default="fcn")
    parser.add_argument("--refine", default="none", help="a refiner applied after fusion while tuning")
    args = parser.parse_args()
    grid = dict(GRID)
    if args.refine != "none":  # refiners are slow per image: search the blur at its default only
        grid["sigma"] = [0.03]

    pipe = wssbench.Pipeline(dataset=args.dataset, split=args.split, limit=args.limit,
                             saliency=args.saliency, classmap=args.classmap, refine="none", workers=1)
    maps = [p.maps for p in pipe.predictions()]  # the maps once; every fusion setting reads them
    registry, parts = pipe.registry, pipe.components
    print(f"maps of {len(maps)} {args.split} images")

    results = []
    refiners = [] if args.refine == "none" else [(args.refine, registry.create("refiner", args.refine))]
    for values in itertools.product(*grid.values()):
        options = dict(zip(grid, values))
        fusion = registry.create("fusion", "threshold", **options)
        cm = ConfusionMatrix(parts.dataset.num_classes)
        for m in maps:
            cm.update(m.mask, predict_one(m, fusion, refiners)[0])
        results.append((cm.compute().miou, options))

    def best(rows):
        return max(rows, key=lambda r: r[0])

    print(f"{'setting':<28} {'mIoU':>6}  options")
    for label, rows in [
        ("class map + saliency", [r for r in results if 0 < r[1]["weight"] < 1]),
        ("class map alone", [r for r in results if r[1]["weight"] == 1.0]),
        ("saliency alone", [r for r in results if r[1]["weight"] == 0.0]),
    ]:
        miou, options = best(rows)
        print(f"{label:<28} {100 * miou:6.1f}  {options}")
    print("top 5 overall:")
    for miou, options in sorted(results, key=lambda r: -r[0])[:5]:
        print(f"  {100 * miou:6.1f}  {options}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
