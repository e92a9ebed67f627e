"""The cost curve of the main job at VOC's scale: seconds per image per stage, peak memory and cache
bytes per image at several dataset sizes, on the generated ``voc-scale`` dataset in the VOCdevkit
layout (so the VOC loader, its ``train_aug`` list, the data checks, the caches and the worker pool
are the code that runs).

    python benchmarks/scale.py [--sizes 500,2000,12031] [--root DIR] [--workers 2] [--epochs 1]
                               [--kill-at 0.6] [--keep DIR]

A size N is N images of VOC's proportions: round(N * 1,449 / 12,031) val images scored and the
rest train_aug images trained on, the first ones of each list. The tree is generated once at the
largest size under ``--root`` (``wssbench data generate voc-scale``; 12,031 images take about 20
min on 2 cores); each size reads a view of it (its image and mask folders linked, its lists cut).
Each size runs the main job (``wssbench run``: a tiny backbone, ``--epochs`` epochs, dense CRF,
``--workers`` fusion/refinement processes) in a fresh process with a fresh ``WSSBENCH_HOME``, and
reports, from the run's own timings:

* per stage, seconds per image: checks (decoding every image and mask before training, per
  image of both splits), classifier (training, per train image), maps (forward, class maps,
  saliency: per val image), fusion and CRF (per val image, summed over the worker processes),
  scoring (evaluation and the threshold curve, per val image);
* wall seconds per image (the whole run over all N images), peak RSS (the sum over the run's
  process tree, sampled every 50 ms) and the map cache's bytes per val image.

The last line is ``time-per-image ratio R, peak-RSS ratio Q``: the largest size against the
smallest. Flat costs give R and Q near 1 (the goal: R <= 1.2, Q <= 1.3).

With ``--kill-at F`` the largest size is also run a second time from its cached classifier, killed
with SIGKILL once F of its val images are finished (their label maps stored in the prediction
cache, ``wssbench.storage.predcache``), and run again. The rerun computes maps only for the images
whose maps were not cached and fuses and refines only the images whose label maps were not stored
(the record's ``prediction_cache.reused`` says how many were read back); scoring is recomputed
from the label maps. Its mIoU must equal the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOC_IMAGES, VOC_VAL = 12031, 1449


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (0 once it has gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def ensure_tree(root: Path, n: int, workers: int) -> Path:
    """The voc-scale tree under ``root`` with at least ``n`` images (generated when absent)."""
    voc = root / "VOCdevkit" / "VOC2012"
    lists = voc / "ImageSets" / "Segmentation"
    if voc.is_dir():
        have = sum(len((lists / f"{s}.txt").read_text().split()) for s in ("train_aug", "val"))
        if have < n:
            sys.exit(f"--root {root}: holds {have} images, fewer than the largest size {n}; choose another --root")
        return voc
    n_val = max(1, round(n * VOC_VAL / VOC_IMAGES))
    n_aug = n - n_val
    print(f"generating {n_aug} train_aug + {n_val} val images under {root} ...", flush=True)
    subprocess.run([sys.executable, "-m", "wssbench", "data", "generate", "voc-scale", "--root", str(root),
                    "--train-aug", str(n_aug), "--val", str(n_val), "--train", str(min(n_aug, 1464)),
                    "--workers", str(workers)], check=True)
    return voc


def make_view(voc: Path, n: int, where: Path) -> tuple[Path, int, int]:
    """A VOCdevkit whose lists hold the first images of ``voc``'s: (root, train images, val images)."""
    n_val = max(1, round(n * VOC_VAL / VOC_IMAGES))
    lists = voc / "ImageSets" / "Segmentation"
    aug = lists.joinpath("train_aug.txt").read_text().split()[: n - n_val]
    val = lists.joinpath("val.txt").read_text().split()[:n_val]
    view = where / "VOCdevkit" / "VOC2012"
    (view / "ImageSets" / "Segmentation").mkdir(parents=True)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug"):
        (view / sub).symlink_to(voc / sub)
    train = [i for i in lists.joinpath("train.txt").read_text().split() if i in set(aug)]
    for name, ids in (("train_aug", aug), ("val", val), ("train", train)):
        (view / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    if (voc.parent / "cls_labels.npy").exists():
        (where / "VOCdevkit" / "cls_labels.npy").symlink_to(voc.parent / "cls_labels.npy")
    return where / "VOCdevkit", len(aug), len(val)


def saliency_maps(home: Path) -> int:
    """Saliency maps in ``home``'s map cache: one per val image whose maps are all cached."""
    return len(list((home / "maps").glob("saliency-*/*.npy"))) if (home / "maps").exists() else 0


def label_maps(home: Path) -> int:
    """Label maps in ``home``'s prediction cache: one per val image finished (fused and refined)."""
    return len(list((home / "predictions").glob("labels-*/*.npz"))) if (home / "predictions").exists() else 0


def run_job(view: Path, out: Path, home: Path, args, kill_after: int | None = None) -> tuple[dict | None, float, int]:
    """``wssbench run`` on ``view``: (its record or None when killed, wall seconds, peak tree RSS)."""
    command = [sys.executable, "-m", "wssbench", "run", "--dataset", "voc2012", "--data-root", str(view),
               "--train-split", "train_aug", "--split", "val", "--backbone", args.backbone, "--epochs", str(args.epochs),
               "--workers", str(args.workers), "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "WSSBENCH_HOME": str(home)}
    started, peak = time.perf_counter(), 0
    log = out.with_suffix(".log").open("w")
    child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finished_before = label_maps(home)
    while child.poll() is None:
        peak = max(peak, tree_rss(child.pid))
        if kill_after is not None and label_maps(home) - finished_before >= kill_after:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return None, time.perf_counter() - started, peak
        time.sleep(0.05 if kill_after is None else 0.2)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"wssbench run failed ({child.returncode}); see {out.with_suffix('.log')}")
    return json.loads((out / "result.json").read_text()), wall, peak


def stage_costs(record: dict, n_train: int, n_val: int) -> dict[str, float]:
    """Seconds per image of each stage, from the record's stage timings (fusion and CRF: summed over workers)."""
    s = record["timings"]["stages_seconds"]

    def total(*prefixes: str) -> float:
        return sum(v for k, v in s.items() if k.split(":")[0] in prefixes)

    return {
        "checks": total("data", "checks") / (n_train + n_val),
        "classifier": total("classifier") / n_train,
        "maps": total("forward", "classmap", "saliency") / n_val,
        "fusion": total("fusion") / n_val,
        "crf": total("refine") / n_val,
        "scoring": total("evaluate", "threshold_curve") / n_val,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,2000,12031", help="dataset sizes (images: train_aug + val)")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "wssbench-voc-scale",
                        help="where the voc-scale tree is (generated there when absent)")
    parser.add_argument("--workers", type=int, default=2, help="fusion/refinement processes (wssbench run --workers)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--kill-at", type=float, default=None, help="also check a SIGKILL at this fraction of the largest size, then resume")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs and their homes here (default: a temporary folder)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    voc = ensure_tree(args.root, sizes[-1], args.workers)
    work = Path(tempfile.mkdtemp(prefix="wssbench-scale-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'size':>6} {'train':>6} {'val':>5} | {'checks':>7} {'classif':>7} {'maps':>7} {'fusion':>7} {'crf':>7} "
          f"{'scoring':>7} | {'wall s/img':>10} {'peak RSS MiB':>12} {'cache KiB/img':>13} {'mIoU':>6}")
    try:
        for n in sizes:
            view, n_train, n_val = make_view(voc, n, work / f"view-{n}")
            home = work / f"home-{n}"
            record, wall, peak = run_job(view, work / f"run-{n}", home, args)
            cache = sum(f.stat().st_size for f in (home / "maps").rglob("*") if f.is_file()) if (home / "maps").exists() else 0
            costs = stage_costs(record, n_train, n_val)
            row = {"size": n, "train": n_train, "val": n_val, "costs": costs, "wall_per_image": wall / n, "peak_rss": peak,
                   "cache_per_image": cache / n_val, "miou": record["miou"], "home": home, "view": view}
            rows.append(row)
            print(f"{n:>6} {n_train:>6} {n_val:>5} | " + " ".join(f"{1000 * costs[k]:>6.1f}m" for k in costs)
                  + f" | {row['wall_per_image']:>10.3f} {peak / 2**20:>12.0f} {row['cache_per_image'] / 1024:>13.1f} {100 * row['miou']:>6.2f}",
                  flush=True)
        if args.kill_at is not None:
            resume_check(rows[-1], work, args)
        first, last = rows[0], rows[-1]
        print(f"time-per-image ratio R = {last['wall_per_image'] / first['wall_per_image']:.2f}, "
              f"peak-RSS ratio Q = {last['peak_rss'] / first['peak_rss']:.2f} (size {last['size']} against {first['size']}; "
              f"stage costs are in milliseconds per image)")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def resume_check(row: dict, work: Path, args) -> None:
    """Kill -9 the largest size's run at ``--kill-at`` of its val images, rerun, compare."""
    home = work / "home-resume"
    shutil.copytree(row["home"] / "classifiers", home / "classifiers")  # the trained classifier, not the maps
    kill_after = max(1, int(args.kill_at * row["val"]))
    killed, wall, _ = run_job(row["view"], work / "run-killed", home, args, kill_after=kill_after)
    assert killed is None, "the run finished before it could be killed; use a larger size"
    cached, finished = saliency_maps(home), label_maps(home)
    record, wall2, _ = run_job(row["view"], work / "run-resumed", home, args)
    computed = saliency_maps(home) - cached
    reused = record["prediction_cache"]["reused"]
    same = record["miou"] == row["miou"]
    print(f"resume: killed after {wall:.0f} s with {finished} of {row['val']} images finished and {cached} images' maps cached; "
          f"the rerun took {wall2:.0f} s (the uninterrupted run {row['wall_per_image'] * row['size']:.0f} s), computed maps for "
          f"{computed} images and fused and refined {row['val'] - reused} ({reused} label maps read back); "
          f"mIoU {100 * record['miou']:.4f} vs {100 * row['miou']:.4f}: {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
