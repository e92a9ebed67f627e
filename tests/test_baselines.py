"""The baselines as their papers define them: a head with a background output, MIL-FCN's
multi-class MIL loss and per-pixel argmax, Pinheiro & Collobert's softmax loss, log-sum-exp
``r`` and image-level prior, the presets that pin them. Hand-computed cases and literal
re-derivations."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wssbench
from wssbench.classifier.model import Classifier
from wssbench.classifier.training import LOSSES, TrainRecipe, head_targets, recipe_dict
from wssbench.errors import UsageError
from wssbench.host.registry import default_registry
from wssbench.methods.forward import plain_forward
from wssbench.seed.classifier import classifier_key
from wssbench.seed.config import RunConfig, build_config
from wssbench.seed.maps import background_of, select_classes
from wssbench.seed.presets import PRESETS, deviations, unverified
from wssbench_plugins.classmaps import FCNScoreMaps
from wssbench_plugins.fusion import ImagePriorFusion, ThresholdFusion


def tiny_classifier(background: bool, bias: bool = False, pooling: str = "gmp") -> Classifier:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2))  # (B, 6, H/2, W/2)
    return Classifier(features, 6, 3, pooling, bias=bias, background=background).eval()


def test_background_head_keeps_foreground_indices():
    model = tiny_classifier(background=True, bias=True)
    assert model.head.out_channels == 4 and model.num_classes == 3 and model.head.bias is not None
    x = torch.randn(2, 3, 8, 8)
    features = model.features(x)
    every = model.head(features)  # (2, 4, 4, 4): background first
    torch.testing.assert_close(model.score_maps(x), every[:, 1:])
    torch.testing.assert_close(model.background_maps(features), every[:, :1])
    torch.testing.assert_close(model(x), every[:, 1:].amax(dim=(2, 3)))  # gmp of the foreground outputs
    _, maps, scores = model.forward_parts(x)
    torch.testing.assert_close(maps, every[:, 1:])
    assert tiny_classifier(background=False).head.out_channels == 3
    with pytest.raises(UsageError, match="no background output"):
        tiny_classifier(background=False).background_maps(features)


def test_mil_loss_by_hand():
    """Pathak et al.: L = -1/|L_I| sum_l log p_l(x_l, y_l), (x_l, y_l) = argmax p_l, softmax over outputs."""
    # one image, outputs (background, a, b), two locations
    maps = torch.tensor([[[[2.0, 0.0]], [[1.0, 3.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
    targets = torch.tensor([[1.0, 1.0, 0.0]])  # background and class a present
    # location 0: logits (2, 1, 0); location 1: logits (0, 3, 0)
    p0 = [math.exp(v) / (math.exp(2) + math.exp(1) + 1) for v in (2, 1, 0)]
    p1 = [math.exp(v) / (1 + math.exp(3) + 1) for v in (0, 3, 0)]
    bg_best = max(p0[0], p1[0])  # background's best location: 0
    a_best = max(p0[1], p1[1])  # class a's: 1
    expected = -(math.log(bg_best) + math.log(a_best)) / 2
    got = LOSSES["mil"](None, maps, targets)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # only the present labels' top locations carry gradient
    maps.requires_grad_(True)
    LOSSES["mil"](None, maps, targets).backward()
    grad = maps.grad[0, :, 0]  # (3, 2)
    assert grad[:, 0].abs().sum() > 0 and grad[:, 1].abs().sum() > 0
    # a batch averages its images
    two = LOSSES["mil"](None, torch.cat([maps.detach(), maps.detach()]), torch.cat([targets, targets]))
    assert two.item() == pytest.approx(expected, rel=1e-6)


def test_softmax_loss_by_hand():
    """Pinheiro & Collobert: softmax over the pooled scores, cross-entropy, target spread over the labels."""
    model = tiny_classifier(background=True, pooling="gmp")
    maps = torch.tensor([[[[2.0, 0.0]], [[1.0, 3.0]], [[0.0, -1.0]]]])  # pooled (gmp): 2, 3, 0
    targets = torch.tensor([[1.0, 1.0, 0.0]])
    z = math.exp(2) + math.exp(3) + math.exp(0)
    expected = -(0.5 * math.log(math.exp(2) / z) + 0.5 * math.log(math.exp(3) / z))
    assert LOSSES["softmax"](model, maps, targets).item() == pytest.approx(expected, rel=1e-6)


def test_soft_margin_is_the_former_loss():
    model = tiny_classifier(background=False, pooling="gap")
    x = torch.randn(2, 3, 8, 8)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    maps = model.head_maps(model.features(x))
    torch.testing.assert_close(LOSSES["soft-margin"](model, maps, head_targets(model, labels)),
                               F.multilabel_soft_margin_loss(model(x), labels))
    with_bg = tiny_classifier(background=True)
    assert head_targets(with_bg, labels).tolist() == [[1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]]
    with pytest.raises(UsageError, match="unknown loss"):
        TrainRecipe(loss="hinge")


def test_lse_r_of_mil_sppxl():
    """The log-sum-exp r the preset's classifier pools with: 5 (the paper's value unverified)."""
    model = tiny_classifier(background=True, pooling="lse")
    assert model.lse_r == 5.0 and "pooling" in PRESETS["mil-sppxl"].unverified
    maps = torch.tensor([[[[0.0, 1.0], [2.0, 5.0]]]])
    r = 5.0
    expected = math.log(sum(math.exp(r * v) for v in (0, 1, 2, 5)) / 4) / r
    assert model.pool(maps).item() == pytest.approx(expected, rel=1e-6)


def test_background_argmax_inference_is_the_per_pixel_argmax_over_every_output():
    """MIL-FCN: upsampled heat-maps, per-pixel argmax over background + C classes; through the
    pipeline's pieces (every class a candidate, fcn maps, threshold fusion with the background)."""
    model = tiny_classifier(background=True, bias=True)
    x = torch.randn(2, 3, 8, 8)
    forward = plain_forward(model, x)
    classes = select_classes(forward.scores, None, RunConfig(classes_from="all"))
    assert classes.tolist() == [[0, 1, 2], [0, 1, 2]]
    maps = FCNScoreMaps().from_forward(model, forward, classes)  # (2, 3, 8, 8)
    torch.testing.assert_close(maps, FCNScoreMaps()(model, x, classes))
    background, background_score = background_of(model, forward)
    # reference: NumPy argmax of the upsampled logits, background first
    logits = F.interpolate(model.head(model.features(x)).detach(), size=(8, 8), mode="bilinear", align_corners=False).numpy()
    fusion = ThresholdFusion(sigma=0.0, quantile=1.0)
    for b in range(2):
        probs = fusion(np.zeros((8, 8, 3), np.uint8), np.array([1, 2, 3]), maps[b].numpy(), None, background=background[b])
        np.testing.assert_array_equal(probs.argmax(0), logits[b].argmax(0))
    torch.testing.assert_close(torch.from_numpy(background_score), model.background_maps(model.features(x)).detach().amax(dim=(1, 2, 3)))
    assert background_of(tiny_classifier(background=False), forward) is None


