"""Multi-layer maps against independent references, their default layers, the single backward
stopping at the shallowest layer.

Random weights, ``pretrained=False``, 32 px inputs, float64 models for tight comparisons.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
from test_saliency import SumPool, assert_unchanged, rel_diff, snapshot  # noqa: F401 (fixture)
from torch import nn

from wssbench.classifier.model import Classifier
from wssbench.errors import UsageError
from wssbench.methods.saliency import class_gradients, default_layers
from wssbench_plugins.saliency import MultiLayer, VanillaBP

pytestmark = pytest.mark.usefixtures("one_thread")


NUM_CLASSES = 5
VGG16_CONV3_1_TO_5_3 = [f"features.{i}" for i in (10, 12, 14, 17, 19, 21, 24, 26, 28)]


def timm_model(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    if name.startswith("vgg"):
        kwargs["mlp_ratio"] = 1 / 16  # a small pre-logits MLP
    return timm.create_model(name, pretrained=False, **kwargs)


def classifier(name: str) -> Classifier:
    features = timm_model(name, num_classes=0, global_pool="")
    with torch.no_grad():
        width = features(torch.zeros(1, 3, 64, 64)).shape[1]
    return Classifier(features, width, NUM_CLASSES)


@pytest.fixture(scope="module")
def vgg():
    return timm_model("vgg11", num_classes=NUM_CLASSES).double().eval()


@pytest.fixture(scope="module")
def resnet():
    return classifier("resnet18").double().eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)  # (B, 3, H, W)


# --------------------------------------------------------------------------------------
# Default layers
# --------------------------------------------------------------------------------------


def test_default_layers_vgg16_are_conv3_1_to_conv5_3():
    bare = timm_model("vgg16", num_classes=0, global_pool="")
    assert default_layers(bare) == VGG16_CONV3_1_TO_5_3
    wrapped = Classifier(bare, 256, NUM_CLASSES)
    assert default_layers(wrapped) == ["features." + n for n in VGG16_CONV3_1_TO_5_3]
    convs = [bare.get_submodule(n) for n in VGG16_CONV3_1_TO_5_3]
    assert all(isinstance(c, nn.Conv2d) for c in convs)
    assert (convs[0].in_channels, convs[0].out_channels) == (128, 256)  # conv3_1: the first conv of block 3
    assert convs[-1] is [m for m in bare.features if isinstance(m, nn.Conv2d)][-1]  # conv5_3


def test_default_layers_other_backbones(resnet):
    assert default_layers(resnet) == ["features.layer2", "features.layer3", "features.layer4"]
    assert default_layers(timm_model("mobilenetv2_050")) == ["blocks.2", "blocks.4", "blocks.6"]
    with pytest.raises(UsageError, match="no timm model.*layers="):
        default_layers(nn.Sequential(nn.Conv2d(3, 2, 1), SumPool()))


def test_layer_names_resolve_in_model_or_backbone(resnet, images):
    classes = torch.tensor([[1], [2]])
    short = MultiLayer(layers=("layer3",))(resnet, images, classes)
    full = MultiLayer(layers=("features.layer3",))(resnet, images, classes)
    assert torch.equal(short, full) and short.amax() > 0
    with pytest.raises(UsageError, match="no module 'layer9' in Classifier or in its timm backbone 'features'"):
        MultiLayer(layers=("layer9",))(resnet, images, classes)


# --------------------------------------------------------------------------------------
# Agreement with independent references
# --------------------------------------------------------------------------------------


def summed_maps(grads: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """max over channels of |g|, bilinear upsampling, sum over layers: (B, H, W)."""
    return sum(F.interpolate(g.abs().amax(1, keepdim=True), size=size, mode="bilinear", align_corners=False)[:, 0] for g in grads)


def captum_multilayer(model, layers, images, target) -> torch.Tensor:
    modules = [model.get_submodule(name) for name in layers]
    captum_attr = pytest.importorskip("captum.attr")
    attr = captum_attr.LayerGradientXActivation(model, modules, multiply_by_inputs=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grads = attr.attribute(images.clone(), target=target, attribute_to_layer_input=True)  # L x (B, C_i, h_i, w_i)
    return summed_maps(list(grads), images.shape[-2:])


class RuleReLU(nn.Module):
    """A ReLU whose backward follows ``rule``: the reference, by module replacement."""

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, rule):
            ctx.save_for_backward(x)
            ctx.rule = rule
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            gate = (x > 0).to(g.dtype)
            return {"vanilla": g * gate, "guided": g.clamp(min=0) * gate, "deconv": g.clamp(min=0)}[ctx.rule], None

    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule

    def forward(self, x):
        return self.Fn.apply(x, self.rule)


def reference_multilayer(model, layers, images, target, rule, signal="pooled") -> torch.Tensor:
    """Full-graph autograd on a copy whose ReLUs are replaced, with the layer inputs captured;
    ``signal="map"`` differentiates the sum of the class's score map instead of its score."""
    ref = copy.deepcopy(model)
    for name, module in list(ref.named_modules()):
        if isinstance(module, nn.ReLU):
            parent, _, child = name.rpartition(".")
            setattr(ref.get_submodule(parent), child, RuleReLU(rule))
    captured = {}
    for name in layers:
        ref.get_submodule(name).register_forward_pre_hook(lambda m, inp, name=name: captured.__setitem__(name, inp[0]))
    x = images.clone().requires_grad_(True)
    scores = ref(x) if signal == "pooled" else ref.score_maps(x).sum((2, 3))  # (B, C)
    grads = torch.autograd.grad(scores.gather(1, target[:, None]).sum(), [captured[n] for n in layers])
    return summed_maps(list(grads), images.shape[-2:])


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconv"])
def test_matches_reference(rule, arch, images, request):
    model = request.getfixturevalue(arch)
    layers = default_layers(model)
    classes = torch.tensor([[1, 4], [3, 1]])  # (B, K)
    maps = MultiLayer(rule=rule)(model, images, classes)  # (B, K, H, W)
    assert maps.shape == (2, 2, 32, 32) and maps.dtype == torch.float32 and (maps >= 0).all()
    for k in range(2):
        expected = reference_multilayer(model, layers, images, classes[:, k], rule)  # (B, H, W)
        assert rel_diff(maps[:, k], expected) <= 1e-5, (rule, arch, k)
    if rule == "vanilla":  # and captum's layer gradients, as a second reference
        assert rel_diff(maps[:, 0], captum_multilayer(model, layers, images, classes[:, 0])) <= 1e-5


