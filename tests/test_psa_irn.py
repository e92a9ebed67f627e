"""PSA (AffinityNet) and IRN building blocks: confident regions, pair labels, networks, losses,
training steps and walks, against hand cases and literal re-derivations."""

import math

import numpy as np
import pydensecrf.densecrf
import pytest
import torch
import torch.nn.functional as F

from wssbench.methods import crf
from wssbench.methods.affinity import BackboneLevels, pair_labels, poly_sgd, random_crop
from wssbench.methods.random_walk import pair_indices
from wssbench_plugins import _irn, _psa
from wssbench_plugins.backbones import TimmBackbones

pytestmark = pytest.mark.usefixtures("one_thread")

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (20, 40, 210)


def three_blocks(side: int = 16) -> np.ndarray:
    """A (side, 3 * side, 3) image of a red, a green and a blue block, left to right."""
    image = np.zeros((side, 3 * side, 3), np.uint8)
    for i, colour in enumerate((RED, GREEN, BLUE)):
        image[:, i * side: (i + 1) * side] = colour
    return image


def block_values(side: int, values: list[float]) -> np.ndarray:
    """(side, 3 * side) with ``values[i]`` on block i."""
    return np.repeat(np.asarray(values, np.float32), side)[None].repeat(side, 0)


# ---- the CRFs' parameters, as cited ---------------------------------------------------------

def test_crf_parameters_are_the_authors():
    # psa tool/imutils.py lines 200-217; irn misc/imutils.py lines 156-170; CLIP-ES eval_cam_with_crf.py lines 87-94
    assert crf.PSA_CRF == crf.CRFParams(3, 3, 80, 13, 10, 10)
    assert crf.IRN_CRF == crf.CRFParams(3, 3, 50, 5, 10, 10)
    assert crf.CLIP_ES_CRF == crf.CRFParams(1, 3, 67, 3, 4, 10)
    assert crf.IRN_GT_PROB == 0.7
    assert (_psa.LOW_ALPHA, _psa.HIGH_ALPHA, _psa.RW_ALPHA, _psa.BETA, _psa.LOG_T, _psa.RADIUS) == (4, 32, 16, 8, 8, 5)
    assert (_irn.FG_THRESHOLD, _irn.BG_THRESHOLD, _irn.BETA, _irn.EXP_TIMES, _irn.SEM_SEG_BG) == (0.30, 0.05, 10, 8, 0.25)
    assert (_irn.TRAIN_RADIUS, _irn.WALK_RADIUS) == (10, 5)
    assert (_psa.Training().lr, _psa.Training().batch_size, _psa.Training().epochs, _psa.Training().crop_size,
            _psa.Training().weight_decay) == (0.1, 8, 8, 448, 5e-4)
    assert (_irn.Training().lr, _irn.Training().batch_size, _irn.Training().epochs, _irn.Training().crop_size,
            _irn.Training().weight_decay, _irn.Training().rescale) == (0.1, 32, 3, 512, 1e-4, (0.5, 1.5))


class RecordingCRF:
    """Stands in for pydensecrf's DenseCRF2D and records what it is given."""

    calls: list = []

    def __init__(self, w, h, n):
        self.n, self.h, self.w = n, h, w
        RecordingCRF.calls.append(("size", w, h, n))

    def setUnaryEnergy(self, unary):
        RecordingCRF.calls.append(("unary", unary.copy()))

    def addPairwiseGaussian(self, sxy, compat):
        RecordingCRF.calls.append(("gaussian", sxy, compat))

    def addPairwiseBilateral(self, sxy, srgb, rgbim, compat):
        RecordingCRF.calls.append(("bilateral", sxy, srgb, compat))

    def inference(self, t):
        RecordingCRF.calls.append(("iterations", t))
        return np.full((self.n, self.h * self.w), 1.0 / self.n, np.float32)


