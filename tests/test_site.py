"""The leaderboard site (``wssbench leaderboard DIR... --format html --out SITE``) without a
browser: the rows and pages it writes, escaping of what records hold, the manifest rules of its
folder, bad input, and the merging of several folders. One real tiny run gives the records: as
it is (with its per-image counts, interval, diagnostics and threshold curve), copies of it
edited into other seeds, priors and tuning, and a copy stripped to what records held before
those fields (the single value)."""

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

import wssbench
from wssbench import leaderboard
from wssbench.cli import WssbenchGroup, cli
from wssbench.cli.leaderboard import leaderboard_command
from wssbench.leaderboard import build_groups, find_records_in
from wssbench.results.board import PRIOR_MARKS
from wssbench.site import MANIFEST
from wssbench.site.svg import curve_points, interval_bar, interval_css

TINY = {"options": {"dataset.preset": "tiny"}, "epochs": 1, "device": "cpu", "workers": 1, "limit": 4}


NEWER = ("counts", "ci95", "diagnostics", "priors", "threshold_curve", "threshold_auc", "threshold_max", "threshold_used", "tuning")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real run's folder: tiny synthetic data, one epoch, four images (a few seconds)."""
    out = tmp_path_factory.mktemp("real") / "run"
    wssbench.Pipeline(classmap="fcn", saliency="gbp", refine="none", **TINY).run(out)
    return out


@pytest.fixture(scope="module")
def real_record(real_run):
    """The real run's record as records were before intervals, curves and priors (one value)."""
    record = json.loads((real_run / "result.json").read_text())
    return {k: v for k, v in record.items() if k not in NEWER}


def copy_run(run: Path, to: Path, seed: int | None = None, **changes) -> dict:
    """The run's record and its counts under ``to``, edited: another training seed, other fields."""
    record = json.loads((run / "result.json").read_text()) | changes
    if seed is not None:
        record["seed"] = record["config"]["seed"] = record["config"]["recipe"]["seed"] = seed
    to.mkdir(parents=True)
    shutil.copyfile(run / record["counts"]["file"], to / record["counts"]["file"])
    (to / "result.json").write_text(json.dumps(record))
    return record


def put(root: Path, run: str, record: dict) -> Path:
    path = root / run / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    return path


def edited(record: dict, **changes) -> dict:
    return {**json.loads(json.dumps(record)), **changes}


def invoke(*args, cwd=None):
    group = cli if "leaderboard" in cli.commands else WssbenchGroup(commands={"leaderboard": leaderboard_command})
    here = os.getcwd()
    os.chdir(cwd or here)  # the command names records from the folder it runs in
    try:
        return CliRunner().invoke(group, ["leaderboard", *map(str, args)])
    finally:
        os.chdir(here)


class Page(HTMLParser):
    """The parts of a page the tests read: rows of the boards, links, sources, scripts, text."""

    def __init__(self, text: str):
        super().__init__()
        self.rows, self.links, self.sources, self.scripts, self.tags = [], [], [], 0, []
        self._row = None
        self.text = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "tr" and "data-row" in attrs:
            self._row = {"attrs": attrs, "text": [], "href": None}
            self.rows.append(self._row)
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
            if self._row is not None and self._row["href"] is None:
                self._row["href"] = attrs["href"]
        if "src" in attrs:
            self.sources.append(attrs["src"])
        if tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None:
            self._row["text"].append(data)

    def row_text(self, i):
        return " ".join("".join(self.rows[i]["text"]).split())


def read(site: Path, name: str = "index.html") -> Page:
    return Page((site / name).read_text())


def pages(site: Path) -> list[Path]:
    return sorted((site / "runs").glob("*.html"))


