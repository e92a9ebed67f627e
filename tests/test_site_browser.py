"""The leaderboard site in a real browser: Debian's Chromium (/usr/bin/chromium) driven by
Playwright for Python, no browser download. Sorting (mouse and keyboard), filtering, a row's
link and back, no console error, no request that leaves the page (every request is routed;
anything but file: fails the test), the page without JavaScript, and a phone's width.

Skipped, saying why, where Playwright or /usr/bin/chromium is missing. Install:
``apt-get install -y chromium`` and ``pip install playwright`` (never ``playwright install``).
"""

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from wssbench.cli import WssbenchGroup, cli
from wssbench.cli.leaderboard import leaderboard_command

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
if not CHROMIUM.is_file():
    pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

CONFIG = {"preset": None, "backbone": "resnet18", "pooling": "gap", "saliency": "gbp", "classmap": "fcn",
          "fusion": "threshold", "refine": ["densecrf"], "options": {"dataset": {"preset": "tiny"}}}


def write(root, run, *, miou, pixel_accuracy=None, dataset="synthetic", n_images=12, stage="seed", extra=None, **config):
    record = {
        "dataset": dataset, "split": "val", "protocol": "segmentation", "n_images": n_images, "stage": stage,
        "miou": miou, "pixel_accuracy": pixel_accuracy or 0.5 + miou / 2, "per_class_iou": {"background": 0.8, "disc": miou},
        "config": {**CONFIG, **config}, "classifier": {"map": 0.5, "map_split": "val"}, **(extra or {}),
    }
    path = root / run / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two groups: synthetic (four runs, two backbones, one deviating, a gallery), shown as two
    tables of at most three rows (a long group, made short), and VOC val (two runs and the
    published rows)."""
    from wssbench.site import index

    root = tmp_path_factory.mktemp("browser")
    runs = root / "runs"
    write(runs, "r18-a", miou=0.40)
    write(runs, "r18-b", miou=0.30, fusion="ilp", pixel_accuracy=0.99)
    write(runs, "vgg-a", miou=0.45, backbone="vgg16", saliency=None,
          extra={"deviations": [{"option": "crop", "published": 448, "used": 128}]})
    write(runs, "vgg-b", miou=0.35, backbone="vgg16", classmap=None, extra={"priors": [{"mark": "I", "what": "ImageNet weights of vgg16"}]})
    voc = {"dataset": "voc2012", "options": {}, "n_images": 1449}
    write(runs, "voc-a", miou=0.42, **voc)
    write(runs, "voc-b", miou=0.38, backbone="vgg16", **voc)
    gallery = runs / "r18-a-gallery"
    gallery.mkdir()
    _png(gallery / "gallery.png")
    group = cli if "leaderboard" in cli.commands else WssbenchGroup(commands={"leaderboard": leaderboard_command})
    chunk, index.CHUNK = index.CHUNK, 3
    try:
        result = CliRunner().invoke(group, ["leaderboard", str(runs), "--format", "html", "--out", str(root / "site")])
    finally:
        index.CHUNK = chunk
    assert result.exit_code == 0, result.output
    return root / "site"


def _png(path):
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)


class Watch:
    """Every request the pages make (those that leave file: are aborted and kept) and every
    console error or warning, and uncaught exception."""

    def __init__(self, context):
        self.left, self.problems = [], []
        context.route("**/*", self.route)
        context.on("request", lambda request: self.check(request.url))

    def check(self, url):
        if not url.startswith("file:"):
            self.left.append(url)

    def route(self, route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            self.left.append(route.request.url)
            route.abort()

    def attach(self, page):
        page.on("console", lambda m: self.problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        return page


def open_context(playwright, **options):
    """Chromium from /usr/bin with a fresh user-data folder; (context, that folder)."""
    user_data = tempfile.mkdtemp(prefix="wssbench-chromium-")
    context = playwright.chromium.launch_persistent_context(user_data, executable_path=str(CHROMIUM), headless=True, args=FLAGS,
                                                            **options)
    context.set_default_timeout(5000)
    return context, user_data


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    context, user_data = open_context(playwright)
    yield context, Watch(context)
    context.close()
    shutil.rmtree(user_data, ignore_errors=True)


@pytest.fixture
def page(browser, site):
    context, watch = browser
    page = watch.attach(context.new_page())
    page.goto(site.joinpath("index.html").as_uri())
    yield page
    page.close()
    assert watch.problems == [], watch.problems
    assert watch.left == [], f"requests that left the page: {watch.left}"


def column(page, group, header):
    """The text of one column of a group's visible measured rows (all its tables), in the order shown."""
    index = [h.strip() for h in page.locator(f"#{group} thead").first.locator("th").all_inner_texts()].index(header)
    return page.eval_on_selector_all(f"#{group} tbody.runs tr[data-row]:not([hidden])",
                                     f"rows => rows.map(r => r.cells[{index}].textContent.trim())")