@pytest.mark.parametrize("params", [crf.PSA_CRF, crf.IRN_CRF, crf.CLIP_ES_CRF])
def test_crf_parameters_reach_pydensecrf(monkeypatch, params):
    monkeypatch.setattr(pydensecrf.densecrf, "DenseCRF2D", RecordingCRF)
    RecordingCRF.calls = []
    image = np.zeros((2, 3, 3), np.uint8)
    crf.crf_from_scores(image, np.full((2, 2, 3), 0.5, np.float32), params)
    crf.crf_from_labels(image, np.array([[0, 1, 1], [0, 0, 1]]), 2, params)
    kinds = {c[0]: c[1:] for c in RecordingCRF.calls}
    assert kinds["size"] == (3, 2, 2)
    assert kinds["gaussian"] == (params.gaussian_sxy, params.gaussian_compat)
    assert kinds["bilateral"] == (params.bilateral_sxy, params.bilateral_srgb, params.bilateral_compat)
    assert kinds["iterations"] == (params.iterations,)
    unary = RecordingCRF.calls[-4][1]  # the label unary: -log 0.7 for a pixel's own label, -log 0.3 for the other
    np.testing.assert_allclose(unary[:, 0], [-math.log(0.7), -math.log(0.3)], rtol=1e-6)
    np.testing.assert_allclose(unary[:, 1], [-math.log(0.3), -math.log(0.7)], rtol=1e-6)


# ---- confident regions ------------------------------------------------------------------------

def test_psa_confident_regions_by_hand():
    # one class: CAM 1 on red (sure foreground), 0.12 on green, 0 on blue. alpha 4: background
    # 0.88**4 = 0.60 > 0.12 on green (background amplified); alpha 32: 0.88**32 = 0.017 < 0.12
    # (background suppressed): green is neither sure foreground nor sure background -> 255
    side = 16
    image, cams = three_blocks(side), block_values(side, [1.0, 0.12, 0.0])[None]
    la = _psa.crf_with_alpha(image, cams, _psa.LOW_ALPHA)
    ha = _psa.crf_with_alpha(image, cams, _psa.HIGH_ALPHA)
    assert la.shape == ha.shape == (2, side, 3 * side)
    labels = _psa.confident_labels(la, ha)
    np.testing.assert_array_equal(labels, block_values(side, [1, 255, 0]))
    # pooled to stride 8 as train_aff.py does, the same labels per cell
    pooled = _psa.confident_labels(_psa.pool_scores(la, 8), _psa.pool_scores(ha, 8))
    np.testing.assert_array_equal(pooled, block_values(2, [1, 255, 0]))


def test_psa_labels_rules_and_no_score():
    # (K+1, h, w) stacks written directly: la argmax, ha argmax; the last column has no score at all
    la = np.array([[[0.9, 0.1, 0.2, 0.0]], [[0.1, 0.8, 0.1, 0.0]], [[0.0, 0.1, 0.7, 0.0]]])
    ha = np.array([[[0.9, 0.0, 0.1, 0.0]], [[0.1, 0.9, 0.1, 0.0]], [[0.0, 0.1, 0.8, 0.0]]])
    assert _psa.confident_labels(la, ha).tolist() == [[0, 1, 2, 255]]
    ha[0, 0, 0] = 0.0  # la says background, ha says class 1: not sure -> 255
    assert _psa.confident_labels(la, ha).tolist() == [[255, 1, 2, 255]]


def test_irn_confident_regions_by_hand():
    # two classes (VOC indices 4 and 11): red has class 4 at 0.9 (> 0.30: sure), green class 11
    # at 0.2 (foreground only under the 0.05 background: not sure -> 255), blue nothing above
    # 0.05 (background under both)
    side = 16
    image = three_blocks(side)
    cams = np.stack([block_values(side, [0.9, 0.0, 0.01]), block_values(side, [0.0, 0.2, 0.02])])
    labels = _irn.confident_labels(image, cams, keys=[4, 11])
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, block_values(side, [5, 255, 0]))


def test_irn_label_rescale_is_pil_nearest():
    label = np.arange(64, dtype=np.uint8).reshape(8, 8)
    reduced = _irn.rescale_nearest(label, 0.25)
    assert reduced.shape == (2, 2)
    # PIL's nearest samples the source pixel under each target pixel's centre: (i + 0.5) * 4 -> 2, 6
    assert reduced.tolist() == [[label[2, 2], label[2, 6]], [label[6, 2], label[6, 6]]]


# ---- pair labels ---------------------------------------------------------------------------------

def test_pair_labels_by_hand():
    labels = np.array([[0, 0, 1], [255, 1, 2]])
    src, dst = pair_indices(2, 3, 2, border="all")
    # offsets (0,1): 0-1 1-2 3-4 4-5; (1,-1): 1-3 2-4; (1,0): 0-3 1-4 2-5; (1,1): 0-4 1-5
    assert list(zip(src.tolist(), dst.tolist())) == [(0, 1), (1, 2), (3, 4), (4, 5), (1, 3), (2, 4), (0, 3), (1, 4), (2, 5), (0, 4), (1, 5)]
    bg, fg, neg = pair_labels(labels, src, dst)
    assert bg.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert fg.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert neg.tolist() == [0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1]