def test_image_prior_with_a_background_output_by_hand():
    """p'_k(x) = p_k(x) P_k with P the softmax of the pooled scores over background and classes."""
    fusion = ImagePriorFusion(weight=1.0, sigma=0.0, quantile=1.0)
    image = np.zeros((1, 2, 3), np.uint8)
    class_maps = np.array([[[0.6, 0.1]], [[0.1, 0.5]]], np.float32)  # p_k(x), K=2
    background = np.array([[0.3, 0.4]], np.float32)  # p_bg(x)
    scores, bg_score = np.array([1.0, 0.0]), 0.5
    probs = fusion(image, np.array([1, 2]), class_maps, None, scores=scores, background=background, background_score=bg_score)
    z = math.exp(0.5) + math.exp(1.0) + math.exp(0.0)
    prior = np.array([math.exp(0.5), math.exp(1.0), 1.0]) / z
    for px, col in enumerate(([0.3, 0.6, 0.1], [0.4, 0.1, 0.5])):
        weighted = np.array(col) * prior
        np.testing.assert_allclose(probs[:, 0, px], weighted / weighted.sum(), rtol=1e-5)
    # pixel 1: background 0.4 * 0.31 beats class 2's 0.5 * 0.19: the prior decides
    assert probs.argmax(0).tolist() == [[1, 0]]


