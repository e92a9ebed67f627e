import os

import pytest
import timm
import torch

from wssbench.classifier.model import Classifier
from wssbench.data.synthetic import SyntheticDataset


@pytest.fixture(scope="session", autouse=True)
def wssbench_home(tmp_path_factory):
    """Every test caches data and classifiers in one temporary home, never in ~/.cache.

    Session-scoped so that module-scoped fixtures (which run before function-scoped ones)
    see it too; tests that need their own home still monkeypatch WSSBENCH_HOME.
    """
    home = tmp_path_factory.getbasetemp() / "wssbench-home"
    previous = os.environ.get("WSSBENCH_HOME")
    os.environ["WSSBENCH_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("WSSBENCH_HOME", None)
    else:
        os.environ["WSSBENCH_HOME"] = previous


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread than on two of a shared 2-core machine
    (``pytestmark = pytest.mark.usefixtures("one_thread")`` in a module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dataset(wssbench_home):
    """The tiny synthetic dataset (24 train / 12 val images, 64 px), generated once per session."""
    dataset = SyntheticDataset(preset="tiny")
    dataset.prepare()
    return dataset


@pytest.fixture(scope="session")
def resnet18_classifier():
    """``make(num_classes, pooling="gap")``: a random-weight timm ResNet-18 classifier in eval mode (seed 0)."""

    def make(num_classes: int, pooling: str = "gap") -> Classifier:
        torch.manual_seed(0)
        features = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="")
        return Classifier(features, 512, num_classes, pooling=pooling).eval()

    return make


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped, saying so, where no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def use_registry(monkeypatch):
    """``use_registry(registry) -> registry``: make ``registry`` the process's own (what the CLI,
    ``wssbench.create`` and ``wssbench.run`` use) for this test only."""
    from wssbench.host import registry as registry_module

    def use(registry):
        monkeypatch.setattr(registry_module, "_default", registry)
        return registry

    return use
