"""``wssbench bench``: rows from TOML, tuning on another split, resuming."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from wssbench.cli import cli

BENCH = Path(__file__).parent / "data" / "tiny-bench.toml"


def bench(*args):
    return CliRunner().invoke(cli, ["bench", *map(str, args)], catch_exceptions=False)


@pytest.mark.slow
def test_bench_runs_tunes_and_resumes(tmp_path):
    first = bench(BENCH, "--out", tmp_path, "--json")
    assert first.exit_code == 0, first.output
    rows = {r["label"]: r for r in json.loads(first.stdout)["rows"]}
    assert set(rows) == {"all background", "fcn"}
    record = json.loads((tmp_path / "fcn" / "result.json").read_text())
    assert record["tuning"]["split"] == "train" and record["split"] == "val"
    chosen = record["tuning"]["chosen"]["fusion.bg_threshold"]
    assert chosen in (0.05, 0.2, 0.4)
    assert record["config"]["options"]["fusion"]["bg_threshold"] == chosen
    assert record["tuning"]["chosen"] == max(record["tuning"]["scores"], key=lambda s: s["miou"])["options"]
    assert record["tuning"]["at_edge"] == ([] if chosen == 0.2 else ["fusion.bg_threshold"])
    assert record["tuning"]["overlap"] == 0 and record["tuning"]["n_images"] > 0 and record["tuning"]["ids_digest"]
    # what each run cost, tuning included, is in its record, the rows and the table's last line
    assert record["tuning"]["seconds"] > 0
    assert rows["fcn"]["seconds"] == pytest.approx(record["timings"]["total_seconds"] + record["tuning"]["seconds"])
    assert first.stderr.count("finished in") == 2

    # nothing changed: every row is done already, a tuned row at the edge of its grid included
    unchanged = bench(BENCH, "--out", tmp_path, "--json")
    assert unchanged.stderr.count("done already") == 2, unchanged.stderr

    # killed half-way: the second row's result is gone; a rerun redoes only that row
    shutil.rmtree(tmp_path / "fcn")
    mtime = (tmp_path / "all_background" / "result.json").stat().st_mtime
    again = bench(BENCH, "--out", tmp_path, "--json")
    assert "done already" in again.stderr
    assert (tmp_path / "all_background" / "result.json").stat().st_mtime == mtime
    def numbers(rows):  # everything but what the runs cost
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert numbers(json.loads(again.stdout)["rows"]) == numbers(json.loads(first.stdout)["rows"])


@pytest.mark.slow
def test_bench_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rows]]\nlabel = "x"\nsaliency = "gpb"\n')
    result = bench(bad, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "unknown saliency 'gpb'" in result.stderr
    bad.write_text('tune_split = "val"\n[[rows]]\nlabel = "x"\ntune = { "fusion.bg_threshold" = [0.2] }\n')
    result = bench(bad, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "shares 120 images with the scored split 'val'" in result.stderr  # before any row ran
    assert not (tmp_path / "o").exists()
    for seeds in ("[1, 1]", "[0, -1]", '"0,1"', "[0.5]"):
        bad.write_text(f'[defaults]\nseeds = {seeds}\n[[rows]]\nlabel = "x"\n')
        result = bench(bad, "--out", tmp_path / "o")
        assert result.exit_code == 2 and "seeds: expected a list of distinct non-negative integers" in result.stderr, seeds
    bad.write_text("rows = [")
    assert bench(bad).exit_code == 1
    assert "bench file not found" in bench(tmp_path / "none.toml").stderr


def test_grid_edges():
    from wssbench.bench import grid_edges

    grid = {"fusion.bg_threshold": [0.1, 0.2, 0.3], "fusion.weight": [0.5, 0.25, 0.75], "densecrf.iterations": [5, 10]}
    assert grid_edges(grid, {"fusion.bg_threshold": 0.1, "fusion.weight": 0.5, "densecrf.iterations": 10}) == ["fusion.bg_threshold"]
    assert grid_edges(grid, {"fusion.bg_threshold": 0.2, "fusion.weight": 0.75, "densecrf.iterations": 5}) == ["fusion.weight"]
    assert grid_edges({"fusion.mode": ["a", "b", "c"]}, {"fusion.mode": "a"}) == []  # not numeric: no order


@pytest.mark.parametrize("name", [pytest.param("poster-voc2012", marks=pytest.mark.slow), pytest.param("poster-synthetic", marks=pytest.mark.slow), "synthetic-main"])
def test_shipped_bench_files_are_valid(name):
    """Every row (and every value of its tuning grid) names real components with valid options."""
    import itertools

    from wssbench.bench import load_bench, row_config
    from wssbench.host.registry import default_registry
    from wssbench.seed.components import check
    from wssbench.segmentation.config import SegmentConfig

    registry = default_registry()
    spec = load_bench(Path(__file__).parent.parent / "benchmarks" / f"{name}.toml", registry)  # checks every row
    for row in spec["rows"]:
        if isinstance(row["_config"], SegmentConfig):  # a network's components were created by load_bench's resolve
            continue
        grid = row.get("tune", {})
        for values in [()] + list(itertools.product(*grid.values())):
            config = check(row_config(spec, row, extra_options=dict(zip(grid, values))), registry)
            for stage, (kind, component) in config.components().items():
                if component is not None and kind not in ("dataset", "backbone"):  # those would read data / weights
                    registry.create(kind, component, **config.options_for(stage))  # range checks run here


def test_row_options_merge_with_the_defaults(tmp_path):
    from wssbench.bench import load_bench
    from wssbench.host.registry import default_registry

    path = tmp_path / "merge.toml"
    path.write_text(
        '[defaults]\noptions = { "dataset.preset" = "tiny", "fusion.weight" = 0.5 }\nepochs = 1\n'
        '[[rows]]\nlabel = "a"\noptions = { "fusion.bg_threshold" = 0.3, "fusion.weight" = 0.25 }\n'
        '[[rows]]\nlabel = "b"\npreset = "mil-fcn"\n'
    )
    spec = load_bench(path, default_registry())
    a, b = (row["_config"] for row in spec["rows"])
    assert a.options_for("dataset") == {"preset": "tiny"}  # the defaults' option is kept
    assert a.options_for("fusion") == {"bg_threshold": 0.3, "weight": 0.25}  # the row wins per key
    assert a.recipe.epochs == 1
    assert b.options_for("dataset") == {"preset": "tiny"} and b.pooling == "gmp" and b.recipe.epochs == 1


def test_every_row_is_checked_before_any_runs(tmp_path):
    path = tmp_path / "late.toml"
    path.write_text('[defaults]\noptions = { "dataset.preset" = "tiny" }\n'
                    '[[rows]]\nlabel = "good"\n[[rows]]\nlabel = "bad"\noptions = { "fusion.bg_treshold" = 0.3 }\n')
    result = bench(path, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "unknown option 'bg_treshold'" in result.stderr
    assert not (tmp_path / "o").exists()  # the good row did not run first


def test_two_rows_with_one_label_are_an_error(tmp_path):
    path = tmp_path / "twice.toml"
    path.write_text('[[rows]]\nlabel = "fcn"\n[[rows]]\nlabel = "fcn"\nrefine = "none"\n')
    result = bench(path, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "a label used twice" in result.stderr


@pytest.mark.slow
def test_the_table_marks_a_preset_row_that_departs_from_its_recipe(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        '[defaults]\noptions = { "dataset.preset" = "tiny" }\nepochs = 1\ncrop = 64\nbackbone = "resnet10t"\npretrained = false\n'
        '[[rows]]\nlabel = "MIL-FCN"\npreset = "mil-fcn"\n'
        'published = { miou = 25.7, dataset = "voc2012", split = "val", source = "Pathak et al." }\n'
        '[[rows]]\nlabel = "plain"\nclassmap = "fcn"\nsaliency = "none"\nrefine = ["none"]\n'
    )
    table = bench(path, "--out", tmp_path / "runs")
    assert table.exit_code == 0, table.output
    assert "MIL-FCN †" in table.stdout and "plain †" not in table.stdout
    assert "† MIL-FCN: backbone, pretrained" in table.stdout
    rows = {r["label"]: r for r in json.loads(bench(path, "--out", tmp_path / "runs", "--json").stdout)["rows"]}
    assert {"option": "backbone", "published": "vgg16", "used": "resnet10t"} in rows["MIL-FCN"]["deviations"]
    assert rows["plain"]["deviations"] == []


FLOOR = "the all-background floor, a label long enough to be wrapped in eighty columns"


@pytest.mark.slow
def test_seeds_make_one_row_of_full_runs_with_an_interval(tmp_path):
    from wssbench.bench import slug

    spec = tmp_path / "seeds.toml"
    spec.write_text('''[defaults]
options = { "dataset.preset" = "tiny" }
epochs = 1
refine = "none"
seeds = [0, 1]
[[rows]]
label = "fcn"
saliency = "none"
[[rows]]
label = "the all-background floor, a label long enough to be wrapped in eighty columns"
fusion = "background"
seeds = [3]
''')
    result = bench(spec, "--out", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["label"]: r for r in json.loads(result.stdout)["rows"]}
    runs = [json.loads((tmp_path / "o" / "fcn" / f"seed-{s}" / "result.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in runs] == [0, 1] and [r["config"]["recipe"]["seed"] for r in runs] == [0, 1]
    assert rows["fcn"]["n_seeds"] == 2 and rows["fcn"]["seeds"] == [0, 1]
    assert rows["fcn"]["miou"] == pytest.approx((runs[0]["miou"] + runs[1]["miou"]) / 2)
    assert rows["fcn"]["ci95"][0] <= rows["fcn"]["miou"] <= rows["fcn"]["ci95"][1]
    assert rows[FLOOR]["seeds"] == [3] and rows[FLOOR]["miou_std"] is None
    assert (tmp_path / "o" / slug(FLOOR) / "seed-3" / "result.json").is_file()
    table = bench(spec, "--out", tmp_path / "o")
    assert table.stderr.count("done already") == 3 and " ± " in table.stdout
    assert any(FLOOR in line and "[" in line for line in table.stdout.splitlines())  # piped: one line a row, not wrapped
    total = sum(r["seconds"] for r in rows.values()) / 60
    assert f"time: the rows' runs took {total:.1f} min as recorded" in table.stdout


def test_an_unset_option_added_later_keeps_finished_rows(tmp_path, monkeypatch):
    """A new run option whose default (None) keeps the old behaviour leaves the rows' keys as they were."""
    from wssbench.bench import load_bench, row_key
    from wssbench.host.registry import default_registry
    from wssbench.seed.config import RunConfig

    bench = tmp_path / "b.toml"
    bench.write_text('[defaults]\ndataset = "synthetic"\n[[rows]]\nlabel = "fcn"\nsaliency = "none"\n')
    registry = default_registry()
    spec = load_bench(bench, registry)
    before = row_key(spec, spec["rows"][0], registry)
    plain = RunConfig.to_dict
    monkeypatch.setattr(RunConfig, "to_dict", lambda self: {**plain(self), "a_new_option": None})
    assert row_key(spec, spec["rows"][0], registry) == before
    monkeypatch.setattr(RunConfig, "to_dict", lambda self: {**plain(self), "a_new_option": 3})
    assert row_key(spec, spec["rows"][0], registry) != before


