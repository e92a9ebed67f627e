"""The presets against the values in the authors' released configs, each cited by file and line
(read with the search tool; transcribed here independently of the presets' own tables)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from wssbench.cli import cli
from wssbench.seed.config import build_config
from wssbench.segmentation.describe import build_segment_config
from wssbench.segmentation.presets import SEGMENT_PRESETS, segment_deviations

# TheLegendAli/DeepLab-Context @ 3b516dc, config/DeepLab-Weak-EM-Adapt/
EM_ADAPT = {
    "fc6_kernel": 4, "fc6_dilation": 4, "channels": 4096,  # train.prototxt:409-414 (kernel_size 4, hole 4, num_output 4096)
    "passes": 5, "bg_fraction": 0.4, "fg_fraction": 0.2,  # train.prototxt:493-495 (num_iter 5, bg 0.4, fg 0.2)
    "crop": 321, "flip": True, "scale": (1.0, 1.0),  # train.prototxt:37-38 (crop_size 321, mirror true; no scale)
    "batch_size": 20,  # train.prototxt:30
    "iterations": 6000, "lr": 1e-3, "lr_policy": "step", "lr_step": 2000, "lr_gamma": 0.1,  # solver.prototxt:3-9
    "momentum": 0.9, "weight_decay": 5e-4,  # solver.prototxt:10-11
    "head_lr_mult": 10.0, "bias_lr_mult": 2.0, "bias_decay": False,  # train.prototxt:467-468 (fc8 10/20), 62-65 (2x, decay 0)
}
# pathak22/ccnn @ aa3d3b2
CCNN = {
    "fc6_kernel": 4, "fc6_dilation": 4, "channels": 4096,  # models/fcn_8s/train_8s.prototxt (fc6 4x4, hole 4, 4096)
    "lr": 1e-6, "momentum": 0.99, "weight_decay": 5e-7, "iterations": 35000,  # src/train.py:31-38, 49-51
    "lr_policy": "fixed",  # src/train.py: step 40,000 > 35,000 iterations: the rate never changes
    "batch_size": 1, "crop": None, "flip": False,  # train_8s.prototxt:5-11 (whole images, no mirror)
    "head_lr_mult": 1.0,  # train_8s.prototxt:546-553 (the classifier's lr_mult 1)
}
# pathak22/caffe-ccnn @ f62faf14, fcn_mil/ (commit 6c06c6bd)
MIL_FCN = {
    "lr": 1e-4, "lr_policy": "step", "lr_step": 20000, "lr_gamma": 0.1,  # fcn_mil_solver.prototxt:6-9
    "momentum": 0.9, "weight_decay": 5e-4,  # fcn_mil_solver.prototxt:10-11
    "iter_size": 20, "batch_size": 1, "crop": None,  # fcn_mil_solver.prototxt:14, fcn_mil.prototxt:3-11 (one whole image)
    "head_lr_mult": 1.0, "flip": False,  # fcn_mil.prototxt:490-508 (score-fr lr_mult 1); no mirror in the data layer
}


def test_em_adapt_preset_is_the_released_config():
    config = build_segment_config({"preset": "em-adapt", "device": "cpu"})
    r, segnet, objective = config.recipe, config.options_for("segnet"), config.options_for("objective")
    assert {k: int(segnet[k]) for k in ("fc6_kernel", "fc6_dilation", "channels")} == {k: EM_ADAPT[k] for k in ("fc6_kernel", "fc6_dilation", "channels")}
    assert (int(objective["passes"]), float(objective["bg_fraction"]), float(objective["fg_fraction"])) == (5, 0.4, 0.2)
    for field in ("crop", "flip", "scale", "batch_size", "iterations", "lr", "lr_policy", "lr_step", "lr_gamma", "momentum",
                  "weight_decay", "head_lr_mult", "bias_lr_mult", "bias_decay"):
        assert getattr(r, field) == EM_ADAPT[field], field
    assert SEGMENT_PRESETS["em-adapt"].unverified == ()  # every solver value is the release's


def test_ccnn_preset_is_the_released_solver():
    config = build_segment_config({"preset": "ccnn", "device": "cpu"})
    segnet = config.options_for("segnet")
    assert (int(segnet["fc6_kernel"]), int(segnet["fc6_dilation"]), int(segnet["channels"])) == (4, 4, 4096)
    for field in ("lr", "momentum", "weight_decay", "iterations", "lr_policy", "batch_size", "crop", "flip", "head_lr_mult"):
        assert getattr(config.recipe, field) == CCNN[field], field
    assert segment_deviations(config) == [dict(d) for d in SEGMENT_PRESETS["ccnn"].departures]


def test_mil_fcn_preset_is_the_released_solver():
    config = build_config({"preset": "mil-fcn", "device": "cpu"})
    for field, value in MIL_FCN.items():
        assert getattr(config.recipe, field) == value, field


def test_a_user_change_to_the_solver_is_a_deviation_field_by_field():
    config = build_segment_config({"preset": "em-adapt", "epochs": 2, "device": "cpu"})
    changed = {d["option"]: d for d in segment_deviations(config) if "published" in d and d["option"].startswith(("recipe", "epochs"))}
    assert changed["recipe.iterations"]["published"] == 6000 and changed["recipe.iterations"]["used"] is None


def test_presets_command_lists_every_preset_and_prints_one_recipe():
    listed = CliRunner().invoke(cli, ["presets", "--json"])
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert {r["name"] for r in rows} >= {"mil-fcn", "fcn-gbp", "dcsm", "em-adapt", "ccnn", "stc"}
    assert all(r["published"]["miou"] for r in rows)
    one = json.loads(CliRunner().invoke(cli, ["presets", "stc", "--json"]).stdout)
    assert one["options"]["schedule.saliency"] == "u2netp" and one["stage"] == "segmentation"
    assert "abstract" in one["unverified"]["schedule.step3_simple"]
    assert any("DRFI" in d["published"] for d in one["departures"])
    dcsm = json.loads(CliRunner().invoke(cli, ["presets", "dcsm", "--json"]).stdout)
    assert "dcsm.m" in dcsm["unverified"]["refine"] and "448" in dcsm["unverified"]["crop"]
    bad = CliRunner().invoke(cli, ["presets", "nosuch"])
    assert bad.exit_code == 2 and "unknown preset 'nosuch'; available:" in bad.output
    assert "em-adapt" in CliRunner().invoke(cli, ["presets"]).stdout
