"""The pseudo-mask stage: the ``psa`` and ``irn`` components (defaults = the authors' recipe, label
values out, images without a class), ``wssbench pseudo-mask`` end to end on the tiny dataset, its
record (stage, deviations, intervals), the masks ``wssbench segment`` trains on, and bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from wssbench.cli import cli
from wssbench.host.options import defaults
from wssbench.host.registry import default_registry
from wssbench.pseudomask.config import PseudoMaskConfig, check, deviations
from wssbench.seed.components import check as check_seeds
from wssbench.seed.config import build_config
from wssbench_plugins import _irn, _psa
from wssbench_plugins.backbones import TimmBackbones

pytestmark = pytest.mark.usefixtures("one_thread")

REGISTRY = default_registry()
SEEDS = "--classmap cam --saliency none --backbone resnet10t --epochs 1 --crop 48"
FAST = {"psa": ["-O", "pseudomask.epochs=1", "-O", "pseudomask.batch_size=4", "-O", "pseudomask.crop_size=64",
                "-O", "pseudomask.radius=3"],  # the tiny dataset's 64 px images: radius 5 needs more than 8 x 8 cells
        "irn": ["-O", "pseudomask.epochs=1", "-O", "pseudomask.batch_size=4", "-O", "pseudomask.crop_size=80"]}


def test_defaults_are_the_authors_recipe():
    psa, irn = (defaults(REGISTRY.get("pseudomask", name).factory) for name in ("psa", "irn"))
    assert (psa["low_alpha"], psa["high_alpha"], psa["walk_alpha"], psa["beta"], psa["log_t"], psa["radius"]) == (
        _psa.LOW_ALPHA, _psa.HIGH_ALPHA, _psa.RW_ALPHA, _psa.BETA, _psa.LOG_T, _psa.RADIUS)
    training = _psa.Training()
    assert (psa["epochs"], psa["batch_size"], psa["crop_size"], psa["lr"], psa["weight_decay"]) == (
        training.epochs, training.batch_size, training.crop_size, training.lr, training.weight_decay) == (8, 8, 448, 0.1, 5e-4)
    assert (irn["fg_threshold"], irn["bg_threshold"], irn["train_radius"], irn["walk_radius"], irn["beta"], irn["exp_times"],
            irn["sem_seg_bg"]) == (_irn.FG_THRESHOLD, _irn.BG_THRESHOLD, _irn.TRAIN_RADIUS, _irn.WALK_RADIUS, _irn.BETA,
                                   _irn.EXP_TIMES, _irn.SEM_SEG_BG)
    training = _irn.Training()
    assert (irn["epochs"], irn["batch_size"], irn["crop_size"], irn["lr"], irn["weight_decay"]) == (
        training.epochs, training.batch_size, training.crop_size, training.lr, training.weight_decay) == (3, 32, 512, 0.1, 1e-4)
    assert REGISTRY.get("pseudomask", "irn").factory.output_stride == 16 and REGISTRY.get("pseudomask", "psa").factory.output_stride == 8


def _seeds(rng, n=4, side=96):
    """Images with one bright square, CAMs on the square for class label 7; the last has no class."""
    out = []
    for i in range(n):
        image = rng.integers(0, 60, size=(side, side, 3), dtype=np.uint8)
        y, x = rng.integers(8, side // 2, size=2)
        mask = np.zeros((side, side), bool)
        mask[y: y + side // 3, x: x + side // 3] = True
        image[mask] = (230, 200, 40)
        labels = np.array([7]) if i < n - 1 else np.zeros(0, np.int64)
        cams = (mask * 0.9 + 0.02).astype(np.float32)[None][: len(labels)]
        out.append(SimpleNamespace(image_id=str(i), image=image, labels=labels, class_maps=cams))
    return out


@pytest.mark.parametrize("name, output_stride, options", [
    ("psa", 8, {"epochs": 1, "batch_size": 2, "crop_size": 96}),
    ("irn", 16, {"epochs": 1, "batch_size": 2, "crop_size": 96}),
])
def test_methods_give_label_values_and_background_without_classes(name, output_stride, options):
    seeds = _seeds(np.random.default_rng(0))
    method = REGISTRY.create("pseudomask", name, **options)
    with pytest.raises(RuntimeError, match="call fit"):
        method(seeds[0])
    backbone, norm = TimmBackbones(output_stride=output_stride).build("test_resnet")
    info = method.fit(seeds, backbone, norm, seed=0)
    assert info["steps"] == 2 and len(info["step_losses"]) == 2 and np.isfinite(info["loss_history"]).all()
    for s in seeds:
        labels = method(s)
        assert labels.shape == s.image.shape[:2] and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, *s.labels.tolist()}  # label values of the image's own classes
    assert not method(seeds[-1]).any()  # no class: all background


def test_deviations_name_what_departs_from_the_recipe():
    authors = build_config(classes_from="labels", split="train", classmap="cam", saliency=None, backbone="resnet50",
                           pretrained=True, options=["classmap.scales=1.0,0.5,1.5,2.0", "classmap.flip=true"])
    config = check(PseudoMaskConfig(check_seeds(authors, REGISTRY), "irn", (("beta", "10"),)), REGISTRY)
    assert deviations(config, REGISTRY) == []  # beta 10 is the authors' own, and so is an ImageNet ResNet-50
    scratch = PseudoMaskConfig(config.seeds, "irn", config.options, pretrained=False)
    assert deviations(scratch, REGISTRY) == [
        {"option": "backbone", "published": "ResNet-50 (ImageNet)", "used": "resnet50 (random)"}]
    single = PseudoMaskConfig(check_seeds(build_config(classes_from="labels", split="train", classmap="gradcam", saliency=None),
                                          REGISTRY), "psa", (("epochs", 2),))
    assert deviations(single, REGISTRY) == [
        {"option": "pseudomask.epochs", "published": 8, "used": 2},
        {"option": "backbone", "published": "ResNet-38 (ImageNet)", "used": "resnet10t (random)"},
        {"option": "seeds.classmap", "published": "cam", "used": "gradcam"},
        {"option": "seeds.scales", "published": "1.0,0.5,1.5,2.0", "used": "1.0"},
        {"option": "seeds.flip", "published": True, "used": False},
    ]


def _invoke(*args):
    return CliRunner().invoke(cli, ["pseudo-mask", "-O", "dataset.preset=tiny", *args])


@pytest.mark.parametrize("name", ["psa", "irn"])
def test_pseudo_mask_command_end_to_end(name, tmp_path):
    out = tmp_path / name
    result = _invoke("--method", name, "--seeds", SEEDS, *FAST[name], "--backbone", "test_resnet", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    assert record["stage"] == "pseudo-mask" and record["split"] == "train" and record["n_images"] == 24
    assert record["protocol"] == "seed quality (ground-truth image labels)"
    assert record["method"].startswith(f"{name} [") and record["method"].endswith(" on cam")
    assert 0 < record["miou"] < 1 and record["ci95"][0] <= record["miou"] <= record["ci95"][1]
    assert record["components"]["pseudomask"]["name"] == name and set(record["components"]) == {"pseudomask", "dataset", "backbone", "classmap"}
    assert {d["option"] for d in record["deviations"]} >= {"pseudomask.epochs", "backbone", "seeds.scales", "seeds.flip"}
    assert record["training"]["steps"] == 6 and record["classifier"]["map_split"] == "train"
    assert any("momentum slot" in note for note in record["code_over_paper"])
    assert len(list((out / "masks").glob("*.png"))) == 24 and (out / "counts.npz").is_file()
    assert f"{name} [" in result.output and "(stage pseudo-mask)" in result.output
    assert record["training"]["split"] == "train" and record["training"]["n_images"] == 24

    # the masks are what 'wssbench segment' trains on, and its record names them
    seg = CliRunner().invoke(cli, ["segment", "-O", "dataset.preset=tiny", "--masks", str(out), "--epochs", "1", "--crop", "48",
                                   "--backbone", "resnet10t", "--out", str(tmp_path / "seg")])
    assert seg.exit_code == 0, seg.output
    pseudo = json.loads((tmp_path / "seg" / "result.json").read_text())["pseudo_masks"]
    assert pseudo["stage"] == "pseudo-mask" and pseudo["method"] == record["method"] and pseudo["miou"] == record["miou"]


def test_learning_on_one_split_and_walking_another(tmp_path):
    out = tmp_path / "val"
    result = _invoke("--split", "val", "--fit-split", "train", "--seeds", SEEDS, *FAST["psa"], "--backbone", "test_resnet",
                     "--out", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    assert record["split"] == "val" and record["n_images"] == 12 and len(list((out / "masks").glob("*.png"))) == 12
    assert record["training"]["split"] == "train" and record["training"]["n_images"] == 24 and record["training"]["steps"] == 6
    assert record["config"]["pseudomask"]["fit_split"] == "train"


@pytest.mark.parametrize("args, message", [
    (["--fit-split", "nosuch"], "nosuch"),
    (["--seeds", "--classmap cam"], "add --saliency none"),
    (["--seeds", "--classmap none --saliency none"], "--seeds: pseudo-masks walk class maps"),
    (["--seeds", "--no-such-flag"], "--seeds: No such option"),
    (["--seeds", "--classmap cam --saliency none --dataset voc2012"], "--seeds: give --dataset to 'wssbench pseudo-mask' itself"),
    (["-O", "classmap.flip=true"], "class-map options go in --seeds"),
    (["-O", "pseudomask.crop_size=60"], "-O pseudomask.crop_size=60: its 8 x 8 grid at stride 8 is too small"),
    (["-O", "pseudomask.nosuch=1"], "nosuch"),
    (["--method", "nosuch"], "nosuch"),
])
def test_bad_input_fails_in_one_line_before_any_work(args, message, tmp_path):
    out = tmp_path / "out"
    result = _invoke(*args, "--out", str(out))
    assert result.exit_code != 0 and message in result.output, result.output
    assert not out.exists()


def test_a_folder_that_is_not_a_run_is_never_overwritten(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = _invoke("--seeds", SEEDS, *FAST["psa"], "--out", str(out))
    assert result.exit_code == 2 and "notes.txt" in result.output, result.output  # a usage error
    assert (out / "notes.txt").read_text() == "mine"


BENCH = """
title = "pseudo-masks on the tiny set"
[defaults]
dataset = "synthetic"
options = { "dataset.preset" = "tiny" }
backbone = "resnet10t"
epochs = 1
crop = 48
[[rows]]
label = "PSA"
split = "train"
classmap = "cam"
seeds = [0, 1]
pseudomask = { method = "psa", backbone = "test_resnet", options = { epochs = 1, batch_size = 4, crop_size = 64, radius = 3 } }
"""


def test_bench_rows_make_pseudo_masks_per_seed_and_resume(tmp_path):
    bench = tmp_path / "bench.toml"
    bench.write_text(BENCH)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["bench", str(bench), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads((out / "PSA" / f"seed-{s}" / "result.json").read_text()) for s in (0, 1)]
    assert [r["stage"] for r in records] == ["pseudo-mask"] * 2 and [r["seed"] for r in records] == [0, 1]
    assert all(r["bench_label"] == "PSA" and r["split"] == "train" for r in records)
    assert records[0]["config"]["classes_from"] == "labels" and records[0]["config"]["saliency"] is None
    again = CliRunner().invoke(cli, ["bench", str(bench), "--out", str(out)])
    assert again.exit_code == 0 and again.output.count("done already") == 2, again.output
    board = CliRunner().invoke(cli, ["leaderboard", str(out)])
    assert "pseudo-mask stage" in board.output and board.output.count("| psa [") == 1 and " ± " in board.output, board.output  # one row, 2 seeds


def test_bench_refuses_a_malformed_pseudo_mask_row(tmp_path):
    bench = tmp_path / "bench.toml"
    bench.write_text(BENCH.replace('method = "psa", ', 'nethod = "psa", '))
    result = CliRunner().invoke(cli, ["bench", str(bench), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "row 'PSA': pseudomask: expected a table with 'method'" in result.output, result.output
    assert not (tmp_path / "out").exists()