def test_a_threshold_grid_is_read_from_one_runs_curve_and_equals_a_run_per_value(tmp_path):
    """With no refiner, tuning the background threshold from one run's threshold curve gives each
    value's score exactly as its own run; a row with a refiner still runs once per value."""
    from wssbench.api import Pipeline
    from wssbench.bench import curve_option, load_bench, row_config, tune_row
    from wssbench.host.registry import default_registry

    spec_file = tmp_path / "t.toml"
    spec_file.write_text(BENCH.read_text().replace('tune_limit = 6', 'tune_limit = 8') + '''
[[rows]]
label = "fcn + sppxl-crf"
saliency = "none"
refine = "sppxl-crf"
tune = { "fusion.bg_threshold" = [0.2, 0.4] }
''')
    registry = default_registry()
    spec = load_bench(spec_file, registry)
    rows = {r["label"]: r for r in spec["rows"]}
    chosen, report = tune_row(spec, rows["fcn"], registry)
    assert report["method"] == "one run's threshold curve" and report["seconds"] > 0
    for score in report["scores"]:
        config = row_config(spec, rows["fcn"], extra_options=score["options"], split="train", limit=8, seed=rows["fcn"]["_config"].seed)
        assert Pipeline(config, registry=registry).run()["miou"] == pytest.approx(score["miou"], abs=1e-12), score
    assert len({s["miou"] for s in report["scores"]}) == 3  # the values tell thresholds apart
    assert chosen == max(report["scores"], key=lambda s: s["miou"])["options"]
    assert curve_option({**rows["fcn"], "tune": {"fusion.bg_threshold": [0.2]}}, registry) is None  # one value: runs it
    _, refined = tune_row(spec, rows["fcn + sppxl-crf"], registry)
    assert refined["method"] == "a run per value" and len(refined["scores"]) == 2


def test_the_tuned_column_shows_each_seeds_choice_when_they_differ():
    from wssbench.cli.bench import tuned_text

    assert tuned_text([{"fusion.bg_threshold": 0.3}] * 3) == "fusion.bg_threshold=0.3"
    assert tuned_text([{"fusion.bg_threshold": 0.3}, {"fusion.bg_threshold": 0.3}, {"fusion.bg_threshold": 0.4}]) \
        == "fusion.bg_threshold=0.3/0.3/0.4"
    two = [{"fusion.bg_threshold": 0.2, "refine.w": 3}, {"fusion.bg_threshold": 0.2, "refine.w": 5}]
    assert tuned_text(two) == "fusion.bg_threshold=0.2, refine.w=3/5"
    assert tuned_text([None, None]) == ""
