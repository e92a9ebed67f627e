"""One assembly path (build_config), the Python API, re-running a record, and the shared forward pass."""

import json

import numpy as np
import pytest
import torch

import wssbench
from wssbench.classifier.training import TrainRecipe
from wssbench.errors import DataError, UsageError
from wssbench.methods.forward import plain_forward
from wssbench.seed.config import RunConfig, build_config, config_from_record, description_of, merge
from wssbench.seed.presets import PRESETS

TINY = {"options": {"dataset.preset": "tiny"}, "epochs": 1, "device": "cpu", "workers": 1}


def test_defaults_live_in_the_dataclasses():
    config = build_config(device="cpu", workers=1, loader_workers=0)
    assert config == RunConfig(device="cpu", workers=1, loader_workers=0)
    assert config.recipe == TrainRecipe()


def test_preset_fills_only_what_is_not_given():
    config = build_config(preset="mil-fcn", pooling="lse", device="cpu")
    assert config.preset == "mil-fcn"
    assert config.pooling == "lse"  # given: wins over the preset's gmp
    assert config.saliency is None and config.refine == ()  # the preset's "none" choices
    dcsm = PRESETS["dcsm"].options
    mine = build_config(preset="dcsm", options=["fusion.bg_threshold=0.3"], device="cpu")
    assert ("fusion", "bg_threshold", "0.3") in mine.options  # merged with the preset's options
    assert len(mine.options) == len(merge(dcsm)["options"]) + 1


def test_option_spellings_merge_per_key():
    merged = merge({"options": {"dataset.preset": "tiny", "fusion.weight": 0.5}},
                   {"options": ["fusion.weight=0.25"]}, {"options": {"densecrf": {"iterations": 5}}})
    assert sorted(merged["options"]) == [("dataset", "preset", "tiny"), ("densecrf", "iterations", 5), ("fusion", "weight", "0.25")]


@pytest.mark.parametrize("description, message", [
    ({"epoch": 3}, "unknown run option 'epoch'"),
    ({"epochs": "three"}, "epochs: expected int"),
    ({"epochs": 2.5}, "epochs: expected int"),
    ({"pretrained": "maybe"}, "pretrained: expected bool"),
    ({"preset": "nosuch"}, "unknown preset 'nosuch'"),
    ({"refine": ["none", "densecrf"]}, "--refine none"),
    ({"options": ["fusion"]}, "STAGE.KEY=VALUE"),
    ({"recipe": {"epochz": 1}}, "recipe: unknown field 'epochz'"),
])
def test_bad_descriptions_name_the_option(description, message):
    with pytest.raises(UsageError, match=message):
        build_config({**description, "device": "cpu"}, where="row 'x': ")


def test_strings_are_converted_like_the_command_line():
    config = build_config(epochs="3", lr="0.1", pretrained="false", limit="4", refine="none", saliency="none", device="cpu")
    assert (config.recipe.epochs, config.recipe.lr, config.pretrained, config.limit) == (3, 0.1, False, 4)
    assert config.refine == () and config.saliency is None


def test_description_round_trip():
    config = build_config(preset="fcn-gbp", epochs=2, crop=64, seed=3, options={"fusion.bg_threshold": 0.2}, device="cpu", workers=2)
    again = build_config(description_of(config))
    assert dataclasses_equal(again, config, ignore=("preset",))
    assert again.recipe.seed == 3


def dataclasses_equal(a, b, ignore=()):
    da, db = a.to_dict(), b.to_dict()
    for key in ignore:
        da.pop(key), db.pop(key)
    return da == db


def test_record_without_config_is_a_data_error(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"miou": 0.5}))
    with pytest.raises(DataError, match="not a wssbench result record"):
        config_from_record(path)
    with pytest.raises(DataError, match="result file not found"):
        config_from_record(tmp_path / "nope.json")


@pytest.fixture(scope="module")
def pipe():
    return wssbench.Pipeline(saliency="gbp", classmap="fcn", refine="none", **TINY)


