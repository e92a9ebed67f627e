"""CLIP-ES seeds and pseudo-masks on PASCAL VOC 2012, scored as the authors score them.

    pip install -e '.[clip]'
    python benchmarks/clip_es_voc.py --weights ViT-B-16.pt --voc-root VOCdevkit --split train --device cuda

``--weights``: OpenAI's CLIP ViT-B/16 (``ViT-B-16.pt``, the file CLIP-ES's README names; or a state
dict in the same layout). Nothing is downloaded. Per image of the split (the image's own
classes from ``cls_labels.npy`` or ``Annotations/*.xml``), the refined maps of
:func:`wssbench_plugins._clip_es.clip_es_maps`; then, over the split (one confusion matrix, 21
classes incl. background, GT 255 ignored):

- ``seeds``: background ``(1 - max) ** alpha`` for alpha 1 and 2, argmax; the README's "CAMs"
  70.8 (VOC train, 1,464 images) is the better of the two (eval_cam.py sweeps {1, 2} against the
  GT of the scored split: the choice is made on the scored split, as the authors do);
- ``+CRF``: the CRF argmax (background 1 - max, eval_cam_with_crf.py ``--eval_only``), the
  README's 75.0, without the 0.95 confidence masking;
- with ``--masks-out DIR``, the pseudo-masks (confidence < 0.95 -> 255) as PNGs, what the
  authors train DeepLab on.

``--gt aug`` scores against ``SegmentationClassAug`` as the README's command does (when the
folder is there); the default is VOC's own ``SegmentationClass``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    from wssbench.data.voc2012 import AUG_MASK_DIR, VOC2012
    from wssbench.errors import WssbenchError
    from wssbench.results.metrics import ConfusionMatrix
    from wssbench.storage.io import read_mask
    from wssbench_plugins import _clip_es as ce

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="CLIP ViT-B/16 checkpoint (OpenAI's ViT-B-16.pt)")
    parser.add_argument("--voc-root", required=True, help="VOCdevkit, VOC2012 or their parent")
    parser.add_argument("--split", default="train", help="image list in ImageSets/Segmentation (default train: 1,464 images)")
    parser.add_argument("--gt", choices=("official", "aug"), default="official")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (a quick look)")
    parser.add_argument("--no-crf", action="store_true", help="seeds only")
    parser.add_argument("--masks-out", default=None, help="write the pseudo-masks (PNG, 255 = unsure) here")
    args = parser.parse_args(argv)

    try:
        dataset = VOC2012(args.voc_root)
        dataset.prepare()
        ids = dataset.ids(args.split)[: args.limit]
        model = ce.load_clip(args.weights, args.device)
    except WssbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    class_text = ce.text_features(model, ce.VOC_NAMES)
    background_text = ce.text_features(model, ce.BACKGROUND)
    out = Path(args.masks_out) if args.masks_out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    seeds = {alpha: ConfusionMatrix(21) for alpha in (1, 2)}
    crf = ConfusionMatrix(21)
    unsure = total = 0
    start = time.perf_counter()
    for n, image_id in enumerate(ids, 1):
        image = dataset.load_image(image_id)
        gt = read_mask(dataset.root / AUG_MASK_DIR / f"{image_id}.png") if args.gt == "aug" else dataset.load_mask(image_id)
        keys = np.flatnonzero(dataset.image_labels(image_id))  # 0-based VOC classes
        maps = ce.clip_es_maps(model, image, keys, class_text, background_text)[0].cpu().numpy()  # (K, H, W)
        for alpha, matrix in seeds.items():
            matrix.update(gt, ce.seed_labels(maps, keys, alpha))
        if not args.no_crf:
            labels, mask = ce.pseudo_mask(image, maps, keys)
            crf.update(gt, labels)
            unsure += int((mask == 255).sum())
            total += mask.size
            if out is not None:
                from PIL import Image

                Image.fromarray(mask).save(out / f"{image_id}.png")
        if n % 100 == 0:
            print(f"{n}/{len(ids)} images, {(time.perf_counter() - start) / n:.2f} s each", file=sys.stderr)
    seconds = (time.perf_counter() - start) / max(1, len(ids))
    result = {f"seeds alpha={a}": m.compute().miou for a, m in seeds.items()}
    print(f"# CLIP-ES on VOC 2012 {args.split} ({len(ids)} images, GT {args.gt}), mIoU %, {seconds:.2f} s per image on {args.device}")
    for name, miou in result.items():
        print(f"{name}\t{100 * miou:.1f}")
    print(f"seeds (best alpha, README 70.8)\t{100 * max(result.values()):.1f}")
    if not args.no_crf:
        print(f"+CRF (README 75.0)\t{100 * crf.compute().miou:.1f}")
        print(f"pseudo-mask pixels set to 255 (confidence < 0.95)\t{100 * unsure / max(1, total):.1f} %")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    sys.exit(main())
