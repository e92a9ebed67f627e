"""Size and render time of the leaderboard site's index for 1,000 records, in Chromium.

Writes N fake but complete result records (21 VOC classes with per-class IoU and a 21 x 21
confusion matrix, components with their options, timings, versions, a threshold curve) spread
over four tables (synthetic seed and pseudo-mask stages, VOC val with the published rows, VOC
train seed quality), builds the site with ``wssbench leaderboard --format html``, and loads
``index.html`` from ``file://`` in Debian's Chromium through Playwright:

- ``render``: from navigation start to the second animation frame after the load event (the
  page laid out and painted), from the page's own clock (``performance.now()``); median of
  ``--repeats`` loads, each in a new tab; ``first paint`` is Chromium's first-contentful-paint;
- ``sort``: clicking the mIoU header of the largest group (its rows reordered across its tables, laid out);
- the ratio of the median render time to the 1 s budget.

Three sites: the four tables with rows of one value (records without per-image counts); the
same with every row carrying three seeds, the 95 % interval (drawn as a bar), a tie mark and
prior badges (the leaderboard's JSON keys, filled in by ``with_uncertainty`` rather than by
1,000 bootstraps); and the worst case, every record in one table (a table off screen is not
laid out until it scrolls near, so one long table is the heaviest page).

    python benchmarks/site_speed.py [--records 1000] [--repeats 5] [--keep DIR]

Needs Playwright for Python (``pip install playwright``, no browser download) and
``/usr/bin/chromium`` (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from wssbench import leaderboard
from wssbench.cli.leaderboard import leaderboard_command
from wssbench.results.references import SEED_QUALITY

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
VOC = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
       "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
TABLES = [  # (share of the records, dataset, split, protocol, n_images, stage, dataset options)
    (0.4, "synthetic", "val", "segmentation", 120, "seed", {"preset": "default"}),
    (0.2, "synthetic", "val", "segmentation", 120, "pseudo-mask", {"preset": "default"}),
    (0.3, "voc2012", "val", "segmentation", 1449, "seed", {}),
    (0.1, "voc2012", "train", SEED_QUALITY, 1464, "seed", {}),
]


def fake_record(i: int, table: tuple, rng: random.Random) -> dict:
    _, dataset, split, protocol, n_images, stage, dataset_options = table
    miou = rng.uniform(0.2, 0.6)
    iou = {name: rng.uniform(0.0, 0.9) for name in VOC}
    backbone = rng.choice(["resnet50", "resnet38d", "vgg16", "vit_b_16"])
    classmap, saliency = rng.choice([("fcn", "gbp"), ("cam", "gbp"), ("cam", None), ("gradcam", None), ("fcn", "dcsm")])
    refine = rng.choice([["densecrf"], ["none"], ["sppxl", "densecrf"]])
    threshold = round(0.05 * (i % 20), 2)  # a distinct experiment per record
    config = {
        "preset": None, "dataset": dataset, "data_root": None, "split": split, "train_split": "train", "backbone": backbone,
        "pooling": rng.choice(["gap", "gmp", "lse"]), "background": False, "head_bias": False, "pretrained": True, "weights": None,
        "recipe": {"epochs": 5, "batch_size": 16, "lr": 0.1, "head_lr_mult": 10.0, "momentum": 0.9, "weight_decay": 0.0001,
                   "crop": 448, "scale": [0.75, 1.25], "seed": i // 20, "loss": "soft-margin"},
        "saliency": saliency, "classmap": classmap, "fusion": "threshold", "refine": refine,
        "options": {"dataset": dataset_options, "fusion": {"bg_threshold": threshold}, "classmap": {"variant": i}},
        "classes_from": "labels" if protocol == SEED_QUALITY else "predicted", "score_threshold": 0.5, "max_classes": 3,
        "top1": True, "detect_by": "classifier", "batch_size": 8, "precision": "fp32", "loader_workers": 0, "cache_maps": True,
        "workers": 2, "limit": None, "device": "cuda", "seed": i // 20,
    }
    deviations = [{"option": "crop", "published": 512, "used": 448}] if i % 7 == 0 else []
    return {
        "record_version": 1, "stage": stage, "dataset": dataset, "split": split, "protocol": protocol, "n_images": n_images,
        "miou": miou, "per_class_iou": iou, "pixel_accuracy": rng.uniform(0.6, 0.9),
        "confusion_matrix": [[rng.randrange(10**6) for _ in VOC] for _ in VOC],
        "config": config, "deviations": deviations, "unverified": [],
        "components": {
            "classmap": {"kind": "classmap", "name": classmap, "plugin": "wssbench", "options": {"variant": i}},
            "fusion": {"kind": "fusion", "name": "threshold", "plugin": "wssbench",
                       "options": {"bg_threshold": threshold, "weight": 0.75, "sigma": 0.03, "quantile": 0.99}},
        },
        "classifier": {"cached": True, "map": rng.uniform(0.5, 0.9), "map_split": "val", "train_seconds": rng.uniform(100, 900)},
        "timings": {"total_seconds": rng.uniform(60, 600), "stages_seconds": {"forward": 12.5, "saliency": 40.1, "refine:densecrf": 80.2},
                    "per_image_ms": {"forward": 8.6, "saliency": 27.7}},
        "versions": {"python": "3.11.7", "wssbench": "0.1.0", "torch": "2.14.1", "timm": "1.0.31", "numpy": "2.4.6"},
        "threshold_curve": [{"threshold": round(0.05 * k, 2), "miou": max(0.0, miou - 0.002 * (k - 5) ** 2)} for k in range(20)],
        "seed": i // 20, "created": f"2026-01-01T00:00:{i % 60:02d}+0000", "world_size": 1,
    }


def write_records(root: Path, n: int, tables: list[tuple] = TABLES) -> None:
    rng = random.Random(0)
    i = 0
    for share, *rest in tables:
        table = (share, *rest)
        for _ in range(round(share * n)):
            path = root / f"{table[1]}-{table[5]}-{table[2]}" / f"run{i:04d}" / "result.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(fake_record(i, table, rng)))
            i += 1


@contextmanager
def with_uncertainty():
    """Every row with three seeds, an interval, a tie mark and priors, in the leaderboard's JSON
    keys: the heaviest rows the leaderboard writes, without 1,000 bootstraps at build time."""
    plain = leaderboard.to_json
    rng = random.Random(1)

    def to_json(groups):
        data = json.loads(plain(groups))
        for group in data:
            for row in group["rows"]:
                if row["published"]:
                    continue
                std = rng.uniform(0.3, 2.0)
                priors = [{"mark": "I", "what": f"ImageNet weights of {row.get('backbone')}"}]
                if rng.random() < 0.3:
                    priors.append({"mark": "S", "what": "a salient-object detector"})
                row.update(miou_mean=row["miou"], miou_std=round(std, 1), n_seeds=3, seeds=[0, 1, 2],
                           ci95=[round(row["miou"] - 1.5 * std, 1), round(row["miou"] + 1.5 * std, 1)],
                           tied_with_above=rng.random() < 0.5, priors=priors, unranked=False)
        return json.dumps(data)

    leaderboard.to_json = to_json
    try:
        yield
    finally:
        leaderboard.to_json = plain


def build(records: Path, site: Path) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(leaderboard_command, [str(records), "--format", "html", "--out", str(site)])
    if result.exit_code != 0:
        raise SystemExit(f"the site was not built: {result.output}")
    return time.perf_counter() - start


RENDERED = """() => new Promise(done => {
    const finish = () => requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now())));
    if (document.readyState === "complete") finish(); else addEventListener("load", finish);
})"""

SORT = """() => {
    const groups = [...document.querySelectorAll("section.group")];
    const count = g => g.querySelectorAll("tbody.runs tr[data-row]").length;
    const biggest = groups.reduce((a, b) => (count(a) >= count(b) ? a : b));
    const button = [...biggest.querySelector("thead").querySelectorAll("button")].find(b => b.textContent.trim() === "mIoU");
    const start = performance.now();
    button.click();
    document.body.offsetHeight;  // layout
    return new Promise(done => requestAnimationFrame(() => done([performance.now() - start, count(biggest)])));
}"""


def measure(context, index: Path, repeats: int) -> dict:
    renders, paints, sorts, wall = [], [], [], []
    for _ in range(repeats):
        page = context.new_page()
        errors = []
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        start = time.perf_counter()
        page.goto(index.as_uri(), wait_until="load")
        renders.append(page.evaluate(RENDERED))
        wall.append(1000 * (time.perf_counter() - start))
        fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)")
        if fcp:
            paints.append(fcp[0])
        sort_ms, rows = page.evaluate(SORT)
        sorts.append(sort_ms)
        if errors:
            raise SystemExit(f"console errors: {errors}")
        page.close()
    return {"render": statistics.median(renders), "render_first": renders[0], "paint": statistics.median(paints) if paints else float("nan"),
            "wall": statistics.median(wall), "sort": statistics.median(sorts), "sort_rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="Keep the records and both sites in this (new) folder.")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = args.keep or Path(tempfile.mkdtemp(prefix="wssbench-site-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    records, one_table = work / "records", work / "records-one-table"
    write_records(records, args.records)
    write_records(one_table, args.records, [(1.0, *TABLES[0][1:])])
    load_before = os.getloadavg()
    sites = {  # label -> (records, site, how the leaderboard's rows are read)
        "4 tables, one value per row": (records, work / "site-plain", None),
        "4 tables, mean ± std, interval bar, ties, priors": (records, work / "site-uncertainty", with_uncertainty),
        "1 table, mean ± std, interval bar, ties, priors": (one_table, work / "site-one-table", with_uncertainty),
    }
    built = {}
    for label, (found, site, context_manager) in sites.items():
        if context_manager is None:
            built[label] = build(found, site)
        else:
            with context_manager():
                built[label] = build(found, site)
    user_data = tempfile.mkdtemp(prefix="wssbench-chromium-")
    results = {}
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(user_data, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                           viewport={"width": 1280, "height": 900})
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
            for label, (_, site, _) in sites.items():
                results[label] = measure(context, site / "index.html", args.repeats)
            context.close()
    finally:
        shutil.rmtree(user_data, ignore_errors=True)
    load_after = os.getloadavg()
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=False).stdout.strip()

    print(f"# leaderboard site, {args.records} records, {version}, headless, file://, "
          f"median of {args.repeats} loads; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, {os.cpu_count()} CPUs")
    print("rows | index KiB | whole site MiB | build s | first paint ms | render ms (first load) | render / 1 s budget | "
          "sort mIoU ms (rows)")
    for label, (_, site, _) in sites.items():
        r = results[label]
        size = (site / "index.html").stat().st_size
        whole = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
        print(f"{label} | {size / 1024:.0f} | {whole / 2**20:.1f} | {built[label]:.1f} | {r['paint']:.0f} | "
              f"{r['render']:.0f} ({r['render_first']:.0f}) | {r['render'] / 1000:.2f} | {r['sort']:.0f} ({r['sort_rows']})")
        if size >= 2 * 2**20:
            print(f"  over the 2 MB budget: {size} bytes")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