@pytest.mark.parametrize("rule", ["vanilla", "guided"])
@pytest.mark.slow
def test_signal_map_matches_reference(rule):
    model = classifier("resnet18").double().eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)  # 2x2 score maps
    classes = torch.tensor([[1, 4], [3, 1]])
    maps = MultiLayer(rule=rule, signal="map")(model, images, classes)  # (B, K, H, W)
    for k in range(2):
        expected = reference_multilayer(model, default_layers(model), images, classes[:, k], rule, signal="map")
        assert rel_diff(maps[:, k], expected) <= 1e-5
    assert rel_diff(MultiLayer(rule=rule)(model, images, classes), maps) > 1e-3  # gap pools the mean: the sum is 4 times it


def test_signed_is_bounded_by_unsigned(vgg, images):
    classes = torch.tensor([[0, 2], [1, 3]])
    unsigned = MultiLayer(rule="vanilla")(vgg, images, classes)
    signed = MultiLayer(rule="vanilla", signed=True)(vgg, images, classes)
    assert (signed <= unsigned + 1e-6).all() and (signed >= -unsigned - 1e-6).all()
    assert rel_diff(signed, unsigned) > 1e-2


# --------------------------------------------------------------------------------------
# One backward per class, stopping at the shallowest tapped layer
# --------------------------------------------------------------------------------------


class Counter(nn.Module):
    """Identity that counts the backward passes through it."""

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, counter):
            ctx.counter = counter
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            ctx.counter.calls += 1
            return g, None

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        return self.Fn.apply(x, self)


def counted_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Counter(),  # 0-2: below the taps
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),  # 3: tapped (the shallowest)
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), Counter(),  # 5: tapped
        nn.Conv2d(4, 3, 1), SumPool(),
    )


def test_one_backward_per_class_stopping_at_the_shallowest_layer():
    model = counted_model()
    classes = torch.tensor([[0, 1, 2], [2, -1, 0]])
    maps = MultiLayer(layers=("5", "3"))(model, torch.randn(2, 3, 8, 8), classes)
    assert maps.shape == (2, 3, 8, 8) and (maps[1, 1] == 0).all() and maps.amax() > 0
    assert (model[2].calls, model[7].calls) == (0, 3)  # nothing below layer 3; once per class above
    VanillaBP()(model, torch.randn(2, 3, 8, 8), classes)
    assert (model[2].calls, model[7].calls) == (3, 6)  # input gradients go all the way down


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 2, 1, bias=False)
        self.branch = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.stem.weight.fill_(1.0)
            self.branch.weight.copy_(torch.tensor([[2.0, 0], [1, 3]])[:, :, None, None])

    def forward(self, x):
        z = self.stem(x)
        return (self.branch(z) + z).sum((2, 3))  # (B, 2)


def test_input_tap_counts_the_path_through_the_module_only():
    grads = class_gradients(Residual(), torch.ones(1, 3, 1, 1), torch.tensor([[0, 1]]), at="branch", at_input=True)
    assert grads[0, :, :, 0, 0].tolist() == [[2, 0], [1, 3]]  # rows of branch.weight, no shortcut
    out = class_gradients(Residual(), torch.ones(1, 3, 1, 1), torch.tensor([[0, 1]]), at="stem")
    assert out[0, :, :, 0, 0].tolist() == [[3, 0], [1, 4]]  # at the stem output: branch + shortcut


class ModifiedAfterTap(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.tapped = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        z = self.stem(x)
        y = self.tapped(z)
        z.mul_(2)
        return (y + z.sum(1, keepdim=True)).sum((2, 3))


def test_tap_modified_in_place_is_an_error():
    model = ModifiedAfterTap()
    before = snapshot(model)
    with pytest.raises(UsageError, match="input of 'tapped': it was modified in place"):
        MultiLayer(layers=("tapped",))(model, torch.randn(1, 3, 4, 4), torch.tensor([[0]]))
    assert_unchanged(model, before)