def header(page, group, text):
    """The header cell of column ``text`` in the group's first table."""
    return page.locator(f"#{group} thead").first.locator("th").filter(has=page.get_by_role("button", name=text, exact=True))


def aria_sort(page, group, text):
    """aria-sort of column ``text`` in each of the group's tables."""
    index = [h.strip() for h in page.locator(f"#{group} thead").first.locator("th").all_inner_texts()].index(text)
    return page.eval_on_selector_all(f"#{group} thead tr", f"rows => rows.map(r => r.cells[{index}].getAttribute('aria-sort'))")


def test_sorting_by_a_click(page):
    synthetic = "g1"
    headers = [h.strip() for h in page.locator(f"#{synthetic} thead").first.locator("th").all_inner_texts()]
    assert headers[:5] == ["#", "method", "backbone", "pooling", "mIoU"]
    assert column(page, synthetic, "mIoU") == ["45.0", "40.0", "35.0", "30.0"]  # the leaderboard's order
    assert aria_sort(page, synthetic, "mIoU") == ["descending", "descending"]
    header(page, synthetic, "mIoU").get_by_role("button").click()
    assert column(page, synthetic, "mIoU") == ["30.0", "35.0", "40.0", "45.0"]
    assert aria_sort(page, synthetic, "mIoU") == ["ascending", "ascending"]
    header(page, synthetic, "pixel acc.").get_by_role("button").click()
    assert column(page, synthetic, "pixel acc.") == ["99.0", "72.5", "70.0", "67.5"]  # numbers: highest first
    assert aria_sort(page, synthetic, "pixel acc.") == ["descending", "descending"]
    assert aria_sort(page, synthetic, "mIoU") == [None, None]
    header(page, synthetic, "source").get_by_role("button").click()
    assert column(page, synthetic, "source") == ["r18-a", "r18-b", "vgg-a", "vgg-b"]  # text: A to Z
    assert column(page, synthetic, "#") == ["2", "4", "1", "3"]  # the rank travels with its row
    tables = page.eval_on_selector_all(f"#{synthetic} tbody.runs", "bodies => bodies.map(b => b.rows.length)")
    assert tables == [3, 1]  # sorted across the group's tables, each keeps its count


def test_sorting_with_the_keyboard_and_published_rows_stay_apart(page):
    voc = "g2"
    button = header(page, voc, "mIoU").get_by_role("button")
    for _ in range(60):  # reachable with Tab alone
        page.keyboard.press("Tab")
        if button.evaluate("b => b === document.activeElement"):
            break
    else:
        pytest.fail("the mIoU sort button of the VOC table is not reachable with Tab")
    page.keyboard.press("Enter")
    assert header(page, voc, "mIoU").get_attribute("aria-sort") == "ascending"
    assert column(page, voc, "mIoU") == ["38.0", "42.0"]
    page.keyboard.press(" ")
    assert header(page, voc, "mIoU").get_attribute("aria-sort") == "descending"
    assert column(page, voc, "mIoU") == ["42.0", "38.0"]
    published = page.eval_on_selector_all(f"#{voc} tbody.refs tr[data-row]", "rows => rows.map(r => r.className)")
    assert published and set(published) == {"ref"}  # the published rows keep their own body, after the runs
    values = page.eval_on_selector_all(f"#{voc} tbody.refs tr[data-row]", "rows => rows.map(r => +r.cells[4].dataset.v)")
    assert values == sorted(values, reverse=True)  # and are sorted among themselves


