"""Saliency evaluation metrics on tiny hand-made maps, against values computed by hand here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from wssbench.classifier.model import Classifier
from wssbench.cli import WssbenchGroup
from wssbench.cli.saliency_eval import saliency_eval_command
from wssbench.errors import UsageError
from wssbench.evaluation import (
    EvalOptions,
    PointingGame,
    auc,
    bounding_box,
    cascade_units,
    causal_curve,
    columns_for_run,
    deletion,
    energy_inside,
    evaluate_saliency,
    insertion,
    is_difficult,
    leaderboard_columns,
    max_point,
    pointing_hit,
    sanity_check,
    spearman,
)
from wssbench.evaluation.causal import blur_baseline, salient_ranks
from wssbench.host.registry import default_registry
from wssbench.seed.config import RunConfig
from wssbench.seed.record import describe_components
from wssbench_plugins.saliency import GuidedBP, VanillaBP

pytestmark = pytest.mark.usefixtures("one_thread")


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# --------------------------------------------------------------------------------------
# Pointing game
# --------------------------------------------------------------------------------------

# A 5 x 5 map whose maximum is at (row 0, column 1); the object fills rows 2-4 of columns 0-1,
# so its nearest pixel (2, 1) is exactly 2 px below the maximum.
MAP = np.zeros((5, 5))
MAP[0, 1] = 1.0
OBJECT = np.zeros((5, 5), dtype=bool)
OBJECT[2:, :2] = True


@pytest.mark.parametrize("tolerance, hit", [(1, False), (2, False), (2.01, True), (3, True)])
def test_pointing_hit_within_strict_tolerance(tolerance, hit):
    assert pointing_hit(MAP, OBJECT, tolerance) is hit  # distance 2: a hit only when 2 < tolerance


def test_pointing_on_the_object_and_diagonal_distance():
    assert pointing_hit(MAP, np.pad(np.ones((1, 1), bool), ((0, 4), (1, 3))), tolerance=0.5)  # the max's own pixel
    far = np.zeros((5, 5), dtype=bool)
    far[2, 3] = True  # (0, 1) -> (2, 3): sqrt(8) = 2.83 px
    assert not pointing_hit(MAP, far, 2.8) and pointing_hit(MAP, far, 2.9)


def test_pointing_ties_take_the_first_maximum():
    flat = np.ones((5, 5))  # every pixel is a maximum: the first, (0, 0), is the point
    corner = np.zeros((5, 5), dtype=bool)
    corner[4, 4] = True
    assert max_point(flat) == (0, 0)
    assert not pointing_hit(flat, corner, 3)  # (0, 0) is 5.66 px away; "any maximum" would call it a hit
    two = np.zeros((5, 5))
    two[3, 0] = two[1, 4] = 2.0  # row-major: (1, 4) comes first
    assert max_point(two) == (1, 4)


def test_difficult_subset():
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[0, :3] = 1  # class 1: 3/16 of the image
    assert not is_difficult(mask, 1)  # no distractor
    mask[3, 3] = 255
    assert not is_difficult(mask, 1)  # "ignore" is no object
    mask[3, 0] = 2
    assert is_difficult(mask, 1)  # small, and a class-2 object present
    assert is_difficult(mask, 2)  # class 2 (1/16) with class 1 present is difficult too
    mask[1, 0] = 1  # class 1: 4/16 = 1/4, not below it
    assert not is_difficult(mask, 1)


def test_pointing_game_mean_over_tested_classes():
    game = PointingGame(num_classes=3, tolerance=1)
    mask = np.zeros((5, 5), dtype=np.uint8)
    mask[2:, :2] = 1  # class index 0 (label 1), 6/25 of the image
    mask[0, 4] = 2  # class index 1 (label 2): a distractor for class 0
    hit_map, miss_map = np.zeros((5, 5)), np.zeros((5, 5))
    hit_map[3, 1] = 1  # on class 0
    miss_map[0, 4] = 1  # on class 1
    assert game.update(hit_map, mask, 0) and not game.update(miss_map, mask, 0)
    assert game.update(miss_map, mask, 1)
    # class 0: 1/2, class 1: 1/1, class 2 never tested: mean (0.5 + 1) / 2
    assert game.accuracy() == pytest.approx(0.75)
    assert game.class_accuracies() == [0.5, 1.0, None]
    # difficult: class 0 is 6/25 < 1/4 with a distractor (both its tests); class 1 is 1/25 with class 0 present
    assert game.accuracy(difficult=True) == pytest.approx(0.75)
    assert math.isnan(PointingGame(2).accuracy())


# --------------------------------------------------------------------------------------
# Energy-based pointing game
# --------------------------------------------------------------------------------------


def test_energy_share_inside_the_region():
    saliency = np.array([[1.0, 2.0], [3.0, 4.0]])
    top = np.array([[True, True], [False, False]])
    assert energy_inside(saliency, top) == pytest.approx(3 / 10)
    signed = np.array([[-5.0, 1.0], [1.0, 2.0]])  # the negative pixel counts as 0
    assert energy_inside(signed, top) == pytest.approx(1 / 4)
    assert energy_inside(np.zeros((2, 2)), top) == 0.0


def test_energy_in_bounding_box():
    region = np.zeros((3, 3), dtype=bool)
    region[0, 0] = region[1, 1] = True
    box = bounding_box(region)
    assert box.tolist() == [[True, True, False], [True, True, False], [False, False, False]]
    assert energy_inside(np.ones((3, 3)), box) == pytest.approx(4 / 9)
    assert energy_inside(np.ones((3, 3)), region) == pytest.approx(2 / 9)


def test_localisation_matches_quantus():
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(0)
    maps = rng.random((6, 1, 7, 7))  # unique maxima
    regions = rng.random((6, 1, 7, 7)) > 0.6
    x, y = np.zeros((6, 3, 7, 7)), np.zeros(6, dtype=int)
    kwargs = dict(model=None, x_batch=x, y_batch=y, a_batch=maps, s_batch=regions.astype(float), channel_first=True)
    mass = quantus.RelevanceMassAccuracy(abs=False, normalise=False, disable_warnings=True)(**kwargs)
    hits = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)(**kwargs)
    assert [energy_inside(m[0], r[0]) for m, r in zip(maps, regions)] == pytest.approx(mass)
    assert [pointing_hit(m[0], r[0], tolerance=0.5) for m, r in zip(maps, regions)] == [bool(h) for h in hits]


# --------------------------------------------------------------------------------------
# Deletion and insertion
# --------------------------------------------------------------------------------------


class Linear(nn.Module):
    """score(x) = sum of channel 0 over the pixels - 3; one class."""

    def forward(self, images):
        return images[:, 0].flatten(1).sum(1, keepdim=True) - 3.0  # (B, 1)


IMAGE = torch.zeros(3, 1, 4)
IMAGE[0, 0] = torch.tensor([3.0, 1.0, 0.0, 2.0])  # channel 0 sums to 6
SALIENCY = np.array([[0.1, 0.9, 0.5, 0.2]])  # order: pixel 1, 2, 3, 0


def test_auc_trapezoid():
    assert auc(np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)
    assert auc(np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert auc(np.array([0.0, 1.0, 1.0, 1.0, 1.0])) == pytest.approx(0.875)


def test_salient_ranks_stable_on_ties():
    assert salient_ranks(SALIENCY).tolist() == [[3, 0, 1, 2]]
    assert salient_ranks(np.array([[1.0, 2.0, 2.0, 1.0]])).tolist() == [[2, 0, 1, 3]]


def test_deletion_on_a_linear_model():
    # deleting pixels 1, 2, 3, 0 (values 1, 0, 2, 3) to zero: sums 6, 5, 5, 3, 0
    expected = [sigmoid(s - 3) for s in (6, 5, 5, 3, 0)]
    score, curve = deletion(Linear(), IMAGE, SALIENCY, 0, steps=4)
    assert curve == pytest.approx(expected)
    assert score == pytest.approx((sum(expected) - expected[0] / 2 - expected[-1] / 2) / 4)
    # two pixels a step: sums 6, 5, 0
    assert deletion(Linear(), IMAGE, SALIENCY, 0, steps=2)[1] == pytest.approx([sigmoid(3), sigmoid(2), sigmoid(-3)])
    # steps=3 on 4 pixels: ceil(4/3) = 2 pixels a step, so 2 steps
    assert len(deletion(Linear(), IMAGE, SALIENCY, 0, steps=3)[1]) == 3


def test_insertion_on_a_linear_model():
    # from zeros, pixels 1, 2, 3, 0 come back: sums 0, 1, 1, 3, 6
    expected = [sigmoid(s - 3) for s in (0, 1, 1, 3, 6)]
    score, curve = insertion(Linear(), IMAGE, SALIENCY, 0, steps=4, baseline="zero")
    assert curve == pytest.approx(expected)
    assert score == pytest.approx((sum(expected) - expected[0] / 2 - expected[-1] / 2) / 4)


def test_insertion_from_blur_ends_at_the_image_and_batches_agree():
    torch.manual_seed(0)
    image = torch.randn(3, 12, 12)
    saliency = np.random.default_rng(0).random((12, 12))
    model = lambda x: x[:, 0].flatten(1).mean(1, keepdim=True) * 4  # noqa: E731
    _, curve = insertion(model, image, saliency, 0, steps=10)
    assert curve[0] == pytest.approx(torch.sigmoid(model(blur_baseline(image)[None]))[0, 0].item(), abs=1e-6)
    assert curve[-1] == pytest.approx(torch.sigmoid(model(image[None]))[0, 0].item(), abs=1e-6)
    one_by_one = causal_curve(model, blur_baseline(image), image, saliency, 0, steps=10, batch_size=1)
    assert one_by_one == pytest.approx(curve, abs=1e-6)


def test_causal_errors():
    with pytest.raises(UsageError, match="baseline"):
        deletion(Linear(), IMAGE, SALIENCY, 0, baseline="noise")
    with pytest.raises(UsageError, match="does not fit"):
        deletion(Linear(), IMAGE, np.zeros((2, 2)), 0)


# --------------------------------------------------------------------------------------
# Sanity check
# --------------------------------------------------------------------------------------


def test_spearman_by_hand():
    # ranks (1, 2, 3, 4) and (1, 3, 2, 4): sum d^2 = 2, rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 30.0, 20.0, 40.0])) == pytest.approx(0.8)
    assert spearman(np.array([1.0, 2.0]), np.array([5.0, 5.0])) == 0.0


def tiny_cnn() -> Classifier:
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
    )
    return Classifier(features, 8, 3).eval()


def test_cascade_units_top_down(resnet18_classifier):
    assert cascade_units(tiny_cnn()) == ["head", "features.4", "features.2", "features.0"]
    units = cascade_units(resnet18_classifier(2))
    assert units[:3] == ["head", "features.layer4.1", "features.layer4.0"] and units[-2:] == ["features.bn1", "features.conv1"]


def test_sanity_check_is_cumulative_and_leaves_the_model_alone():
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def spy(m, images, classes):  # records which units differ from the original model
        if m is not model:
            seen.append([u for u in cascade_units(model) if not torch.equal(
                m.get_submodule(u).weight, model.get_submodule(u).weight)])
        return images[:, :1].abs().expand(-1, classes.shape[1], -1, -1)  # (B, K, H, W), ignores the weights

    images = torch.randn(2, 3, 8, 8)
    result = sanity_check(model, spy, images, torch.tensor([[0, 1], [2, -1]]))
    assert seen == [["head"], ["head", "features.4"], ["head", "features.4", "features.2"], cascade_units(model)]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # a map that ignores the weights keeps rho = 1 at every step, over the 3 real maps
    assert result.rank_abs.shape == (4, 3) and np.allclose(result.rank_abs, 1.0)
    assert result.summary() == pytest.approx({"rho_mean": 1.0, "rho_final": 1.0})


def test_sanity_check_bp_decorrelates_gbp_less():
    model = tiny_cnn()
    torch.manual_seed(1)
    images, classes = torch.randn(2, 3, 16, 16), torch.tensor([[0], [1]])
    bp = sanity_check(model, VanillaBP(), images, classes).rank_abs.mean(1)  # (L,)
    gbp = sanity_check(model, GuidedBP(), images, classes).rank_abs.mean(1)
    # measured: bp 0.13 0.16 0.20 0.16, gbp 0.76 0.63 0.45 0.35 (head first)
    assert bp.max() < 0.5  # vanilla gradients follow the weights: far from 1 from the first step on
    assert gbp[0] > 0.5 and gbp[-1] < gbp[0]  # guided BP barely notices the head, more so the convolutions
    assert gbp.mean() > bp.mean() + 0.2


# --------------------------------------------------------------------------------------
# Over a split, the record and the leaderboard columns
# --------------------------------------------------------------------------------------


def test_evaluate_with_an_oracle_on_the_tiny_dataset(tiny_dataset):
    """A map that is the class's own mask scores a perfect pointing game and energy."""
    dataset = tiny_dataset
    ids = dataset.ids("val")[:4]
    masks = {i: dataset.load_mask(i) for i in ids}
    model = Classifier(nn.Conv2d(3, 4, 1), 4, len(dataset.classes) - 1).eval()

    def oracle(m, images, classes):
        mask = next(masks[i] for i in ids if np.array_equal(m.preprocess([dataset.load_image(i)]), images))
        return torch.stack([torch.from_numpy((mask == c + 1).astype(np.float32)) for c in classes[0].tolist()])[None]

    record = evaluate_saliency(model, oracle, dataset, ids, EvalOptions(metrics=("pointing", "energy")))
    m = record["metrics"]
    assert m["pointing"] == 1.0 and m["energy"] == pytest.approx(1.0)
    assert m["pointing_tested"] == sum(len(np.setdiff1d(np.unique(masks[i]), [0, 255])) for i in ids)
    assert set(m) == {"pointing", "pointing_difficult", "pointing_tested", "pointing_difficult_tested", "pointing_per_class", "energy"}


