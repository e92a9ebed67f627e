"""Back-propagation saliency (``bp``, ``gbp``, ``deconv``): captum agreement, the ReLU6 rule,
functional rectifiers, padding, per-image classes, unsupported activations, and a model left
exactly as it was.

Random weights, ``pretrained=False``, 32 px inputs, float64 models so that the comparison with
captum is tight.
"""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import wssbench_plugins.saliency as saliency_plugin
from wssbench.classifier.model import Classifier
from wssbench.errors import UsageError
from wssbench.host.registry import build_registry
from wssbench.methods.saliency import backprop, class_gradients, record, rules, trace_gradients
from wssbench_plugins.saliency import Deconvnet, GuidedBP, MultiLayer, VanillaBP

NUM_CLASSES = 5
METHODS = {"bp": VanillaBP(), "gbp": GuidedBP(), "deconv": Deconvnet()}
CAPTUM = {"bp": "Saliency", "gbp": "GuidedBackprop", "deconv": "Deconvolution"}


def make_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    kwargs = {"mlp_ratio": 1 / 16} if name.startswith("vgg") else {}  # a small pre-logits MLP
    return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **kwargs).double().eval()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def resnet():
    return make_model("resnet18")


@pytest.fixture(scope="module")
def vgg():
    return make_model("vgg16")  # all 13 convolutions; only the pre-logits MLP is narrowed


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)  # (B, 3, H, W)


