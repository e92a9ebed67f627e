"""``wssbench show`` on a hand-made run folder: gallery beside the run, legend, text that matches the code."""

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from wssbench.cli import cli
from wssbench.cli.show import cached_maps
from wssbench.storage.io import PALETTE, atomic_dir, write_mask


def make_run(root, dataset, ids):
    """A run folder as ``wssbench run`` writes it: result.json, masks/ (the truth), cached maps."""
    caches = {stage: root / "maps" / stage for stage in ("classmap", "saliency")}
    out = root / "run"
    with atomic_dir(out) as tmp:
        (tmp / "masks").mkdir()
        for image_id in ids:
            truth = dataset.load_mask(image_id)
            write_mask(tmp / "masks" / f"{image_id}.png", truth)
            h, w = truth.shape
            for stage, folder in caches.items():
                folder.mkdir(parents=True, exist_ok=True)
                maps = np.zeros((2, h, w), np.float32)  # (K, H, W)
                maps[0, : h // 2], maps[1, :, : w // 4] = 0.5, 2.0
                np.save(folder / f"{image_id}~0-1.npy", maps)
        record = {
            "dataset": "synthetic", "split": "val", "miou": 0.5,
            "config": {"dataset": "synthetic", "data_root": None, "options": {"dataset": {"preset": "tiny"}},
                       "classmap": "fcn", "saliency": "gbp", "fusion": "threshold", "refine": ["densecrf"]},
            "components": {"classmap": {"name": "fcn"}, "saliency": {"name": "gbp"}},
            "map_cache": {stage: str(folder) for stage, folder in caches.items()},
        }
        (tmp / "result.json").write_text(json.dumps(record))
    return out


def test_gallery_beside_the_run_with_legend_survives_a_rerun(tmp_path, tiny_dataset):
    ids = tiny_dataset.ids("val")[:3]
    run = make_run(tmp_path, tiny_dataset, ids)
    result = CliRunner().invoke(cli, ["show", str(run), "--n", "3"])
    assert result.exit_code == 0, result.output
    gallery = tmp_path / "run-gallery"
    assert result.output.strip() == str(gallery / "gallery.html")

    page = (gallery / "gallery.html").read_text()
    assert "maximum over the image's detected classes" in page and "summed" not in page
    labels = sorted({int(v) for i in ids for v in np.unique(tiny_dataset.load_mask(i))})
    for v in labels:  # every label shown has a swatch in its palette colour, named
        name = tiny_dataset.classes[v] if v < len(tiny_dataset.classes) else "ignore"
        assert f"background:rgb{tuple(int(c) for c in PALETTE[v])}'></span> {name}" in page

    with Image.open(gallery / "gallery.png") as img:
        panel = np.asarray(img.convert("RGB"))
    grid_rows = 3
    legend = panel[-60:]  # the legend strip under the grid holds every shown label's colour
    for v in labels:
        assert (legend == PALETTE[v]).all(axis=-1).any(), f"no swatch for label {v}"
    assert panel.shape[0] > grid_rows * 256

    make_run(tmp_path, tiny_dataset, ids)  # the run again: its folder is replaced whole
    assert (gallery / "gallery.png").is_file() and (gallery / "gallery.html").is_file()


def test_map_tile_is_the_maximum_over_classes(tmp_path, tiny_dataset):
    ids = tiny_dataset.ids("val")[:1]
    run = make_run(tmp_path, tiny_dataset, ids)
    record = json.loads((run / "result.json").read_text())
    maps = cached_maps(record, "saliency", ids[0])
    stored = np.load(next((tmp_path / "maps" / "saliency").glob("*.npy")))
    np.testing.assert_array_equal(maps, np.maximum(stored[0], stored[1]))


def test_unknown_id_names_it(tmp_path, tiny_dataset):
    run = make_run(tmp_path, tiny_dataset, tiny_dataset.ids("val")[:1])
    result = CliRunner().invoke(cli, ["show", str(run), "--ids", "nope"])
    assert result.exit_code == 1 and "no prediction for 'nope'" in result.output


def test_the_threshold_curve_is_drawn_when_the_run_recorded_one(tmp_path, tiny_dataset):
    ids = tiny_dataset.ids("val")[:2]
    run = make_run(tmp_path, tiny_dataset, ids)
    assert CliRunner().invoke(cli, ["show", str(run), "--n", "2"]).exit_code == 0
    assert not (tmp_path / "run-gallery" / "curve.png").exists()  # no curve recorded: none drawn
    record = json.loads((run / "result.json").read_text())
    record.update(threshold_curve=[{"threshold": t / 10, "miou": 0.1 + t / 50} for t in range(10)], threshold_auc=0.19,
                  threshold_max={"threshold": 0.9, "miou": 0.28, "oracle": True}, threshold_used={"threshold": 0.3, "miou": 0.16})
    (run / "result.json").write_text(json.dumps(record))
    assert CliRunner().invoke(cli, ["show", str(run), "--n", "2"]).exit_code == 0
    with Image.open(tmp_path / "run-gallery" / "curve.png") as img:
        assert img.size[0] > 300 and img.format == "PNG"
    assert "curve.png" in (tmp_path / "run-gallery" / "gallery.html").read_text()
