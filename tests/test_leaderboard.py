"""The leaderboard on small hand-written result records: grouping, ranking, references, formats."""

import csv
import io
import json

import pytest
from click.testing import CliRunner

from wssbench.cli import WssbenchGroup, cli
from wssbench.cli.leaderboard import leaderboard_command
from wssbench.errors import DataError
from wssbench.leaderboard import build_groups, find_records, method_label, to_csv, to_json, to_latex, to_markdown
from wssbench.results import references
from wssbench.seed.config import RunConfig

CONFIG = {"preset": None, "backbone": "resnet18", "pooling": "gap", "saliency": "gbp", "classmap": "fcn",
          "fusion": "threshold", "refine": ["densecrf"], "options": {"dataset": {"preset": "tiny"}}}


def write_record(root, run, *, dataset="synthetic", split="val", protocol="segmentation", n_images=12,
                 miou=0.4, pixel_accuracy=0.8, map=0.5, per_class=None, extra=None, **config):
    record = {**(extra or {}),
        "dataset": dataset, "split": split, "protocol": protocol, "n_images": n_images,
        "miou": miou, "pixel_accuracy": pixel_accuracy,
        "per_class_iou": per_class or {"background": 0.8, "disc": miou},
        "config": {**CONFIG, **config}, "classifier": {"map": map, "map_split": "val"},
    }
    path = root / run / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    return path


def groups_of(root, **kw):
    return build_groups(find_records(root), root, **kw)


def cells(group, key):
    return [row.cells.get(key) for row in group.rows]


@pytest.fixture
def board(tmp_path):
    """Three synthetic val runs (one nested, with an underscore), a seed-quality run, a --limit run."""
    write_record(tmp_path, "run_a", miou=0.40, pixel_accuracy=0.80, map=0.5)
    write_record(tmp_path, "sweep/run_b", miou=0.45, pixel_accuracy=0.70, map=0.5, saliency=None)
    write_record(tmp_path, "run_c", miou=0.30, pixel_accuracy=0.80, map=0.5, fusion="ilp")
    write_record(tmp_path, "seeds", split="train", protocol=references.SEED_QUALITY, miou=0.6)
    write_record(tmp_path, "limited", n_images=5, miou=0.9)
    return tmp_path


def test_groups_by_dataset_split_protocol_and_image_count(board):
    groups = groups_of(board)
    keys = [(g.dataset, g.split, g.protocol, g.n_images) for g in groups]
    assert all((g.dataset_options, g.precision, g.stage) == ((("preset", "tiny"),), "fp32", None) for g in groups)
    assert keys == [
        ("synthetic", "train", references.SEED_QUALITY, 12),
        ("synthetic", "val", "segmentation", 5),
        ("synthetic", "val", "segmentation", 12),
    ]
    assert cells(groups[2], "source") == ["sweep/run_b", "run_a", "run_c"]  # mIoU descending
    assert groups[2].caption.startswith("synthetic [preset=tiny] val (12 images, fp32) — segmentation mIoU, one confusion matrix")


def test_values_are_percent_with_one_decimal_and_sort_keys(board):
    val = groups_of(board)[2]
    assert cells(val, "miou") == [45.0, 40.0, 30.0]
    assert cells(val, "map") == [50.0, 50.0, 50.0]
    by_method = groups_of(board, sort="method")[2]
    assert cells(by_method, "method") == sorted(cells(val, "method"))


def test_best_marked_per_column_only_where_it_separates_rows(board):
    val = groups_of(board)[2]
    best = {row.cells["source"]: row.best for row in val.rows}
    assert best["sweep/run_b"] == {"miou"}
    assert best["run_a"] == best["run_c"] == {"pixel_accuracy"}  # a tie: both marked
    assert all("map" not in b for b in best.values())  # all equal: nothing to mark
    assert all(not row.best for g in groups_of(board)[:2] for row in g.rows)  # one row: nothing to mark