def test_pair_labels_follow_both_authors_rules():
    rng = np.random.default_rng(1)
    labels = rng.choice([0, 0, 3, 7, 20, 255], size=(2, 12, 13))
    src, dst = pair_indices(12, 13, 5, border="crop")
    bg, fg, neg = pair_labels(labels, src, dst)
    flat = labels.reshape(2, -1)
    a, b = flat[:, src], flat[:, dst]
    # PSA, voc12/data.py lines 160-171: valid = both < 255
    psa_valid = (a < 255) & (b < 255)
    assert np.array_equal(bg.numpy(), ((a == b) & (a == 0)).astype(np.float32))
    assert np.array_equal(fg.numpy(), ((a == b) & (a != 0) & psa_valid).astype(np.float32))
    assert np.array_equal(neg.numpy(), ((a != b) & psa_valid).astype(np.float32))
    # IRN, voc12/dataloader.py lines 87-103: valid = both < 21
    irn_valid = (a < 21) & (b < 21)
    assert np.array_equal(bg.numpy(), ((a == b) & irn_valid & (a == 0)).astype(np.float32))
    assert np.array_equal(fg.numpy(), ((a == b) & irn_valid & (a > 0)).astype(np.float32))
    assert np.array_equal(neg.numpy(), ((a != b) & irn_valid).astype(np.float32))


def test_random_crop_places_and_fills():
    image = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1) + 1
    label = np.ones((2, 3), np.uint8)
    out_image, out_label = random_crop([image, label], 4, [0.0, 255], np.random.default_rng(0))
    assert out_image.shape == (4, 4, 1) and out_label.shape == (4, 4)
    assert (out_image > 0).sum() == 6 and (out_label == 1).sum() == 6 and (out_label == 255).sum() == 10
    assert np.array_equal(out_image > 0, (out_label == 1)[..., None])  # one place for both
    big = np.arange(100, dtype=np.float32).reshape(10, 10)
    (crop,) = random_crop([big], 4, [0.0], np.random.default_rng(3))
    y, x = divmod(int(crop[0, 0]), 10)
    assert np.array_equal(crop, big[y: y + 4, x: x + 4])


# ---- optimiser -------------------------------------------------------------------------------------

def test_poly_sgd_keeps_the_momentum_quirk():
    w = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(1))
    optimizer, schedule = poly_sgd([{"params": [w], "lr": 0.1, "weight_decay": 5e-4},
                                    {"params": [b], "lr": 0.2, "weight_decay": 0.0}], 0.1, 5e-4, max_step=4)
    assert optimizer.defaults["momentum"] == 5e-4  # the weight-decay value in SGD's momentum slot
    assert [g["momentum"] for g in optimizer.param_groups] == [5e-4, 5e-4]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]
    lrs = []
    for _ in range(6):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    want = [(1 - s / 4) ** 0.9 for s in (0, 1, 2, 3, 3, 3)]  # PolyOptimizer: the last value is kept past max_step
    np.testing.assert_allclose([l[0] for l in lrs], [0.1 * m for m in want])
    np.testing.assert_allclose([l[1] for l in lrs], [0.2 * m for m in want])


# ---- networks ---------------------------------------------------------------------------------------

def tiny_backbone(output_stride: int):
    """timm's test_resnet (0.4 M parameters) through wssbench's timm backbone provider."""
    torch.manual_seed(0)
    model, norm = TimmBackbones(output_stride=output_stride).build("test_resnet")
    return model, norm