def captum_map(method: str, model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    captum_attr = pytest.importorskip("captum.attr")  # the reference: only these tests need it
    attr = getattr(captum_attr, CAPTUM[method])(model)
    kwargs = {"abs": True} if method == "bp" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = attr.attribute(images.clone(), target=target, **kwargs)  # (B, 3, H, W)
    return a.abs().amax(dim=1)  # (B, H, W)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max())


# --------------------------------------------------------------------------------------
# Agreement with captum
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet", pytest.param("vgg", marks=pytest.mark.slow)])  # vgg: ~1.5 s each
@pytest.mark.parametrize("method", list(METHODS))
def test_matches_captum(method, arch, images, request):
    model = request.getfixturevalue(arch)
    classes = torch.tensor([[1, 4, 0], [3, 1, 2]])  # (B, K): different classes per image
    maps = METHODS[method](model, images, classes)  # (B, K, H, W)
    assert maps.shape == (2, 3, 32, 32) and maps.dtype == torch.float32
    assert (maps >= 0).all() and maps.amax() > 0
    for k in range(classes.shape[1]):
        expected = captum_map(method, model, images, classes[:, k])  # (B, H, W)
        assert rel_diff(maps[:, k], expected) <= 1e-5, (method, arch, k)


def test_rules_differ(resnet, images):
    """The three rules give three different maps (the hooks really are applied)."""
    classes = torch.tensor([[2], [2]])
    bp, gbp, dc = (METHODS[m](resnet, images, classes) for m in ("bp", "gbp", "deconv"))
    assert rel_diff(bp, gbp) > 1e-2 and rel_diff(gbp, dc) > 1e-2 and rel_diff(bp, dc) > 1e-2


# --------------------------------------------------------------------------------------
# Classes: padding, K, per-image classes, determinism
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
def test_padding_and_single_class(method, resnet, images):
    fn = METHODS[method]
    classes = torch.tensor([[1, -1, 3], [-1, -1, 0]])  # column 1 is all padding
    maps = fn(resnet, images, classes)  # (B, K, H, W)
    assert maps.shape == (2, 3, 32, 32)
    assert (maps[0, 1] == 0).all() and (maps[1, 0] == 0).all() and (maps[1, 1] == 0).all()
    # every real entry equals the K=1 map of the same class, computed on its own
    for b, k in [(0, 0), (0, 2), (1, 2)]:
        single = fn(resnet, images[b : b + 1], classes[b : b + 1, k : k + 1])  # (1, 1, H, W)
        assert single.shape == (1, 1, 32, 32)
        assert rel_diff(maps[b, k], single[0, 0]) <= 1e-6


def test_all_padding_and_empty(resnet, images):
    assert (METHODS["gbp"](resnet, images, torch.full((2, 2), -1)) == 0).all()
    assert METHODS["bp"](resnet, images, torch.zeros((2, 0), dtype=torch.long)).shape == (2, 0, 32, 32)


@pytest.mark.parametrize("method", list(METHODS))
def test_deterministic(method, resnet, images):
    classes = torch.tensor([[0, 2], [4, 1]])
    first = METHODS[method](resnet, images, classes)
    second = METHODS[method](resnet, images, classes)
    assert torch.equal(first, second)


@pytest.mark.parametrize("rule", ["vanilla", "guided"])
def test_batched_backward_matches_loop(rule, resnet, images, monkeypatch):
    """The alternative single vmapped backward (is_grads_batched) gives the same gradients."""
    classes = torch.tensor([[1, -1, 3], [0, -1, 3]])
    loop = class_gradients(resnet, images, classes, rule=rule)  # (B, K, 3, H, W)
    monkeypatch.setattr(backprop, "BATCHED_BACKWARD", True)
    batched = class_gradients(resnet, images, classes, rule=rule)
    assert loop.shape == batched.shape == (2, 3, 3, 32, 32)
    assert rel_diff(batched, loop) <= 1e-12 and (loop[:, 1] == 0).all()


def test_reduce(resnet, images):
    classes = torch.tensor([[1, 2], [0, -1]])
    full = class_gradients(resnet, images, classes, rule="deconv")  # (B, K, 3, H, W)
    reduced = class_gradients(resnet, images, classes, rule="deconv", reduce=lambda g: g.sum((1, 2, 3)))  # (B, K)
    assert reduced.shape == (2, 2)
    assert rel_diff(reduced, full.sum((2, 3, 4))) <= 1e-12


def test_bad_classes(resnet, images):
    with pytest.raises(UsageError, match="out of range"):
        METHODS["bp"](resnet, images, torch.tensor([[0], [NUM_CLASSES]]))
    with pytest.raises(UsageError, match=r"\(B, K\)"):
        METHODS["bp"](resnet, images, torch.tensor([0, 1]))


def test_no_grad_caller_and_float32(images):
    model = make_model("resnet18").float()
    with torch.no_grad():
        maps = METHODS["gbp"](model, images.float(), torch.tensor([[1], [2]]))
    assert maps.dtype == torch.float32 and maps.amax() > 0
    with torch.inference_mode():
        again = METHODS["gbp"](model, images.float(), torch.tensor([[1], [2]]))
    assert torch.equal(maps, again)


# --------------------------------------------------------------------------------------
# The model is left exactly as it was
# --------------------------------------------------------------------------------------

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


def snapshot(model: nn.Module) -> dict:
    return {
        "modules": [(name, id(m), type(m)) for name, m in model.named_modules()],
        "hooks": [(name, d, dict(getattr(m, d, {}))) for name, m in model.named_modules() for d in HOOK_DICTS],
        "inplace": [(name, m.inplace) for name, m in model.named_modules() if hasattr(m, "inplace")],
        "training": [(name, m.training) for name, m in model.named_modules()],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "grads": [(name, p.grad) for name, p in model.named_parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    for key in ("modules", "hooks", "inplace", "training", "requires_grad", "grads"):
        assert after[key] == before[key], key
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("method", list(METHODS))
def test_model_left_unchanged(method, mode, images):
    model = make_model("resnet18").train(mode == "train")
    model.conv1.weight.requires_grad_(False)  # a mixed requires_grad state must survive
    assert any(getattr(m, "inplace", False) for m in model.modules())  # timm's in-place ReLUs
    before = snapshot(model)
    maps = METHODS[method](model, images, torch.tensor([[0, 1], [2, -1]]))
    assert maps.amax() > 0
    assert_unchanged(model, before)
    # an error after the forward pass (hooks installed, flags switched) leaves it unchanged too
    with pytest.raises(UsageError):
        METHODS[method](model, images, torch.tensor([[0], [99]]))
    assert_unchanged(model, before)


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", list(METHODS))
def test_model_unchanged_after_exception_in_forward(method):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.ReLU6(inplace=True), Boom())
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        METHODS[method](model, torch.randn(1, 3, 8, 8), torch.tensor([[0]]))
    assert_unchanged(model, before)


# --------------------------------------------------------------------------------------
# Activations where guided back-propagation is undefined
# --------------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc", nn.Conv2d(3, 3, 1))
        self.mlp.add_module("act", act)

    def forward(self, x):
        return self.mlp(self.relu(self.conv(x)))


class Tiny(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.Sequential(Block(act))
        self.head = nn.Linear(3, NUM_CLASSES)

    def forward(self, x):
        return self.head(self.blocks(x).mean((2, 3)))


@pytest.mark.parametrize("act", [nn.GELU(), nn.SiLU(), nn.Hardswish(), nn.Mish(), nn.Sigmoid(),
                                 timm.layers.activations.Swish(), timm.layers.activations.GELU()])
@pytest.mark.parametrize("method", ["gbp", "deconv"])
def test_unsupported_activation(method, act):
    model = Tiny(act)
    x, classes = torch.randn(2, 3, 8, 8), torch.tensor([[0], [1]])
    before = snapshot(model)
    name = type(act).__name__
    with pytest.raises(UsageError, match=rf"^{method}: .* undefined for {name} at 'blocks\.0\.mlp\.act'.*unsupported=ignore"):
        METHODS[method](model, x, classes)
    with pytest.raises(UsageError, match=name):  # also when there is nothing to compute
        METHODS[method](model, x, torch.full((2, 1), -1))
    assert_unchanged(model, before)
    # bp works on any model; unsupported=ignore leaves the activation as plain autograd
    assert METHODS["bp"](model, x, classes).amax() > 0
    ignored = {"gbp": GuidedBP, "deconv": Deconvnet}[method](unsupported="ignore")(model, x, classes)
    assert ignored.shape == (2, 1, 8, 8) and torch.isfinite(ignored).all()
    assert_unchanged(model, before)


def test_bad_unsupported_option():
    with pytest.raises(ValueError):
        GuidedBP(unsupported="maybe")


# --------------------------------------------------------------------------------------
# ReLU6 by hand, class_gradients, and taps at intermediate layers
# --------------------------------------------------------------------------------------


class SumPool(nn.Module):
    def forward(self, x):
        return x.sum((2, 3))


def relu6_model() -> nn.Sequential:
    """conv1x1 (3 -> 4) -> ReLU6 (in place) -> conv1x1 (4 -> 2 classes) -> global sum."""
    conv = nn.Conv2d(3, 4, 1, bias=False)
    head = nn.Conv2d(4, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[2.0, 0, 0], [1, 0, 2], [-1, 0, 0], [0, 0, 1]])[:, :, None, None])
        head.weight.copy_(torch.tensor([[1.0, 1, 1, -1], [-1, 0, 0, 1]])[:, :, None, None])
    return nn.Sequential(conv, nn.ReLU6(inplace=True), head, SumPool()).double()


# Pixel 0 has input (1, 2, 3): pre-activations z = (2, 7, -1, 3). Unit 1 is above 6 (gate
# closed), unit 2 below 0 (closed), units 0 and 3 inside (0, 6). Pixel 1 is all zeros: z = 0,
# every gate closed. The signal reaching the ReLU6 outputs is the head row of the class:
# class 0: g = (1, 1, 1, -1), class 1: g = (-1, 0, 0, 1). d/dx = conv.weight^T (modified g).
RELU6_EXPECTED = {
    # vanilla: g * [0 < z < 6]
    "vanilla": [[[2, 0, -1], [0, 0, 0]], [[-2, 0, 1], [0, 0, 0]]],
    # guided: g * [0 < z < 6] * [g > 0]
    "guided": [[[2, 0, 0], [0, 0, 0]], [[0, 0, 1], [0, 0, 0]]],
    # deconv: g * [g > 0], gate ignored (so the all-zero pixel gets signal too)
    "deconv": [[[2, 0, 2], [2, 0, 2]], [[0, 0, 1], [0, 0, 1]]],
}


def relu6_images() -> torch.Tensor:
    x = torch.zeros(1, 3, 1, 2, dtype=torch.float64)  # (B, 3, H, W): one row of two pixels
    x[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])
    return x