def test_references_join_only_the_group_they_match(tmp_path):
    voc = {"dataset": "voc2012", "options": {}}
    write_record(tmp_path, "voc_val", n_images=1449, miou=0.35, **voc)
    write_record(tmp_path, "voc_val_limited", n_images=100, miou=0.35, **voc)
    write_record(tmp_path, "voc_seeds", split="train", n_images=1464, protocol=references.SEED_QUALITY, miou=0.5, **voc)
    write_record(tmp_path, "voc_walk", split="train", n_images=1464, protocol=references.SEED_QUALITY, miou=0.6,
                 extra={"stage": "pseudo-mask", "method": "psa on cam"}, **voc)
    write_record(tmp_path, "synthetic", n_images=1449, miou=0.35)
    synthetic, seeds, walks, limited, val = groups_of(tmp_path)  # sorted by (dataset, split, protocol, n, ..., stage)

    published = [row for row in val.rows if row.published]
    assert val.rows[0].cells["source"] == "voc_val" and not val.rows[0].published  # measured first
    assert all(row.published for row in val.rows[1:])
    by_method = {row.cells["method"]: row for row in published}
    assert by_method["MIL-FCN"].cells["miou"] == 25.7 and by_method["DCSM"].cells["miou"] == 44.1
    assert by_method["MIL-FCN"].cells["source"] == "published: Pathak et al. 2015"
    assert "CAM seeds (approx.)" not in by_method
    assert all(not row.best for row in published)  # context, never ranked
    assert [row.cells["miou"] for row in published] == sorted((row.cells["miou"] for row in published), reverse=True)

    assert by_method["ExCEL"].cells["source"] == "published: later landmark, 2025"
    # a reference of one stage joins only the group of that stage (a record without one is a seed run)
    assert [row.cells["method"] for row in seeds.rows if row.published] == ["CLIP-ES seeds, ViT-B/16", "CAM seeds (approx.)"]
    assert walks.stage == "pseudo-mask" and walks.rows[0].cells["method"] == "psa on cam"
    assert [row.cells["method"] for row in walks.rows if row.published] == [
        "CLIP-ES + CRF, ViT-B/16", "IRN, ResNet-50", "PSA (AffinityNet RW), ResNet-38", "PSA (AffinityNet RW), VGG-16"]
    assert not any(row.published for row in limited.rows + synthetic.rows)
    assert not any(row.published for g in groups_of(tmp_path, with_references=False) for row in g.rows)


def test_reference_protocols_are_the_ones_runs_record():
    assert RunConfig(classes_from="labels").protocol == references.SEED_QUALITY
    assert RunConfig().protocol == references.SEGMENTATION
    test = dict((ref.method, value) for ref, value in references.matching("voc2012", "test", "segmentation", 1456))
    assert test["FCN+GBP"] == 40.7 and test["MIL-seg"] == 40.6 and "MIL-sppxl" not in test


def test_method_label():
    assert method_label(CONFIG) == "fcn+gbp/threshold/densecrf"
    assert method_label({**CONFIG, "saliency": None, "refine": ["sppxl", "densecrf"]}) == "fcn/threshold/sppxl+densecrf"
    assert method_label({**CONFIG, "options": {"fusion": {"bg_threshold": "0.3"}}}) == "fcn+gbp/threshold/densecrf [fusion.bg_threshold=0.3]"
    mil_fcn = {**CONFIG, "preset": "mil-fcn", "backbone": "vgg16", "pretrained": True, "pooling": "gmp", "saliency": None, "refine": ["none"],
               "background": True, "classes_from": "all", "recipe": {"loss": "mil"}}
    assert method_label(mil_fcn) == "mil-fcn"
    assert method_label({**mil_fcn, "recipe": {}}) == "fcn/threshold/none (from mil-fcn)"  # trained with another loss
    assert method_label({**mil_fcn, "refine": ["densecrf"]}) == "fcn/threshold/densecrf (from mil-fcn)"


