"""PASCAL VOC 2012 segmentation, read from an extracted ``VOCtrainval_11-May-2012.tar``.

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png         palette PNG, 0..20 and 255 = ignore
    VOCdevkit/VOC2012/Annotations/<id>.xml               boxes with class names (image labels)
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png      optional, SBD-augmented masks (index PNG)
    VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt   optional, the 10,582 ids of psa/irn
    VOCdevkit[/VOC2012]/cls_labels.npy                   optional, psa/irn image labels

The SBD-augmented masks are not part of the official archive: unzip ``SegmentationClassAug.zip``
(as distributed with DeepLab / psa / irn) into ``VOC2012/`` to get the ``train_aug`` split.

With ``train_aug`` comes ``tune``: 500 images for choosing thresholds and weights, disjoint from
both scored splits (seeds are scored on ``train``, final masks on ``val``): the 500 ids of
``train_aug`` that are in neither ``train`` nor ``val`` (SBD's own images) with the smallest
BLAKE2b-64 digest of the id. A fixed rule, not a list, so that it ships without VOC data; on
psa's and irn's ``train_aug.txt`` (10,582 ids) it gives 500 ids whose sorted, newline-joined
list has the SHA-256 prefix :data:`TUNE_DIGEST`. ``ImageSets/Segmentation/tune.txt``, if
present, is used instead.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from functools import cached_property
from pathlib import Path

import numpy as np

from wssbench.data.layout import SegmentationDataset
from wssbench.errors import DataError
from wssbench.storage.cache import cache_dir

VOC2012_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC2012_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
ARCHIVE_NAME = "VOCtrainval_11-May-2012.tar"

CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

AUG_SPLIT = "train_aug"
AUG_MASK_DIR = "SegmentationClassAug"
TUNE_SPLIT = "tune"
TUNE_SIZE = 500
TUNE_DIGEST = "550e0e7df5f0d646"  # sha256(sorted tune ids, "\n"-joined)[:16] on psa/irn's train_aug.txt


def tune_ids(train_aug: list[str], scored: set[str], size: int = TUNE_SIZE) -> list[str]:
    """The tuning slice: the ``size`` ids of ``train_aug`` outside ``scored`` (train and val)
    with the smallest BLAKE2b-64 digest of the id, sorted."""
    pool = [i for i in train_aug if i not in scored]
    return sorted(sorted(pool, key=lambda i: hashlib.blake2b(i.encode(), digest_size=8).hexdigest())[:size])


def download_voc2012(root: Path, *, url: str = VOC2012_URL, md5: str = VOC2012_MD5, progress: bool = True) -> Path:
    """Fetch VOC 2012 into ``root/VOCdevkit/VOC2012`` and return that folder.

    Only ``VOCtrainval_11-May-2012.tar`` (2 GB, md5-checked) is fetched: the images, the official
    masks, the XML annotations the image labels come from, and the train/val lists (the SBD masks
    of ``train_aug`` have no official archive: unzip ``SegmentationClassAug.zip`` by hand). Nothing
    is fetched when ``root`` (or the VOCdevkit or VOC2012 folder it names) already holds a complete
    layout, and an archive already at ``root/VOCtrainval_11-May-2012.tar`` is used instead of
    downloading. :class:`OfflineError` when the network fails, :class:`DataError` for a corrupt or
    unsafe archive.
    """
    from wssbench.data.download import download_archive  # the network machinery: only when asked to download

    root = Path(root).expanduser()
    found = find_voc2012(root)
    if _is_complete(found):
        return found
    return download_archive(url, md5, root / "VOCdevkit" / "VOC2012", "VOCdevkit/VOC2012", _is_complete, root=root,
                            what="VOC 2012", progress=progress, name=ARCHIVE_NAME)


def _is_complete(voc_dir: Path) -> bool:
    try:
        VOC2012(str(voc_dir)).prepare()
    except DataError:
        return False
    return True


def default_root() -> Path:
    """Where ``wssbench data download voc2012`` puts the data by default."""
    return cache_dir("data", "VOCdevkit", "VOC2012")


def find_voc2012(root: str | Path) -> Path:
    """The VOC2012 folder for ``root``: VOC2012 itself, the VOCdevkit holding it, or their parent.

    A path that holds none of these is returned unchanged (``prepare`` reports what is missing).
    """
    root = Path(root).expanduser()
    if (root / "JPEGImages").is_dir():
        return root
    for candidate in (root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if candidate.is_dir():
            return candidate
    return root


class VOC2012(SegmentationDataset):
    """PASCAL VOC 2012 segmentation: 20 classes + background (train 1464, val 1449 images).

    Splits are the lists in ``ImageSets/Segmentation``, plus ``train_aug`` when the SBD masks
    (``SegmentationClassAug/``) are present. Image labels (option ``labels``): ``auto`` from
    ``cls_labels.npy`` when present, else from ``Annotations/<id>.xml``, else from the mask;
    ``main`` from the classification lists ``ImageSets/Main/<class>_trainval.txt`` as CCNN reads
    them (1: present; 0, an object marked difficult only, and -1: absent).
    """

    name = "voc2012"
    classes = CLASSES
    labels: str  # annotated here so that option parsing converts and checks it
    # capability: what 'wssbench data download' can fetch (the download module is loaded only then)
    downloads = {"voc2012": lambda root: download_voc2012(root)}

    def __init__(self, root: str | None = None, labels: str = "auto"):
        if labels not in ("auto", "main"):
            raise ValueError(f"labels: expected 'auto' or 'main', got '{labels}'")
        self.labels = labels
        given = Path(root) if root is not None else default_root()
        super().__init__(find_voc2012(given), given)

    def image_labels(self, image_id: str) -> np.ndarray:
        if self.labels == "main":
            table = self._main_labels
            if image_id not in table:
                raise DataError(f"{self.root / 'ImageSets/Main'}: image '{image_id}' is in no <class>_trainval.txt list")
            return table[image_id]
        return super().image_labels(image_id)

    @cached_property
    def _main_labels(self) -> dict[str, np.ndarray]:
        """``ImageSets/Main/<class>_trainval.txt`` -> {id: bool (20,)}: 1 present, 0 and -1 absent."""
        out: dict[str, np.ndarray] = {}
        for c, name in enumerate(self.classes[1:]):
            path = self.root / "ImageSets" / "Main" / f"{name}_trainval.txt"
            if not path.is_file():
                raise DataError(f"{path}: not found (-O dataset.labels=main reads VOC's classification lists)")
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) != 2 or parts[1] not in ("1", "0", "-1"):
                    if line.strip():
                        raise DataError(f"{path}: expected lines '<id> 1|0|-1', got {line.strip()!r}")
                    continue
                out.setdefault(parts[0], np.zeros(len(self.classes) - 1, bool))[c] = parts[1] == "1"
        return out

    def prepare(self) -> None:
        if not self.root.exists():
            raise DataError(
                f"{self.root}: PASCAL VOC 2012 not found; download it with "
                f"`wssbench data download voc2012 [--root DIR]` (then pass --data-root DIR if you chose one), "
                f"or pass --data-root pointing at an existing VOCdevkit folder"
            )
        super().prepare()

    def splits(self) -> list[str]:
        names = set(super().splits())
        if (self.root / AUG_MASK_DIR).is_dir():
            names.update((AUG_SPLIT, TUNE_SPLIT))
        return sorted(names)

    def ids(self, split: str) -> list[str]:
        listed = self.root / "ImageSets/Segmentation" / f"{split}.txt"
        if split == AUG_SPLIT and not listed.is_file() and (self.root / AUG_MASK_DIR).is_dir():
            # SegmentationClassAug holds every VOC trainval + SBD image (12,031); without the
            # val images that is exactly the 10,582 of psa/irn's train_aug.txt.
            val = set(super().ids("val"))
            return sorted(p.stem for p in (self.root / AUG_MASK_DIR).glob("*.png") if p.stem not in val)
        if split == TUNE_SPLIT and not listed.is_file():
            return tune_ids(self.ids(AUG_SPLIT), set(super().ids("train")) | set(super().ids("val")))
        return super().ids(split)

    def mask_path(self, image_id: str) -> Path:
        """The official mask, or the SBD one for a ``train_aug`` image that has no official mask."""
        official = super().mask_path(image_id)
        augmented = self.root / AUG_MASK_DIR / f"{image_id}.png"
        if not official.is_file() and augmented.is_file():
            return augmented
        return official

    def labels_fallback(self, image_id: str) -> np.ndarray:
        """Image labels from ``Annotations/<id>.xml``, or from the mask when there is no XML.

        Every ``object`` counts, ``difficult`` and ``truncated`` ones included, and names that
        are not VOC classes are skipped: this reproduces the cls_labels.npy of psa and irn.
        """
        path = self.root / "Annotations" / f"{image_id}.xml"
        if not path.is_file():
            return super().labels_fallback(image_id)
        try:
            tree = ET.parse(path)
        except ET.ParseError as e:
            raise DataError(f"{path}: unreadable annotation ({e})") from None
        present = np.zeros(self.num_classes - 1, dtype=bool)  # (C-1,), index c is label c + 1
        for obj in tree.getroot().iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name in self.classes[1:]:
                present[self.classes.index(name) - 1] = True
        return present