def test_affinity_net_features_and_affinity():
    model, _ = tiny_backbone(8)
    net = _psa.AffinityNet(model).eval()
    assert net.stride == 8
    x = torch.randn(2, 3, 96, 80)
    features = net.features(x)
    assert features.shape == (2, 448, 12, 10)
    assert (features > -1).all()  # ELU
    src, dst = (torch.from_numpy(a) for a in pair_indices(12, 10, 5, border="crop"))
    aff = net.pair_affinity(features, src, dst)
    assert aff.shape == (2, len(src)) and (aff > 0).all() and (aff <= 1).all()
    f = features.flatten(2)
    for m in (0, 17, len(src) - 1):  # exp(-mean over channels of |f_i - f_j|), resnet38_aff.py line 58
        want = torch.exp(-(f[1, :, src[m]] - f[1, :, dst[m]]).abs().mean())
        torch.testing.assert_close(aff[1, m], want)
    # the head as the authors': 1x1 convs without bias, 64 + 128 + 256 = 448
    assert [c.out_channels for c in net.reduce] == [64, 128, 256] and all(c.bias is None for c in net.reduce)
    assert net.merge.in_channels == net.merge.out_channels == 448 and net.merge.bias is None


def test_affinity_net_upsamples_coarse_levels():
    model, _ = tiny_backbone(32)  # no dilation: levels at strides 8, 16, 32
    net = _psa.AffinityNet(model).eval()
    assert net.stride == 8 and net.levels.reductions == [8, 16, 32]
    assert net.features(torch.randn(1, 3, 64, 64)).shape == (1, 448, 8, 8)


def test_psa_loss_by_hand():
    aff = torch.tensor([[0.5, 0.9, 0.2, 0.8]])
    bg, fg, neg = torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[0, 1.0, 0, 0]]), torch.tensor([[0, 0, 1.0, 1.0]])
    loss, parts = _psa.affinity_loss(aff, bg, fg, neg)
    want_bg, want_fg = -math.log(0.5 + 1e-5), -math.log(0.9 + 1e-5)
    want_neg = (-math.log(1 + 1e-5 - 0.2) - math.log(1 + 1e-5 - 0.8)) / 2
    assert float(loss) == pytest.approx(want_bg / 4 + want_fg / 4 + want_neg / 2, rel=1e-4)
    assert parts["neg"] == pytest.approx(want_neg, rel=1e-4)


def test_irn_loss_by_hand():
    aff = torch.tensor([[0.5, 0.9, 0.2, 0.8]])
    bg, fg, neg = torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[0, 1.0, 0, 0]]), torch.tensor([[0, 0, 1.0, 1.0]])
    loss, _ = _irn.boundary_loss(aff, bg, fg, neg)
    pos = -math.log(0.5 + 1e-5) / 2 - math.log(0.9 + 1e-5) / 2
    ng = (-math.log(1 + 1e-5 - 0.2) - math.log(1 + 1e-5 - 0.8)) / 2
    assert float(loss) == pytest.approx((pos + ng) / 2, rel=1e-4)


def test_irn_paths_by_hand():
    assert _irn._path(0, 3) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert _irn._path(1, 2) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]  # distance to the line < 1
    assert _irn._path(2, -1) == [(0, -1), (0, 0), (1, -1), (1, 0), (2, -1), (2, 0)]
    assert _irn._path(3, 0) == [(0, 0), (1, 0), (2, 0), (3, 0)]
    # (3, 3): 9 (x - y)**2 / 18 < 1, |x - y| <= 1; (2, 4): (2x - 4y)**2 / 20 < 1, |x - 2y| <= 2
    assert _irn._path(3, 3) == [(y, x) for y in range(4) for x in range(4) if abs(x - y) <= 1]
    assert _irn._path(2, 4) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (2, 4)]


@pytest.mark.parametrize("border", ["crop", "all"])
def test_irn_affinity_is_one_minus_the_highest_boundary_between(border):
    h, w, radius = 9, 11, 4
    boundary = torch.full((1, h, w), 0.1)
    boundary[0, :, 5] = 0.9  # a vertical class boundary at column 5
    aff = _irn.path_affinity(boundary, radius, border)[0]
    src, dst = pair_indices(h, w, radius, border)
    xs, xd = src % w, dst % w
    crosses = (np.minimum(xs, xd) <= 5) & (5 <= np.maximum(xs, xd))
    np.testing.assert_allclose(aff.numpy(), np.where(crosses, 0.1, 0.9), rtol=1e-6)