@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconv"])
def test_relu6_by_hand(rule):
    model = relu6_model()
    before = snapshot(model)
    grads = class_gradients(model, relu6_images(), torch.tensor([[0, 1]]), rule=rule)  # (1, K, 3, 1, 2)
    assert grads.shape == (1, 2, 3, 1, 2)
    expected = torch.tensor(RELU6_EXPECTED[rule], dtype=torch.float64)  # (K, pixel, channel)
    torch.testing.assert_close(grads[0, :, :, 0].transpose(1, 2), expected, rtol=0, atol=0)
    maps = {"vanilla": VanillaBP(), "guided": GuidedBP(), "deconv": Deconvnet()}[rule](
        model, relu6_images(), torch.tensor([[0, 1]]))  # (1, K, 1, 2)
    torch.testing.assert_close(maps[0, :, 0], expected.abs().amax(-1).float(), rtol=0, atol=0)
    assert_unchanged(model, before)


def test_relu6_matches_autograd_for_bp():
    """Vanilla BP through ReLU6 is ordinary autograd (gate 0 < x < 6, not x > 0)."""
    model = relu6_model()
    x = relu6_images().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[0, 0], x)
    grads = class_gradients(model, relu6_images(), torch.tensor([[0]]))  # (1, 1, 3, 1, 2)
    assert torch.equal(grads[0, 0], g[0])


