"""Time and memory per image of the pseudo-mask methods' steps (PSA, IRN, CLIP-ES) at several sizes.

    python benchmarks/pseudo_mask_cost.py [--sizes 128,224,320] [--device cpu] [--repeats 3] [--no-clip]

Random weights (the cost does not depend on them): ResNet-50 at output stride 8 (PSA) and 16
(IRN), open_clip's ViT-B-16 (CLIP-ES), a random square image with two classes. Times are the
median of ``--repeats`` in seconds per image; ``dense MB`` is the N x N float32 matrix of the
authors' dense walk (N = pixels of the feature grid), which ``method="dense"`` also squares
``log_t`` times (N**3 each).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from wssbench_plugins import _clip_es as ce
    from wssbench_plugins import _irn, _psa
    from wssbench_plugins.backbones import TimmBackbones

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="128,224,320")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-limit", type=int, default=3000, help="skip the dense walk above this many grid pixels")
    parser.add_argument("--no-clip", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    psa_net = _psa.AffinityNet(TimmBackbones(output_stride=8).build("resnet50")[0]).eval().to(device)
    irn_net = _irn.BoundaryNet(TimmBackbones(output_stride=16).build("resnet50")[0]).eval().to(device)
    clip = None
    if not args.no_clip:
        import open_clip

        clip = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).eval().requires_grad_(False).to(device)
        class_text, background_text = ce.text_features(clip, ce.VOC_NAMES), ce.text_features(clip, ce.BACKGROUND)
    rng = np.random.default_rng(0)
    print(f"# seconds per image, median of {args.repeats}, {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("size | step | seconds | grid N | dense MB")
    for size in (int(s) for s in args.sizes.split(",")):
        image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        yy, xx = np.mgrid[:size, :size] / size
        cams = np.stack([np.exp(-((yy - 0.3) ** 2 + (xx - 0.3) ** 2) * 20), np.exp(-((yy - 0.7) ** 2 + (xx - 0.6) ** 2) * 20)]).astype(np.float32)
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)
        rows = []
        rows.append(("psa confident regions (2 CRFs)", timed(lambda: (_psa.crf_with_alpha(image, cams, 4), _psa.crf_with_alpha(image, cams, 32)), args.repeats), "", ""))
        with torch.no_grad():
            rows.append(("psa AffinityNet forward", timed(lambda: psa_net.features(x), args.repeats), "", ""))
        n = (-(-size // 8)) ** 2
        tc = torch.from_numpy(cams).to(device)
        rows.append(("psa walk (sparse, T^256)", timed(lambda: _psa.walk(psa_net, x, tc), args.repeats), n, n * n * 4 / 2 ** 20))
        if n <= args.dense_limit:
            rows.append(("psa walk (dense, as the authors)", timed(lambda: _psa.walk(psa_net, x, tc, method="dense"), args.repeats), n, n * n * 4 / 2 ** 20))
        rows.append(("irn confident labels (2 label CRFs)", timed(lambda: _irn.confident_labels(image, cams, [0, 1]), args.repeats), "", ""))
        rows.append(("irn boundary map (image + flip)", timed(lambda: _irn.boundary_map(irn_net, x, pad_to=None), args.repeats), "", ""))
        boundary = _irn.boundary_map(irn_net, x, pad_to=None)
        side = boundary.shape[0]
        small = torch.nn.functional.interpolate(tc[None], size=(side, side), mode="bilinear", align_corners=False)[0]
        n = side * side
        rows.append(("irn walk (sparse, T^256)", timed(lambda: _irn.walk(small, boundary, (size, size)), args.repeats), n, n * n * 4 / 2 ** 20))
        if n <= args.dense_limit:
            rows.append(("irn walk (dense, as the authors)", timed(lambda: _irn.walk(small, boundary, (size, size), method="dense"), args.repeats), n, n * n * 4 / 2 ** 20))
        if clip is not None:
            rows.append(("clip-es maps (ViT-B/16, 2 classes)", timed(lambda: ce.clip_es_maps(clip, image, [0, 14], class_text, background_text), args.repeats), "", ""))
            rows.append(("clip-es CRF pseudo-mask", timed(lambda: ce.pseudo_mask(image, cams, [0, 14]), args.repeats), "", ""))
        for name, seconds, grid, mb in rows:
            mb = f"{mb:.0f}" if mb != "" else ""
            print(f"{size} | {name} | {seconds:.3f} | {grid} | {mb}", flush=True)


if __name__ == "__main__":
    main()
