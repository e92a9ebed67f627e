"""Damaged, read-only, moved and shared caches: warned about, recomputed, never fatal."""

import dataclasses
import errno
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from wssbench.classifier.training import TrainRecipe, checkpoint_path, load_cached_checkpoint, save_checkpoint
from wssbench.data.synthetic import SyntheticDataset
from wssbench.host.registry import default_registry
from wssbench.seed.classifier import classifier_key, load_or_train
from wssbench.seed.components import resolve
from wssbench.seed.config import RunConfig
from wssbench.storage.mapcache import MapCache


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def make_read_only(monkeypatch):
    """Every atomic write fails as on a read-only mount (root ignores chmod, so it is simulated)."""
    import wssbench.storage.cache

    def refuse(path, suffix, is_dir):
        raise OSError(errno.EROFS, "Read-only file system", str(path.parent))

    monkeypatch.setattr(wssbench.storage.io, "_new_temp", refuse)
    monkeypatch.setattr(wssbench.storage.cache, "_unwritable", set())


@pytest.fixture
def read_only(monkeypatch):
    make_read_only(monkeypatch)


def maps_cache():
    return MapCache("clf", "saliency", "gbp", "wssbench", {"distinct": False})


MAPS = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
CLASSES = np.array([3, 1])


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "unsealed"])
def test_damaged_map_is_warned_about_and_recomputed(home, damage):
    cache = maps_cache()
    cache.put("img", CLASSES, MAPS)
    np.testing.assert_array_equal(cache.get("img", CLASSES), MAPS)
    path = cache.path("img", CLASSES)
    blob = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "flipped":  # same size, one bit of the data changed: only a checksum sees it
        path.write_bytes(blob[:200] + bytes([blob[200] ^ 1]) + blob[201:])
    else:  # a plain .npy, as MAPS_VERSION 1 wrote them
        with open(path, "wb") as f:
            np.save(f, MAPS)
    with pytest.warns(UserWarning, match=f"{path}: damaged cache entry"):
        assert cache.get("img", CLASSES) is None
    assert not path.exists()
    cache.put("img", CLASSES, MAPS)  # recomputed by the caller and stored again
    np.testing.assert_array_equal(cache.get("img", CLASSES), MAPS)


def test_map_cache_on_a_read_only_home_says_so_once(home, read_only):
    cache = maps_cache()
    with pytest.warns(UserWarning, match="cannot be written .*Read-only file system.*WSSBENCH_HOME") as caught:
        cache.put("a", CLASSES, MAPS)
        cache.put("b", CLASSES, MAPS)
    assert len([w for w in caught if "cannot be written" in str(w.message)]) == 1
    assert cache.get("a", CLASSES) is None  # not kept: the caller uses what it computed


