"""STC (Wei et al., TPAMI 2016) on the tiny synthetic dataset: which images each step uses, each
step trains on the previous step's masks, the image-label constraint, the Initial-DCNN's loss,
the bottom-up detectors against hand-computed values, and ``run --preset stc`` through the CLI."""

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import ndimage
from skimage.color import rgb2lab

from wssbench.cli import cli
from wssbench.errors import DataError, UsageError
from wssbench.host.registry import default_registry
from wssbench.runtime.distributed import World
from wssbench.segmentation import stc
from wssbench.segmentation.batch import IGNORE, SegBatch
from wssbench.segmentation.config import SegmentConfig, SegRecipe
from wssbench.segmentation.infer import predict_probs
from wssbench.segmentation.run import resolve, segment
from wssbench.segmentation.stc import saliency_map
from wssbench_plugins._bottom_up import frequency_tuned, spectral_residual

TINY = (("dataset", "preset", "tiny"), ("segnet", "encoder", "resnet10t"))


def stc_config(**kw) -> SegmentConfig:
    recipe = SegRecipe(epochs=1, batch_size=4, crop=48, seed=kw.pop("seed", 11))
    return SegmentConfig(schedule="stc", options=TINY + kw.pop("options", ()), recipe=recipe, limit=4, device="cpu", **kw)


@pytest.fixture(scope="module")
def stc_run(tiny_dataset, tmp_path_factory):
    """One STC run with ``train`` spied on: per step, its training ids and masks and the trained network."""
    seen = []
    real_train = stc.train

    def spy(model, samples, objective, *args, **kwargs):
        start = {k: v.clone() for k, v in model.net.state_dict().items()}
        history = real_train(model, samples, objective, *args, **kwargs)
        masks = {i: samples.load(i)[1] for i in samples.ids}
        seen.append({"ids": list(samples.ids), "masks": masks, "objective": objective, "model": copy.deepcopy(model).eval(),
                     "start": start})
        return history

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stc, "train", spy)
        record = segment(stc_config(), default_registry(), tmp_path_factory.mktemp("stc") / "out")
    return record, seen


def test_the_simple_images_are_the_single_label_ones(tiny_dataset, stc_run):
    ids = tiny_dataset.ids("train")
    counts = {i: int(tiny_dataset.image_labels(i).sum()) for i in ids}
    simple, complex_ = stc.split_simple(tiny_dataset, ids)
    assert simple == [i for i in ids if counts[i] == 1] and complex_ == [i for i in ids if counts[i] != 1]
    assert 4 <= len(simple) < len(ids)  # the tiny set has both kinds
    record, seen = stc_run
    # Initial- and Enhanced-DCNN on the simple images, the Powerful-DCNN on all (complex + simple)
    assert [s["ids"] for s in seen] == [simple, simple, ids]
    steps = record["training"]["steps"]
    assert [(s["step"], s["images"], s["n_images"]) for s in steps] == [
        ("initial", "simple", len(simple)), ("enhanced", "simple", len(simple)), ("powerful", "all", len(ids))]
    assert record["training"]["n_simple"] == len(simple) and record["training"]["n_complex"] == len(complex_)
    assert record["training"]["n_images"] == len(ids)


def test_without_step3_simple_the_powerful_network_sees_the_complex_images_only(tiny_dataset):
    config, parts = resolve(stc_config(seed=12, options=(("schedule", "step3_simple", "false"),)), default_registry())
    assert parts.schedule.step3_simple is False
    ids = tiny_dataset.ids("train")
    _, complex_ = stc.split_simple(tiny_dataset, ids)
    seen = []

    def record_ids(model, samples, *args, **kwargs):
        seen.append(list(samples.ids))
        return [1.0]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stc, "train", record_ids)  # untrained networks: only which images each step gets
        parts.dataset.prepare()
        stc.train_stc(parts.schedule, config, parts, World(), "cpu")
    assert seen[2] == complex_


def test_each_step_trains_on_the_previous_steps_masks(tiny_dataset, stc_run):
    record, seen = stc_run
    initial, enhanced, powerful = seen
    # step 1: the saliency levels of the detector's map
    for i in initial["ids"]:
        expected = np.round(saliency_map(tiny_dataset.load_image(i), frequency_tuned) * stc.LEVELS).astype(np.uint8)
        np.testing.assert_array_equal(initial["masks"][i], expected)
    assert isinstance(initial["objective"], stc.InitialLoss)
    # steps 2 and 3: the label-constrained argmax of the previous step's trained network
    for previous, step in ((initial, enhanced), (enhanced, powerful)):
        for i in step["ids"]:
            probs = predict_probs(previous["model"], [tiny_dataset.load_image(i)])[0].numpy()  # (N, H, W)
            present = np.concatenate([[True], tiny_dataset.image_labels(i) > 0.5])
            probs[~present] = -1.0
            np.testing.assert_array_equal(step["masks"][i], probs.argmax(0))
        assert step["objective"].name == "pseudo-masks"
    steps = record["training"]["steps"]
    assert steps[1]["masks_in"] == steps[0]["masks_out"] and steps[2]["masks_in"] == steps[1]["masks_out"]
    assert "saliency (frequency-tuned)" == steps[0]["trains_on"] and "Enhanced-DCNN" in steps[2]["trains_on"]