def test_filtering(page):
    visible = "tr[data-row]:not([hidden])"
    total = page.locator("tr[data-row]").count()
    assert page.locator(f"#g1 {visible}").count() == 4
    page.select_option("select[name=backbone]", "vgg16")
    assert column(page, "g1", "source") == ["vgg-a", "vgg-b"] and column(page, "g2", "source") == ["voc-b"]
    assert page.locator("#shown").inner_text() == "3 rows shown"
    page.select_option("select[name=dataset]", "voc2012")
    assert page.locator("#g1").is_hidden() and page.locator("#g2").is_visible()
    page.get_by_role("button", name="show all").click()
    assert page.locator(visible).count() == total and page.locator("#g1").is_visible()
    page.select_option("select[name=kind]", "class map")
    assert column(page, "g1", "source") == ["vgg-a"] and page.locator(f"#g2 {visible}").count() == 0
    page.select_option("select[name=kind]", "published")
    assert page.locator(f"#g2 {visible}").count() == page.locator("#g2 tr.ref").count() > 0
    page.select_option("select[name=kind]", "")
    page.select_option("select[name=badge]", "deviates")
    assert column(page, "g1", "source") == ["vgg-a"]
    assert page.locator("#g2 .empty").is_visible()  # says that no row of that table matches
    page.select_option("select[name=badge]", "prior:I")
    assert column(page, "g1", "source") == ["vgg-b"] and page.locator("#g2 .empty").is_visible()
    page.select_option("select[name=badge]", "")
    page.select_option("select[name=stage]", "seed")
    assert page.locator(visible).count() == total


def test_a_rows_link_and_back(page, site):
    link = page.locator("#g1 tbody tr[data-row]").first.locator("a")
    name = link.inner_text()
    link.click()
    page.wait_for_load_state()
    assert page.url.startswith(site.as_uri() + "/runs/") and page.locator("h1").inner_text() == name
    assert "wssbench run --from" in page.locator("#rerun").inner_text()
    page.go_back()
    assert page.url == site.joinpath("index.html").as_uri()
    page.locator("#g1 tbody tr[data-row]", has_text="r18-a").locator("a").click()
    page.wait_for_load_state()
    assert page.locator("img.gallery").evaluate("img => img.complete && img.naturalWidth > 0")  # a local image loads
    page.get_by_role("link", name="← leaderboard").click()
    assert page.url == site.joinpath("index.html").as_uri() + "#g1"


def test_the_watch_catches_a_request_that_leaves(browser, tmp_path):
    context, watch = browser
    page = context.new_page()
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<img src="http://127.0.0.1:9/x.png">')
    page.goto(leaky.as_uri())
    page.close()
    caught, watch.left[:] = list(watch.left), []
    assert set(caught) == {"http://127.0.0.1:9/x.png"}


def test_on_a_phone_and_without_javascript(browser, playwright, site):
    context, watch = browser
    page = watch.attach(context.new_page())
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(site.joinpath("index.html").as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll in their own box
    assert page.locator("#g1 .scroll").first.evaluate("d => d.scrollWidth > d.clientWidth")
    page.close()
    assert watch.problems == [] and watch.left == []

    bare, user_data = open_context(playwright, java_script_enabled=False)
    try:
        page = bare.new_page()
        page.goto(site.joinpath("index.html").as_uri())
        assert page.locator("tr[data-row]").count() == 6 + page.locator("tr.ref").count()  # every row, readable
        assert page.locator("#filters").is_hidden() and page.locator("button.sort").count() == 0
        assert [t.strip() for t in page.locator("#g1 th[aria-sort=descending]").all_inner_texts()] == ["mIoU", "mIoU"]
    finally:
        bare.close()
        shutil.rmtree(user_data, ignore_errors=True)
