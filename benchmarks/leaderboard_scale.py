"""The leaderboard over many runs and the cache commands over many map files: do they stay fast?

    python benchmarks/leaderboard_scale.py --from RUN_DIR [--runs 1000] [--map-files 100000] [--keep DIR]

``--from``: one finished ``wssbench run`` folder (its ``result.json`` and ``counts.npz``, the
per-image counts the leaderboard's bootstrap reads). The script writes ``--runs`` copies of it
as ``--runs / 3`` methods with three seeds each (each method a different ``fusion.bg_threshold``
and mIoU, so the leaderboard has that many rows to rank, bootstrap and test for ties; the masks
folder is hard-linked, never re-read by the leaderboard) and a ``WSSBENCH_HOME`` whose map cache
holds ``--map-files`` small ``.npy`` files in entries of 1,449 (VOC val's size), then times, each
in a fresh process as a user runs them:

* ``wssbench leaderboard DIR --format json`` over all the runs (goal: under 2 s);
* ``wssbench cache show`` and ``wssbench cache prune --dry-run`` over the map files.

Everything is written under a temporary folder (or ``--keep``), never into the source run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VAL = 1449  # map files per cache entry: one per VOC val image


def fake_runs(source: Path, out: Path, n: int) -> None:
    record = json.loads((source / "result.json").read_text())
    marker = (source / ".wssbench-run").read_text()
    for i in range(n):
        method, seed = divmod(i, 3)
        run = out / f"method-{method:04d}" / f"seed-{seed}"
        run.mkdir(parents=True)
        config = {**record["config"], "seed": seed, "options": {**record["config"].get("options", {}),
                                                               "fusion": {"bg_threshold": round(0.1 + method * 1e-4, 4)}}}
        config["recipe"] = {**config.get("recipe", {}), "seed": seed}
        fake = {**record, "config": config, "seed": seed, "miou": record["miou"] - 1e-4 * method + 1e-3 * seed}
        (run / "result.json").write_text(json.dumps(fake))
        shutil.copyfile(source / "counts.npz", run / "counts.npz")
        if (source / "masks").is_dir():
            (run / "masks").mkdir()
            for mask in (source / "masks").iterdir():
                os.link(mask, run / "masks" / mask.name)
        (run / ".wssbench-run").write_text(marker)


def fake_cache(home: Path, n: int) -> None:
    maps = home / "maps"
    blob = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 4), }" + b" " * 43 + b"\n" + bytes(64)
    for entry in range((n + VAL - 1) // VAL):
        folder = maps / f"saliency-gbp-{entry:016x}"
        folder.mkdir(parents=True)
        (folder / "key.json").write_text(json.dumps({"version": 2, "classifier": f"{entry:016x}", "kind": "saliency", "name": "gbp",
                                                     "plugin": "wssbench", "options": {}}))
        for i in range(min(VAL, n - entry * VAL)):
            (folder / f"{i:06d}~1.npy").write_bytes(blob)


def timed(args: list[str], home: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "wssbench", *args], env={**os.environ, "WSSBENCH_HOME": str(home)},
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"wssbench {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True, help="a finished wssbench run folder")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--map-files", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, default=None, help="write here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    if not (args.source / "result.json").is_file() or not (args.source / "counts.npz").is_file():
        sys.exit(f"--from {args.source}: expected a finished wssbench run folder (result.json and counts.npz)")
    work = Path(tempfile.mkdtemp(prefix="wssbench-lbscale-")) if args.keep is None else args.keep
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        sys.exit(f"--keep {args.keep}: not empty; choose a new folder")
    try:
        start = time.perf_counter()
        fake_runs(args.source, work / "runs", args.runs)
        fake_cache(work / "home", args.map_files)
        print(f"wrote {args.runs} runs and {args.map_files} map files in {time.perf_counter() - start:.0f} s", flush=True)
        home = work / "home"
        board = timed(["leaderboard", str(work / "runs"), "--format", "json"], home)
        show = timed(["cache", "show"], home)
        prune = timed(["cache", "prune", "--dry-run"], home)
        print(f"leaderboard over {args.runs} runs ({(args.runs + 2) // 3} rows): {board:.2f} s (goal < 2 s)")
        print(f"cache show over {args.map_files} map files: {show:.2f} s; cache prune --dry-run: {prune:.2f} s")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
