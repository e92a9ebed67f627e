"""DCSM (``dcsm``) against a literal NumPy re-derivation of ``dcsm.m``'s loops, hand-computed
cases, PIL's antialiased bicubic resize, and class detection on a hand-built model.

The NumPy reference is written from the description of ``dcsm.m`` (per scale, per requested
class detected at that scale, per layer, per other contrast class), not from the code under test.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_saliency import assert_unchanged, snapshot
from torch import nn

from wssbench.errors import UsageError
from wssbench.host.registry import build_registry

pytestmark = pytest.mark.usefixtures("one_thread")
from wssbench_plugins._dcsm import accumulate, canvas_box, contrast_classes, dcsm_maps, detect, finish, on_canvas
from wssbench_plugins.dcsm import DCSM

T3 = math.tanh(3.0)


# --------------------------------------------------------------------------------------
# The literal reference: dcsm.m's loops on given per-layer canvas maps
# --------------------------------------------------------------------------------------


def reference_combine(maps, detected, requested, contrast, box):
    """``maps[s][t][l]``: (N, N) canvas map of contrast class ``contrast[t]`` at layer ``l`` and
    scale ``s``; ``detected[s]``: set of classes detected at scale ``s``; ``requested``: list
    of classes. Returns {class: (H, W) map} as dcsm.m computes it (the quirk not followed)."""
    top, left, height, width = box
    n = maps[0][0][0].shape[0]
    total = {c: np.zeros((n, n)) for c in requested}
    for s in range(len(maps)):
        for t, c in enumerate(contrast):
            if c not in requested or c not in detected[s]:
                continue
            for layer in range(len(maps[s][t])):
                for t2 in range(len(contrast)):
                    if t2 == t:
                        continue
                    d = maps[s][t][layer] - maps[s][t2][layer]
                    if not d.max() > 0:  # dcsm.m divides by a negative max here; we skip (documented)
                        continue
                    d = d / d.max()
                    d = np.tanh(3 * d)
                    if d.max() > 0:
                        d[d <= 0] = 1e-20
                        total[c] = total[c] + d
    out = {}
    for c in requested:
        sur = total[c][top : top + height, left : left + width]
        if sur.max() > 0:
            sur = np.tanh(3 * (sur / sur.max()))
            sur[sur <= 0] = 1e-20
        out[c] = sur
    return out


def run_combine(maps, detected, requested, contrast, box):
    """The code under test on the same inputs (one image)."""
    arr = torch.tensor(np.array(maps), dtype=torch.float64)  # (S, T, L, N, N)
    count = arr.shape[1]
    total = torch.zeros(1, count, *arr.shape[-2:], dtype=torch.float64)
    valid = torch.ones(1, count, dtype=torch.bool)
    for s in range(arr.shape[0]):
        targets = torch.tensor([[c in requested and c in detected[s] for c in contrast]])
        accumulate(total, arr[s][None], valid, targets)
    return finish(total, box)[0]  # (T, H, W)


def test_combine_matches_the_literal_loops():
    rng = np.random.default_rng(0)
    scales, layers, n = 3, 4, 12
    contrast = [3, 0, 5, 1]  # classes 3 and 0 requested, 5 and 1 padded
    maps = [[[rng.random((n, n)) ** 2 for _ in range(layers)] for _ in contrast] for _ in range(scales)]
    maps[1][0][2] = maps[1][1][2] - 0.5  # class 3 below class 0 everywhere at one layer: no term
    detected = [{3, 0}, {3}, {0, 5}]  # class 0 gets no term at scale 1
    box = (2, 3, 7, 8)
    want = reference_combine(maps, detected, [3, 0], contrast, box)
    got = run_combine(maps, detected, [3, 0], contrast, box)
    assert got.shape == (4, 7, 8)
    np.testing.assert_allclose(got[0].numpy(), want[3], rtol=1e-12, atol=0)
    np.testing.assert_allclose(got[1].numpy(), want[0], rtol=1e-12, atol=0)
    assert (got[2:] == 0).all()  # padded classes get no map


def test_combine_by_hand():
    # one scale, one layer, 1x3 canvas: M_a = (1, 0, 2), M_b = (0, 1, 1), M_c = (0, 0, 4)
    m = [[[np.array([[1.0, 0, 2]])], [np.array([[0.0, 1, 1]])], [np.array([[0.0, 0, 4]])]]]
    got = run_combine(m, [{0, 1}], [0, 1], [0, 1, 2], (0, 0, 1, 3))
    # a - b = (1, -1, 1), max 1: tanh(3 (1, -1, 1)) -> (t3, 1e-20, t3)
    # a - c = (1, 0, -2), max 1: tanh(3 (1, 0, -2)) -> (t3, 1e-20, 1e-20)
    s_a = np.array([2 * T3, 2e-20, T3 + 1e-20])
    # b - a = (-1, 1, -1) -> (1e-20, t3, 1e-20); b - c = (0, 1, -3) -> (1e-20, t3, 1e-20)
    s_b = np.array([2e-20, 2 * T3, 2e-20])
    np.testing.assert_allclose(got[0, 0].numpy(), np.tanh(3 * s_a / s_a.max()), rtol=1e-12)
    np.testing.assert_allclose(got[1, 0].numpy(), np.tanh(3 * s_b / s_b.max()), rtol=1e-12)
    assert got[1, 0, 0] < 1e-15 and got[1, 0, 1] == pytest.approx(T3)


def test_the_negative_max_quirk_is_not_followed():
    # M_a < M_b everywhere: dcsm.m would add tanh(3 d / max d) = tanh(3 (2, 1)) (largest where a
    # is most dominated); here the term is skipped, and a class with no term has a zero map.
    m = [[[np.array([[0.0, 1.0]])], [np.array([[2.0, 2.0]])]]]
    got = run_combine(m, [{0, 1}], [0, 1], [0, 1], (0, 0, 1, 2))
    assert (got[0] == 0).all()
    s_b = np.tanh(3 * np.array([1.0, 0.5]))  # b - a = (2, 1), max 2
    np.testing.assert_allclose(got[1, 0].numpy(), np.tanh(3 * s_b / s_b.max()), rtol=1e-12)


def test_contrast_classes():
    evidence = torch.tensor([[0.1, 2.9, 0.3, 0.3, 1.0, 0.2], [1, 1, 1, 1, 1, 1.0]])  # (B, C)
    classes = torch.tensor([[4, -1, 4], [0, 1, 2]])  # image 0: one class, requested twice
    table, where = contrast_classes(classes, evidence, 4)
    # image 0: 4, then the highest evidence of the others: 1 (2.9), 2 and 3 (tie 0.3: lower index first)
    # image 1: 0, 1, 2, then 3 (all tie: lower index first)
    assert table.tolist() == [[4, 1, 2, 3], [0, 1, 2, 3]]
    assert where.tolist() == [[0, -1, 0], [0, 1, 2]]
    table, _ = contrast_classes(torch.tensor([[5, 0, 3, 2, 1]]), evidence[:1], 4)
    assert table.tolist() == [[5, 0, 3, 2, 1]]  # more requested classes than contrast: all kept, no padding


# --------------------------------------------------------------------------------------
# The canvas
# --------------------------------------------------------------------------------------


def test_canvas_box_as_dcsm_m():
    # dcsm.m, 1-based: start = (bsize - h + mod(h, 2)) / 2 + 1
    assert canvas_box(375, 500, 500) == (500, 63, 0)
    assert canvas_box(334, 333, 500) == (500, 83, 84)
    assert canvas_box(600, 20, 500) == (600, 0, 290)  # larger than the canvas: the canvas grows


class Normalised(nn.Module):
    """A stand-in model carrying a Classifier's mean/std buffers."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1))


