"""``wssbench explain`` on an image of the tiny synthetic dataset: the panel, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from test_saliency import one_thread  # noqa: F401 (fixture)
from wssbench.cli import WssbenchGroup
from wssbench.cli.explain import explain_command, jet
from wssbench.data.synthetic import CLASSES

TINY = ["-O", "dataset.preset=tiny", "--epochs", "1", "--device", "cpu"]
CLI = WssbenchGroup(commands={"explain": explain_command})  # the main group's error handling


def invoke(*args):
    return CliRunner().invoke(CLI, ["explain", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def image(tiny_dataset):
    return tiny_dataset.image_path(tiny_dataset.ids("val")[0])  # 64 x 64


@pytest.fixture(scope="module")
def first(image, tmp_path_factory):
    """The detected classes of the cached (or newly trained) tiny classifier."""
    out = tmp_path_factory.mktemp("explain") / "detected.png"
    result = invoke(image, *TINY, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_panel_of_detected_classes(first):
    out, record = first
    k = len(record["classes"])
    assert 1 <= k <= 3 and record["saliency"] == "gbp" and record["classmap"] == "fcn"
    assert all(c["class"] in CLASSES[1:] and 0 <= c["score"] <= 1 for c in record["classes"])
    with Image.open(out) as panel:  # 64 px images are enlarged to 256 px tiles, 8 px apart, 20 px captions
        assert panel.format == "PNG" and panel.size == (3 * 256 + 4 * 8, k * (256 + 20) + (k + 1) * 8)


def test_panel_from_checkpoint_with_chosen_classes(first, image, tmp_path):
    _, record = first
    out = tmp_path / "chosen.png"
    result = invoke(image, "--checkpoint", record["checkpoint"], "--classes", "horse,ring", "--saliency", "multilayer",
                    "--classmap", "none", "-O", "saliency.signal=map", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    with Image.open(out) as panel:  # two rows, no class-map column
        assert panel.size == (2 * 256 + 3 * 8, 2 * (256 + 20) + 3 * 8)
        tiles = np.asarray(panel.convert("RGB"))
    assert tiles[8 + 20 :, 8 + 256 + 8 :].std() > 0  # the heatmaps are drawn


def test_bad_image_path(tmp_path):
    result = invoke(tmp_path / "nope.png", *TINY)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.png'}: image not found"


def test_unknown_class_lists_the_names(image):
    result = invoke(image, *TINY, "--classes", "horse,unicorn")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --classes: unknown class 'unicorn'; available: {', '.join(CLASSES[1:])}"


def test_checkpoint_decides_the_backbone(first, image):
    result = invoke(image, "--checkpoint", first[1]["checkpoint"], "--backbone", "vgg16")
    assert result.exit_code == 2 and "--backbone" in result.stderr


def test_jet():
    assert jet(np.array([0.0, 0.5, 1.0])).tolist() == [[0, 0, 128], [128, 255, 128], [128, 0, 0]]
