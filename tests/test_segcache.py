"""Superpixels are cached by image content (``wssbench.storage.segcache``): a photo segmented once
with some SLIC options is read back, the same labelling, for every later run, row or tuning value."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.segmentation
from click.testing import CliRunner
from skimage import data

from wssbench.methods.superpixels import slic_segments

CALLS = []


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSBENCH_HOME", str(tmp_path / "home"))
    real = skimage.segmentation.slic

    def counting(*args, **kwargs):
        CALLS.append(1)
        return real(*args, **kwargs)

    CALLS.clear()
    monkeypatch.setattr(skimage.segmentation, "slic", counting)
    return tmp_path / "home"


def photo() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[::4, ::4])  # (128, 128, 3) uint8


def test_a_photo_segmented_once_is_read_back_the_same(home):
    image = photo()
    first = slic_segments(image, 50, 10.0)
    assert len(CALLS) == 1 and len(list(home.glob("superpixels/slic-*/*.npz"))) == 1
    again = slic_segments(image.copy(), 50, 10.0)  # the same pixels in another array
    assert len(CALLS) == 1
    np.testing.assert_array_equal(again, first)
    assert again.dtype == first.dtype
    changed = image.copy()
    changed[0, 0] ^= 1  # one pixel differs: another entry
    slic_segments(changed, 50, 10.0)
    slic_segments(image, 80, 10.0)  # other options: another folder
    assert len(CALLS) == 3 and len(list(home.glob("superpixels/slic-*"))) == 2


def test_a_damaged_entry_is_warned_about_and_recomputed(home):
    image = photo()
    first = slic_segments(image, 50, 10.0)
    entry = next(home.glob("superpixels/slic-*/*.npz"))
    entry.write_bytes(entry.read_bytes()[:-7])
    with pytest.warns(UserWarning, match="damaged cache entry"):
        again = slic_segments(image, 50, 10.0)
    assert len(CALLS) == 2
    np.testing.assert_array_equal(again, first)


def test_cache_show_names_the_superpixels(home):
    from wssbench.cli import cli

    slic_segments(photo(), 50, 10.0)
    result = CliRunner().invoke(cli, ["cache", "show", "--json"])
    import json

    entries = [e for e in json.loads(result.stdout)["entries"] if e["section"] == "superpixels"]
    assert len(entries) == 1 and entries[0]["what"] == "slic superpixels of 1 images (n_segments 50, compactness 10.0, start_label 0)"