def test_gradients_at_a_layer():
    model = relu6_model()
    # at the ReLU6 output the signal is the head row whatever the rule (no rectifier above)
    for rule in ("vanilla", "guided"):
        at_act = class_gradients(model, relu6_images(), torch.tensor([[0, 1]]), rule=rule, at="1")  # (1, K, 4, 1, 2)
        assert at_act.shape == (1, 2, 4, 1, 2)
        head = model[2].weight[:, :, 0, 0]  # (2, 4)
        assert torch.equal(at_act[0, :, :, 0, 0], head) and torch.equal(at_act[0, :, :, 0, 1], head)
    # at the conv output (the ReLU6 input) the rule is applied once
    at_conv = class_gradients(model, relu6_images(), torch.tensor([[0]]), rule="guided", at="0")  # (1, 1, 4, 1, 2)
    assert at_conv[0, 0, :, 0, 0].tolist() == [1, 0, 0, 0] and at_conv[0, 0, :, 0, 1].tolist() == [0, 0, 0, 0]
    with pytest.raises(UsageError, match="no submodule"):
        class_gradients(model, relu6_images(), torch.tensor([[0]]), at="nope")


def test_gradients_at_a_timm_layer(resnet, images):
    """The gradient at a layer equals autograd through the rest of the network."""
    classes = torch.tensor([[3], [1]])
    tapped = class_gradients(resnet, images, classes, at="layer4")  # (B, 1, 512, 1, 1)
    feats = resnet.forward_features(images).detach().requires_grad_(True)  # layer4 output
    scores = resnet.forward_head(feats)  # (B, C)
    (g,) = torch.autograd.grad(scores.gather(1, classes).sum(), feats)
    assert tapped.shape == (2, 1, 512, 1, 1)
    assert rel_diff(tapped[:, 0], g) <= 1e-12


# --------------------------------------------------------------------------------------
# Functional rectifiers (F.relu & co. called inside a forward), by hand
# --------------------------------------------------------------------------------------


class Functional(nn.Module):
    """``relu6_model``'s layers with the rectifier called as a function in ``forward``."""

    def __init__(self, act):
        super().__init__()
        self.conv, _, self.head, self.pool = relu6_model()
        self.act = act

    def forward(self, x):
        return self.pool(self.head(self.act(self.conv(x))))


def relu_in_place(z):
    z.relu_()  # the return value is ignored: the caller relies on the in-place write
    return z


# As RELU6_EXPECTED with the gate x > 0: unit 1 (z = 7) is open now.
RELU_EXPECTED = {
    "vanilla": [[[3, 0, 1], [0, 0, 0]], [[-2, 0, 1], [0, 0, 0]]],
    "guided": [[[3, 0, 2], [0, 0, 0]], [[0, 0, 1], [0, 0, 0]]],
    "deconv": [[[2, 0, 2], [2, 0, 2]], [[0, 0, 1], [0, 0, 1]]],
}
FUNCTIONAL = {
    "F.relu": (F.relu, RELU_EXPECTED),
    "F.relu-inplace": (lambda z: F.relu(z, inplace=True), RELU_EXPECTED),
    "torch.relu": (torch.relu, RELU_EXPECTED),
    "Tensor.relu": (lambda z: z.relu(), RELU_EXPECTED),
    "Tensor.relu_": (relu_in_place, RELU_EXPECTED),
    "F.relu6": (F.relu6, RELU6_EXPECTED),
    "F.relu6-inplace": (lambda z: F.relu6(z, inplace=True), RELU6_EXPECTED),
    "F.hardtanh(0,6)": (lambda z: F.hardtanh(z, 0.0, 6.0), RELU6_EXPECTED),
}


