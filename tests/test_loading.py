"""Reading ahead in DataLoader workers, and mixed precision: same results, clear errors."""

import numpy as np
import pytest
import timm
import torch

from wssbench.classifier.model import Classifier
from wssbench.classifier.training import TrainRecipe, train
from wssbench.errors import DataError, UsageError
from wssbench.runtime.loading import default_loader_workers, load_all
from wssbench.runtime.precision import autocast, check_precision
from wssbench.seed.classifier import compute_key
from wssbench.seed.config import RunConfig
from wssbench.seed.maps import batches
from wssbench.storage.mapcache import MapCache
from wssbench_plugins.classmaps import FCNScoreMaps
from wssbench_plugins.saliency import GuidedBP


@pytest.fixture(scope="module")
def tiny(tiny_dataset):
    return tiny_dataset


def square(image_id: str) -> int:
    if image_id == "bad":
        raise DataError("bad.png: cannot be read")
    return int(image_id) ** 2


def test_load_all_keeps_order_with_workers():
    ids = [str(i) for i in range(23)]
    assert list(load_all(square, ids, workers=2)) == [i * i for i in range(23)] == list(load_all(square, ids))


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_error_is_the_same_one_line_error(workers):
    with pytest.raises(DataError) as info:
        list(load_all(square, ["1", "bad", "2"], workers=workers))
    assert str(info.value) == "bad.png: cannot be read"


def test_batches_equal_with_and_without_workers(tiny):
    ids = tiny.ids("val")
    inline = list(batches(tiny, ids, 3))
    ahead = list(batches(tiny, ids, 3, workers=2))
    assert [b[0] for b in inline] == [b[0] for b in ahead]
    for (_, images_a, masks_a), (_, images_b, masks_b) in zip(inline, ahead):
        for a, b in zip(images_a + masks_a, images_b + masks_b):
            np.testing.assert_array_equal(a, b)


def tiny_classifier(num_classes: int) -> Classifier:
    torch.manual_seed(0)
    features = timm.create_model("resnet10t", pretrained=False, num_classes=0, global_pool="")
    return Classifier(features, features.num_features, num_classes)


def test_training_does_not_depend_on_loader_workers(tiny):
    recipe = TrainRecipe(epochs=1, batch_size=4, crop=32)
    models = []
    for workers in (0, 2):
        model = tiny_classifier(tiny.num_classes - 1)
        history = train(model, tiny, "train", recipe, torch.device("cpu"), loader_workers=workers)
        models.append((model, history))
    (a, history_a), (b, history_b) = models
    assert history_a == history_b
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


@pytest.mark.slow
def test_bf16_training_runs(tiny):
    model = tiny_classifier(tiny.num_classes - 1)
    history = train(model, tiny, "train", TrainRecipe(epochs=1, batch_size=4, crop=32), torch.device("cpu"), precision="bf16")
    assert np.isfinite(history).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: weights stay fp32


def test_bf16_maps_agree_with_fp32():
    model = tiny_classifier(4).eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    classes = torch.tensor([[0, 2], [3, -1]])
    for method in (FCNScoreMaps(), GuidedBP()):
        reference = method(model, images, classes)
        with autocast("cpu", "bf16"):
            mixed = method(model, images, classes).float()
        assert mixed.shape == reference.shape and torch.isfinite(mixed).all()
        assert (mixed[1, 1] == 0).all()  # padding stays empty
        nonzero = [(b, k) for b, k in [(0, 0), (0, 1), (1, 0)] if reference[b, k].amax() > 0]
        assert nonzero, method
        for b, k in nonzero:  # bf16 keeps 8 bits of mantissa: a few percent off, the same picture
            error = (mixed[b, k] - reference[b, k]).norm() / reference[b, k].norm()
            assert error <= 0.05, (method, b, k, float(error))


def test_precision_errors():
    with pytest.raises(UsageError, match="needs a CUDA device"):
        check_precision("fp16", "cpu")
    with pytest.raises(UsageError, match="expected one of fp32, bf16, fp16"):
        RunConfig(precision="fp8")
    with pytest.raises(UsageError, match="--loader-workers"):
        RunConfig(loader_workers=-1)
    assert default_loader_workers("cpu") == 0


def test_map_cache_key_names_mixed_precision():
    fp32 = MapCache("clf", "saliency", "gbp", "wssbench", {"distinct": False})
    bf16 = MapCache("clf", "saliency", "gbp", "wssbench", {"distinct": False}, compute_key(RunConfig(precision="bf16")))
    assert "precision" not in fp32.key and bf16.key["precision"] == "bf16"
    assert fp32.dir != bf16.dir


def test_max_normalise_is_float32_and_finite_from_fp16():
    from wssbench.methods.maps import max_normalise

    maps = torch.tensor([[[[-1.0, -2.0], [-0.5, -3.0]], [[0.0, 2.0], [1.0, 0.5]]]], dtype=torch.float16)  # (1, 2, 2, 2)
    out = max_normalise(maps)
    assert out.dtype == torch.float32
    assert (out[0, 0] == 0).all()  # an all-negative map is empty, not 0/0
    np.testing.assert_allclose(out[0, 1].numpy(), [[0.0, 1.0], [0.5, 0.25]], rtol=1e-6)


def test_untrained_classifier_is_the_same_in_every_process():
    """The random initialisation comes from the recipe's seed, not from the process's RNG state."""
    from wssbench.host.registry import default_registry
    from wssbench.seed.components import resolve

    config = RunConfig(options=(("dataset", "preset", "tiny"),))
    _, first = resolve(config, default_registry())
    torch.manual_seed(12345)  # whatever happened before in the process
    torch.rand(7)
    _, second = resolve(config, default_registry())
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    _, other_seed = resolve(RunConfig(options=(("dataset", "preset", "tiny"),), recipe=TrainRecipe(seed=1)), default_registry())
    assert not torch.equal(first.model.head.weight, other_seed.model.head.weight)


def test_map_cache_key_follows_the_source(tmp_path, monkeypatch):
    """Editing a method's source gives its maps a new cache folder, version number or not."""
    from wssbench.storage.mapcache import code_digests, source_digest

    package = tmp_path / "mymethods"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sal.py").write_text("class Sal:\n    scale = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from mymethods.sal import Sal

    before = code_digests(Sal)
    assert set(before) == {"mymethods", "wssbench"}
    (package / "sal.py").write_text("class Sal:\n    scale = 2.0\n")
    source_digest.cache_clear()
    after = code_digests(Sal)
    assert after["mymethods"] != before["mymethods"] and after["wssbench"] == before["wssbench"]
    keyed = [MapCache("clf", "saliency", "sal", "mymethods", {}, code=c).dir for c in (before, after)]
    assert keyed[0] != keyed[1]
