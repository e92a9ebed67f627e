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
    assert build_config({"backbone": "timm:tf_efficientnet_lite2", "pretrained": True}).recipe == TrainRecipe(**chosen)
    flag = build_config({"backbone": "tf_efficientnet_lite0", "weights": "lite0.pth", "epochs": 3}).recipe
    assert (flag.epochs, flag.freeze) == (3, chosen["freeze"])  # a flag wins over that one key only
    assert build_config({"backbone": "tf_efficientnet_lite0"}).recipe == TrainRecipe()  # from scratch: the plain default
    assert build_config({"backbone": "tf_efficientnet_lite0", "pretrained": "false"}).recipe == TrainRecipe()  # --set pretrained=false
    assert build_config({"backbone": "resnet10t", "weights": "r.pth"}).recipe == TrainRecipe()  # no recipe chosen for it
    whole = {**dict(chosen), "epochs": 1}
    assert build_config({"backbone": "tf_efficientnet_lite0", "weights": "w", "recipe": {"epochs": 1}}).recipe.freeze == 0  # a record's recipe is whole
    assert build_config({"backbone": "tf_efficientnet_lite0", "weights": "w", "recipe": whole}).recipe == TrainRecipe(**whole)