def test_per_class_columns(board):
    val = groups_of(board, per_class=True)[2]
    assert [c.header for c in val.columns if c.key.startswith("iou:")] == ["background", "disc"]
    assert cells(val, "iou:disc") == [45.0, 40.0, 30.0]
    assert all(not c.key.startswith("iou:") for c in groups_of(board)[2].columns)


def test_csv_parses_with_plain_numbers_and_best_field(board):
    rows = list(csv.DictReader(io.StringIO(to_csv(groups_of(board)))))
    assert len(rows) == 5
    b = next(r for r in rows if r["source"] == "sweep/run_b")
    assert (b["miou"], b["pixel_accuracy"], b["best"], b["published"]) == ("45.0", "70.0", "miou", "False")
    assert b["dataset"] == "synthetic" and b["n_images"] == "12"


def test_json_lists_groups_with_captions_and_best(board):
    data = json.loads(to_json(groups_of(board)))
    assert [g["n_images"] for g in data] == [12, 5, 12]
    val = data[2]
    assert "255 ignored" in val["caption"] and val["columns"][3] == {"key": "miou", "header": "mIoU", "numeric": True}
    assert [(r["miou"], r["best"]) for r in val["rows"]] == [(45.0, ["miou"]), (40.0, ["pixel_accuracy"]), (30.0, ["pixel_accuracy"])]


def test_markdown_has_a_table_per_group_best_in_bold(board):
    text = to_markdown(groups_of(board))
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table_lines) == 3 * 2 + 5  # header and alignment row per group, one line per record
    assert "|---|---|---|---:|---:|---:|---|" in table_lines
    assert "| fcn/threshold/densecrf | resnet18 | gap | **45.0** | 70.0 | 50.0 | sweep/run_b |" in table_lines


def test_latex_is_booktabs_with_textbf_best_and_escaped_underscores(board):
    text = to_latex(groups_of(board))
    assert text.count(r"\begin{tabular}{lllrrrl}") == 3 and text.count(r"\toprule") == 3
    assert r"\textbf{45.0}" in text and r"\textbf{40.0}" not in text
    assert r"sweep/run\_b \\" in text
    assert "_" not in text.replace(r"\_", "")
    assert r"values in \%" in text and "—" not in text


def invoke(*args):
    group = cli if "leaderboard" in cli.commands else WssbenchGroup(commands={"leaderboard": leaderboard_command})
    return CliRunner().invoke(group, ["leaderboard", *map(str, args)])


def test_cli_formats(board):
    table = invoke(board)
    assert table.exit_code == 0, table.output
    assert "45.0" in table.stdout and "synthetic [preset=tiny] val (12 images, fp32)" in " ".join(table.stdout.split())
    assert invoke(board, "--json").stdout == invoke(board, "--format", "json").stdout
    assert invoke(board, "--format", "csv").stdout == to_csv(groups_of(board))
    conflict = invoke(board, "--json", "--format", "csv")
    assert conflict.exit_code == 2 and "error: --json and --format csv" in conflict.stderr


def test_cli_missing_or_empty_folder_is_a_one_line_error(tmp_path):
    missing = invoke(tmp_path / "nope")
    assert missing.exit_code == 1
    assert missing.stderr == f"error: {tmp_path / 'nope'}: folder not found\n"
    empty = invoke(tmp_path)
    assert empty.exit_code == 1 and empty.stderr == f"error: no result.json under {tmp_path}\n"


def test_hidden_folders_of_runs_in_progress_are_not_searched(board):
    write_record(board, ".run_d.x1y2.tmp", miou=0.99)
    assert len(find_records(board)) == 5


def test_invalid_records_are_skipped_with_a_warning_naming_them(board):
    broken = board / "broken" / "result.json"
    broken.parent.mkdir()
    broken.write_text("{not json")
    partial = board / "partial" / "result.json"
    partial.parent.mkdir()
    partial.write_text(json.dumps({"dataset": "synthetic", "split": "val"}))
    with pytest.warns(UserWarning) as caught:
        found = find_records(board)
    assert len(found) == 5
    messages = sorted(str(w.message) for w in caught)
    assert messages[0].startswith(f"skipped {broken}: not valid JSON")
    assert messages[1] == f"skipped {partial}: 'protocol' missing or not a str"


