"""Reading MS-COCO's instance annotations as semantic masks and image labels (the ``coco`` dataset).

Layout (COCO's own; the 2014 and 2017 names alike)::

    ROOT/<split>/<12-digit id>.jpg                        e.g. ROOT/val2017/000000532481.jpg
    ROOT/annotations/instances_<split>.json               images, annotations, categories

A mask is drawn from the split's instance annotations through pycocotools (polygons and RLE,
``annToMask``), in this order, later on top:

1. crowd regions (``iscrowd`` 1) of the chosen classes: 255 (ignored, as COCO's evaluation does);
2. the other instances, largest first, so that where two overlap the smaller one (more often in
   front, and whose pixels would otherwise vanish) keeps the pixel. COCO's instances overlap
   little; the rule is a choice, as no WSSS COCO conversion documents one.

Classes (option ``classes``): ``coco``, the WSSS COCO protocol's 81 (background and the 80
categories in the json's category-id order), or ``voc``, PASCAL VOC's 21: the 20 categories
VOC has, mapped in VOC's order, every other category background (as VOC treats objects outside
its classes: their instances and their crowd regions are background). Image labels are the
chosen classes of the image's non-crowd annotations; an image with none stays in the split
(an all-background image, a negative for the classifier). Image ids are the files' stems.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from wssbench.data.voc2012 import CLASSES as VOC_CLASSES
from wssbench.errors import DataError, UsageError
from wssbench.storage.io import read_image

# COCO category id -> VOC label (1..20), in VOC's order (the README of the coco-mini sample, and COCO's ids)
COCO_TO_VOC = {5: 1, 2: 2, 16: 3, 9: 4, 44: 5, 6: 6, 3: 7, 17: 8, 62: 9, 21: 10, 67: 11, 18: 12, 19: 13, 4: 14, 1: 15,
               64: 16, 20: 17, 63: 18, 7: 19, 72: 20}
IGNORE = 255


class CocoSplit:
    """One split's json, parsed once: images by id, annotations per image, the class mapping."""

    def __init__(self, root: Path, split: str, classes: str):
        self.root, self.split, self.classes = root, split, classes
        self.json_path = root / "annotations" / f"instances_{split}.json"
        if not self.json_path.is_file():
            raise DataError(f"{self.json_path}: not found (COCO's instance annotations of split '{split}')")
        try:
            data = json.loads(self.json_path.read_text())
            images, annotations, categories = data["images"], data["annotations"], data["categories"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{self.json_path}: not a COCO instances file ({type(e).__name__}: {e})") from None
        self.category_ids = sorted(int(c["id"]) for c in categories)
        self.label_of = (
            {cid: k + 1 for k, cid in enumerate(self.category_ids)} if classes == "coco" else dict(COCO_TO_VOC)
        )  # category id -> label; absent: background
        known = set(self.category_ids)
        self.images = {}
        for image in images:
            stem = Path(str(image["file_name"])).stem
            self.images[stem] = image
        by_number = {int(image["id"]): stem for stem, image in self.images.items()}
        self.annotations: dict[str, list[dict]] = {stem: [] for stem in self.images}
        for ann in annotations:
            if int(ann.get("category_id", -1)) not in known:
                raise DataError(f"{self.json_path}: annotation {ann.get('id')} has category {ann.get('category_id')}, "
                                f"which is not among the file's categories")
            stem = by_number.get(int(ann.get("image_id", -1)))
            if stem is None:
                raise DataError(f"{self.json_path}: annotation {ann.get('id')} names image {ann.get('image_id')}, "
                                f"which is not among the file's images")
            self.annotations[stem].append(ann)

    def ids(self) -> list[str]:
        return sorted(self.images)

    def image_path(self, image_id: str) -> Path:
        return self.root / self.split / str(self.images[image_id]["file_name"])

    def labels(self, image_id: str, num_labels: int) -> np.ndarray:
        present = np.zeros(num_labels, bool)  # (C-1,), index c is label c + 1
        for ann in self.annotations[image_id]:
            label = self.label_of.get(int(ann["category_id"]))
            if label is not None and not ann.get("iscrowd", 0):
                present[label - 1] = True
        return present

    def mask(self, image_id: str) -> np.ndarray:
        """The image's label map (H, W) uint8 (module docstring)."""
        from pycocotools import mask as mask_utils  # C extension: only when a mask is drawn

        image = self.images[image_id]
        h, w = int(image["height"]), int(image["width"])
        out = np.zeros((h, w), np.uint8)
        chosen = [a for a in self.annotations[image_id] if int(a["category_id"]) in self.label_of]
        crowd = [a for a in chosen if a.get("iscrowd", 0)]
        solid = sorted((a for a in chosen if not a.get("iscrowd", 0)), key=lambda a: -float(a.get("area", 0)))
        for ann in crowd:
            out[self._decode(mask_utils, ann, h, w)] = IGNORE
        for ann in solid:
            out[self._decode(mask_utils, ann, h, w)] = self.label_of[int(ann["category_id"])]
        return out

    def _decode(self, mask_utils, ann: dict, h: int, w: int) -> np.ndarray:
        segmentation = ann.get("segmentation")
        with warnings.catch_warnings():  # pycocotools' __array__ predates NumPy 2's copy keyword: harmless
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._decode_quietly(mask_utils, ann, segmentation, h, w)

    def _decode_quietly(self, mask_utils, ann: dict, segmentation, h: int, w: int) -> np.ndarray:
        try:
            if isinstance(segmentation, list):  # polygons
                if not segmentation or any(len(p) < 6 or len(p) % 2 for p in segmentation):
                    raise ValueError("a polygon needs at least three x, y pairs")
                rles = mask_utils.frPyObjects([[float(v) for v in p] for p in segmentation], h, w)
                rle = mask_utils.merge(rles)
            elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(segmentation, h, w)
            elif isinstance(segmentation, dict):  # compressed RLE
                rle = dict(segmentation)
                if isinstance(rle.get("counts"), str):
                    rle["counts"] = rle["counts"].encode()
            else:
                raise ValueError("no polygon or RLE")
            decoded = mask_utils.decode(rle)
        except DataError:
            raise
        except (ValueError, TypeError, KeyError) as e:
            raise DataError(f"{self.json_path}: annotation {ann.get('id')} of image {ann.get('image_id')} has a malformed "
                            f"segmentation ({e})") from None
        if decoded.shape[:2] != (h, w):
            raise DataError(f"{self.json_path}: annotation {ann.get('id')} is {decoded.shape[1]}x{decoded.shape[0]}, "
                            f"its image {w}x{h}")
        return decoded.astype(bool)


def splits_of(root: Path) -> list[str]:
    """The splits a COCO root holds: every ``annotations/instances_<split>.json``."""
    return sorted(p.stem[len("instances_"):] for p in (root / "annotations").glob("instances_*.json"))


def check_classes(classes: str) -> None:
    if classes not in ("coco", "voc"):
        raise UsageError(f"classes: expected 'coco' (81 classes) or 'voc' (VOC's 21), got '{classes}'")


def voc_classes() -> tuple[str, ...]:
    return VOC_CLASSES


def read(path: Path) -> np.ndarray:
    return read_image(path)
