"""The ``coco`` dataset on a tiny COCO root built here: masks from polygons and RLE, crowds,
overlaps, VOC's classes, labels, bad input, and a run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wssbench.cli import cli
from wssbench.errors import DataError, UsageError
from wssbench.host.registry import default_registry

pytest.importorskip("pycocotools")
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 10, "name": "traffic light"}, {"id": 17, "name": "cat"}]


def square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def rle_of(mask):
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def make_root(tmp_path: Path, split: str = "val2017", extra_annotations=(), drop_image=False) -> Path:
    root = tmp_path / "coco"
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    h, w = 20, 30
    images = [{"id": 7, "file_name": "000000000007.jpg", "height": h, "width": w},
              {"id": 8, "file_name": "000000000008.jpg", "height": h, "width": w}]
    for image in images[: 1 if drop_image else 2]:
        Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(root / split / image["file_name"])
    crowd = np.zeros((h, w), bool)
    crowd[15:20, 0:5] = True
    annotations = [
        {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 200.0, "segmentation": square(0, 0, 20, 10)},  # person
        {"id": 2, "image_id": 7, "category_id": 17, "iscrowd": 0, "area": 16.0, "segmentation": square(4, 4, 8, 8)},  # cat over it
        {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 1, "area": 25.0, "segmentation": rle_of(crowd)},  # a crowd
        {"id": 4, "image_id": 7, "category_id": 10, "iscrowd": 0, "area": 20.0, "segmentation": square(25, 0, 30, 4)},  # not VOC
        {"id": 5, "image_id": 8, "category_id": 10, "iscrowd": 0, "area": 20.0, "segmentation": square(0, 0, 5, 4)},
        *extra_annotations,
    ]
    (root / "annotations" / f"instances_{split}.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return root


def dataset(root, classes="coco"):
    return default_registry().create("dataset", "coco", root=str(root), classes=classes)


def test_polygons_rle_crowds_and_the_overlap_rule(tmp_path):
    ds = dataset(make_root(tmp_path))
    ds.prepare()
    assert ds.classes == ("background", "person", "car", "traffic light", "cat") and ds.ids("val2017") == ["000000000007", "000000000008"]
    mask = ds.load_mask("000000000007")
    assert mask.shape == (20, 30)
    # pycocotools rasterises the polygon (0,0)-(20,10) as columns 0..19 and rows 0..9 (its own convention, checked by hand)
    assert (mask[0:10, 9:20] == 1).all() and (mask[5:8, 5:8] == 4).all()  # the smaller cat lies on the person
    assert (mask[16:20, 0:5] == 255).all()  # the crowd is ignored
    assert (mask[0:4, 26:30] == 3).all() and (mask[12:15, 10:20] == 0).all()
    np.testing.assert_array_equal(ds.image_labels("000000000007"), [True, False, True, True])  # no label from the crowd


def test_voc_classes_make_every_other_category_background(tmp_path):
    ds = dataset(make_root(tmp_path), classes="voc")
    assert ds.num_classes == 21 and ds.classes[15] == "person" and ds.classes[8] == "cat"
    mask = ds.load_mask("000000000007")
    assert (mask[0:4, 26:30] == 0).all()  # a traffic light: not a VOC class, background
    assert (mask[0:10, 9:20] == 15).all() and (mask[5:8, 5:8] == 8).all() and (mask[16:20, 0:5] == 255).all()
    assert not ds.image_labels("000000000008").any()  # stays in the split, all background
    ds.check_files(ds.ids("val2017"))


@pytest.mark.parametrize("problem, message", [
    ("missing json", "instances_val2017.json: split 'val2017' not found; available: train2017"),
    ("absent image", "000000000008.jpg: image listed in the annotations but not found"),
    ("unknown category", "annotation 9 has category 99, which is not among the file's categories"),
    ("malformed polygon", "annotation 9 of image 7 has a malformed segmentation"),
    ("no VOC object", "none of the 1 images holds an object of VOC's classes"),
])
def test_bad_input_is_one_line_naming_the_file_or_id(tmp_path, problem, message):
    extra = {"unknown category": [{"id": 9, "image_id": 7, "category_id": 99, "iscrowd": 0, "segmentation": square(0, 0, 2, 2)}],
             "malformed polygon": [{"id": 9, "image_id": 7, "category_id": 1, "iscrowd": 0, "segmentation": [[1, 2, 3]]}]}
    root = make_root(tmp_path, extra_annotations=extra.get(problem, ()), drop_image=problem == "absent image")
    if problem == "missing json":
        (root / "annotations" / "instances_val2017.json").unlink()
        (root / "annotations" / "instances_train2017.json").write_text(json.dumps({"images": [], "annotations": [], "categories": CATEGORIES}))
    ds = dataset(root, classes="voc")
    with pytest.raises(DataError, match=message):
        if problem == "missing json":
            ds.ids("val2017")
        elif problem == "no VOC object":
            ds.check_files(["000000000008"])
        elif problem == "malformed polygon":
            ds.load_mask("000000000007")
        else:
            ds.check_files(ds.ids("val2017"))
    with pytest.raises(UsageError):
        dataset(root, classes="pascal")


def test_a_run_end_to_end_in_voc_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    root = make_root(tmp_path, split="train2017")
    make_root(tmp_path, split="val2017") if not (root / "val2017").exists() else None
    result = CliRunner().invoke(cli, [
        "run", "--dataset", "coco", "--data-root", str(root), "--split", "val2017", "--train-split", "train2017",
        "-O", "dataset.classes=voc", "--backbone", "resnet10t", "--epochs", "1", "--crop", "16", "--refine", "none",
        "--workers", "1", "--json", "--out", str(tmp_path / "out"),
    ])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["dataset"] == "coco" and record["n_images"] == 2 and len(record["per_class_iou"]) == 21