def test_a_real_run_gives_a_row_and_a_page_with_every_part(real_record, tmp_path):
    put(tmp_path / "runs", "plain", real_record)
    result = invoke("runs", "--format", "html", "--out", "site", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    index = read(site)
    assert len(index.rows) == 1 and index.scripts == 1
    row = index.row_text(0)
    assert f"{100 * real_record['miou']:.1f}" in row and "fcn+gbp/threshold/none" in row and "resnet10t" in row
    assert "±" not in row and not any(attrs.get("class") == "ci" for _, attrs in index.tags)  # the single value
    (page_path,) = pages(site)
    assert index.rows[0]["href"] == f"runs/{page_path.name}"
    page = page_path.read_text()
    text = " ".join("".join(Page(page).text).split())
    for name in real_record["per_class_iou"]:
        assert name in text
    assert "wssbench run --from runs/plain/result.json" in text  # named from where the command ran
    assert "wssbench run --from result.json" in text and f"{page_path.stem}/record.json" in page
    assert json.loads((site / "runs" / page_path.stem / "record.json").read_text()) == real_record
    assert real_record["versions"]["torch"] in text and "total_seconds" in text  # versions, timings
    assert "bg_threshold" in text and "score_threshold" in text  # component options and the whole config
    assert "None: the run names no published recipe" in text
    assert "Threshold curve" not in text and Page(page).scripts == 0


def test_seeds_intervals_ties_priors_and_the_threshold_curve(real_run, tmp_path):
    """Two seeds of one method, a second method scored from the same counts (so tied), one with
    ImageNet weights, one tuned on its scored images: the leaderboard's own numbers on the page."""
    runs = tmp_path / "runs"
    first = copy_run(real_run, runs / "a-seed0", seed=0, miou=0.30)
    copy_run(real_run, runs / "a-seed1", seed=1, miou=0.32)
    other = {**first["config"], "options": {**first["config"]["options"], "fusion": {"bg_threshold": 0.3}}}
    copy_run(real_run, runs / "b", config=other, miou=0.25, priors=[{"mark": "I", "what": "ImageNet weights of resnet10t"}])
    tuned = {**first["config"], "options": {**first["config"]["options"], "fusion": {"bg_threshold": 0.4}}}
    copy_run(real_run, runs / "c", config=tuned, miou=0.5, tuning={"split": "val", "overlap": 4})
    assert invoke(runs, "--format", "html", "--out", tmp_path / "site").exit_code == 0
    [group] = json.loads(leaderboard.to_json(build_groups(*find_records_in([runs]))))
    a, b, c = (next(r for r in group["rows"] if r["source"].startswith(name)) for name in ("a-seed0", "b", "c"))
    assert (a["miou"], a["miou_std"], a["n_seeds"], b["tied_with_above"], c["unranked"]) == (31.0, 1.4, 2, True, True)

    site = tmp_path / "site"
    index_text = (site / "index.html").read_text()
    index = read(site)
    first_row, second_row = index.row_text(0), index.row_text(1)
    lo, hi = a["ci95"]
    assert "31.0 ± 1.4 (2)" in first_row and f"{lo:.1f}–{hi:.1f}" in first_row and "≈" not in first_row
    assert f'title="95 % interval {lo:.1f}–{hi:.1f}"' in index_text
    assert "25.0" in second_row and "≈" in second_row and index.rows[1]["attrs"]["data-badges"] == "prior:I"
    assert index_text.count('<span class="ci"') == 3
    apart = index_text[index_text.index('<tbody class="apart">'):]
    assert "shown apart, not ranked" in apart and "c</td>" in apart and index.rows[2]["attrs"]["data-badges"] == "prior:T"
    legend = index_text[index_text.index('<dl class="legend">'):]
    for meaning in (PRIOR_MARKS["I"], PRIOR_MARKS["T"], "paired-bootstrap", "standard deviation over training seeds"):
        assert meaning in legend
    assert '<option value="prior:I">' in index_text  # a prior is a filter value
    assert "thr. AUC" in index_text and "priors</th>" not in index_text  # the marks column is shown as badges

    page = (site / index.rows[0]["href"]).read_text()
    text = " ".join("".join(Page(page).text).split())
    curve = first["threshold_curve"]
    points = re.search(r'<polyline class="line" points="([^"]+)"', page).group(1).split()
    assert len(points) == len(curve) == len(curve_points(curve))
    best, used = first["threshold_max"], first["threshold_used"]
    assert f"max {100 * best['miou']:.1f} (oracle)" in page and f"used {used['threshold']:g}: {100 * used['miou']:.1f}" in page
    assert "precision %" in text and "recall %" in text and "IoU by region size" in text
    assert f"31.0 ± 1.4 over 2 seed(s), 95 % interval {lo:.1f}–{hi:.1f}" in text and "stands for 2 runs" in text
    ci = first["ci95"]
    assert f"95 % image-bootstrap interval {100 * ci[0]:.1f}–{100 * ci[1]:.1f}" in text  # the run's own interval
    assert "Threshold curve" in text and "counts.npz" in text


def test_the_interval_bar_on_the_tables_scale():
    """Hand-computed: scale 23.5..31.0 over 63 pixels."""
    assert interval_bar(28.5, 31.0, 30.0, (23.5, 31.0)) == (
        '<span class="ci" role="img" aria-label="95 % interval 28.5 to 31.0"><i class="cb x42 w21"></i><i class="ct x55"></i></span>')
    assert '<i class="cb x0 w21"></i><i class="ct x13"></i>' in interval_bar(23.5, 26.0, 25.0, (23.5, 31.0))
    assert '<i class="ct x63">' in interval_bar(28.0, 30.0, 40.0, (23.5, 31.0))  # a mean off the scale stays on the bar
    assert ".ci .x63{left:63px}" in interval_css() and ".ci .w64{width:64px}" in interval_css()


def test_threshold_curve_points_read_from_the_record():
    assert curve_points([{"threshold": 0.5, "miou": 0.4}, [0.0, 0.1], {"threshold": "x"}, "bad"]) == [(0.0, 10.0), (0.5, 40.0)]
    assert curve_points(None) == []


def test_what_records_hold_is_escaped(real_record, tmp_path):
    evil = '<script>alert("x")</script>'
    record = edited(real_record, method=evil, versions={"torch": '"><img src=x onerror=alert(1)>'},
                    priors=[{"mark": "I", "what": evil}],
                    config={**real_record["config"], "backbone": "r18\" onmouseover=\"alert(1)"})
    put(tmp_path / "runs", "a<b>&c", record)
    assert invoke(tmp_path / "runs", "--format", "html", "--out", tmp_path / "site").exit_code == 0
    site = tmp_path / "site"
    for path in [site / "index.html", *pages(site)]:
        text = path.read_text()
        assert "<script>alert" not in text and "<img src=x" not in text and "<b>" not in text
        assert 'onmouseover="' not in text and "onerror=" not in text.replace("onerror=alert", "")
        parsed = Page(text)
        assert parsed.scripts == (1 if path.name == "index.html" else 0)  # only the site's own
        assert not any(k.startswith("on") for _, attrs in parsed.tags for k in attrs)
    index = read(site)
    assert evil in index.row_text(0)  # shown as text
    assert index.rows[0]["attrs"]["data-backbone"] == 'r18" onmouseover="alert(1)'
    assert "Content-Security-Policy" in (site / "index.html").read_text()


def test_everything_is_local(real_record, tmp_path):
    put(tmp_path / "runs", "a", real_record)
    gallery = tmp_path / "runs" / "a-gallery" / "gallery.png"  # where `wssbench show` puts it
    gallery.parent.mkdir()
    gallery.write_bytes(b"\x89PNG\r\n\x1a\n fake")
    assert invoke(tmp_path / "runs", "--format", "html", "--out", tmp_path / "site").exit_code == 0
    site = tmp_path / "site"
    for path in [site / "index.html", *pages(site)]:
        parsed = Page(path.read_text())
        for target in parsed.links + parsed.sources:
            assert not re.match(r"^[a-z]+:|^//", target), target  # no scheme, no other host
            local = target.split("#")[0]
            assert not local or (path.parent / local).resolve().is_file(), target
    (page,) = pages(site)
    copied = site / "runs" / page.stem / "gallery.png"
    assert copied.read_bytes() == gallery.read_bytes() and f'src="{page.stem}/gallery.png"' in page.read_text()


def test_the_rerun_command_quotes_a_path_for_the_shell(real_record, tmp_path):
    put(tmp_path / "my runs", "it's", real_record)
    assert invoke("my runs", "--format", "html", "--out", "site", cwd=tmp_path).exit_code == 0
    text = " ".join("".join(Page(pages(tmp_path / "site")[0].read_text()).text).split())
    assert """wssbench run --from 'my runs/it'"'"'s/result.json'""" in text


def test_a_segmentation_record_says_how_it_is_rerun(real_record, tmp_path):
    put(tmp_path, "seg", edited(real_record, stage="segmentation", method="deeplabv3plus/pseudo-masks"))
    assert invoke(tmp_path, "--format", "html", "--out", tmp_path / "site").exit_code == 0
    text = pages(tmp_path / "site")[0].read_text()
    assert "wssbench run --from" not in text and "has no <code>--from</code>" in text
    assert read(tmp_path / "site").rows[0]["attrs"]["data-kind"] == "segmentation network"


# --- the site's folder -------------------------------------------------------------------


@pytest.fixture
def runs(real_record, tmp_path):
    put(tmp_path / "runs", "a", real_record)
    return tmp_path / "runs"


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_rebuild_replaces_only_its_own_site(runs, tmp_path):
    site = tmp_path / "site"
    first = invoke(runs, "--format", "html", "--out", site)
    assert first.exit_code == 0 and first.stdout.startswith("wrote ")
    manifest = json.loads((site / MANIFEST).read_text())["files"]
    assert sorted(manifest) == sorted(k for k in snapshot(site) if k != MANIFEST)
    put(runs, "b", json.loads((runs / "a" / "result.json").read_text()) | {"miou": 0.9})
    again = invoke(runs, "--format", "html", "--out", site)
    assert again.exit_code == 0 and again.stdout.startswith("replaced ")
    assert len(pages(site)) == 2


@pytest.mark.parametrize("case", ["user file", "user file deep", "edited page", "not a site", "damaged manifest"])
def test_a_folder_holding_what_the_site_did_not_write_is_refused_untouched(runs, tmp_path, case):
    site = tmp_path / "site"
    if case == "not a site":
        site.mkdir()
        (site / "index.html").write_text("my own page")
    else:
        assert invoke(runs, "--format", "html", "--out", site).exit_code == 0
        if case == "user file":
            (site / "notes.txt").write_text("mine")
        elif case == "user file deep":
            (next(p for p in (site / "runs").iterdir() if p.is_dir()) / "notes.txt").write_text("mine")
        elif case == "edited page":
            (site / "index.html").write_text((site / "index.html").read_text() + "<!-- my edit -->")
        else:
            (site / MANIFEST).write_text("{")
    put(runs, "b", json.loads((runs / "a" / "result.json").read_text()) | {"miou": 0.9})
    before = snapshot(site)
    result = invoke(runs, "--format", "html", "--out", site)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: --out {site}: ") and result.stderr.count("\n") == 1
    assert "nothing in it was touched" in result.stderr
    assert snapshot(site) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_out_that_is_a_file_and_format_without_out(runs, tmp_path):
    (tmp_path / "file").write_text("x")
    result = invoke(runs, "--format", "html", "--out", tmp_path / "file")
    assert result.exit_code == 2 and result.stderr == f"error: --out {tmp_path / 'file'}: exists and is not a folder\n"
    assert (tmp_path / "file").read_text() == "x"
    assert invoke(runs, "--format", "html").exit_code == 2
    assert invoke(runs, "--out", tmp_path / "s").exit_code == 2 and not (tmp_path / "s").exists()


def test_a_folder_without_records_or_a_damaged_record_is_one_line_and_writes_nothing(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(empty, "--format", "html", "--out", tmp_path / "site")
    assert result.exit_code == 1 and result.stderr == f"error: no result.json under {empty}\n"
    assert not (tmp_path / "site").exists()

    assert invoke(runs, "--format", "html", "--out", tmp_path / "site").exit_code == 0
    before = snapshot(tmp_path / "site")
    damaged = runs / "broken" / "result.json"
    damaged.parent.mkdir()
    damaged.write_text('{"dataset": "synth')
    result = invoke(runs, "--format", "html", "--out", tmp_path / "site")
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {damaged}: not valid JSON")
    assert result.stderr.count("\n") == 1
    assert snapshot(tmp_path / "site") == before  # the earlier site stays as it was
    with pytest.warns(UserWarning, match="skipped .*broken"):
        assert invoke(runs, "--format", "csv").exit_code == 0  # the text formats still skip it with a warning


# --- several folders ---------------------------------------------------------------------


def test_several_folders_merge_and_a_copied_run_counts_once(real_record, tmp_path):
    put(tmp_path / "alice", "run1", real_record)
    put(tmp_path / "alice", "run2", edited(real_record, miou=0.5, created="another time"))
    shutil.copytree(tmp_path / "alice" / "run1", tmp_path / "bob" / "copied")  # bob copied alice's run
    put(tmp_path / "bob", "rerun", edited(real_record, created="a rerun"))  # an independent run, same scores
    records, root = find_records_in([tmp_path / "alice", tmp_path / "bob", tmp_path / "alice"])
    assert len(records) == 3 and root == tmp_path.resolve()
    (group,) = build_groups(records, root)
    sources = [row.cells["source"] for row in group.rows]
    assert sources == ["alice/run2", "alice/run1 (+1 identical)"]
    assert [len(row.paths) for row in group.rows] == [1, 2]

    result = invoke("alice", "bob", "--format", "html", "--out", "site", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    index = read(site)
    assert len(index.rows) == 2 and len(pages(site)) == 3 and "×2" in index.row_text(1)
    first_of_pair = (site / index.rows[1]["href"]).read_text()
    assert "stands for 2 runs" in first_of_pair and "bob/rerun" in first_of_pair
    assert "wssbench run --from alice/run1/result.json" in first_of_pair
    assert invoke("alice", "bob", "--format", "csv", cwd=tmp_path).stdout.count("\n") == 3


def test_one_folder_keeps_its_identical_runs(real_record, tmp_path):
    put(tmp_path, "x", real_record)
    put(tmp_path, "y", real_record)  # the same content inside one folder: two runs, as before
    records, root = find_records_in([tmp_path])
    assert len(records) == 2 and root == tmp_path