def test_only_invalid_records_is_an_error(tmp_path):
    (tmp_path / "result.json").write_text("[]")
    with pytest.warns(UserWarning, match="not a JSON object"), pytest.raises(DataError, match="no valid result.json"):
        find_records(tmp_path)


def test_label_of_a_preset_with_component_options():
    from wssbench.leaderboard import method_label

    config = {
        "preset": "dcsm", "backbone": "vgg16", "pretrained": True, "pooling": "gmp", "head_bias": True, "classmap": None, "saliency": "dcsm",
        "fusion": "threshold", "refine": ["densecrf"], "detect_by": "saliency", "max_classes": None, "top1": False,
        "options": {"saliency": {"signal": "map"}, "fusion": {"bg_threshold": 0.15}},
    }
    assert method_label(config) == "dcsm [fusion.bg_threshold=0.15]"  # the preset's own options go without saying
    config["options"]["saliency"]["canvas"] = 64
    assert method_label(config) == "dcsm [fusion.bg_threshold=0.15, saliency.canvas=64]"
    config["refine"] = ["none"]
    assert method_label(config).endswith("(from dcsm)")


def test_dataset_options_and_precision_never_share_a_ranking(tmp_path):
    write_record(tmp_path, "tiny", miou=0.40)
    write_record(tmp_path, "default", miou=0.30, options={"dataset": {"preset": "default"}})
    write_record(tmp_path, "seeded", miou=0.35, options={"dataset": {"preset": "tiny", "seed": "3"}})
    write_record(tmp_path, "bf16", miou=0.41, precision="bf16")
    groups = groups_of(tmp_path)
    assert sorted((g.data, g.precision, cells(g, "source")[0]) for g in groups) == [
        ("synthetic [preset=default] val", "fp32", "default"),
        ("synthetic [preset=tiny, seed=3] val", "fp32", "seeded"),
        ("synthetic [preset=tiny] val", "bf16", "bf16"),
        ("synthetic [preset=tiny] val", "fp32", "tiny"),
    ]
    assert all(len(g.rows) == 1 for g in groups)
    assert "synthetic [preset=tiny] val (12 images, bf16)" in to_markdown(groups)


def test_options_that_do_not_change_results_make_one_row(tmp_path):
    write_record(tmp_path, "a", miou=0.40)
    write_record(tmp_path, "b", miou=0.40, workers=4, loader_workers=2, cache_maps=False)
    write_record(tmp_path, "c", miou=0.40, device="cuda", data_root="/data")
    write_record(tmp_path, "d", miou=0.40, fusion="ilp")  # a different experiment with the same score
    [group] = groups_of(tmp_path)
    assert sorted(cells(group, "source")) == ["a (+2 identical)", "d"]
    assert sorted(row.runs for row in group.rows) == [1, 3]
    data = json.loads(to_json([group]))[0]
    assert sorted(r["runs"] for r in data["rows"]) == [1, 3]


def test_a_neutral_option_that_changed_the_scores_is_named(tmp_path):
    write_record(tmp_path, "b8", miou=0.40, batch_size=8)
    write_record(tmp_path, "b8-again", miou=0.40, batch_size=8)
    write_record(tmp_path, "b2", miou=0.38, batch_size=2)
    [group] = groups_of(tmp_path)
    assert cells(group, "method") == ["fcn+gbp/threshold/densecrf {batch_size=8}", "fcn+gbp/threshold/densecrf {batch_size=2}"]
    assert cells(group, "source") == ["b8 (+1 identical)", "b2"]


