"""``wssbench eval``: arguments checked before any data is touched, part of a split scored."""

import json

import pytest
from click.testing import CliRunner

from wssbench.cli import cli
from wssbench.data.layout import UnknownSplitError
from wssbench.errors import DataError, UsageError
from wssbench.storage.io import write_mask

TINY = ["--dataset", "synthetic", "-O", "dataset.preset=tiny"]


def invoke(*args):
    return CliRunner().invoke(cli, ["eval", *map(str, args)])


@pytest.fixture
def limited_run(tmp_path, tiny_dataset):
    """The masks/ of a 'run --limit 3': perfect predictions of the first 3 val images, result.json beside."""
    masks = tmp_path / "run" / "masks"
    masks.mkdir(parents=True)
    ids = tiny_dataset.ids("val")[:3]
    for image_id in ids:
        write_mask(masks / f"{image_id}.png", tiny_dataset.load_mask(image_id))
    config = {"dataset": "synthetic", "split": "val", "limit": 3}
    (tmp_path / "run" / "result.json").write_text(json.dumps({"config": config}))
    return masks, ids


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["nowhere", *TINY], 1, "nowhere: prediction folder not found"),
        (["{pred}", "--dataset", "synthetic", "-O", "dataset.nosuch=1"], 2, "unknown option 'nosuch' for dataset 'synthetic'"),
        (["{pred}", "--dataset", "synthetic", "-O", "dataset.seed=many"], 2, "bad value 'many' for option 'seed'"),
        (["{pred}", *TINY, "-O", "fusion.bg_threshold=0.3"], 2, "eval takes dataset options only"),
        (["{pred}", *TINY, "--limit", "2", "--ids", "a,b"], 2, "--limit and --ids both choose the images"),
        (["{pred}", *TINY, "--ids", "@nofile.txt"], 2, "--ids @nofile.txt: file not found"),
    ],
)
def test_bad_arguments_fail_before_any_data_is_generated(args, code, message, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("WSSBENCH_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pred").mkdir()
    result = invoke(*[a.format(pred=tmp_path / "pred") for a in args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not (home / "data").exists()  # nothing generated


def test_unknown_split_is_a_usage_error(tiny_dataset, tmp_path):
    result = invoke(tmp_path, *TINY, "--split", "nosuch")
    assert result.exit_code == 2
    assert "split 'nosuch' not found; available: train, trainval, val" in result.output
    with pytest.raises(UnknownSplitError) as caught:
        tiny_dataset.ids("nosuch")
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, DataError)


def test_limit_of_the_run_beside_is_used(limited_run):
    masks, ids = limited_run
    result = invoke(masks, *TINY, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["n_images"] == 3 and record["images"] == ids
    assert record["miou"] == 1.0  # the masks are the ground truth
    assert "scoring the first 3 images of val" in result.stderr


@pytest.mark.parametrize("choice", [["--limit", "2"], ["--ids", "{first},{second}"], ["--ids", "@{file}"]])
def test_limit_and_ids_choose_the_images(limited_run, choice, tmp_path):
    masks, ids = limited_run
    (tmp_path / "ids.txt").write_text(f"{ids[0]}\n{ids[1]}\n")
    args = [a.format(first=ids[0], second=ids[1], file=tmp_path / "ids.txt") for a in choice]
    record = json.loads(invoke(masks, *TINY, *args, "--json").stdout)
    assert record["images"] == ids[:2]


def test_whole_split_needs_every_prediction(limited_run, tmp_path, tiny_dataset):
    masks, ids = limited_run
    plain = tmp_path / "plain"
    masks.rename(plain)  # no result.json beside: nothing to infer
    result = invoke(plain, *TINY)
    missing = tiny_dataset.ids("val")[3]
    assert result.exit_code == 1 and f"prediction missing for image '{missing}'" in result.output


def test_ids_outside_the_split_are_named(limited_run):
    masks, _ = limited_run
    result = invoke(masks, *TINY, "--ids", "nope,syn_000000")
    assert result.exit_code == 2 and "--ids: not in split 'val': nope, syn_000000" in result.output