@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconv"])
@pytest.mark.parametrize("act", list(FUNCTIONAL))
def test_functional_rectifier_by_hand(act, rule):
    fn, expected = FUNCTIONAL[act]
    grads = class_gradients(Functional(fn), relu6_images(), torch.tensor([[0, 1]]), rule=rule)  # (1, K, 3, 1, 2)
    want = torch.tensor(expected[rule], dtype=torch.float64)  # (K, pixel, channel)
    torch.testing.assert_close(grads[0, :, :, 0].transpose(1, 2), want, rtol=0, atol=0)


def test_captum_misses_functional_relu():
    """captum's GuidedBackprop falls back to vanilla BP on a functional relu; gbp does not."""
    model, x, classes = Functional(F.relu), relu6_images(), torch.tensor([[1]])
    assert GuidedBP()(model, x, classes)[0, 0, 0].tolist() == [1, 0]  # max |(0, 0, 1)|
    assert VanillaBP()(model, x, classes)[0, 0, 0].tolist() == [2, 0]  # max |(-2, 0, 1)|
    assert captum_map("gbp", model, x, classes[:, 0])[0, 0].tolist() == [2, 0]


class Mixed(nn.Module):
    """Two rectifier modules (in place) and one functional rectifier."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2, self.head = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, NUM_CLASSES)
        self.act1, self.act2 = nn.ReLU(inplace=True), nn.ReLU6()

    def forward(self, x):
        x = F.relu(self.conv2(self.act1(self.conv1(x))))
        return self.head(self.act2(x).mean((2, 3)))


@pytest.mark.parametrize("method", ["gbp", "deconv"])
def test_each_rectifier_gets_the_rule_once(method, monkeypatch):
    calls = []
    real = rules.rectify
    monkeypatch.setattr(rules, "rectify", lambda *a: calls.append(a[3]) or real(*a))
    model = Mixed()
    before = snapshot(model)
    METHODS[method](model, torch.randn(1, 3, 8, 8), torch.tensor([[0, 1]]))
    assert sorted(calls) == [(0.0, 6.0), (0.0, float("inf")), (0.0, float("inf"))]  # not the modules' own F.relu
    assert_unchanged(model, before)


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------


def test_registered():
    registry = build_registry(plugins=[saliency_plugin], entry_points=False)
    assert registry.names("saliency") == ["bp", "deconv", "gbp", "multilayer"]
    descriptions = {e.name: e.description for e in registry.entries("saliency")}
    assert descriptions["gbp"].startswith("Guided back-propagation")
    assert all(d and "\n" not in d for d in descriptions.values())
    assert registry.create("saliency", "gbp", unsupported="ignore") == GuidedBP(unsupported="ignore")
    assert isinstance(registry.create("saliency", "deconv"), Deconvnet)
    assert registry.create("saliency", "multilayer", layers="layer3,layer4", signal="map") == \
        MultiLayer(layers=("layer3", "layer4"), signal="map")
    assert all(e.factory.shares_forward for e in registry.entries("saliency"))
    with pytest.raises(UsageError):
        registry.create("saliency", "gbp", unsupported="maybe")
    with pytest.raises(UsageError, match="unknown option"):
        registry.create("saliency", "bp", unsupported="ignore")
    for gone in ("distinct", "scales"):  # DCSM is the method dcsm now
        with pytest.raises(UsageError, match="unknown option"):
            registry.create("saliency", "multilayer", **{gone: "1"})


# --------------------------------------------------------------------------------------
# One shared forward pass (record / trace_gradients / from_trace) and the signal option
# --------------------------------------------------------------------------------------


def tiny_classifier(pooling: str = "gmp") -> Classifier:
    torch.manual_seed(0)
    features = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="")
    return Classifier(features, 512, NUM_CLASSES, pooling=pooling).double().eval()


@pytest.fixture(scope="module")
def clf():
    return tiny_classifier()


ALL_METHODS = {**METHODS, "multilayer": MultiLayer(), "multilayer-map": MultiLayer(signal="map"), "gbp-map": GuidedBP(signal="map")}


@pytest.mark.parametrize("name", list(ALL_METHODS))
def test_from_trace_equals_call(name, clf, images):
    method = ALL_METHODS[name]
    classes = torch.tensor([[1, 4, -1], [3, 1, 2]])
    direct = method(clf, images, classes)  # (B, K, H, W)
    before = snapshot(clf)
    with record(clf, images, **method.forward_spec(clf)) as trace:
        assert_unchanged(clf, before)  # hooks and flags are gone as soon as the forward pass is done
        shared = method.from_trace(trace, classes)
        again = method.from_trace(trace, classes[:, :1])  # the graph is retained inside the block
    assert_unchanged(clf, before)
    assert method.shares_forward and direct.amax() > 0
    assert torch.equal(shared, direct) and torch.equal(again, direct[:, :1])
    with pytest.raises(UsageError, match="record block has exited"):
        method.from_trace(trace, classes)


@pytest.mark.parametrize("rule", [None, "vanilla", "guided", "deconv"])
@pytest.mark.parametrize("layers", [(), ("features.layer3", "features.layer4")])
def test_trace_values_are_a_plain_forward(rule, layers, clf, images):
    with torch.no_grad():
        features, maps, scores = clf.forward_parts(images)
        assert torch.equal(clf.score_maps(images), maps)
    with record(clf, images, rule=rule, layers=layers) as trace:
        assert torch.equal(trace.scores.detach(), scores)
        assert torch.equal(trace.score_maps.detach(), maps) and torch.equal(trace.features.detach(), features)
        assert trace.rule == rule and len(trace.targets) == (0 if rule is None else len(layers) or 1)
        if rule is None:
            assert not trace.scores.requires_grad
            with pytest.raises(UsageError, match="without gradients"):
                trace_gradients(trace, torch.tensor([[0], [1]]))


def test_guided_trace_gives_fcn_maps_and_gbp(clf, images):
    """The pipeline's use: FCN score maps and guided saliency from one forward pass."""
    classes = torch.tensor([[0, 2], [4, -1]])
    gbp = GuidedBP()
    with record(clf, images, **gbp.forward_spec(clf)) as trace:
        maps = gbp.from_trace(trace, classes)
        fcn = trace.score_maps.detach()
    with torch.no_grad():
        assert torch.equal(fcn, clf.score_maps(images))
    assert torch.equal(maps, gbp(clf, images, classes))