def test_on_canvas_matches_pil_bicubic():
    model = Normalised()
    images = torch.rand(1, 3, 10, 13, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    canvas = on_canvas(model, images, 20, 1.0)  # (1, 3, 20, 20)
    black = (-model.mean / model.std).double()  # (1, 3, 1, 1)
    side, top, left = canvas_box(10, 13, 20)
    assert canvas.shape == (1, 3, 20, 20) and (top, left) == (5, 4)
    assert torch.equal(canvas[:, :, top : top + 10, left : left + 13], images)
    outside = torch.ones(20, 20, dtype=torch.bool)
    outside[top : top + 10, left : left + 13] = False
    assert torch.equal(canvas[0][:, outside], black[0, :, 0].expand(-1, int(outside.sum())))
    for scale, size in ((0.8, 16), (1.2, 24)):
        resized = on_canvas(model, images, 20, scale)  # (1, 3, n, n)
        assert resized.shape == (1, 3, size, size)
        # PIL's bicubic (a = -0.5, antialiased when shrinking), the same filter as MATLAB's imresize
        for ch in range(3):
            pil = Image.fromarray(canvas[0, ch].numpy().astype(np.float32), mode="F").resize((size, size), Image.BICUBIC)
            np.testing.assert_allclose(resized[0, ch].numpy(), np.asarray(pil), atol=1e-5)


# --------------------------------------------------------------------------------------
# Detection on a hand-built model
# --------------------------------------------------------------------------------------


class SizeModel(nn.Module):
    """Score maps whose values depend on the canvas side n only: class 0 is ``n - 15``, class 1
    ``15 - n``, class 2 ``-3``, class 3 the input's mean (0 on the zero-valued canvas)."""

    def forward_parts(self, x):
        b, _, n, _ = x.shape
        maps = torch.stack([x[:, 0] * 0 + (n - 15), x[:, 0] * 0 + (15 - n), x[:, 0] * 0 - 3, x.mean(1)], 1)  # (B, 4, n, n)
        return x, maps, maps.amax((2, 3))

    def forward(self, x):
        return self.forward_parts(x)[2]


def test_detect_by_hand():
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    images = torch.zeros(2, 3, 8, 8)
    images[1, :, 2, 3] = 5.0  # image 1: class 3's map peaks at 5 (1 px survives every resize above 0)
    present, evidence = detect(SizeModel(), images, scales=(0.8, 1.0, 1.2), canvas=16)  # sides 13, 16, 19
    # class 0: -2, 1, 4 (detected at 1.0 and 1.2); class 1: 2, -1, -4 (at 0.8 only); class 2 never
    assert present[:, :3].tolist() == [[True, True, False]] * 2
    assert present[:, 3].tolist() == [False, True]  # the zero canvas: sigmoid(0) = 0.5 is not > 0.5
    torch.testing.assert_close(evidence[0, :3], torch.tensor([sig(-2) + sig(1) + sig(4), sig(2) + sig(-1) + sig(-4), 3 * sig(-3)]))
    assert evidence[0, 3] == pytest.approx(1.5)
    same = DCSM(canvas=16).detect(SizeModel(), images)  # the method's own scales, canvas and threshold
    assert torch.equal(same[0], present) and torch.equal(same[1], evidence)
    present, _ = detect(SizeModel(), images, scales=(1.0,), canvas=16, threshold=0.8)
    assert present[0].tolist() == [False, False, False, False]  # sigmoid(1) = 0.73: no detection at all


# --------------------------------------------------------------------------------------
# End to end on a tiny fully convolutional network, against autograd + the literal loops
# --------------------------------------------------------------------------------------


class TinyFCN(nn.Module):
    """conv-ReLU-conv-ReLU features, a 1x1 head with bias: a miniature of the authors' network."""

    def __init__(self, classes: int = 5):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(6, classes, 1)
        with torch.no_grad():  # on the test image: class 0 detected at 1.0 and 1.2, class 1 at 1.0 only,
            self.head.bias.copy_(torch.tensor([-0.4, -0.27, -0.01, -1.0, -1.0]))  # class 2 at 1.0 and 1.2
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.3, 0.25]).view(1, 3, 1, 1))

    def score_maps(self, x):
        return self.head(self.features(x))

    def forward_parts(self, x):
        f = self.features(x)
        m = self.head(f)
        return f, m, m.amax((2, 3))

    def forward(self, x):
        return self.forward_parts(x)[2]


