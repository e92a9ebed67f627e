"""Time wssbench's guided back-propagation against captum and pytorch-grad-cam, K classes per image.

In one process, on the same model (timm, random weights, eval mode, float32) and the same
inputs (batch 4, 224 px):

* ``wssbench gbp``: one forward pass, then one backward pass per class column;
* ``captum``: ``GuidedBackprop.attribute`` once per class column (a forward and a backward each);
* ``grad-cam``: ``GuidedBackpropReLUModel`` once per image and class (its API explains the
  first image of a batch for one class), on a copy of the model (it swaps the ReLU modules);
* ``wssbench multilayer``: the poster's multi-layer maps (guided), for the cost comparison.

Methods are interleaved within each repeat, the first one rotating (the machine is shared and
noisy), and the median over repeats is reported, in milliseconds per image. A ratio is the
median over repeats of ``other / wssbench gbp`` within the same repeat.
Peak memory is measured in a fresh subprocess per method: the peak resident set size above
the one before the call on CPU (sampled every millisecond), ``torch.cuda.max_memory_allocated``
above the allocated memory before the call on CUDA. ``max|diff|`` is the largest absolute
difference between wssbench's gbp maps and the other library's maps (max over colour channels
of the absolute gradient), relative to the largest map value.

    python benchmarks/saliency_speed.py [--models resnet18,vgg16] [--ks 1,3,5] [--repeats 5]
                                        [--device cpu|cuda] [--no-memory]

Needs the ``bench`` extra (captum, grad-cam).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from typing import Callable

import numpy as np
import timm
import torch

from wssbench_plugins.saliency import GuidedBP, MultiLayer

METHODS = ("wssbench gbp", "captum", "grad-cam", "wssbench multilayer")
NUM_CLASSES = 20


def setup(model_name: str, batch: int, size: int, k: int, device: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=NUM_CLASSES).eval().to(device)
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)  # (B, 3, H, W)
    classes = torch.stack([torch.randperm(NUM_CLASSES, generator=torch.Generator().manual_seed(b))[:k] for b in range(batch)]).to(device)  # (B, K)
    return model, images, classes


def methods(model: torch.nn.Module, device: str) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """Each method as ``fn(images, classes) -> maps (B, K, H, W)``, Simonyan's reduction."""
    from captum.attr import GuidedBackprop
    from pytorch_grad_cam import GuidedBackpropReLUModel

    captum = GuidedBackprop(model)
    gradcam = GuidedBackpropReLUModel(copy.deepcopy(model), device=device)

    def run_captum(images, classes):
        maps = []
        for k in range(classes.shape[1]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = captum.attribute(images, target=classes[:, k])  # (B, 3, H, W)
            maps.append(a.abs().amax(1))  # (B, H, W)
        return torch.stack(maps, 1)  # (B, K, H, W)

    def run_gradcam(images, classes):
        maps = torch.empty(classes.shape + images.shape[-2:])  # (B, K, H, W)
        for b in range(images.shape[0]):
            for k in range(classes.shape[1]):
                g = gradcam(images[b : b + 1].clone(), target_category=int(classes[b, k]))  # (H, W, 3) numpy
                maps[b, k] = torch.from_numpy(np.abs(g).max(-1))
        return maps

    return {
        "wssbench gbp": lambda images, classes: GuidedBP()(model, images, classes),
        "captum": run_captum,
        "grad-cam": run_gradcam,
        "wssbench multilayer": lambda images, classes: MultiLayer()(model, images, classes),
    }


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_methods(model_name: str, k: int, args) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Median ms per image per method over interleaved repeats, the median over repeats of each
    method's time divided by gbp's in the same repeat, and max|diff| against gbp."""
    model, images, classes = setup(model_name, args.batch, args.size, k, args.device)
    fns = methods(model, args.device)
    maps = {name: fn(images, classes).cpu() for name, fn in fns.items()}  # also the warm-up
    ref = maps["wssbench gbp"]
    diffs = {name: float((maps[name] - ref).abs().max() / ref.abs().max()) for name in ("captum", "grad-cam")}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(args.repeats):
        order = list(fns)[r % len(fns) :] + list(fns)[: r % len(fns)]  # rotate who goes first
        for name in order:
            sync(args.device)
            start = time.perf_counter()
            fns[name](images, classes)
            sync(args.device)
            times[name].append((time.perf_counter() - start) * 1000 / args.batch)
    ratios = {name: statistics.median(t / g for t, g in zip(times[name], times["wssbench gbp"])) for name in fns}
    return {name: statistics.median(t) for name, t in times.items()}, ratios, diffs


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(model_name: str, k: int, method: str, args) -> float:
    """MiB above the memory in use before one call of ``method`` (run in this process)."""
    model, images, classes = setup(model_name, args.batch, args.size, k, args.device)
    fn = methods(model, args.device)[method]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(images, classes)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn(images, classes)
    finally:
        done.set()
        sampler.join()
    return (max(peak[0], _rss_bytes()) - base) / 2**20


def memory_in_subprocess(model_name: str, k: int, method: str, args) -> float:
    cmd = [sys.executable, __file__, "--measure", json.dumps([model_name, k, method]), "--device", args.device,
           "--batch", str(args.batch), "--size", str(args.size), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,vgg16")
    parser.add_argument("--ks", default="1,3,5")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="Skip the peak-memory subprocesses.")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one peak-memory measurement
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        print(peak_memory(*json.loads(args.measure), args))
        return

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"# guided back-propagation saliency, batch {args.batch}, {args.size} px, {name}, torch {torch.__version__}, "
          f"median of {args.repeats}, ms per image (ratio: median of other / wssbench gbp per repeat)")
    header = ["model", "K", *(f"{m} ms" for m in METHODS), "captum/ours", "grad-cam/ours", "multilayer/gbp",
              *(f"{m} MiB" for m in METHODS), "max|diff| captum", "max|diff| grad-cam"]
    print(" | ".join(header))
    for model_name in args.models.split(","):
        for k in map(int, args.ks.split(",")):
            times, ratios, diffs = time_methods(model_name, k, args)
            mem = {m: memory_in_subprocess(model_name, k, m, args) for m in METHODS} if args.memory else {}
            row = [model_name, str(k), *(f"{times[m]:.0f}" for m in METHODS),
                   *(f"{ratios[m]:.2f}x" for m in ("captum", "grad-cam", "wssbench multilayer")),
                   *(f"{mem[m]:.0f}" if mem else "-" for m in METHODS),
                   f"{diffs['captum']:.1e}", f"{diffs['grad-cam']:.1e}"]
            print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
