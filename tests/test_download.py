"""download_voc2012 against a tiny tar served from 127.0.0.1 or a file:// URL (never the network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wssbench.cli.data import data
from wssbench.data import download
from wssbench.data.voc2012 import ARCHIVE_NAME, VOC2012, download_voc2012
from wssbench.errors import DataError, OfflineError
from wssbench.storage.io import write_mask


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.1 must be reached directly even where a proxy is configured."""
    monkeypatch.setenv("no_proxy", "*")


def png_bytes(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, payload: bytes, kind: bytes = tarfile.REGTYPE) -> None:
    member = tarfile.TarInfo(name)
    member.size, member.type = len(payload), kind
    tar.addfile(member, io.BytesIO(payload))


def voc_files(tmp_path: Path) -> dict[str, bytes]:
    """One image of the VOCtrainval layout: name in the archive -> content."""
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[1:3, 1:4] = 15  # person
    write_mask(tmp_path / "mask.png", mask)
    voc = "VOCdevkit/VOC2012"
    return {
        f"{voc}/JPEGImages/2007_000001.jpg": png_bytes(Image.new("RGB", (5, 4), (10, 20, 30)), "JPEG"),
        f"{voc}/SegmentationClass/2007_000001.png": (tmp_path / "mask.png").read_bytes(),
        f"{voc}/Annotations/2007_000001.xml": b"<annotation><object><name>person</name></object></annotation>",
        f"{voc}/ImageSets/Segmentation/train.txt": b"2007_000001\n",
        f"{voc}/ImageSets/Segmentation/val.txt": b"",
    }


