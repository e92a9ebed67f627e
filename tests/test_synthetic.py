"""The embedded synthetic dataset: layout, masks, labels, determinism, caching, atomicity."""

from __future__ import annotations

import numpy as np
import pytest

from wssbench.data import synthetic
from wssbench.data.cls_labels import read_cls_labels
from wssbench.data.synthetic import CLASSES, SyntheticDataset, SyntheticSpec, generate
from wssbench.errors import DataError
from wssbench.host.options import parse_option
from wssbench.storage.io import read_mask

TINY = SyntheticSpec.preset("tiny")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SyntheticDataset:
    root = tmp_path_factory.mktemp("syn") / "tiny"
    generate(root, TINY)
    dataset = SyntheticDataset(root=str(root), preset="tiny")
    dataset.prepare()
    return dataset


def _masks(dataset: SyntheticDataset) -> dict[str, np.ndarray]:
    return {i: dataset.load_mask(i) for i in dataset.ids("trainval")}


def test_classes_and_presets():
    assert CLASSES[0] == "background" and len(CLASSES) >= 7 and len(set(CLASSES)) == len(CLASSES)
    assert (TINY.n_train, TINY.n_val, TINY.size) == (24, 12, 64)
    assert SyntheticSpec.preset("default", seed=3) == SyntheticSpec(seed=3)
    with pytest.raises(ValueError, match="default, tiny"):
        SyntheticSpec.preset("huge")


def test_layout_and_splits(tiny):
    root = tiny.root
    assert (root / synthetic.MARKER).is_file()
    assert tiny.splits() == ["train", "trainval", "val"]
    train, val = tiny.ids("train"), tiny.ids("val")
    assert len(train) == TINY.n_train and len(val) == TINY.n_val
    assert not set(train) & set(val) and tiny.ids("trainval") == train + val
    assert all(i.startswith("syn_") for i in train + val)
    for image_id in train + val:
        image, mask = tiny.load_pair(image_id)
        assert image.shape == (TINY.size, TINY.size, 3) and mask.shape == (TINY.size, TINY.size)


def test_masks_have_valid_values_and_border_bands(tiny):
    for image_id, mask in _masks(tiny).items():
        assert set(np.unique(mask)) <= set(range(len(CLASSES))) | {255}
        assert (mask == 255).any(), image_id
        # the band separates regions: no two touching labelled pixels carry different labels
        for a, b in ((mask[1:], mask[:-1]), (mask[:, 1:], mask[:, :-1])):
            assert not ((a != b) & (a != 255) & (b != 255)).any(), image_id


def test_labels_agree_with_masks(tiny):
    table = read_cls_labels(tiny.root / "cls_labels.npy")
    assert set(table) == set(tiny.ids("trainval"))
    for image_id, mask in _masks(tiny).items():
        labels = table[image_id]
        assert labels.dtype == np.float32 and labels.shape == (len(CLASSES) - 1,)
        present = sorted(int(v) for v in np.unique(mask) if 0 < v < 255)
        assert sorted(np.flatnonzero(labels) + 1) == present
        assert 1 <= len(present) <= TINY.max_objects
        assert (tiny.image_labels(image_id) == labels.astype(bool)).all()


def test_every_class_appears_in_train(tiny):
    seen = np.zeros(len(CLASSES) - 1, dtype=bool)
    for image_id in tiny.ids("train"):
        seen |= tiny.image_labels(image_id)
    assert seen.all()


def test_generation_is_deterministic(tiny, tmp_path):
    generate(tmp_path / "again", TINY)
    generate(tmp_path / "other", SyntheticSpec.preset("tiny", seed=1))
    again = SyntheticDataset(root=str(tmp_path / "again"), preset="tiny")
    other = SyntheticDataset(root=str(tmp_path / "other"), preset="tiny", seed=1)
    ids = tiny.ids("trainval")
    for image_id in ids:
        assert tiny.mask_path(image_id).read_bytes() == again.mask_path(image_id).read_bytes()
        assert tiny.image_path(image_id).read_bytes() == again.image_path(image_id).read_bytes()
        assert (tiny.image_labels(image_id) == again.image_labels(image_id)).all()
    assert any((read_mask(tiny.mask_path(i)) != read_mask(other.mask_path(i))).any() for i in ids)


def test_images_do_not_depend_on_split_sizes():
    small = SyntheticSpec(n_train=3, n_val=1, size=64)
    for index in (0, 2):
        image, mask = synthetic.render(small, index)
        image2, mask2 = synthetic.render(TINY, index)
        assert (image == image2).all() and (mask == mask2).all()


def test_prepare_generates_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path))
    calls = []
    real = synthetic.generate
    monkeypatch.setattr(synthetic, "generate", lambda root, spec: (calls.append(root), real(root, spec)))
    dataset = SyntheticDataset(preset="tiny")
    assert dataset.root.is_relative_to(tmp_path / "data") and "synthetic-tiny-" in dataset.root.name
    dataset.prepare()
    assert len(calls) == 1 and len(dataset.ids("train")) == TINY.n_train
    SyntheticDataset(preset="tiny").prepare()
    assert len(calls) == 1
    assert SyntheticDataset(preset="tiny", seed=1).root != dataset.root


def test_prepare_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing to overwrite"):
        SyntheticDataset(root=str(tmp_path), preset="tiny").prepare()
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    written = []

    def failing_write_mask(path, mask):
        written.append(path)
        if len(written) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "write_mask", failing_write_mask)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "data", TINY)
    assert list(tmp_path.iterdir()) == []


def test_options_and_description():
    assert SyntheticDataset.__doc__.splitlines()[0].startswith("Generated shapes-and-textures scenes")
    assert parse_option(SyntheticDataset, "seed", "3", "dataset 'synthetic'") == 3
    assert parse_option(SyntheticDataset, "preset", "tiny", "dataset 'synthetic'") == "tiny"
    with pytest.raises(ValueError, match="available"):
        SyntheticDataset(preset="nope")


def test_a_damaged_generated_file_says_how_to_get_it_back(tmp_path):
    ds = SyntheticDataset(str(tmp_path / "syn"), preset="tiny")
    ds.prepare()
    image_id = ds.ids("train")[0]
    path = ds.image_path(image_id)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(DataError, match=r"unreadable image .*the dataset is generated: remove .*wssbench cache prune data"):
        ds.load_image(image_id)