def test_stage_groups_and_deviations_are_marked_with_a_note(tmp_path):
    deviation = {"option": "fusion.bg_threshold", "published": 0.25, "used": 0.3}
    voc = {"dataset": "voc2012", "options": {}, "n_images": 1449}
    write_record(tmp_path, "seed", extra={"stage": "seed"}, miou=0.40, **voc)
    chosen = {"option": "crop", "published": 448, "used": 128, "unverified": True}  # the preset's value was a choice
    write_record(tmp_path, "mask", extra={"stage": "pseudo-mask", "deviations": [deviation, chosen]}, miou=0.45, **voc)
    write_record(tmp_path, "plain", extra={"stage": "pseudo-mask", "deviations": []}, miou=0.42, **voc)
    write_record(tmp_path, "old", miou=0.30, **voc)  # a record from before stages: its own group
    groups = groups_of(tmp_path)
    assert [g.stage for g in groups] == [None, "pseudo-mask", "seed"]
    masks = groups[1]
    assert "pseudo-mask stage, segmentation mIoU" in masks.caption
    marked = [row for row in masks.rows if row.cells["method"].endswith(" †")]
    assert [row.cells["source"] for row in marked] == ["mask"]  # beside published rows, with its mark
    assert any(row.published for row in masks.rows)
    assert masks.notes == ("†n: n deviations from the published recipe (listed below)",
                           "† mask: fusion.bg_threshold published 0.25, used 0.3; crop published 448 (unverified), used 128")
    assert masks.rows[0].marks == "†2"
    assert "† mask: fusion.bg_threshold published 0.25, used 0.3; crop published 448 (unverified)" in to_markdown(groups)
    assert r"\dag{} mask: fusion.bg\_threshold published 0.25, used 0.3" in to_latex(groups)
    row = next(r for r in csv.DictReader(io.StringIO(to_csv(groups))) if r["source"] == "mask")
    assert (row["stage"], row["deviations"]) == ("pseudo-mask", "fusion.bg_threshold: published 0.25, used 0.3; crop: published 448 (unverified), used 128")
    table = invoke(tmp_path)
    assert table.exit_code == 0 and "† mask: fusion.bg_threshold published 0.25, used 0.3" in " ".join(table.stdout.split())


def test_saliency_evaluation_shows_beside_the_run(tmp_path):
    """A saliency-eval record of the run's classifier and method puts its pointing game and sanity
    check in the run's row (guided BP failing the sanity check shows next to its mIoU)."""
    from wssbench.leaderboard import find_saliency_records

    classifier = {"map": 0.5, "checkpoint": "/home/x/.cache/wssbench/classifiers/abc.pt"}
    gbp = {"kind": "saliency", "name": "gbp", "plugin": "wssbench", "options": {"signal": "pooled"}}
    path = write_record(tmp_path, "gbp_run", miou=0.45, extra={"components": {"saliency": gbp}})
    path.write_text(json.dumps({**json.loads(path.read_text()), "classifier": classifier}))
    write_record(tmp_path, "other_run", miou=0.30)
    evaluation = {
        "kind": "saliency-eval", "classifier": {"checkpoint": "/elsewhere/classifiers/abc.pt"},
        "methods": {"gbp": {"kind": "saliency", "name": "gbp", "options": {"signal": "pooled"},
                            "metrics": {"pointing": 0.767, "sanity": {"rho_mean": 0.74}}}},
    }
    (tmp_path / "gbp-eval.json").write_text(json.dumps(evaluation))
    saliency = find_saliency_records(tmp_path)
    assert len(saliency) == 1
    (group,) = build_groups(find_records(tmp_path), tmp_path, saliency=saliency, with_references=False)
    by_source = {row.cells["source"]: row.cells for row in group.rows}
    assert by_source["gbp_run"]["pointing"] == 76.7 and by_source["gbp_run"]["sanity"] == "fail (rho 0.74)"
    assert by_source["other_run"].get("sanity") is None
    assert [c.key for c in group.columns if c.key in ("pointing", "sanity")] == ["pointing", "sanity"]
    (plain,) = groups_of(tmp_path, with_references=False)
    assert "sanity" not in [c.key for c in plain.columns]
