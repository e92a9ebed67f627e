"""Every bad input found before the long part: the files a run will read, checked up front."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wssbench.cli import cli
from wssbench.data.checks import check_pair, verify_files
from wssbench.data.synthetic import SyntheticDataset
from wssbench.errors import DataError


@pytest.fixture
def own_tiny(tmp_path):
    """A tiny synthetic dataset of this test's own (its files get damaged)."""
    ds = SyntheticDataset(str(tmp_path / "syn"), preset="tiny")
    ds.prepare()
    return ds


def test_each_kind_of_bad_file_is_named(own_tiny, tmp_path):
    i = own_tiny.ids("val")[0]
    image, mask = own_tiny.image_path(i), own_tiny.mask_path(i)
    assert check_pair(image, mask, own_tiny.num_classes) is None
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    assert "mask size 10x10 differs from image size 64x64" in check_pair(image, small, own_tiny.num_classes)
    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.full((64, 64), 40, np.uint8)).save(wrong)
    assert "label 40 out of range; expected 0..8 or 255" in check_pair(image, wrong, own_tiny.num_classes)
    image.write_bytes(image.read_bytes()[: len(image.read_bytes()) // 2])  # truncated JPEG: its header is fine
    assert "unreadable image" in check_pair(image, mask, own_tiny.num_classes)


def test_a_truncated_image_stops_the_run_before_training(own_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    from wssbench.seed import classifier as seed_classifier

    trained = []
    monkeypatch.setattr(seed_classifier, "train", lambda *a, **k: trained.append(1) or [0.0])
    path = own_tiny.image_path(own_tiny.ids("train")[3])
    path.write_bytes(path.read_bytes()[:300])
    args = ["run", "-O", "dataset.preset=tiny", "--data-root", str(own_tiny.root), "--epochs", "1", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "unreadable image" in result.output and "--skip-checks" in result.output
    assert trained == [] and not (tmp_path / "out").exists()


def test_files_that_passed_are_not_decoded_again(own_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    from wssbench.data import checks

    ids = own_tiny.ids("train")
    verify_files(own_tiny, ids)
    decoded = []
    monkeypatch.setattr(checks, "check_pair", lambda *a: decoded.append(1))
    verify_files(own_tiny, ids)
    assert decoded == []
    path = own_tiny.image_path(ids[0])
    path.write_bytes(path.read_bytes() + b"\0")  # changed bytes: checked again
    verify_files(own_tiny, ids)
    assert decoded == [1]


def test_many_bad_files_are_counted(own_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    for i in own_tiny.ids("val")[:3]:
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(own_tiny.mask_path(i))
    with pytest.raises(DataError, match=r"mask size 5x5 differs .*\(and 2 more bad files; --skip-checks"):
        verify_files(own_tiny, own_tiny.ids("val"))