@pytest.mark.slow
def test_pipeline_runs_in_memory_and_to_a_folder(pipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = pipe.run()
    assert list(tmp_path.iterdir()) == []  # nothing written without out
    assert record["n_images"] == 12 and 0.0 <= record["miou"] <= 1.0
    written = pipe.run(tmp_path / "run")
    assert written["confusion_matrix"] == record["confusion_matrix"]
    assert json.loads((tmp_path / "run" / "result.json").read_text())["miou"] == record["miou"]


def test_pipeline_predictions(pipe, tiny_dataset):
    preds = list(pipe.predictions(limit=3))
    assert sorted(p.image_id for p in preds) == sorted(tiny_dataset.ids("val")[:3])
    for p in preds:
        assert p.label_map.shape == tiny_dataset.load_mask(p.image_id).shape and p.label_map.dtype == np.uint8
        assert p.maps.saliency_maps.shape[0] == p.maps.class_maps.shape[0] == len(p.maps.labels)
        assert set(np.unique(p.label_map)) <= {0, *p.maps.labels.tolist()}


@pytest.mark.slow
def test_rerun_from_record_reproduces_the_number(pipe, tmp_path):
    first = pipe.run(tmp_path / "first")
    again = wssbench.Pipeline.from_record(tmp_path / "first" / "result.json")
    assert again.config.to_dict() == {**pipe.config.to_dict()}
    record = again.run()
    assert record["confusion_matrix"] == first["confusion_matrix"]
    assert record["classifier"]["checkpoint"] == first["classifier"]["checkpoint"]


def test_create_classifier_is_the_pipelines():
    model = wssbench.create_classifier("resnet10t", num_classes=5, pooling="gmp", seed=1)
    again = wssbench.create_classifier("resnet10t", num_classes=5, pooling="gmp", seed=1)
    x = torch.randn(2, 3, 64, 64)
    model.eval(), again.eval()
    assert model(x).shape == (2, 5) and model.score_maps(x).shape[:2] == (2, 5)
    torch.testing.assert_close(model(x), again(x))  # seeded initialisation


def test_fcn_and_cam_from_the_shared_forward_equal_their_own(resnet18_classifier):
    from wssbench_plugins.cam import CAM
    from wssbench_plugins.classmaps import FCNScoreMaps

    model = resnet18_classifier(6)
    x, classes = torch.randn(2, 3, 64, 48), torch.tensor([[1, 4], [0, -1]])
    forward = plain_forward(model, x)
    torch.testing.assert_close(forward.scores, model(x))
    for producer in (FCNScoreMaps(), CAM()):
        assert producer.uses_forward
        torch.testing.assert_close(producer.from_forward(model, forward, classes), producer(model, x, classes), rtol=0, atol=1e-6)
    assert not CAM(flip=True).uses_forward and not CAM(scales="1.0,0.5").uses_forward


def test_background_fusion_computes_no_maps():
    pipe = wssbench.Pipeline(fusion="background", **TINY)
    assert pipe.config.saliency is None and pipe.config.classmap is None
    assert pipe.components.saliency is None and pipe.components.classmap is None


def test_both_map_stages_off_needs_a_fusion_without_maps():
    with pytest.raises(UsageError, match="cannot both be 'none'"):
        wssbench.Pipeline(saliency="none", classmap="none", **TINY)


@pytest.mark.slow
def test_wssbench_run_picks_the_stage_and_returns_a_record_without_writing(tmp_path, monkeypatch, tiny_dataset):
    import wssbench

    monkeypatch.chdir(tmp_path)
    seed = wssbench.run({"options": {"dataset.preset": "tiny"}, "epochs": 1, "refine": "none", "workers": 1})
    assert seed["stage"] == "seed" and 0 <= seed["miou"] <= 1
    segmented = wssbench.run(preset="em-adapt", dataset="synthetic", options={"dataset.preset": "tiny", "segnet.channels": 32},
                             backbone="vgg11", pretrained=False, epochs=1, crop=48, batch_size=4, limit=3, crf=False, device="cpu")
    assert segmented["stage"] == "segmentation" and segmented["n_images"] == 3 and segmented["counts"]["file"] is None
    assert list(tmp_path.iterdir()) == []  # nothing written without out
    wssbench.run({"options": {"dataset.preset": "tiny"}, "epochs": 1, "refine": "none", "workers": 1}, out=tmp_path / "r")
    assert (tmp_path / "r" / "result.json").is_file() and (tmp_path / "r" / "counts.npz").is_file()
