"""Stage 2 end to end on the tiny synthetic dataset: every objective trains and scores, the
record says its stage, the checkpoint is cached, and the command runs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wssbench.cli import cli
from wssbench.errors import UsageError
from wssbench.host.registry import default_registry
from wssbench.segmentation.config import SegmentConfig, SegRecipe
from wssbench.segmentation.run import resolve, segment
from wssbench.storage.io import write_json, write_mask

TINY = (("dataset", "preset", "tiny"), ("segnet", "encoder", "resnet10t"))
RECIPE = SegRecipe(epochs=1, batch_size=4, crop=48)


def gt_run(dataset, folder: Path, split: str = "train") -> Path:
    """A stand-in for ``wssbench run --split train``: its masks are the ground truth (mIoU 1)."""
    for image_id in dataset.ids(split):
        write_mask(folder / "masks" / f"{image_id}.png", dataset.load_mask(image_id))
    write_json(folder / "result.json", {
        "dataset": "synthetic", "split": split, "protocol": "seed quality (ground-truth image labels)",
        "n_images": len(dataset.ids(split)), "miou": 1.0, "pixel_accuracy": 1.0,
        "config": {"preset": None, "classmap": "fcn", "saliency": "gbp", "fusion": "threshold", "refine": ["densecrf"]},
    })
    return folder


@pytest.fixture(scope="module")
def masks_run(tiny_dataset, tmp_path_factory):
    return gt_run(tiny_dataset, tmp_path_factory.mktemp("gt-run"))


@pytest.mark.parametrize("objective", ["pseudo-masks", pytest.param("em-adapt", marks=pytest.mark.slow), pytest.param("ccnn", marks=pytest.mark.slow)])
def test_each_objective_trains_and_scores_on_val(objective, tiny_dataset, masks_run, tmp_path):
    masks = str(masks_run) if objective == "pseudo-masks" else None
    config = SegmentConfig(objective=objective, masks=masks, options=TINY, recipe=RECIPE)
    record = segment(config, default_registry(), tmp_path / "out")
    assert record["stage"] == "segmentation" and record["split"] == "val" and record["n_images"] == 12
    assert 0.0 <= record["miou"] <= 1.0
    assert np.asarray(record["confusion_matrix"]).sum() > 0
    loss = record["training"]["loss_history"]
    assert len(loss) == 1 and np.isfinite(loss[0]) and loss[0] > 0
    assert record["inference"] == {"scales": [1.0], "multiscale": False, "flip": False, "crf": False}
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 12
    if objective == "pseudo-masks":
        assert record["pseudo_masks"]["stage"] == "pseudo-mask" and record["pseudo_masks"]["miou"] == 1.0
        assert record["method"] == "deeplabv3plus/pseudo-masks on fcn+gbp/threshold/densecrf"
    else:
        assert record["pseudo_masks"] is None
    # the same config reads the network back from the cache, and segments identically
    again = segment(config, default_registry(), tmp_path / "again")
    assert again["training"]["cached"] and again["confusion_matrix"] == record["confusion_matrix"]


def test_multiscale_flip_and_crf_are_recorded(tiny_dataset, masks_run, tmp_path):
    config = SegmentConfig(masks=str(masks_run), options=TINY, recipe=RECIPE, scales=(0.5, 1.0), flip=True, crf=True)
    record = segment(config, default_registry(), tmp_path / "out")
    assert record["inference"] == {"scales": [0.5, 1.0], "multiscale": True, "flip": True, "crf": True}
    assert record["components"]["crf"]["options"]["bilateral_sxy"] == 67.0


def test_objectives_and_masks_must_agree(masks_run):
    registry = default_registry()
    with pytest.raises(UsageError, match="trains on pseudo-masks"):
        resolve(SegmentConfig(objective="pseudo-masks", options=TINY), registry)
    with pytest.raises(UsageError, match="image labels only"):
        resolve(SegmentConfig(objective="ccnn", masks=str(masks_run), options=TINY), registry)
    with pytest.raises(UsageError, match="masks of split 'train', the network trains on 'val'"):
        resolve(SegmentConfig(masks=str(masks_run), train_split="val", options=TINY), registry)


@pytest.mark.slow
def test_largefov_trains_on_a_tiny_vgg(tiny_dataset, tmp_path):
    config = SegmentConfig(segnet="deeplab-largefov", objective="em-adapt", recipe=RECIPE,
                           options=(("dataset", "preset", "tiny"), ("segnet", "encoder", "vgg11"), ("segnet", "channels", 64)))
    record = segment(config, default_registry(), tmp_path / "out")
    assert record["backbone"] == "vgg11" and np.isfinite(record["training"]["loss_history"][0])


def test_command_makes_pseudo_masks_on_the_fly(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [
        "segment", "--masks-run", "-O dataset.preset=tiny --epochs 1 --saliency none --refine none --workers 1",
        "-O", "dataset.preset=tiny", "--backbone", "resnet10t", "--epochs", "1", "--batch-size", "4", "--crop", "48",
        "--device", "cpu", "--out", "seg", "--json",
    ])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    pseudo = record["pseudo_masks"]
    assert pseudo["stage"] == "pseudo-mask" and pseudo["split"] == "train" and 0 <= pseudo["miou"] <= 1
    assert pseudo["protocol"].startswith("seed quality")  # ground-truth image labels on train
    assert Path(pseudo["run"], "masks").is_dir()


def test_command_preset_and_list(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(cli, ["list", "objective"])
    assert {"ccnn", "em-adapt", "pseudo-masks"} <= {line.split()[0] for line in listed.output.splitlines()}
    bad = runner.invoke(cli, ["segment", "--preset", "em-adapt", "--objective", "pseudo-masks", "-O", "dataset.preset=tiny"])
    assert bad.exit_code == 2 and "give --masks RUN_DIR" in bad.output


@pytest.mark.slow
def test_two_torchrun_ranks_train_the_same_network_as_one_process(tiny_dataset, masks_run, tmp_path):
    """gloo, 2 CPU ranks, each with half of every batch of 4: DDP averages the two half-batch
    gradients, which (every objective being a mean over images) is the full-batch gradient.
    Batch norm is frozen and dropout off, the two things that would legitimately differ per
    rank; what remains is float32 rounding in the all-reduce (about 1e-7 relative per step),
    so after 6 SGD steps the weights agree to 1e-4 and the losses to 1e-5 relative, and a
    handful of val pixels at most may flip where two logits are within that rounding."""
    import os
    import subprocess
    import sys

    from wssbench.storage.io import read_mask

    args = ["segment", "--masks", str(masks_run), "-O", "dataset.preset=tiny", "--backbone", "resnet10t",
            "-O", "segnet.aspp_dropout=0", "--bn", "frozen", "--epochs", "1", "--batch-size", "4", "--crop", "48",
            "--device", "cpu", "--loader-workers", "0", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "wssbench", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29547",
                          "-m", "wssbench", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert b["world_size"] == 2 and a["world_size"] == 1
    np.testing.assert_allclose(b["training"]["loss_history"], a["training"]["loss_history"], rtol=1e-5)
    wa = torch.load(a["training"]["checkpoint"], weights_only=True)["state_dict"]
    wb = torch.load(b["training"]["checkpoint"], weights_only=True)["state_dict"]
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-4, msg=name)
    masks = sorted((tmp_path / "one" / "masks").iterdir())
    assert [p.name for p in masks] == sorted(p.name for p in (tmp_path / "two" / "masks").iterdir())
    differ = sum(int((read_mask(p) != read_mask(tmp_path / "two" / "masks" / p.name)).sum()) for p in masks)
    assert differ <= 0.001 * 12 * 64 * 64
    assert abs(a["miou"] - b["miou"]) < 0.01


def test_leaderboard_never_ranks_a_network_against_seed_maps(tmp_path):
    from wssbench.leaderboard import build_groups, find_records

    base = {"dataset": "synthetic", "split": "val", "protocol": "segmentation", "n_images": 12, "pixel_accuracy": 0.9}
    write_json(tmp_path / "maps" / "result.json", {**base, "miou": 0.5, "stage": "seed", "config": {"classmap": "fcn", "saliency": "gbp",
                                                                                   "fusion": "threshold", "refine": ["densecrf"]}})
    write_json(tmp_path / "net" / "result.json", {**base, "miou": 0.4, "stage": "segmentation", "method": "em-adapt",
                                                  "backbone": "vgg16", "config": {"preset": "em-adapt"}})
    groups = build_groups(find_records(tmp_path), tmp_path, with_references=False)
    assert [(g.stage, [r.cells["method"] for r in g.rows]) for g in groups] == [
        ("seed", ["fcn+gbp/threshold/densecrf"]), ("segmentation", ["em-adapt"])]
    assert "segmentation stage, segmentation mIoU" in groups[1].caption
    assert groups[1].rows[0].cells["backbone"] == "vgg16" and not groups[1].rows[0].best


def test_a_third_party_network_and_objective_plug_in(tiny_dataset, tmp_path):
    from dataclasses import dataclass

    import torch.nn.functional as F

    import wssbench
    from wssbench.host.registry import build_registry

    @dataclass(frozen=True)
    class PixelNet:
        """A 3x3 convolution: the smallest segmentation network."""

        name = "pixel"
        mean = (0.5, 0.5, 0.5)
        std = (0.25, 0.25, 0.25)

        def build(self, num_classes, weights=None):
            return torch.nn.Conv2d(3, num_classes, 3, padding=1)

    @dataclass(frozen=True)
    class AllBackground:
        """Every valid pixel is background."""

        name = "all-background"
        needs_masks = False

        def __call__(self, logits, batch):
            target = torch.zeros(logits.shape[0], *logits.shape[-2:], dtype=torch.long)
            return F.cross_entropy(logits, target)

    class Plugin:
        @wssbench.hookimpl
        def register_segnets(self, register):
            register(PixelNet)

        @wssbench.hookimpl
        def register_objectives(self, register):
            register(AllBackground)

    registry = build_registry(plugins=[Plugin()])
    config = SegmentConfig(segnet="pixel", objective="all-background", options=(("dataset", "preset", "tiny"),),
                           recipe=SegRecipe(epochs=3, batch_size=4, crop=32, lr=0.5))
    record = segment(config, registry, tmp_path / "out")
    assert record["components"]["segnet"] == {"kind": "segnet", "name": "pixel", "plugin": "Plugin-0", "options": {}}
    predicted = np.asarray(record["confusion_matrix"])[:, :-1].sum(0)  # pixels per predicted class
    assert predicted[0] >= 0.95 * predicted.sum()  # it learnt its objective: (nearly) all background


def test_a_segment_description_becomes_the_config_with_the_preset_filling_the_rest():
    from wssbench.segmentation.describe import build_segment_config

    config = build_segment_config({"preset": "ccnn", "epochs": "2", "options": ("dataset.preset=tiny",), "device": "cpu"})
    assert (config.segnet, config.objective, config.crf, config.recipe.lr, config.recipe.epochs) == (
        "deeplab-largefov", "ccnn", True, 1e-6, 2)
    assert config.recipe.iterations is None  # the user's epochs replace the preset's 35,000 iterations
    assert config.options_for("segnet") == {"encoder": "vgg16", "pretrained": True, "fc6_kernel": "4",
                                            "fc6_dilation": "4", "channels": "4096"}
    config = build_segment_config({"backbone": "resnet10t", "pretrained": False, "multiscale": True, "device": "cpu"})
    assert config.options_for("segnet") == {"encoder": "resnet10t", "pretrained": False} and len(config.scales) == 4
    with pytest.raises(UsageError, match="'saliency' is not an option of preset 'em-adapt'"):
        build_segment_config({"preset": "em-adapt", "saliency": "gbp"})
    with pytest.raises(UsageError, match="epochs: expected int"):
        build_segment_config({"epochs": "two"})


def test_deviations_from_the_segment_preset_are_listed():
    from wssbench.segmentation.describe import build_segment_config
    from wssbench.segmentation.presets import SEGMENT_PRESETS, segment_deviations

    faithful = build_segment_config({"preset": "em-adapt", "device": "cpu"})
    assert segment_deviations(faithful) == [dict(d) for d in SEGMENT_PRESETS["em-adapt"].departures]
    changed = build_segment_config({"preset": "em-adapt", "segnet": "deeplabv3plus", "backbone": "resnet10t",
                                    "pretrained": False, "lr": 0.01, "device": "cpu"})
    options = {d["option"]: (d["published"], d["used"]) for d in segment_deviations(changed)}
    assert options["segnet"] == ("deeplab-largefov", "deeplabv3plus")
    assert options["segnet.encoder"] == ("vgg16", "resnet10t") and options["segnet.pretrained"] == (True, False)
    assert options["lr"] == (0.001, 0.01) and "crf" not in options and "objective" not in options
    assert "VGG-16 weights" not in options  # no VGG-16 weights loaded: the departure in loading them is moot
    scratch = build_segment_config({"preset": "em-adapt", "pretrained": False, "device": "cpu"})
    assert "VGG-16 weights" not in {d["option"] for d in segment_deviations(scratch)}
    # a local checkpoint of the same network is the published start
    weights = build_segment_config({"preset": "em-adapt", "weights": "vgg16.pth", "pretrained": False, "device": "cpu"})
    assert "segnet.pretrained" not in {d["option"] for d in segment_deviations(weights)}


@pytest.mark.slow
def test_run_preset_em_adapt_trains_a_network_and_records_its_deviations(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [
        "run", "--preset", "em-adapt", "-O", "dataset.preset=tiny", "-O", "segnet.channels=32", "--backbone", "vgg11",
        "--no-pretrained", "--epochs", "1", "--batch-size", "4", "--crop", "48", "--device", "cpu", "--limit", "4",
        "--out", "em", "--json",
    ])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["stage"] == "segmentation" and record["method"] == "em-adapt" and record["split"] == "val"
    assert record["inference"]["crf"] is True and record["config"]["objective"] == "em-adapt"
    assert {"segnet.encoder", "segnet.pretrained", "segnet.channels"} <= {d["option"] for d in record["deviations"]}
    assert "deviations from the published recipe" in result.stderr
    refused = CliRunner().invoke(cli, ["run", "--preset", "ccnn", "--saliency", "gbp", "--out", "x"])
    assert refused.exit_code == 2 and "'saliency' is not an option of preset 'ccnn'" in refused.output


@pytest.mark.slow
def test_a_bench_row_can_name_a_segmentation_preset(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.toml").write_text(
        '[defaults]\ndataset = "synthetic"\noptions = { "dataset.preset" = "tiny" }\ndevice = "cpu"\n'
        '[[rows]]\nlabel = "CCNN"\npreset = "ccnn"\nbackbone = "vgg11"\npretrained = false\n'
        'options = { "segnet.channels" = 32 }\nepochs = 1\ncrop = 48\nbatch_size = 4\nlimit = 4\n'
        'published = { miou = 34.5, dataset = "voc2012", split = "val", source = "Pathak et al." }\n'
    )
    first = CliRunner().invoke(cli, ["bench", "b.toml", "--out", "runs", "--json"])
    assert first.exit_code == 0, first.output
    record = json.loads((tmp_path / "runs" / "CCNN" / "result.json").read_text())
    assert record["stage"] == "segmentation" and record["bench_label"] == "CCNN" and record["published"]["miou"] == 34.5
    assert record["config"]["options"]["segnet"]["fc6_kernel"] == 4  # the preset's head, kept
    again = CliRunner().invoke(cli, ["bench", "b.toml", "--out", "runs", "--json"])
    assert again.exit_code == 0 and "done already" in again.stderr
    (tmp_path / "b.toml").write_text(
        '[[rows]]\nlabel = "CCNN"\npreset = "ccnn"\ntune = { "fusion.bg_threshold" = [0.1, 0.2] }\n')
    refused = CliRunner().invoke(cli, ["bench", "b.toml", "--out", "runs2"])
    assert refused.exit_code == 2 and "trains a segmentation network" in refused.output


def test_run_segnet_flag_reaches_the_segmentation_preset_and_is_refused_without_one(monkeypatch):
    from wssbench.cli import run as run_cli

    seen = []
    monkeypatch.setattr(run_cli, "run_segmentation", lambda config, out, as_json: seen.append(config))
    chosen = CliRunner().invoke(cli, ["run", "--preset", "stc", "--segnet", "deeplab-largefov", "--device", "cpu"])
    assert chosen.exit_code == 0, chosen.output
    assert seen[0].segnet == "deeplab-largefov" and seen[0].schedule == "stc"
    refused = CliRunner().invoke(cli, ["run", "--segnet", "deeplabv3plus"])
    assert refused.exit_code == 2 and "--segnet: only with a preset that trains a segmentation network" in refused.output