def make_tar(path: Path, files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> str:
    """Write ``files`` (and ``extra`` bodiless members) to a tar at ``path``; return its md5."""
    with tarfile.open(path, "w") as tar:
        for name, payload in files.items():
            add_bytes(tar, name, payload)
        for member in extra:
            tar.addfile(member)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, str]:
    """A valid VOCtrainval-like tar in tmp_path/served and its md5."""
    (tmp_path / "served").mkdir()
    path = tmp_path / "served" / ARCHIVE_NAME
    return path, make_tar(path, voc_files(tmp_path))


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files quietly; ``/truncated`` promises 1000 bytes and hangs up after 10."""

    def do_GET(self) -> None:
        if self.path != "/truncated":
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """Base URL of an HTTP server on 127.0.0.1 serving tmp_path/served."""
    (tmp_path / "served").mkdir(exist_ok=True)
    handler = partial(Handler, directory=tmp_path / "served")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{ARCHIVE_NAME}"


def test_download_over_http(tmp_path: Path, archive: tuple[Path, str], server: str):
    path, md5 = archive
    root = tmp_path / "data"
    voc = download_voc2012(root, url=f"{server}/{ARCHIVE_NAME}", md5=md5, progress=False)
    assert voc == root / "VOCdevkit" / "VOC2012"
    extracted = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert extracted == sorted(voc_files(tmp_path))  # and no temporary file left beside them
    ds = VOC2012(str(root))
    ds.prepare()
    image, mask = ds.load_pair("2007_000001")
    assert image.shape == (4, 5, 3) and mask[1, 1] == 15
    assert ds.image_labels("2007_000001").nonzero()[0].tolist() == [14]  # person, from the XML
    # Present and complete: nothing is fetched, so an unreachable URL does not matter.
    assert download_voc2012(root, url=closed_port_url(), md5=md5, progress=False) == voc
    assert download_voc2012(voc, url=closed_port_url(), md5=md5, progress=False) == voc


def test_download_from_file_url_with_progress(tmp_path: Path, archive: tuple[Path, str], capsys):
    path, md5 = archive
    voc = download_voc2012(tmp_path / "data", url=path.as_uri(), md5=md5, progress=True)
    assert (voc / "JPEGImages/2007_000001.jpg").is_file()
    assert capsys.readouterr().out == ""  # the progress bar goes to stderr


def test_archive_already_in_root_is_used(tmp_path: Path, archive: tuple[Path, str]):
    path, md5 = archive
    root = tmp_path / "data"
    root.mkdir()
    path.rename(root / ARCHIVE_NAME)
    voc = download_voc2012(root, url=closed_port_url(), md5=md5, progress=False)
    assert (voc / "SegmentationClass/2007_000001.png").is_file()
    assert (root / ARCHIVE_NAME).is_file()  # the user's archive is kept


def test_wrong_md5_leaves_nothing(tmp_path: Path, archive: tuple[Path, str], server: str):
    path, md5 = archive
    root = tmp_path / "data"
    with pytest.raises(DataError, match=f"{ARCHIVE_NAME}: md5 {md5} does not match the expected 0123") as info:
        download_voc2012(root, url=f"{server}/{ARCHIVE_NAME}", md5="0123" + "0" * 28, progress=False)
    assert "\n" not in str(info.value)
    assert not root.exists()


def test_unreachable_url_is_offline_error(tmp_path: Path):
    root = tmp_path / "data"
    root.mkdir()
    url = closed_port_url()
    message = rf"cannot download VOC 2012 from {url} \(no network\?\): .*--data-root DIR"
    with pytest.raises(OfflineError, match=message):
        download_voc2012(root, url=url, progress=False)
    assert list(root.iterdir()) == []


def test_dropped_connection_is_offline_error(tmp_path: Path, server: str):
    with pytest.raises(OfflineError, match="no network"):
        download_voc2012(tmp_path / "data", url=f"{server}/truncated", progress=False)
    assert not (tmp_path / "data").exists()


def test_silent_server_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(download, "TIMEOUT_S", 0.2)
    with socket.socket() as listener:  # the kernel accepts the connection; nobody ever answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/{ARCHIVE_NAME}"
        with pytest.raises(OfflineError, match="timed out"):
            download_voc2012(tmp_path / "data", url=url, progress=False)
    assert not (tmp_path / "data").exists()


def test_http_error_is_data_error(tmp_path: Path, server: str):
    with pytest.raises(DataError, match="HTTP 404"):
        download_voc2012(tmp_path / "data", url=f"{server}/missing.tar", progress=False)
    assert not (tmp_path / "data").exists()


def unsafe_member(kind: str) -> tarfile.TarInfo:
    if kind == "dotdot":
        return tarfile.TarInfo("VOCdevkit/../../evil")
    if kind == "absolute":
        return tarfile.TarInfo(str(Path("/tmp/wssbench-evil").absolute()))
    member = tarfile.TarInfo("VOCdevkit/VOC2012/link")
    member.type, member.linkname = tarfile.SYMTYPE, "/etc"
    return member


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_unsafe_member_is_refused(tmp_path: Path, kind: str):
    path = tmp_path / ARCHIVE_NAME
    md5 = make_tar(path, voc_files(tmp_path), extra=[unsafe_member(kind)])
    root = tmp_path / "deep" / "data"
    with pytest.raises(DataError, match="unsafe archive member"):
        download_voc2012(root, url=path.as_uri(), md5=md5, progress=False)
    assert not (tmp_path / "deep").exists() and not (tmp_path / "evil").exists()


def test_archive_without_the_layout(tmp_path: Path):
    path = tmp_path / ARCHIVE_NAME
    md5 = make_tar(path, {"VOC2012/JPEGImages/x.jpg": b"x"})
    with pytest.raises(DataError, match="no complete VOCdevkit/VOC2012/"):
        download_voc2012(tmp_path / "data", url=path.as_uri(), md5=md5, progress=False)
    assert not (tmp_path / "data").exists()


def test_incomplete_target_is_not_overwritten(tmp_path: Path, archive: tuple[Path, str]):
    path, md5 = archive
    (tmp_path / "data/VOCdevkit/VOC2012/JPEGImages").mkdir(parents=True)
    with pytest.raises(DataError, match="not a complete VOC 2012 folder"):
        download_voc2012(tmp_path / "data", url=path.as_uri(), md5=md5, progress=False)
    assert (tmp_path / "data/VOCdevkit/VOC2012/JPEGImages").is_dir()


def test_cli_download(tmp_path: Path, archive: tuple[Path, str]):
    path, md5 = archive
    runner = CliRunner()
    result = runner.invoke(data, ["download", "coco"])
    assert result.exit_code == 2 and "unknown dataset 'coco' to download; known: coco2014, coco2017, voc2012" in result.output
    voc = download_voc2012(tmp_path / "data", url=path.as_uri(), md5=md5, progress=False)
    result = runner.invoke(data, ["download", "voc2012", "--root", str(tmp_path / "data")])
    assert result.exit_code == 0 and result.output.strip() == str(voc)


def test_coco_download_offline_says_what_to_fetch_and_where(tmp_path: Path, monkeypatch):
    """No network: one line naming the archives, the page they are on and the folder."""
    import urllib.error
    import urllib.request

    from wssbench.errors import OfflineError
    from wssbench_plugins.coco import download

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(OfflineError, match=r"cannot download COCO 2017 .*no network.*download train2017.zip, val2017.zip, "
                                           r"annotations_trainval2017.zip from https://cocodataset.org/#download into"):
        download("2017", tmp_path / "coco", progress=False)
    assert [p.name for p in (tmp_path / "coco").iterdir()] == []  # nothing half-written