def test_boundary_net_shape_and_frozen_backbone():
    model, _ = tiny_backbone(16)
    net = _irn.BoundaryNet(model)
    assert net.levels.reductions == [2, 4, 8, 16, 16]
    logits = net(torch.randn(2, 3, 64, 48))
    assert logits.shape == (2, 1, 16, 12)
    assert not any(p.requires_grad for p in net.levels.parameters())
    for branch in net.branches:  # 1x1 conv to 32 without bias, GroupNorm(4, 32), ReLU last
        conv = next(m for m in branch if isinstance(m, torch.nn.Conv2d))
        norm = next(m for m in branch if isinstance(m, torch.nn.GroupNorm))
        assert conv.out_channels == 32 and conv.bias is None and norm.num_groups == 4
        assert isinstance(branch[-1], torch.nn.ReLU)
    assert isinstance(net.branches[0][0], torch.nn.MaxPool2d)  # the stride-2 level pooled to stride 4
    assert net.out.in_channels == 32 * 5 and net.out.bias is not None


def test_boundary_map_averages_the_flip():
    model, _ = tiny_backbone(16)
    net = _irn.BoundaryNet(model).eval()
    image = torch.randn(1, 3, 40, 36)
    got = _irn.boundary_map(net, image, pad_to=64)
    assert got.shape == (10, 9)
    with torch.no_grad():
        plain = net(F.pad(image, (0, 28, 0, 24)))[0, 0, :10, :9]
        flipped = net(F.pad(image.flip(-1), (0, 28, 0, 24)))[0, 0, :10, :9].flip(-1)
    torch.testing.assert_close(got, torch.sigmoid(plain / 2 + flipped / 2))


def test_backbone_levels_freeze_the_stem_and_batch_norms():
    model, _ = tiny_backbone(8)
    levels = BackboneLevels(model, [-3, -2, -1], freeze="stem")
    assert not model.conv1[0].weight.requires_grad and not model.bn1.weight.requires_grad
    assert model.layer2[0].conv1.weight.requires_grad and not model.layer2[0].bn1.weight.requires_grad
    levels.train()
    assert not model.layer2[0].bn1.training
    weights, biases = levels.parameter_groups()
    assert all(p.requires_grad for p in weights + biases) and all(p is not model.conv1[0].weight for p in weights)


# ---- training a few steps ------------------------------------------------------------------------

def _scene(rng, side=80):
    """A uint8 image with one bright square on a dark background, and its square mask."""
    image = rng.integers(0, 60, size=(side, side, 3), dtype=np.uint8)
    y, x = rng.integers(8, side // 2, size=2)
    mask = np.zeros((side, side), bool)
    mask[y: y + side // 3, x: x + side // 3] = True
    image[mask] = (230, 200, 40)
    return image, mask


def test_psa_trains_a_few_steps():
    model, norm = tiny_backbone(8)
    net = _psa.AffinityNet(model)
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(4):
        image, mask = _scene(rng)
        cams = (mask * 0.9 + 0.05).astype(np.float32)[None]
        samples.append(_psa.Sample(image, _psa.crf_with_alpha(image, cams, 4), _psa.crf_with_alpha(image, cams, 32)))
    stem = model.conv1[0].weight.detach().clone()
    head = net.merge.weight.detach().clone()
    bn_mean = model.layer2[0].bn1.running_mean.clone()
    config = _psa.Training(batch_size=2, epochs=1, crop_size=96)
    losses = _psa.train(net, samples, config, norm["mean"], norm["std"], seed=0)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert not torch.equal(net.merge.weight, head)
    assert torch.equal(model.conv1[0].weight, stem) and torch.equal(model.layer2[0].bn1.running_mean, bn_mean)
    # the trained net walks: scores for background + 1 class at the image's size
    image, mask = _scene(rng)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - torch.tensor(norm["mean"])[:, None, None]) / torch.tensor(norm["std"])[:, None, None]
    scores = _psa.walk(net, x, torch.from_numpy(mask * 0.9 + 0.05).float()[None])
    assert scores.shape == (2, 80, 80) and torch.isfinite(scores).all()


def test_irn_trains_a_few_steps():
    model, norm = tiny_backbone(16)
    net = _irn.BoundaryNet(model)
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(4):
        image, mask = _scene(rng)
        cams = (mask * 0.9 + 0.02).astype(np.float32)[None]
        samples.append((image, _irn.confident_labels(image, cams, keys=[6])))
    backbone = [p.detach().clone() for p in model.parameters()]
    head = net.out.weight.detach().clone()
    losses = _irn.train(net, samples, _irn.Training(batch_size=2, epochs=1, crop_size=96), norm["mean"], norm["std"], seed=0)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert not torch.equal(net.out.weight, head)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), backbone))


