"""Dataset ``coco``: MS-COCO 2014 / 2017 in COCO's own layout, semantic masks from the instance
annotations (:mod:`wssbench_plugins._coco` says how), in COCO's 81 classes or VOC's 21."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

import wssbench
from wssbench.data.layout import UnknownSplitError
from wssbench.errors import DataError
from wssbench.storage.cache import cache_dir

# The official archives (images.cocodataset.org) and their md5 as widely cited (COCO publishes none;
# the same values appear in torchvision's R port and several download scripts)
ARCHIVES = {
    "2017": {
        "train2017.zip": ("http://images.cocodataset.org/zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2"),
        "val2017.zip": ("http://images.cocodataset.org/zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80"),
        "annotations_trainval2017.zip": ("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                                         "f4bbac642086de4f52a3fdda2de5fa2c"),
    },
    "2014": {
        "train2014.zip": ("http://images.cocodataset.org/zips/train2014.zip", "0da8cfa0e090c266b78f30e2d2874f1a"),
        "val2014.zip": ("http://images.cocodataset.org/zips/val2014.zip", "a3d79f5ed8d289b7a7554ce06a5782b3"),
        "annotations_trainval2014.zip": ("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
                                         "0a379cfc70b0e71301e0f377548639bd"),
    },
}


def download(year: str, root: Path, progress: bool = True) -> Path:
    """Fetch COCO ``year``'s images and instance annotations into ``root`` (COCO's layout) and
    return ``root``; archives already in ``root`` are used, each checked against its md5."""
    import tempfile  # the download machinery: only when asked to download

    from wssbench.data.download import check_md5, extract_zip, fetch

    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    names = ", ".join(ARCHIVES[year])
    for name, (url, md5) in ARCHIVES[year].items():
        marker = root / f".{name}.extracted"
        if marker.is_file():
            continue
        archive = root / name
        with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=root) as tmp:
            if not archive.is_file():
                fetch(url, Path(tmp) / name, f"COCO {year}",
                      f"download {names} from https://cocodataset.org/#download into {root} and run again", progress)
                archive = Path(tmp) / name
            check_md5(archive, md5, str(archive))
            extract_zip(archive, root, str(archive))
        marker.touch()
    return root


class Coco:
    """MS-COCO (Lin et al. 2014) in COCO's layout: 81 classes (-O dataset.classes=voc: VOC's 21), masks from the instance annotations."""

    name = "coco"
    downloads = {"coco2017": lambda root: download("2017", root), "coco2014": lambda root: download("2014", root)}

    def __init__(self, root: str | None = None, classes: str = "coco"):
        from wssbench_plugins._coco import check_classes

        check_classes(classes)
        self.classes_option = classes
        self.root = Path(root).expanduser() if root is not None else cache_dir("data", "coco")
        self._splits: dict[str, object] = {}

    @cached_property
    def classes(self) -> tuple[str, ...]:
        from wssbench_plugins._coco import voc_classes

        if self.classes_option == "voc":
            return voc_classes()
        split = next(iter(self.splits()), None)
        if split is None:
            raise DataError(f"{self.root / 'annotations'}: no instances_<split>.json")
        names = {int(c["id"]): c["name"] for c in self._categories(split)}
        return ("background", *(names[i] for i in sorted(names)))

    def _categories(self, split: str) -> list[dict]:
        import json

        path = self.root / "annotations" / f"instances_{split}.json"
        try:
            return json.loads(path.read_text())["categories"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: not a COCO instances file ({type(e).__name__}: {e})") from None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prepare(self) -> None:
        if not (self.root / "annotations").is_dir():
            raise DataError(f"{self.root}: not a COCO root (no annotations/); 'wssbench data download coco2017 --root DIR' "
                            f"fetches COCO 2017, or download it from https://cocodataset.org/#download")

    def splits(self) -> list[str]:
        from wssbench_plugins._coco import splits_of

        return splits_of(self.root)

    def check_split(self, split: str) -> None:
        if split not in self.splits():
            raise UnknownSplitError(f"{self.root / 'annotations' / f'instances_{split}.json'}: split '{split}' not found; "
                                    f"available: {', '.join(self.splits()) or 'none'}")

    def _split(self, split: str):
        if split not in self._splits:
            from wssbench_plugins._coco import CocoSplit

            self.check_split(split)
            self._splits[split] = CocoSplit(self.root, split, self.classes_option)
        return self._splits[split]

    def _owner(self, image_id: str):
        for split in self.splits():
            s = self._split(split)
            if image_id in s.images:
                return s
        raise DataError(f"{self.root}: image '{image_id}' is in no split's annotations")

    def ids(self, split: str) -> list[str]:
        ids = self._split(split).ids()
        if not ids:
            raise DataError(f"{self._split(split).json_path}: split '{split}' has no image")
        return ids

    def check_files(self, ids: list[str]) -> None:
        missing = [p for p in (self._owner(i).image_path(i) for i in ids) if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"{missing[0]}: image listed in the annotations but not found{more}")
        if self.classes_option == "voc":
            labelled = any(self.image_labels(i).any() for i in ids)
            if not labelled:
                raise DataError(f"{self.root}: none of the {len(ids)} images holds an object of VOC's classes")

    def image_path(self, image_id: str) -> Path:
        return self._owner(image_id).image_path(image_id)

    def load_image(self, image_id: str) -> np.ndarray:
        from wssbench_plugins._coco import read

        return read(self.image_path(image_id))

    def load_mask(self, image_id: str) -> np.ndarray:
        return self._owner(image_id).mask(image_id)

    def load_pair(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.load_image(image_id), self.load_mask(image_id)
        if image.shape[:2] != mask.shape:
            raise DataError(f"{self.image_path(image_id)}: image {image.shape[1]}x{image.shape[0]}, annotations say "
                            f"{mask.shape[1]}x{mask.shape[0]}")
        return image, mask

    def image_labels(self, image_id: str) -> np.ndarray:
        return self._owner(image_id).labels(image_id, self.num_classes - 1)


@wssbench.hookimpl
def register_datasets(register):
    register(Coco)