def test_presets_pin_the_published_heads():
    mil_fcn = build_config(preset="mil-fcn", device="cpu", workers=1)
    assert mil_fcn.background and mil_fcn.recipe.loss == "mil" and mil_fcn.classes_from == "all" and mil_fcn.pooling == "gmp"
    assert not any(d["option"] == "head" for d in deviations(mil_fcn))
    sppxl = build_config(preset="mil-sppxl", device="cpu", workers=1)
    assert sppxl.background and sppxl.recipe.loss == "softmax" and sppxl.fusion == "image-prior" and sppxl.refine == ("sppxl",)
    assert [d["option"] for d in deviations(sppxl)] == ["network"]  # the ImageNet-subset training, and nothing else
    dcsm = build_config(preset="dcsm", device="cpu", workers=1)
    assert dcsm.head_bias and deviations(dcsm) == []
    changed = deviations(build_config(preset="mil-fcn", loss="soft-margin", background=False, device="cpu", workers=1))
    chosen = {d["option"]: d["used"] for d in changed if "published" in d and d["option"] in ("background", "loss")}
    assert chosen == {"background": False, "loss": "soft-margin"}
    assert [d["option"] for d in changed[2:]] == ["loss layer of the release", "training data"]  # the preset's departures


def test_classifier_key_changes_only_with_the_head(tiny_dataset):
    plain = build_config(device="cpu", workers=1, options={"dataset.preset": "tiny"})
    key = classifier_key(plain, tiny_dataset)
    assert "background" not in key and "head_bias" not in key and "loss" not in key["recipe"]  # earlier keys unchanged
    assert recipe_dict(TrainRecipe()) == {k: v for k, v in key["recipe"].items()}
    for change in ({"background": True}, {"head_bias": True}, {"loss": "mil"}):
        assert classifier_key(build_config(device="cpu", workers=1, options={"dataset.preset": "tiny"}, **change), tiny_dataset) != key


@pytest.mark.slow
def test_mil_fcn_recipe_runs_end_to_end(tiny_dataset):
    """A background head trained with the MIL loss, every class a candidate, on the tiny data."""
    pipe = wssbench.Pipeline(options={"dataset.preset": "tiny"}, epochs=1, device="cpu", workers=1, limit=3,
                             background=True, loss="mil", classes_from="all", saliency="none", classmap="fcn",
                             fusion="image-prior", refine="none")
    record = pipe.run()
    assert record["n_images"] == 3 and 0.0 <= record["miou"] <= 1.0
    assert record["config"]["background"] is True and record["config"]["recipe"]["loss"] == "mil"


def test_cam_of_a_background_classifier_reads_the_foreground_rows():
    from wssbench_plugins.cam import cam_from_features

    model = tiny_classifier(background=True)
    features = model.features(torch.randn(1, 3, 8, 8))
    classes = torch.tensor([[0, 2]])
    expected = torch.einsum("kf,bfhw->bkhw", model.head.weight[1:, :, 0, 0][classes[0]], features).clamp(min=0)
    torch.testing.assert_close(cam_from_features(model, features, classes), expected.detach())


