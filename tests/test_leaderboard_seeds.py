"""The leaderboard's seeds, intervals, ties and priors, on records with per-image counts."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from wssbench.cli import cli
from wssbench.errors import DataError
from wssbench.leaderboard import build_groups, find_records, to_csv, to_json, to_latex, to_markdown
from wssbench.results.counts import CountsAccumulator
from wssbench.results.uncertainty import estimate, run_samples

CONFIG = {"preset": None, "backbone": "resnet18", "pooling": "gap", "saliency": "gbp", "classmap": "fcn",
          "fusion": "threshold", "refine": ["densecrf"], "options": {"dataset": {"preset": "tiny"}}}


def counts(noise: float, seed: int, n: int = 30):
    rng = np.random.default_rng(seed)
    acc = CountsAccumulator(3)
    for k in range(n):
        gt = rng.integers(0, 3, (10, 10)).astype(np.uint8)
        pred = np.where(rng.random((10, 10)) < noise, rng.integers(0, 3, (10, 10)), gt).astype(np.uint8)
        acc.update(f"im{k:02d}", gt, pred)
    return acc.result()


def write_run(root, run, noise, seed, *, store_samples=True, extra=None, **config):
    c = counts(noise, seed)
    folder = root / run
    folder.mkdir(parents=True)
    c.save(folder / "counts.npz", run_samples(c) if store_samples else None)
    record = {
        "dataset": "synthetic", "split": "val", "protocol": "segmentation", "n_images": len(c.ids),
        "miou": c.miou(), "pixel_accuracy": 0.8, "per_class_iou": {}, "seed": seed,
        "config": {**CONFIG, "seed": seed, "recipe": {"epochs": 2, "seed": seed}, **config},
        "classifier": {"map": 0.5}, "counts": {"file": "counts.npz", "ids_digest": "x"}, **(extra or {}),
    }
    (folder / "result.json").write_text(json.dumps(record))
    return c


def board(root, **kw):
    return build_groups(find_records(root), root, **kw)


def test_runs_that_differ_only_in_seed_are_one_row_with_mean_std_and_interval(tmp_path):
    runs = [write_run(tmp_path, f"gbp/seed-{s}", 0.3, s) for s in (0, 1, 2)]
    write_run(tmp_path, "other", 0.3, 0, fusion="image-prior")
    [group] = board(tmp_path)
    row = next(r for r in group.rows if r.cells["source"].startswith("gbp/seed-0"))
    mious = [r.miou() for r in runs]
    assert row.seeds == (0, 1, 2) and row.runs == 3 and row.cells["source"] == "gbp/seed-0 (3 seeds)"
    assert row.cells["miou"] == round(100 * np.mean(mious), 1)
    assert row.std == round(100 * np.std(mious, ddof=1), 1)
    e = estimate(runs)
    assert row.ci95 == (round(100 * e.ci95[0], 1), round(100 * e.ci95[1], 1))
    md = to_markdown([group])
    assert f"{row.cells['miou']:.1f} ± {row.std:.1f} (3)" in md and "95 % CI" in md
    data = json.loads(to_json([group]))[0]["rows"]
    j = next(r for r in data if r["source"].startswith("gbp"))
    assert j["n_seeds"] == 3 and j["seeds"] == [0, 1, 2] and j["miou_std"] == row.std and j["ci95"] == list(row.ci95)
    single = next(r for r in data if r["source"] == "other")
    assert single["n_seeds"] == 1 and single["miou_std"] is None
    # stored samples and samples computed from the counts give the same interval
    for s in (0, 1, 2):
        folder = tmp_path / f"gbp/seed-{s}"
        runs[s].save(folder / "counts.npz")  # counts only
    [again] = board(tmp_path)
    assert next(r for r in again.rows if r.seeds == (0, 1, 2)).ci95 == row.ci95


def test_a_row_tied_with_the_one_above_is_marked_and_a_clearly_worse_one_is_not(tmp_path):
    write_run(tmp_path, "a", 0.30, 0)
    write_run(tmp_path, "b", 0.30, 0, fusion="image-prior")  # the same counts: a tie
    write_run(tmp_path, "c", 0.80, 0, fusion="ilp")  # far worse
    [group] = board(tmp_path)
    assert [r.cells["source"] for r in group.rows[:3]] == ["a", "b", "c"]
    assert [r.tied_with_above for r in group.rows[:3]] == [None, True, False]
    assert {r.cells["source"] for r in group.rows if "miou" in r.best} == {"a", "b"}  # the tie shares the best mark
    assert "≈" in to_markdown([group]) and "≈ tied with the row above" in "\n".join(group.notes)
    row = next(r for r in csv.DictReader(io.StringIO(to_csv([group]))) if r["source"] == "b")
    assert row["tied_with_above"] == "True" and row["miou"] == str(group.rows[1].cells["miou"])
    assert r"$\approx$" in to_latex([group])


def test_priors_are_badges_with_a_legend_and_a_row_tuned_on_its_scored_images_is_not_ranked(tmp_path):
    write_run(tmp_path, "pretrained", 0.3, 0, pretrained=True)
    write_run(tmp_path, "salient", 0.2, 0, fusion="image-prior",
              extra={"priors": [{"mark": "S", "what": "salient-object detector u2netp (DUTS masks)"}]})
    write_run(tmp_path, "cheat", 0.1, 0, fusion="ilp", extra={"tuning": {"split": "val", "overlap": 30}})
    [group] = board(tmp_path)
    by = {r.cells["source"]: r for r in group.rows if not r.published}
    assert by["pretrained"].marks == "I" and by["salient"].marks == "S" and by["cheat"].marks == "T"
    assert [r.cells["source"] for r in group.rows if not r.published][-1] == "cheat"  # shown apart, after the ranked rows
    assert by["cheat"].unranked and "miou" not in by["cheat"].best and by["cheat"].tied_with_above is None
    notes = "\n".join(group.notes)
    assert "I: pretrained weights" in notes and "S: a component trained with pixel masks" in notes and "T: tuned on the images" in notes
    for text in (to_markdown([group]), to_latex([group]), to_csv([group]), to_json([group])):
        assert "S" in text and "tuned on the images" in text  # every format carries the marks and the legend


def test_sort_by_threshold_auc(tmp_path):
    write_run(tmp_path, "high-miou", 0.2, 0, extra={"threshold_auc": 0.30})
    write_run(tmp_path, "high-auc", 0.4, 0, fusion="image-prior", extra={"threshold_auc": 0.50})
    [group] = board(tmp_path, sort="auc")
    assert [r.cells["source"] for r in group.rows if not r.published] == ["high-auc", "high-miou"]
    assert any(c.key == "auc" for c in group.columns)


def test_a_missing_or_truncated_count_file_is_a_one_line_error(tmp_path):
    write_run(tmp_path, "a", 0.3, 0)
    path = tmp_path / "a" / "counts.npz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=r"a/counts\.npz: not a readable wssbench count file"):
        board(tmp_path)
    result = CliRunner().invoke(cli, ["leaderboard", str(tmp_path)])
    assert result.exit_code == 1 and "counts.npz" in result.output and len(result.output.strip().splitlines()) == 1
    path.unlink()
    result = CliRunner().invoke(cli, ["leaderboard", str(tmp_path)])
    assert result.exit_code == 1 and "count file not found" in result.output


def test_bootstrap_option(tmp_path):
    write_run(tmp_path, "a", 0.3, 0)
    result = CliRunner().invoke(cli, ["leaderboard", str(tmp_path), "--bootstrap", "50"])
    assert result.exit_code == 2 and "at least 100" in result.output
    result = CliRunner().invoke(cli, ["leaderboard", str(tmp_path), "--bootstrap", "200", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["rows"][0]["ci95"] is not None


def test_seeds_of_a_tuned_row_that_chose_different_values_are_one_row(tmp_path):
    """A bench tunes each seed on its own: the chosen threshold is an outcome, the grid a condition."""
    def tuned(value, grid=(0.1, 0.2, 0.3)):
        return {"tuning": {"chosen": {"fusion.bg_threshold": value}, "grid": {"fusion.bg_threshold": list(grid)},
                           "split": "train", "limit": 40, "ids_digest": "d", "overlap": 0}}

    options = lambda v: {"options": {"dataset": {"preset": "tiny"}, "fusion": {"bg_threshold": v}}}  # noqa: E731
    for s, v in ((0, 0.2), (1, 0.2), (2, 0.3)):
        write_run(tmp_path, f"row/seed-{s}", 0.3, s, extra=tuned(v), **options(v))
    write_run(tmp_path, "wider/seed-0", 0.3, 0, extra=tuned(0.2, (0.1, 0.2, 0.3, 0.4)), **options(0.2))  # another grid: apart
    write_run(tmp_path, "fixed/seed-0", 0.3, 0, **options(0.2))  # set, not tuned: apart
    [group] = board(tmp_path)
    row = next(r for r in group.rows if r.cells["source"].startswith("row/"))
    assert row.seeds == (0, 1, 2) and len(group.rows) == 3
    assert "fusion.bg_threshold=0.2/0.2/0.3" in row.cells["method"]
    wider = next(r for r in group.rows if r.cells["source"].startswith("wider/"))
    assert "fusion.bg_threshold=0.2]" in wider.cells["method"]


def test_a_seed_recorded_before_a_recipe_field_existed_joins_its_row(tmp_path):
    """``head_init`` entered the recipe after some seeds were finished: absent there, "random" (its
    default) in later seeds. Both are one experiment; "imagenet" is another."""
    recipe = lambda s, **kw: {"recipe": {"epochs": 2, "seed": s, **kw}}  # noqa: E731
    write_run(tmp_path, "row/seed-0", 0.3, 0, **recipe(0))
    for s in (1, 2):
        write_run(tmp_path, f"row/seed-{s}", 0.3, s, **recipe(s, head_init="random"))
    write_run(tmp_path, "imagenet/seed-0", 0.3, 0, **recipe(0, head_init="imagenet"))
    [group] = board(tmp_path)
    assert sorted(r.seeds for r in group.rows) == [(0,), (0, 1, 2)]
