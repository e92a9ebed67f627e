"""The VOC-shaped generated dataset: the layout the voc2012 loader reads, VOC's splits and labels."""

from __future__ import annotations

import numpy as np
import pytest

from wssbench.data.voc2012 import VOC2012
from wssbench.data.voc_scale import VocScaleSpec, generate, voc_labels
from wssbench.errors import DataError


def test_a_small_voc_scale_tree_reads_as_voc2012(tmp_path):
    spec = VocScaleSpec(n_train=4, n_train_aug=10, n_val=3, width=64, height=48)
    voc = generate(tmp_path, spec, workers=2)
    ds = VOC2012(str(tmp_path))
    ds.prepare()
    assert ds.root == voc and ds.splits() == ["train", "train_aug", "tune", "val"]
    assert len(ds.ids("train")) == 4 and len(ds.ids("train_aug")) == 10 and len(ds.ids("val")) == 3
    assert ds.ids("tune") and not set(ds.ids("tune")) & (set(ds.ids("train")) | set(ds.ids("val")))
    for image_id in ds.ids("train_aug") + ds.ids("val"):
        image, mask = ds.load_pair(image_id)
        assert image.shape == (48, 64, 3) and mask.shape == (48, 64)
        assert set(np.unique(mask)) <= set(range(21)) | {255} and (mask == 255).any()
        np.testing.assert_array_equal(ds.image_labels(image_id)[np.unique(mask[(mask > 0) & (mask < 255)]) - 1], True)
    with pytest.raises(DataError, match="exists already"):
        generate(tmp_path, spec)


def test_labels_spread_over_the_twenty_voc_classes():
    mask = np.array([[0, 1, 8, 255]], np.uint8)
    assert voc_labels(mask, 0).tolist() == [[0, 1, 8, 255]]
    assert voc_labels(mask, 1).tolist() == [[0, 9, 16, 255]]
    assert voc_labels(mask, 2).tolist() == [[0, 17, 4, 255]]


def test_the_cli_writes_a_tree_and_refuses_to_write_over_one(tmp_path):
    from click.testing import CliRunner

    from wssbench.cli import cli

    args = ["data", "generate", "voc-scale", "--root", str(tmp_path), "--train-aug", "3", "--train", "2", "--val", "2"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    ds = VOC2012(done.stdout.strip())
    ds.prepare()
    assert (len(ds.ids("train")), len(ds.ids("train_aug")), len(ds.ids("val"))) == (2, 3, 2)
    assert ds.load_pair(ds.ids("val")[0])[0].shape == (375, 500, 3)
    before = sorted(p.name for p in (tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages").iterdir())
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "holds a VOCdevkit already" in again.output
    assert sorted(p.name for p in (tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages").iterdir()) == before