def test_each_step_starts_from_the_same_initialisation(stc_run):
    """Chosen (unverified in the paper): no step is warm-started from the previous network."""
    from wssbench.segmentation.presets import SEGMENT_PRESETS

    _, seen = stc_run
    first = seen[0]["start"]
    for step in seen[1:]:
        assert all(torch.equal(first[k], v) for k, v in step["start"].items())
    assert not all(torch.equal(first[k], v) for k, v in seen[0]["model"].net.state_dict().items())  # it trained
    assert {"schedule.step3_simple", "epochs", "crf"} <= set(SEGMENT_PRESETS["stc"].unverified)


def test_absent_classes_never_appear_in_the_targets_of_steps_2_and_3(tiny_dataset, stc_run):
    _, seen = stc_run
    for step in seen[1:]:
        for i, mask in step["masks"].items():
            allowed = {0} | {int(c) + 1 for c in np.flatnonzero(tiny_dataset.image_labels(i))}
            assert set(np.unique(mask).tolist()) <= allowed
    # the constraint itself: a class the image does not have loses even where it is the most probable
    probs = np.array([[[0.2, 0.3]], [[0.7, 0.2]], [[0.1, 0.5]]])  # (N=3, 1, 2): class 1 wins pixel 0 unconstrained
    np.testing.assert_array_equal(stc.constrained_mask(probs, np.array([0.0, 1.0])), [[0, 2]])
    np.testing.assert_array_equal(stc.constrained_mask(probs, np.array([1.0, 1.0])), [[1, 2]])
    np.testing.assert_array_equal(stc.constrained_mask(probs, np.array([0.0, 0.0])), [[0, 0]])


def test_the_run_scores_the_powerful_network_and_is_cached(tiny_dataset, stc_run, tmp_path):
    record, _ = stc_run
    assert record["stage"] == "segmentation" and record["split"] == "val" and record["n_images"] == 4
    assert record["method"] == "deeplabv3plus/pseudo-masks/stc"
    assert record["components"]["schedule"] == {"kind": "schedule", "name": "stc", "plugin": "wssbench",
                                                "options": {"saliency": "frequency-tuned", "step3_simple": True}}
    assert all(np.isfinite(s["loss_history"][0]) and s["loss_history"][0] > 0 for s in record["training"]["steps"])
    again = segment(stc_config(), default_registry(), tmp_path / "again")
    assert again["training"]["cached"] and again["confusion_matrix"] == record["confusion_matrix"]


def test_the_initial_loss_is_cross_entropy_to_the_saliency_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 3)
    levels = torch.randint(0, 255, (2, 3, 3))
    levels[0, 0, 0] = IGNORE
    valid = torch.ones(2, 3, 3, dtype=torch.bool)
    valid[1, 2] = False
    labels = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # classes 2 and 1
    loss = stc.InitialLoss()(logits, SegBatch(torch.zeros(2, 3, 3, 3), labels, valid, levels))
    q = logits.softmax(1).numpy()
    expected = []
    for b, c in ((0, 2), (1, 1)):
        terms = [-(s / 254 * np.log(q[b, c, y, x]) + (1 - s / 254) * np.log(q[b, 0, y, x]))
                 for y in range(3) for x in range(3)
                 for s in [int(levels[b, y, x])] if s != IGNORE and valid[b, y, x]]
        expected.append(np.mean(terms))
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)
    with pytest.raises(DataError, match="simple images only"):
        stc.InitialLoss()(logits, SegBatch(torch.zeros(2, 3, 3, 3), torch.ones(2, 3), valid, levels))


