"""The command line end to end on the tiny synthetic dataset."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wssbench.cli import cli
from wssbench.data.synthetic import CLASSES

TINY = ["-O", "dataset.preset=tiny", "--epochs", "1", "--device", "cpu"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = invoke("run", *TINY, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_run_record(tiny_run):
    out, record = tiny_run
    for key in ("miou", "per_class_iou", "pixel_accuracy", "config", "timings", "versions", "seed"):
        assert key in record
    assert list(record["per_class_iou"]) == list(CLASSES)
    assert 0.0 <= record["miou"] <= 1.0
    assert record["config"]["saliency"] == "gbp" and record["config"]["classmap"] == "fcn"
    assert record["components"]["saliency"]["plugin"] == "wssbench"
    assert json.loads((out / "result.json").read_text()) == record


def test_run_writes_palette_masks(tiny_run):
    out, record = tiny_run
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == record["n_images"] == 12
    with Image.open(masks[0]) as img:
        assert img.mode == "P" and img.size == (64, 64)
        assert set(np.unique(np.asarray(img))) <= set(range(len(CLASSES)))


def test_eval_scores_run_masks_identically(tiny_run):
    out, record = tiny_run
    result = invoke("eval", out / "masks", "--dataset", "synthetic", "-O", "dataset.preset=tiny", "--json")
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["confusion_matrix"] == record["confusion_matrix"]
    assert scored["miou"] == pytest.approx(record["miou"])


class OracleMaps:
    """A class-map plugin that returns the ground-truth masks of the tiny val images: with it, the
    whole command (classes, fusion, masks, metric) must score close to 100 % mIoU."""

    name = "oracle"

    def __init__(self) -> None:
        from wssbench.data.synthetic import SyntheticDataset

        data = SyntheticDataset(preset="tiny")
        self.pairs = [data.load_pair(i) for i in data.ids("val")]

    def __call__(self, model, images, classes):
        import torch

        pixels = ((images * model.std + model.mean) * 255).round().clamp(0, 255).permute(0, 2, 3, 1).cpu().numpy()
        out = torch.zeros(*classes.shape, *images.shape[-2:])
        for b, image in enumerate(pixels):
            mask = min(self.pairs, key=lambda p: np.abs(p[0].astype(float) - image).sum())[1]
            for k, c in enumerate(classes[b].tolist()):
                if c >= 0:
                    out[b, k] = torch.from_numpy(mask == c + 1).float()
        return out


def test_run_scores_near_100_with_perfect_maps(tiny_run, tmp_path, use_registry):
    """The end-to-end floor: perfect class maps through the CLI give (nearly) perfect masks."""
    import wssbench
    from wssbench.host import registry

    class Plugin:
        @wssbench.hookimpl
        def register_classmaps(self, register):
            register(OracleMaps)

    use_registry(registry.build_registry([Plugin()]))
    result = invoke("run", *TINY, "--classmap", "oracle", "--saliency", "none", "--classes-from", "labels",
                    "--refine", "none", "--out", tmp_path / "oracle", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["miou"] > 0.99
    floor = invoke("run", *TINY, "--fusion", "background", "--out", tmp_path / "floor", "--json")
    assert floor.exit_code == 0, floor.output
    assert json.loads(floor.stdout)["config"]["saliency"] is None  # the floor computes no maps
    assert json.loads(floor.stdout)["miou"] < 0.2


def test_run_from_record_reproduces_it(tiny_run, tmp_path):
    out, record = tiny_run
    result = invoke("run", "--from", out / "result.json", "--out", tmp_path / "again", "--json")
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["config"] == record["config"]
    assert again["classifier"]["checkpoint"] == record["classifier"]["checkpoint"]
    assert again["confusion_matrix"] == record["confusion_matrix"]


def test_second_run_uses_cached_classifier(tiny_run, tmp_path):
    _, first = tiny_run
    result = invoke("run", *TINY, "--refine", "none", "--out", tmp_path / "again", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["classifier"]["cached"] is True
    assert record["classifier"]["checkpoint"] == first["classifier"]["checkpoint"]


@pytest.mark.slow
def test_bf16_run_has_its_own_classifier_and_loader_workers_change_nothing(tiny_run, tmp_path):
    _, first = tiny_run
    result = invoke("run", *TINY, "--loader-workers", "2", "--out", tmp_path / "loaders", "--json")
    assert result.exit_code == 0, result.output
    same = json.loads(result.stdout)
    assert same["confusion_matrix"] == first["confusion_matrix"] and same["config"]["loader_workers"] == 2
    result = invoke("run", *TINY, "--precision", "bf16", "--out", tmp_path / "bf16", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["config"]["precision"] == "bf16" and record["classifier"]["cached"] is False
    assert record["classifier"]["checkpoint"] != first["classifier"]["checkpoint"]
    assert 0.0 <= record["miou"] <= 1.0


def test_table_output(tiny_run, tmp_path):
    result = invoke("run", *TINY, "--saliency", "none", "--refine", "none", "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.stdout and "horse" in result.stdout


def test_eval_missing_prediction_names_file(tiny_run, tmp_path):
    out, _ = tiny_run
    partial = tmp_path / "partial"
    partial.mkdir()
    first = sorted((out / "masks").glob("*.png"))[0]
    (partial / first.name).write_bytes(first.read_bytes())
    result = invoke("eval", partial, "--dataset", "synthetic", "-O", "dataset.preset=tiny")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "prediction missing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eval_size_mismatch(tiny_run, tmp_path):
    out, _ = tiny_run
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in (out / "masks").glob("*.png"):
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad / p.name)
    result = invoke("eval", bad, "--dataset", "synthetic", "-O", "dataset.preset=tiny")
    assert result.exit_code == 1 and "differs from ground truth" in result.stderr


def test_data_root_without_voc_layout(tmp_path):
    (tmp_path / "VOC2012").mkdir()
    result = invoke("eval", tmp_path, "--dataset", "voc2012", "--data-root", tmp_path / "VOC2012")
    assert result.exit_code == 1
    assert "not a VOC-layout root" in result.stderr and "Traceback" not in result.output


def test_unknown_component_exits_2():
    result = invoke("run", "--saliency", "gpb")
    assert result.exit_code == 2
    assert "unknown saliency 'gpb'; available: bp" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["-O", "fusion.bg_threshold=high"], "bad value 'high' for option 'bg_threshold'"),
        (["-O", "fusion.bg_threshold=1.5"], "bg_threshold must be in (0, 1)"),
        (["-O", "fusion.nope=1"], "unknown option 'nope' for fusion 'threshold'"),
        (["-O", "densecrf"], "expected STAGE.KEY=VALUE"),
        (["--backbone", "resnt18"], "unknown timm model 'resnt18'; did you mean resnet18"),
    ],
)
def test_bad_options_exit_2(args, message, tmp_path):
    result = invoke("run", *TINY, *args, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_traceback_flag_shows_traceback(tmp_path):
    from wssbench.errors import DataError

    with pytest.raises(DataError, match="nope"):  # the error itself, not a one-line message
        CliRunner().invoke(cli, ["eval", str(tmp_path / "nope"), "--dataset", "synthetic", "--traceback"], catch_exceptions=False)


def test_interrupted_run_leaves_no_result(tiny_run, tmp_path, monkeypatch):
    from wssbench_plugins import fusion

    calls = []

    def interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    original = fusion.ThresholdFusion.__call__
    monkeypatch.setattr(fusion.ThresholdFusion, "__call__", interrupt)
    out = tmp_path / "interrupted"
    result = invoke("run", *TINY, "--no-cache-maps", "--out", out)  # no label maps read back: the fusion runs
    assert result.exit_code == 130
    assert not out.exists() and not list(tmp_path.glob(".interrupted*"))


def test_plugins_and_list():
    result = invoke("plugins", "--json")
    rows = json.loads(result.stdout)["components"]
    assert {r["kind"] for r in rows} == {"dataset", "backbone", "saliency", "classmap", "fusion", "refiner", "segnet", "objective", "objectness", "salient", "pseudomask"}
    assert {"kind": "saliency", "name": "gbp", "plugin": "wssbench"}.items() <= next(
        r for r in rows if r["name"] == "gbp"
    ).items()
    listed = invoke("list", "saliency").stdout.splitlines()
    assert any(line.startswith("gbp ") for line in listed)
    assert invoke("list", "saliencies").exit_code == 2


def test_worker_pool_gives_the_same_result(tiny_run, tmp_path):
    records = []
    for workers in (1, 2):
        result = invoke("run", *TINY, "--fusion", "integer-lp", "--workers", workers, "--no-cache-maps",  # both fuse every image
                        "--out", tmp_path / f"w{workers}", "--json")
        assert result.exit_code == 0, result.output
        records.append(json.loads(result.stdout))
    one, two = records
    assert one["confusion_matrix"] == two["confusion_matrix"]
    assert one["component_stats"]["fusion"]["images"] == two["component_stats"]["fusion"]["images"] == 12


OFF_RECIPE = ["--backbone", "resnet10t", "--no-pretrained", "--crop", "64"]  # presets pin ImageNet VGG-16 and 448 px crops: not here


def test_preset_sets_options_and_command_line_wins(tmp_path):
    result = invoke("run", *TINY, *OFF_RECIPE, "--preset", "mil-sppxl", "--saliency", "bp", "--limit", 2, "--out", tmp_path / "p", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    config = record["config"]
    assert config["preset"] == "mil-sppxl"
    assert config["pooling"] == "lse" and config["refine"] == ["sppxl"]
    assert config["saliency"] == "bp"  # given on the command line: wins over the preset's none
    changed = {d["option"]: (d["published"], d["used"]) for d in record["deviations"]}
    assert changed["backbone"] == ("vgg16", "resnet10t") and changed["pretrained"] == (True, False)
    assert changed["saliency"] == (None, "bp")
    assert "pooling" not in changed and "background" not in changed and "network" in changed  # kept as published; the departure listed
    assert "deviat" in result.stderr


def test_preset_without_its_weights_names_the_way_out(tmp_path):
    result = invoke("run", *TINY, "--preset", "dcsm", "--out", tmp_path / "x")
    assert result.exit_code == 1 and "--weights FILE" in result.stderr and "--backbone" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_maps_cache_is_reused_and_exact(tiny_run, tmp_path):
    _, first = tiny_run  # computed (and cached) fcn and gbp maps
    args = [*TINY, "-O", "fusion.bg_threshold=0.4", "--refine", "none", "--json"]
    cached = json.loads(invoke("run", *args, "--out", tmp_path / "c").stdout)
    fresh = json.loads(invoke("run", *args, "--no-cache-maps", "--out", tmp_path / "f").stdout)
    assert cached["timings"]["maps_from_cache"] == {"classmap": True, "saliency": True}
    assert fresh["timings"]["maps_from_cache"] == {"classmap": False, "saliency": False}
    assert cached["confusion_matrix"] == fresh["confusion_matrix"]


def test_preset_component_options_merge(tmp_path):
    result = invoke("run", *TINY, *OFF_RECIPE, "--preset", "dcsm", "-O", "saliency.canvas=64", "-O", "saliency.scales=1.0",
                    "--limit", 2, "--out", tmp_path / "d", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    options = record["config"]["options"]["saliency"]
    assert options == {"signal": "map", "canvas": 64, "scales": [1.0]}  # the preset's signal, the command line's canvas
    assert record["config"]["detect_by"] == "saliency" and record["config"]["max_classes"] is None
    changed = {d["option"] for d in record["deviations"]}
    assert {"saliency.canvas", "saliency.scales", "backbone"} <= changed and "saliency.signal" not in changed


def test_show_writes_gallery_from_cached_maps(tiny_run):
    out, _ = tiny_run
    result = invoke("show", out, "--n", 3)
    assert result.exit_code == 0, result.output
    gallery = out.parent / f"{out.name}-gallery"  # beside the run: a rerun replaces the run's folder
    with Image.open(gallery / "gallery.png") as img:
        width, height = img.size
    assert width > height  # five columns: image, truth, class map, saliency, prediction
    assert "mIoU" in (gallery / "gallery.html").read_text()
    from wssbench.cli.show import cached_maps

    record = json.loads((out / "result.json").read_text())
    image_id = sorted(p.stem for p in (out / "masks").glob("*.png"))[0]
    for stage in ("classmap", "saliency"):  # the gallery shows the maps the run cached
        maps = cached_maps(record, stage, image_id)
        assert maps is not None and maps.shape == np.asarray(Image.open(out / "masks" / f"{image_id}.png")).shape
    missing = invoke("show", out, "--ids", "nope")
    assert missing.exit_code == 1 and "no prediction for 'nope'" in missing.stderr