# ---- the walks' pre- and post-processing, against literal computations ------------------------

def test_psa_walk_without_walking_is_the_pooled_scores():
    """beta huge and log_t 0 make T the identity: what remains is infer_aff.py's processing around
    the walk, written here literally (bg at full size, zero pad, 8x8 means, bilinear, crop)."""
    model, _ = tiny_backbone(8)
    net = _psa.AffinityNet(model).eval()
    rng = np.random.default_rng(2)
    h, w = 75, 90
    cams = torch.from_numpy(rng.uniform(0, 1, size=(2, h, w)).astype(np.float32))
    got = _psa.walk(net, torch.randn(1, 3, h, w), cams, alpha=16, beta=1e4, log_t=0)
    full = np.concatenate([(1 - cams.numpy().max(0, keepdims=True)) ** 16, cams.numpy()])
    padded = np.zeros((3, 80, 96), np.float32)
    padded[:, :h, :w] = full
    pooled = padded.reshape(3, 10, 8, 12, 8).mean(axis=(2, 4))
    want = F.interpolate(torch.from_numpy(pooled)[None], size=(80, 96), mode="bilinear", align_corners=False)[0, :, :h, :w]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_irn_walk_without_walking_is_the_masked_cams():
    rng = np.random.default_rng(3)
    cams = torch.from_numpy(rng.uniform(0, 1, size=(2, 6, 7)).astype(np.float32))
    boundary = torch.from_numpy(rng.uniform(0, 0.5, size=(6, 7)).astype(np.float32))
    got = _irn.walk(cams, boundary, size=(22, 27), beta=1e4, exp_times=0)
    x = cams * (1 - boundary)
    up = F.interpolate(x[None], scale_factor=4, mode="bilinear", align_corners=False)[0, :, :22, :27]
    want = torch.cat([torch.full((1, 22, 27), 0.25), up / up.max()])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["dense", "sparse"])
def test_irn_walk_stops_at_the_boundary(method):
    """Seeds of class 0 on the left, class 1 on the right, a boundary between: each side fills with its class."""
    h, w = 10, 16
    boundary = torch.zeros(h, w)
    boundary[:, 8] = 1.0
    cams = torch.zeros(2, h, w)
    cams[0, 4, 2] = 1.0
    cams[1, 5, 13] = 1.0
    scores = _irn.walk(cams, boundary, size=(4 * h, 4 * w), bg_threshold=0.0, method=method)
    labels = scores.argmax(0)
    assert (labels[:, :28] == 1).all() and (labels[:, 36:] == 2).all()


def test_irn_walk_of_nothing_is_background():
    scores = _irn.walk(torch.zeros(1, 4, 4), torch.zeros(4, 4), size=(16, 16))
    assert (scores.argmax(0) == 0).all() and torch.isfinite(scores).all()


def test_training_crops_pad_as_each_author():
    """PSA crops the jittered uint8 image and normalises afterwards (padding: black); IRN normalises
    first (padding: 0, the mean colour). Either way the padding's labels are 255."""
    mean, std = np.array([0.5, 0.4, 0.3], np.float32), np.array([0.2, 0.2, 0.2], np.float32)
    image = np.full((16, 24, 3), 200, np.uint8)
    cams = np.ones((1, 16, 24), np.float32)
    la = np.concatenate([np.zeros_like(cams), cams])  # class 1 everywhere under both alphas
    sample = _psa.Sample(image, la, la)
    config = _psa.Training(crop_size=40, jitter=(0, 0, 0, 0))
    x, labels = _psa._augment(sample, config, 8, mean, std, np.random.default_rng(0))
    assert x.shape == (3, 40, 40) and labels.shape == (5, 5)
    black = (0 - mean) / std
    assert np.isclose(x[:, 0, 0], black).all() or np.isclose(x[:, -1, -1], black).all()
    assert set(np.unique(labels)) <= {1, 255} and (labels == 255).any() and (labels == 1).any()
    x, labels = _irn._augment(image, np.ones((16, 24), np.uint8), _irn.Training(crop_size=40, rescale=(1, 1)), mean, std,
                              np.random.default_rng(0))
    assert x.shape == (3, 40, 40) and labels.shape == (10, 10)
    assert (x == 0).all(axis=0).sum() == 40 * 40 - 16 * 24  # the padding, and nothing else, is 0
    assert set(np.unique(labels)) == {1, 255}