def test_frequency_tuned_on_a_hand_built_image():
    image = np.full((40, 40, 3), 128, np.uint8)
    image[10:20, 10:20] = (220, 30, 30)  # a red square on grey: 100 of 1600 pixels
    s = frequency_tuned(image)
    lab_bg, lab_fg = rgb2lab(np.uint8([[[128, 128, 128]]]))[0, 0], rgb2lab(np.uint8([[[220, 30, 30]]]))[0, 0]
    f = 100 / 1600
    d = np.linalg.norm(lab_fg - lab_bg)
    # far from the square's edge the 5x5 blur changes nothing: distance to the mean Lab vector
    assert s[15, 15] == pytest.approx((1 - f) * d, rel=1e-6)
    assert s[35, 35] == pytest.approx(f * d, rel=1e-6)
    # on the square's first column the binomial blur mixes in two columns of grey (weights 1 + 4 of 16),
    # and two columns outside it one column of red (1/16, which is f: the mean colour exactly)
    assert s[15, 10] == pytest.approx(abs(11 / 16 - f) * d, rel=1e-6)
    assert s[15, 8] == pytest.approx(0.0, abs=1e-9)
    n = saliency_map(image, frequency_tuned)
    assert n.dtype == np.float32 and n.max() == pytest.approx(1.0) and n.min() == pytest.approx(0.0)
    assert n[15, 15] == pytest.approx(1.0) and n[35, 35] < 0.1
    assert not saliency_map(np.full((8, 8, 3), 7, np.uint8), frequency_tuned).any()  # a constant image has no salient object


def test_spectral_residual_is_hou_and_zhangs_formula():
    rng = np.random.default_rng(0)
    image = np.full((64, 64, 3), 100, np.uint8)
    image[20:36, 24:40] = 200
    image = np.clip(image + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    grey = image.astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721]) / 255.0  # skimage's rgb2gray weights
    f = np.fft.fft2(grey)
    a = np.log(np.abs(f))
    r = a - ndimage.uniform_filter(a, 3, mode="reflect")
    expected = ndimage.gaussian_filter(np.abs(np.fft.ifft2(np.exp(r + 1j * np.angle(f)))) ** 2, 8.0, mode="reflect")
    np.testing.assert_allclose(spectral_residual(image), expected, rtol=1e-6, atol=1e-12)
    s = saliency_map(image, spectral_residual)
    assert s[28, 32] > s[2, 2]  # the bright block stands out


def test_schedule_options_and_masks_are_checked(tmp_path):
    registry = default_registry()
    with pytest.raises(UsageError, match="unknown salient-object detector 'drfi'; available: frequency-tuned, spectral-residual, u2netp"):
        resolve(stc_config(options=(("schedule", "saliency", "drfi"),)), registry)
    with pytest.raises(UsageError, match="unknown option 'steps'"):
        resolve(stc_config(options=(("schedule", "steps", "2"),)), registry)
    with pytest.raises(UsageError, match="schedule 'single' has no options"):
        resolve(SegmentConfig(objective="em-adapt", options=TINY + (("schedule", "saliency", "x"),)), registry)
    with pytest.raises(UsageError, match="objective 'em-adapt' takes none"):
        resolve(stc_config(objective="em-adapt"), registry)
    with pytest.raises(UsageError, match="makes its own masks"):
        resolve(stc_config(masks=str(tmp_path)), registry)
    with pytest.raises(UsageError, match="unknown schedule 'mil'"):
        SegmentConfig(schedule="mil")


@pytest.mark.slow
def test_run_preset_stc_through_the_cli_records_the_substitutions(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [
        "run", "--preset", "stc", "-O", "dataset.preset=tiny", "-O", "segnet.channels=32", "--backbone", "vgg11",
        "--no-pretrained", "--epochs", "1", "--batch-size", "4", "--crop", "48", "--device", "cpu", "--limit", "2",
        "-O", "schedule.saliency=spectral-residual", "--out", "stc", "--json",
    ])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["stage"] == "segmentation" and record["method"] == "stc" and record["inference"]["crf"] is True
    assert [s["network"] for s in record["training"]["steps"]] == ["Initial-DCNN", "Enhanced-DCNN", "Powerful-DCNN"]
    deviations = {d["option"]: d for d in record["deviations"]}
    assert {"simple images", "saliency detector", "segnet.encoder", "segnet.channels"} <= set(deviations)
    assert "DRFI" in deviations["saliency detector"]["published"] and "Flickr" in deviations["simple images"]["published"]
    assert deviations["schedule.saliency"] == {"option": "schedule.saliency", "published": "u2netp", "used": "spectral-residual"}
    assert record["priors"] == []  # a bottom-up detector: no pixel-supervised component (u2netp's run carries "S")
    assert "deviations from the published recipe" in result.stderr
    assert len(list((tmp_path / "stc" / "masks").glob("*.png"))) == 2


@pytest.mark.slow
def test_the_bench_rows_name_the_stc_preset():
    from pathlib import Path

    from wssbench.bench import load_bench

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    for name, published in (("poster-voc2012.toml", 49.8), ("poster-synthetic.toml", 49.8)):
        spec = load_bench(root / name, default_registry())
        (row,) = [r for r in spec["rows"] if r.get("preset") == "stc"]
        assert row["published"]["miou"] == published and row["_config"].schedule == "stc"