def test_unknown_metric():
    with pytest.raises(UsageError, match="unknown metric 'iou'"):
        EvalOptions(metrics=("pointing", "iou"))


def test_leaderboard_columns():
    record = {"methods": {
        "gbp": {"metrics": {"pointing": 0.8, "energy": 0.4, "sanity": {"rho_mean": 0.9, "rho_final": 0.7, "layers": []}}},
        "bp": {"metrics": {"deletion": 0.2, "sanity": {"rho_mean": 0.1, "rho_final": 0.0, "layers": []}}},
    }}
    assert leaderboard_columns(record) == {
        "gbp": {"pointing": 0.8, "energy": 0.4, "sanity_rho": 0.9, "sanity": "fail"},
        "bp": {"deletion": 0.2, "sanity_rho": 0.1, "sanity": "pass"},
    }


@pytest.mark.slow
def test_command_on_the_tiny_dataset(tiny_dataset, tmp_path):
    cli = WssbenchGroup(commands={"saliency-eval": saliency_eval_command})
    out = tmp_path / "eval.json"
    args = ["saliency-eval", "--saliency", "bp", "--classmap", "cam", "-O", "dataset.preset=tiny", "--epochs", "1",
            "--device", "cpu", "--limit", "2", "--steps", "8", "--sanity-images", "1", "--out", str(out), "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record == json.loads(out.read_text())
    assert record["kind"] == "saliency-eval" and record["n_images"] == 2 and set(record["methods"]) == {"bp", "cam"}
    for entry in record["methods"].values():
        m = entry["metrics"]
        assert 0 <= m["pointing"] <= 1 and 0 <= m["energy"] <= 1 and 0 <= m["deletion"] <= 1 and 0 <= m["insertion"] <= 1
        assert m["sanity"]["layers"][0]["layer"] == "head" and -1 <= m["sanity"]["rho_mean"] <= 1
    # the columns join the row of a run with the same classifier and the same saliency method and options
    run_record = {"classifier": {"checkpoint": record["classifier"]["checkpoint"]},
                  "components": describe_components(RunConfig(saliency="bp"), default_registry())}
    assert columns_for_run(record, run_record) == leaderboard_columns(record)["bp"]
    other = describe_components(RunConfig(saliency="bp", options=(("saliency", "distinct", True),)), default_registry())
    assert columns_for_run(record, {**run_record, "components": other}) is None
    assert columns_for_run(record, {**run_record, "classifier": {"checkpoint": "/x/other.pt"}}) is None
    table = CliRunner().invoke(cli, [*args[:-3], "--metrics", "pointing,sanity", "--limit", "1"], catch_exceptions=False)
    assert table.exit_code == 0 and "saliency evaluation" in table.stdout and "bp: cascading randomisation" in table.stdout
    bad = CliRunner().invoke(cli, ["saliency-eval", "-O", "fusion.x=1"], catch_exceptions=False)
    assert bad.exit_code == 2 and "saliency-eval takes options" in bad.output
