"""A generated dataset with PASCAL VOC 2012's shape, for rehearsing VOC-scale runs offline.

``wssbench data generate voc-scale --root DIR`` writes, in the VOCdevkit layout that the
``voc2012`` dataset reads (so the VOC loader, its ``train_aug`` handling, the caches and the
workers are the code that runs)::

    DIR/VOCdevkit/VOC2012/JPEGImages/<id>.jpg                 12,031 images, 500 x 375
    DIR/VOCdevkit/VOC2012/SegmentationClass/<id>.png          train (1,464) and val (1,449)
    DIR/VOCdevkit/VOC2012/SegmentationClassAug/<id>.png       every image (as SBD's masks)
    DIR/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,train_aug}.txt
    DIR/VOCdevkit/cls_labels.npy                              image labels, psa/irn's format

``train_aug`` has VOC's 10,582 images (train and 9,118 more), ``val`` VOC's 1,449; ids are
VOC-style (``2007_000000`` ...). The scenes are the synthetic dataset's
(:mod:`wssbench.data._synth_scene`), rendered 500 px square and cut to 500 x 375, with their
eight looks spread over VOC's 20 labels (label ``l`` of image ``i`` becomes
``(l - 1 + 8 * (i % 3)) % 20 + 1``), so every VOC label occurs; masks keep the 255 borders. The
content is for throughput and scale, not for judging methods. Generation is deterministic, in
``workers`` processes, and atomic (a killed generation leaves nothing in place).
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from wssbench.data.layout import labels_from_mask
from wssbench.data.synthetic import SyntheticSpec, render
from wssbench.data.voc2012 import CLASSES
from wssbench.errors import DataError
from wssbench.storage.io import atomic_dir, write_mask

MARKER = ".voc-scale"  # in VOCdevkit/, written last: the spec as JSON
VOC_TRAIN, VOC_VAL, VOC_TRAIN_AUG = 1464, 1449, 10582
VERSION = 1


@dataclass(frozen=True)
class VocScaleSpec:
    n_train: int = VOC_TRAIN  # VOC train (official masks), part of train_aug
    n_train_aug: int = VOC_TRAIN_AUG
    n_val: int = VOC_VAL
    width: int = 500
    height: int = 375
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_train <= self.n_train_aug or self.n_val < 1:
            raise DataError("voc-scale: expected 1 <= train <= train_aug and at least one val image")
        if not 16 <= self.height <= self.width:
            raise DataError("voc-scale: expected 16 <= height <= width")

    def ids(self) -> dict[str, list[str]]:
        aug = [f"2007_{i:06d}" for i in range(self.n_train_aug)]
        return {"train": aug[: self.n_train], "train_aug": aug, "val": [f"2011_{i:06d}" for i in range(self.n_val)]}


def voc_labels(mask: np.ndarray, index: int) -> np.ndarray:
    """The synthetic mask's labels 1..8 spread over VOC's 1..20 (module docstring); 0 and 255 kept."""
    out = mask.copy()
    fg = (mask > 0) & (mask < 255)
    out[fg] = (mask[fg].astype(np.int64) - 1 + 8 * (index % 3)) % 20 + 1
    return out


def _render(args: tuple[VocScaleSpec, int, str, str]) -> tuple[str, np.ndarray]:
    spec, index, image_id, voc = args
    image, mask = render(SyntheticSpec(seed=spec.seed, size=spec.width), index)
    image, mask = image[: spec.height], voc_labels(mask[: spec.height], index)
    root = Path(voc)
    Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
    write_mask(root / "SegmentationClassAug" / f"{image_id}.png", mask)
    return image_id, labels_from_mask(mask, len(CLASSES)).astype(np.float32)


def generate(root: str | Path, spec: VocScaleSpec = VocScaleSpec(), workers: int = 1,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the dataset under ``root/VOCdevkit`` (atomically); returns the VOC2012 folder."""
    devkit = Path(root) / "VOCdevkit"
    if devkit.exists():
        raise DataError(f"{devkit}: exists already; remove it or choose another --root")
    ids = spec.ids()
    everything = ids["train_aug"] + ids["val"]
    with atomic_dir(devkit) as tmp:
        voc = tmp / "VOC2012"
        for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
            (voc / sub).mkdir(parents=True)
        labels = {}
        jobs = [(spec, index, image_id, str(voc)) for index, image_id in enumerate(everything)]
        with ProcessPoolExecutor(workers) if workers > 1 else _Inline() as pool:
            for done, (image_id, present) in enumerate(pool.map(_render, jobs, chunksize=16), 1):
                labels[image_id] = present
                if progress:
                    progress(done, len(jobs))
        official = set(ids["train"]) | set(ids["val"])
        for image_id in official:  # the official masks of train and val (SBD's copy stays in ...Aug)
            (voc / "SegmentationClass" / f"{image_id}.png").write_bytes((voc / "SegmentationClassAug" / f"{image_id}.png").read_bytes())
        for split in ("train", "val", "train_aug"):
            (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids[split]) + "\n")
        np.save(tmp / "cls_labels.npy", labels)
        (tmp / MARKER).write_text(json.dumps({"version": VERSION, **asdict(spec)}, indent=2) + "\n")
    return devkit / "VOC2012"


class _Inline:
    """``map`` in this process (``workers=1``), as a context manager like the pool."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def map(fn, items, chunksize: int = 1):
        return map(fn, items)
