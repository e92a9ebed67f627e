"""The leaderboard site (``wssbench leaderboard DIR... --format html --out SITE``) without a
browser: the rows and pages it writes, escaping of what records hold, the manifest rules of its
folder, bad input, and the merging of several folders. One real tiny run gives the plain record;
copies of it edited by hand carry the fields that "Numbers that say how sure they are" adds."""

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
from wssbench.site import MANIFEST
from wssbench.site.svg import curve_points

TINY = {"options": {"dataset.preset": "tiny"}, "epochs": 1, "device": "cpu", "workers": 1, "limit": 4}


@pytest.fixture(scope="module")
def real_record(tmp_path_factory):
    """A real run: tiny synthetic data, one epoch, four images (a few seconds)."""
    out = tmp_path_factory.mktemp("real") / "plain"
    wssbench.Pipeline(classmap="fcn", saliency="gbp", refine="none", **TINY).run(out)
    return json.loads((out / "result.json").read_text())


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


def _with_uncertainty(monkeypatch):
    """The leaderboard's JSON rows as "Numbers that say how sure they are" will write them."""
    plain = leaderboard.to_json

    def to_json(groups):
        data = json.loads(plain(groups))
        for group in data:
            group["priors_legend"] = {"P": "pretrained weights: ImageNet", "S": "a salient-object detector trained with pixel masks"}
            for i, row in enumerate(r for r in group["rows"] if not r["published"]):
                row.update(miou_mean=row["miou"], miou_std=1.2 + i, n_seeds=3, seeds=[0, 1, 2],
                           ci95=[row["miou"] - 1.5, row["miou"] + 1.0], tied_with_above=i == 1,
                           priors=["P", {"mark": "D1", "meaning": "one deviation from the published recipe"}] if i == 0 else ["S"])
        return json.dumps(data)

    monkeypatch.setattr(leaderboard, "to_json", to_json)


def test_uncertainty_priors_and_the_threshold_curve_when_recorded(real_record, tmp_path, monkeypatch):
    curve = [{"threshold": round(0.05 * i, 2), "miou": 0.2 + 0.02 * i - 0.001 * i * i} for i in range(20)]
    diagnostics = {"per_class": {"background": {"precision": 0.9, "recall": 0.8}, "disc": {"precision": 0.1, "recall": 0.3}},
                   "iou_by_size": {"small": 0.05, "medium": 0.2, "large": 0.4}, "absent_rate": 0.12}
    put(tmp_path, "a", edited(real_record, miou=0.30, threshold_curve=curve, threshold_auc=0.3, diagnostics=diagnostics,
                              threshold_max={"threshold": 0.5, "miou": 0.3}, threshold_used={"threshold": 0.25, "miou": 0.2625},
                              counts={"file": "counts.npz"}))
    put(tmp_path, "b", edited(real_record, miou=0.25, config={**real_record["config"], "backbone": "resnet18"}))
    _with_uncertainty(monkeypatch)
    assert invoke(tmp_path, "--format", "html", "--out", tmp_path / "site").exit_code == 0
    site = tmp_path / "site"
    index_text = (site / "index.html").read_text()
    index = read(site)
    first, second = index.row_text(0), index.row_text(1)
    assert "30.0 ± 1.2 (3)" in first and "≈" not in first
    assert 'title="95 % interval 28.5–31.0"' in index_text and 'aria-label="95 % interval 28.5 to 31.0"' in index_text
    assert "25.0 ± 2.2 (3)" in second and "≈" in second  # tied with the row above
    assert [r["attrs"]["data-badges"] for r in index.rows] == ["prior:P prior:D1", "prior:S"]
    assert index_text.count('<span class="ci"') == 2
    # both bars on the table's scale 23.5..31.0, 63 pixels: [28.5, 31.0] from 42 to 63, mean 30 at 55; [23.5, 26.0] at 0, mean 25 at 13
    assert '<i class="cb x42 w21"></i><i class="ct x55"></i>' in index_text
    assert '<i class="cb x0 w21"></i><i class="ct x13"></i>' in index_text
    assert ".ci .x63{left:63px}" in index_text
    legend = index_text[index_text.index('<dl class="legend">'):]
    assert "pretrained weights: ImageNet" in legend and "one deviation from the published recipe" in legend
    assert "salient-object detector" in legend and "95 % image-bootstrap interval" in legend
    assert '<option value="prior:S">' in index_text  # a prior badge is a filter value

    page_a = (site / index.rows[0]["href"]).read_text()
    points = re.search(r'<polyline class="line" points="([^"]+)"', page_a).group(1).split()
    assert len(points) == len(curve) == len(curve_points(curve))
    assert "max 30.0 (oracle)" in page_a and "used 0.25: 26.2" in page_a and "area (mean) 30.0" in page_a
    assert "precision" in page_a and "0.9" in page_a and "iou_by_size" in page_a  # diagnostics
    assert "seeds" in page_a and "30.0 ± 1.2 over 3 seed(s), 95 % interval 28.5–31.0" in page_a
    assert "Threshold curve" not in (site / index.rows[1]["href"]).read_text()


def test_threshold_curve_points_read_from_the_record():
    assert curve_points([{"threshold": 0.5, "miou": 0.4}, [0.0, 0.1], {"threshold": "x"}, "bad"]) == [(0.0, 10.0), (0.5, 40.0)]
    assert curve_points(None) == []


def test_what_records_hold_is_escaped(real_record, tmp_path):
    evil = '<script>alert("x")</script>'
    record = edited(real_record, method=evil, versions={"torch": '"><img src=x onerror=alert(1)>'},
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
