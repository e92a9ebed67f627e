"""A classifier trained on one dataset and scored on another (``--train-dataset``): COCO photos in
VOC's classes train it, a VOC devkit is scored; classes that differ are refused before any work."""

from __future__ import annotations

import json

from click.testing import CliRunner
from test_coco import make_root
from test_voc2012 import devkit  # noqa: F401 (fixture)

from wssbench.cli import cli

FAST = ["--backbone", "resnet10t", "--epochs", "1", "--crop", "32", "--saliency", "none", "--refine", "none"]


def test_train_on_coco_in_voc_classes_score_on_voc(tmp_path, devkit):  # noqa: F811 (the fixture imported above)
    coco = make_root(tmp_path, split="train2017")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--dataset", "voc2012", "--data-root", str(devkit), "--split", "val",
                                      "--train-dataset", "coco", "--train-data-root", str(coco), "--train-split", "train2017",
                                      "-O", "train_dataset.classes=voc", *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    assert record["dataset"] == "voc2012" and record["split"] == "val" and record["n_images"] == 1
    assert record["config"]["train_dataset"] == "coco" and record["config"]["options"]["train_dataset"] == {"classes": "voc"}
    assert record["classifier"]["key"]["dataset"] == "coco" and record["classifier"]["key"]["split"] == "train2017"
    assert record["components"]["train_dataset"]["name"] == "coco"

    board = CliRunner().invoke(cli, ["leaderboard", str(tmp_path)])
    assert "(classifier trained on coco)" in board.output, board.output


def test_classes_must_match(tmp_path, devkit):  # noqa: F811
    coco = make_root(tmp_path, split="train2017")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--dataset", "voc2012", "--data-root", str(devkit), "--train-dataset", "coco",
                                      "--train-data-root", str(coco), "--train-split", "train2017", *FAST, "--out", str(out)])
    # the json holds 4 categories: 5 classes with background
    assert result.exit_code == 2 and "--train-dataset coco: its 5 classes are not dataset voc2012's 21" in result.output, result.output
    assert "-O train_dataset.classes=voc" in result.output and not out.exists()