def test_losses_ignore_the_crop_padding():
    """A crop's zero padding is no instance: the MIL argmax and the pooling skip it."""
    maps = torch.tensor([[[[5.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2): background peaks on the padding
    targets = torch.tensor([[1.0, 1.0, 0.0]])
    valid = torch.tensor([[[False, True]]])  # (1, 1, 2): position 0 is padding
    p1 = [math.exp(v) / (1 + math.e + 1) for v in (0, 1, 0)]  # softmax at position 1 only
    expected = -(math.log(p1[0]) + math.log(p1[1])) / 2
    assert LOSSES["mil"](None, maps, targets, valid).item() == pytest.approx(expected, rel=1e-6)
    assert LOSSES["mil"](None, maps, targets).item() < expected  # with the padding, background is easy
    model = tiny_classifier(background=True, pooling="lse")
    r = model.lse_r
    pooled = model.pool(maps, valid)  # one valid position: LSE = its value
    torch.testing.assert_close(pooled, torch.tensor([[0.0, 1.0, 0.0]]))
    two = torch.tensor([[[[1.0, 2.0, 9.0]]]])  # (1, 1, 1, 3), last position padding
    keep = torch.tensor([[[True, True, False]]])
    assert model.pool(two, keep).item() == pytest.approx(math.log((math.exp(r) + math.exp(2 * r)) / 2) / r)
    assert masked_gap_and_gmp(two, keep) == (1.5, 2.0)


def masked_gap_and_gmp(maps, valid):
    from wssbench.classifier.model import POOLINGS

    return POOLINGS["gap"](maps, 0.0, valid).item(), POOLINGS["gmp"](maps, 0.0, valid).item()


def test_augment_reports_where_the_image_is():
    from wssbench.classifier.training import _augment, valid_cells

    rng = np.random.default_rng(0)
    image = np.full((20, 30, 3), 200, np.uint8)
    crop, inside = _augment(image, TrainRecipe(crop=48, scale=(1.0, 1.0)), rng)
    assert crop.shape == (48, 48, 3) and inside.shape == (48, 48) and inside.sum() == 20 * 30
    assert (crop[~inside] == 0).all() and (crop[inside] > 0).all()
    cells = valid_cells(torch.from_numpy(inside)[None], (6, 6))  # 8 x 8 px cells
    expected = torch.from_numpy(inside.reshape(6, 8, 6, 8).mean(axis=(1, 3)) >= 0.5)[None]
    torch.testing.assert_close(cells, expected)
    assert valid_cells(torch.zeros(1, 8, 8, dtype=torch.bool), (2, 2)).all()  # nothing inside: every cell


def test_presets_pin_a_training_recipe_and_flag_the_chosen_values():
    faithful = build_config(preset="dcsm", device="cpu", workers=1)
    assert (faithful.recipe.epochs, faithful.recipe.crop, faithful.recipe.lr) == (5, 448, 0.01)
    assert faithful.options_for("fusion") == {"sigma": "0", "quantile": "1"}  # the maps as dcsm.m leaves them
    small = build_config(preset="dcsm", crop=64, epochs=1, device="cpu", workers=1)
    assert deviations(small) == [
        {"option": "epochs", "published": 5, "used": 1, "unverified": True},
        {"option": "crop", "published": 448, "used": 64, "unverified": True},
    ]
    assert unverified(small) == ["fusion", "refine", "epochs", "crop", "lr"] and unverified(build_config(device="cpu")) == []
    # a threshold a bench tuned on train is its protocol, not a departure; set by hand, it is one
    tuned = build_config(preset="fcn-gbp", options={"fusion.bg_threshold": 0.1}, device="cpu", workers=1)
    assert [d["option"] for d in deviations(tuned, default_registry())] == ["fusion.bg_threshold"]
    assert deviations(tuned, default_registry(), tuned={"fusion.bg_threshold": 0.1}) == []
    pinned = build_config(preset="dcsm", options={"fusion.sigma": 0.03}, device="cpu", workers=1)  # the preset's own: always
    assert [d["option"] for d in deviations(pinned, default_registry(), tuned={"fusion.sigma": 0.03})] == ["fusion.sigma"]