LAYERS = ("features.3", "head")  # the inputs of the second conv and of the head


class GuidedReLU(nn.Module):
    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g.clamp(min=0) * (x > 0).to(g.dtype)

    def forward(self, x):
        return self.Fn.apply(x)


def reference_layer_maps(model, x, cls, side):
    """Guided derivatives of sum_xy S_cls at the layers' inputs, by module replacement, as canvas maps."""
    ref = copy.deepcopy(model)
    for i, m in enumerate(ref.features):
        if isinstance(m, nn.ReLU):
            ref.features[i] = GuidedReLU()
    captured = {}
    for name in LAYERS:
        ref.get_submodule(name).register_forward_pre_hook(lambda m, inp, name=name: captured.__setitem__(name, inp[0]))
    x = x.clone().requires_grad_(True)
    grads = torch.autograd.grad(ref.score_maps(x)[:, cls].sum(), [captured[n] for n in LAYERS])
    return [F.interpolate(g.abs().amax(1, keepdim=True), size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy() for g in grads]


def test_dcsm_end_to_end_matches_the_reference():
    model = TinyFCN().double().eval()
    images = torch.randn(1, 3, 10, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    scales, canvas, threshold = (0.8, 1.0, 1.2), 20, 0.5
    with torch.no_grad():  # which classes are detected at which scale, straight from the model
        peaks = [torch.sigmoid(model.score_maps(on_canvas(model, images, canvas, s)).amax((2, 3)))[0] for s in scales]
    detected = [set(np.flatnonzero(p.numpy() > threshold).tolist()) for p in peaks]
    union = sorted(set().union(*detected))
    assert detected == [set(), {0, 1, 2}, {0, 2}]  # per-scale detection matters; one class is padded
    evidence = sum(peaks).numpy()
    others = [c for c in np.argsort(-evidence, kind="stable").tolist() if c not in union]
    contrast = union + others[: 4 - len(union)]
    maps = [[reference_layer_maps(model, on_canvas(model, images, canvas, s), c, canvas) for c in contrast] for s in scales]
    side, top, left = canvas_box(10, 12, canvas)
    want = reference_combine(maps, detected, union, contrast, (top, left, 10, 12))

    classes = torch.tensor([union + [-1]])  # (1, K): the detected classes, and a padding column
    before = snapshot(model)
    got = DCSM(canvas=canvas, layers=LAYERS)(model, images, classes)  # (1, K, H, W)
    assert_unchanged(model, before)
    assert got.shape == (1, len(union) + 1, 10, 12) and got.dtype == torch.float32
    for k, c in enumerate(union):
        np.testing.assert_allclose(got[0, k].numpy(), want[c], rtol=1e-5, atol=1e-7)
        assert got[0, k].amax() == pytest.approx(T3) and (got[0, k] > 0).all()
    assert (got[0, -1] == 0).all()
    # a requested class detected at no scale has no map
    never = [c for c in range(5) if c not in union][0]
    assert (DCSM(canvas=canvas, layers=LAYERS)(model, images, torch.tensor([[never]])) == 0).all()


def test_options_and_registration():
    registry = build_registry()
    method = registry.create("saliency", "dcsm", scales="1.0", canvas="64", contrast="3", signal="pooled", layers="layer3")
    assert method == DCSM(scales=(1.0,), canvas=64, contrast=3, signal="pooled", layers=("layer3",))
    assert DCSM() == DCSM(scales=(0.8, 1.0, 1.2), canvas=500, layers=(), contrast=4, threshold=0.5, signal="map")
    assert DCSM.shares_forward is False
    for bad in ({"scales": "0,1"}, {"threshold": "1.5"}, {"signal": "sum"}, {"contrast": "0"}):
        with pytest.raises(UsageError):
            registry.create("saliency", "dcsm", **bad)


def test_signal_map_needs_score_maps():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten())
    with pytest.raises(UsageError, match="signal=map needs class score maps"):
        dcsm_maps(model, torch.randn(1, 3, 8, 8), torch.tensor([[0]]), canvas=8, threshold=0.0, layers=("2",))
