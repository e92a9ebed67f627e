"""Time wssbench's CAM variants (every class of a batch in one pass) against pytorch-grad-cam
called once per class, side by side in one process.

Same model (timm, random weights, eval mode, float32), same inputs (batch B, S px, K classes per
image). ``wssbench``: one forward and one batched backward for all K classes (Score-CAM: one set of
masked forwards for all K). ``grad-cam``: the library's API takes one target per image, so it is
called K times on the batch (a forward and a backward each; Score-CAM: K sets of masked forwards).
Methods alternate within each repeat, the first one rotating (the machine is shared and noisy);
the ratio is the median over repeats of ``grad-cam / wssbench`` measured in the same repeat.
Both produce the same maps up to float tolerance (``tests/test_cam_variants.py``).

    python benchmarks/cam_speed.py [--methods gradcampp,layercam,scorecam] [--k 3] [--repeats 5]
                                   [--model resnet18] [--layer layer3] [--size 224] [--batch 4]

Needs the ``bench`` extra (grad-cam).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import timm
import torch

from wssbench.classifier.model import Classifier
from wssbench.host.registry import build_registry

LIBRARY = {"gradcampp": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "layercam": "LayerCAM", "hirescam": "HiResCAM",
           "scorecam": "ScoreCAM"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="gradcampp,xgradcam,layercam,hirescam,scorecam")
    parser.add_argument("--k", type=int, default=3, help="classes per image")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--scorecam-size", type=int, default=96, help="input size for Score-CAM (one forward per channel)")
    args = parser.parse_args()

    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    features = timm.create_model(args.model, pretrained=False, num_classes=0, global_pool="")
    model = Classifier(features, features.num_features, 20, pooling="gap").eval()
    registry = build_registry()
    print(f"model {args.model}, layer {args.layer}, batch {args.batch}, K={args.k} classes per image, "
          f"{args.repeats} repeats, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'method':<10} {'size':>5} {'wssbench ms':>12} {'grad-cam ms':>12} {'ratio':>7}  max|diff|")
    for method in args.methods.split(","):
        size = args.scorecam_size if method == "scorecam" else args.size
        images = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
        classes = torch.stack([torch.randperm(20, generator=torch.Generator().manual_seed(b))[: args.k] for b in range(args.batch)])
        ours = registry.create("classmap", method, layer=args.layer)
        copied = copy.deepcopy(model)
        reference = getattr(pytorch_grad_cam, LIBRARY[method])(copied, [copied.features.get_submodule(args.layer)])
        if method == "scorecam":
            reference.batch_size = 32

        def run_ours():
            return ours(model, images, classes)

        def run_library():
            return [reference(images, [ClassifierOutputTarget(int(c)) for c in classes[:, k]]) for k in range(args.k)]

        times: dict[str, list[float]] = {"ours": [], "library": []}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_ours(), run_library()  # warm-up
            for r in range(args.repeats):
                order = [("ours", run_ours), ("library", run_library)][:: (-1) ** r]
                for name, fn in order:
                    t = time.perf_counter()
                    out = fn()
                    times[name].append(time.perf_counter() - t)
                    if name == "ours":
                        mine = out
                    else:
                        theirs = out
        # agreement, after the library's min-max normalisation
        low = mine.amin(dim=(2, 3), keepdim=True)
        scaled = (mine - low) / (1e-7 + (mine - low).amax(dim=(2, 3), keepdim=True))
        diff = max(float((scaled[:, k] - torch.as_tensor(theirs[k])).abs().max()) for k in range(args.k))
        ratios = [lib / mine_t for lib, mine_t in zip(times["library"], times["ours"])]
        print(f"{method:<10} {size:>5} {1000 * statistics.median(times['ours']):>12.1f} "
              f"{1000 * statistics.median(times['library']):>12.1f} {statistics.median(ratios):>6.2f}x  {diff:.1e}")
        reference.activations_and_grads.release()


if __name__ == "__main__":
    main()