def test_from_trace_refuses_another_spec(clf, images):
    with record(clf, images, rule="vanilla") as trace:
        with pytest.raises(UsageError, match="gbp: the shared forward pass was recorded with"):
            GuidedBP().from_trace(trace, torch.tensor([[0], [1]]))
        with pytest.raises(UsageError, match="multilayer"):
            MultiLayer().from_trace(trace, torch.tensor([[0], [1]]))


def test_signal_map_matches_captum(clf):
    """gbp with signal=map is captum's GuidedBackprop of the summed score map."""
    captum_attr = pytest.importorskip("captum.attr")
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)  # 2x2 score maps

    class SummedMaps(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.score_maps(x).sum((2, 3))  # (B, C)

    classes = torch.tensor([[1, 3], [0, 1]])
    maps = GuidedBP(signal="map")(clf, images, classes)  # (B, K, H, W)
    attr = captum_attr.GuidedBackprop(SummedMaps(clf))
    for k in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = attr.attribute(images.clone(), target=classes[:, k]).abs().amax(1)  # (B, H, W)
        assert rel_diff(maps[:, k], expected) <= 1e-5
    # with global max pooling the pooled signal enters one position only: a different map
    assert rel_diff(GuidedBP()(clf, images, classes), maps) > 1e-2


def test_signal_map_needs_score_maps(resnet, images):
    with pytest.raises(UsageError, match="signal=map needs class score maps: ResNet has no forward_parts"):
        GuidedBP(signal="map")(resnet, images, torch.tensor([[0], [1]]))
    with pytest.raises(UsageError, match="signal"):
        build_registry().create("saliency", "gbp", signal="sum")
