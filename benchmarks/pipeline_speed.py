"""Network time per image: one shared forward pass against three passes, side by side.

The three-pass path is what wssbench did before: classify (a forward without autograd), then the
class-map producer's own forward, then the saliency method's own forward and backward passes.
The shared path is the pipeline's (``wssbench.seed.maps.forward_batch``): one forward, recorded
under the saliency method's backward rule, whose scores pick the classes, whose score maps or
features give the class maps and whose graph the saliency maps are back-propagated from. Both
paths run here in one process, alternately, on the same images; the maps must be identical.

    python benchmarks/pipeline_speed.py                       # VGG-16 and ResNet-50, 500x375
    python benchmarks/pipeline_speed.py --models resnet50 --repeats 5 --device cuda

Random weights: the time of a pass does not depend on them. Prints seconds per image for each
path, their ratio and the largest difference between the two paths' maps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import wssbench
from wssbench.seed.config import RunConfig
from wssbench.seed.maps import forward_batch, select_classes


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def three_passes(model, x, classmap, saliency, config):
    with torch.no_grad():
        scores = model(x)  # pass 1: classify
    classes = select_classes(scores, None, config)
    maps = classmap(model, x, classes)  # pass 2: the class map's own forward
    sal = saliency(model, x, classes)  # pass 3: the saliency method's forward + backwards
    return classes, maps, sal


def shared_pass(model, x, classmap, saliency, config):
    with forward_batch(model, x, saliency, record_graph=True) as forward:  # the one pass
        classes = select_classes(forward.scores.detach(), None, config)
        maps = classmap.from_forward(model, forward, classes)
        sal = saliency.from_trace(forward, classes)
    return classes, maps, sal


def measure(fn, device, repeats):
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--pairs", nargs="+", default=["fcn+gbp", "cam+gbp"])
    parser.add_argument("--size", default="375x500", help="HxW of the images")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--max-classes", type=int, default=2, help="classes per image (the top-scoring ones)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    h, w = (int(v) for v in args.size.split("x"))
    config = RunConfig(max_classes=args.max_classes, score_threshold=0.999, device=args.device, workers=1)
    print(f"device {device}, {args.batch} image(s) of {h}x{w}, {args.max_classes} classes each, median of {args.repeats}")
    print(f"{'model':<10} {'maps':<8} {'3 passes s/img':>15} {'shared s/img':>13} {'speed-up':>9} {'max |diff|':>11}")
    for name in args.models:
        model = wssbench.create_classifier(name, num_classes=20).to(device).eval()
        x = torch.randn(args.batch, 3, h, w, device=device)
        for pair in args.pairs:
            cm_name, sal_name = pair.split("+")
            classmap, saliency = wssbench.create("classmap", cm_name), wssbench.create("saliency", sal_name)
            measure(lambda: shared_pass(model, x, classmap, saliency, config), device, 1)  # warm-up
            slow, (c1, m1, s1) = measure(lambda: three_passes(model, x, classmap, saliency, config), device, args.repeats)
            fast, (c2, m2, s2) = measure(lambda: shared_pass(model, x, classmap, saliency, config), device, args.repeats)
            assert torch.equal(c1, c2), "the two paths chose different classes"
            diff = max(float((m1 - m2).abs().max()), float((s1 - s2).abs().max() / s1.abs().max().clamp(min=1e-12)))
            n = args.batch
            print(f"{name:<10} {pair:<8} {slow / n:15.3f} {fast / n:13.3f} {slow / fast:8.2f}x {diff:11.2e}")


if __name__ == "__main__":
    main()