class Tiny(torch.nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.head = torch.nn.Linear(4, n)


@pytest.mark.parametrize("damage", ["empty", "flipped", "no-sidecar-truncated", "other-shape"])
def test_damaged_checkpoint_is_warned_about_and_model_untouched(home, damage):
    torch.manual_seed(0)
    path = home / "classifiers" / "k.pt"
    assert save_checkpoint(path, Tiny(), {"key": "k"})
    model = Tiny()
    assert load_cached_checkpoint(path, model) == {"key": "k"}
    blob = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped":
        path.write_bytes(blob[:-100] + bytes([blob[-100] ^ 1]) + blob[-99:])
    elif damage == "no-sidecar-truncated":  # no digest to compare: torch's own error is caught
        path.with_suffix(".json").unlink()
        path.write_bytes(blob[: len(blob) // 2])
    else:
        save_checkpoint(path, Tiny(5), {"key": "k"})
    fresh = Tiny()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.warns(UserWarning, match=f"{path}: damaged cache entry"):
        assert load_cached_checkpoint(path, fresh) is None
    assert not path.exists() and not path.with_suffix(".json").exists()
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, before[k])


def test_checkpoint_on_a_read_only_home(home, read_only):
    with pytest.warns(UserWarning, match="cannot be written"):
        assert save_checkpoint(home / "classifiers" / "k.pt", Tiny(), {}) is False


TINY_CONFIG = RunConfig(recipe=TrainRecipe(epochs=1, batch_size=8, crop=32), options=(("dataset", "preset", "tiny"),), refine=())


def fresh_parts(**changes):
    """Config and components with an untrained model (``load_or_train`` trains it in place)."""
    config, parts = resolve(dataclasses.replace(TINY_CONFIG, **changes), default_registry())
    parts.dataset.prepare()
    return config, parts


@pytest.mark.slow
def test_truncated_checkpoint_retrains_and_read_only_home_trains_in_memory(tiny_dataset, home, monkeypatch):
    cpu = torch.device("cpu")
    _, info = load_or_train(*fresh_parts(), cpu)
    assert info["cached"] is False and checkpoint_path(info["key"]).is_file()
    path = checkpoint_path(info["key"])
    path.write_bytes(b"")  # truncate -s 0
    with pytest.warns(UserWarning, match=f"{path}: damaged cache entry"):
        _, again = load_or_train(*fresh_parts(), cpu)
    assert again["cached"] is False and again["loss_history"] == info["loss_history"]
    assert load_or_train(*fresh_parts(), cpu)[1]["cached"] is True

    monkeypatch.setenv("WSSBENCH_HOME", str(home.parent / "empty-read-only-home"))
    make_read_only(monkeypatch)
    with pytest.warns(UserWarning, match="cannot be written"):
        _, memory = load_or_train(*fresh_parts(data_root=str(tiny_dataset.root)), cpu)
    assert memory["cached"] is False and memory["loss_history"] == info["loss_history"]


def test_classifier_key_follows_content_not_path(tiny_dataset, tmp_path):
    config = TINY_CONFIG
    copy = tmp_path / "moved"
    shutil.copytree(tiny_dataset.root, copy)
    moved = SyntheticDataset(root=str(copy), preset="tiny")
    assert classifier_key(config, moved) == classifier_key(config, tiny_dataset)
    image = moved.image_path(moved.ids("train")[3])
    image.write_bytes(image.read_bytes()[:-10])  # other content
    assert classifier_key(config, moved)["data"] != classifier_key(config, tiny_dataset)["data"]
    assert classifier_key(config, moved)["data"]["ids"] == classifier_key(config, tiny_dataset)["data"]["ids"]


LOCKED_WORK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from wssbench.storage.locks import entry_lock
    entry, log = Path(sys.argv[1]), Path(sys.argv[2])
    with entry_lock(entry):
        if not entry.exists():
            with open(log, "a") as f:
                f.write("computed\\n")
            time.sleep(1.0)
            entry.write_text("done")
""")


def test_two_processes_compute_a_locked_entry_once(tmp_path):
    entry, log = tmp_path / "cache" / "entry", tmp_path / "log"
    procs = [subprocess.Popen([sys.executable, "-c", LOCKED_WORK, str(entry), str(log)]) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert log.read_text() == "computed\n" and entry.read_text() == "done"


@pytest.mark.filterwarnings("ignore:zoomout. class")
@pytest.mark.slow
def test_zoomout_fit_reports_progress_per_image(home, tiny_dataset, resnet18_classifier):
    from wssbench_plugins.zoomout import ZoomOut

    model = resnet18_classifier(tiny_dataset.num_classes - 1)
    calls = []
    ZoomOut(max_images=3, max_iter=2).fit(model, tiny_dataset, "train", "progress-test", progress=lambda *a: calls.append(a))
    n = tiny_dataset.num_classes - 1
    assert calls == [(k, 3 + n) for k in range(1, 4 + n)]  # each image's features, then each class's mi-SVM
    path = next((home / "classmaps").glob("zoomout-*.npz"))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.warns(UserWarning, match=f"{path}: damaged cache entry"):
        ZoomOut(max_images=3, max_iter=2).fit(model, tiny_dataset, "train", "progress-test")


@pytest.mark.filterwarnings("ignore:zoomout. class")
@pytest.mark.slow
def test_a_zoomout_entry_holding_a_pickle_is_refitted_and_never_run(home, tiny_dataset, resnet18_classifier, tmp_path):
    """The fit is stored as arrays: a sealed pickle (someone with write access to a shared
    WSSBENCH_HOME can recompute the checksum) is a damaged entry, never unpickled."""
    import pickle
    from pathlib import Path

    from wssbench.storage.cache import seal
    from wssbench_plugins.zoomout import ZoomOut

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (tmp_path / "PWNED", "the payload ran"))

    model = resnet18_classifier(tiny_dataset.num_classes - 1)
    first = ZoomOut(max_images=3, max_iter=2)
    first.fit(model, tiny_dataset, "train", "payload-test")
    path = next((home / "classmaps").glob("zoomout-*.npz"))
    path.write_bytes(seal(pickle.dumps(Payload())))
    again = ZoomOut(max_images=3, max_iter=2)
    with pytest.warns(UserWarning, match="damaged cache entry"):
        again.fit(model, tiny_dataset, "train", "payload-test")
    assert not (tmp_path / "PWNED").exists()
    for a, b in zip(first.svms, again.svms):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.coef, b.coef)
