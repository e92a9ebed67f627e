"""Download, verify and extract the official PASCAL VOC 2012 trainval archive.

Only ``VOCtrainval_11-May-2012.tar`` (2 GB, md5-checked) is fetched: it holds the images, the
official masks, the XML annotations the image labels come from, and the train/val lists.
The SBD-augmented masks behind the ``train_aug`` split have no official archive and are
optional: unzip ``SegmentationClassAug.zip`` into ``VOCdevkit/VOC2012/`` by hand (see
:mod:`wssbench.data.voc2012`).

Nothing is left behind by a failed download: the archive and its extraction live in a
temporary folder beside the target until the finished ``VOC2012/`` is moved into place.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import tarfile
import zipfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from wssbench.data.voc2012 import VOC2012, find_voc2012
from wssbench.errors import DataError, OfflineError
from wssbench.storage.cache import file_digest

VOC2012_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC2012_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
ARCHIVE_NAME = "VOCtrainval_11-May-2012.tar"
TIMEOUT_S = 60  # per blocking socket operation, not for the whole download
CHUNK = 1 << 20
# What a failed read looks like: no route or DNS (URLError), a stalled or dropped connection.
NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


def download_voc2012(
    root: Path, *, url: str = VOC2012_URL, md5: str = VOC2012_MD5, progress: bool = True
) -> Path:
    """Fetch VOC 2012 into ``root/VOCdevkit/VOC2012`` and return that folder.

    Nothing is fetched when ``root`` (or the VOCdevkit or VOC2012 folder it names) already
    holds a complete layout, and an archive already at ``root/VOCtrainval_11-May-2012.tar``
    is used instead of downloading. Raises :class:`OfflineError` when the network fails and
    :class:`DataError` for a corrupt or unsafe archive.
    """
    root = Path(root).expanduser()
    found = find_voc2012(root)
    if _is_complete(found):
        return found
    target = root / "VOCdevkit" / "VOC2012"
    if target.exists():
        raise DataError(
            f"{target}: exists but is not a complete VOC 2012 folder; remove it or pick another --root"
        )
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]  # deepest first
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".voc2012-", suffix=".tmp", dir=target.parent) as tmp:
            work = Path(tmp)
            archive, source = root / ARCHIVE_NAME, str(root / ARCHIVE_NAME)
            if not archive.is_file():
                archive, source = work / ARCHIVE_NAME, url
                _fetch(url, archive, root, progress)
            _check_md5(archive, md5, source)
            _extract(archive, work / "extracted", source)
            extracted = work / "extracted" / "VOCdevkit" / "VOC2012"
            if not _is_complete(extracted):
                raise DataError(f"{source}: archive holds no complete VOCdevkit/VOC2012/ folder")
            os.replace(extracted, target)
    except BaseException:
        for path in created:  # removed again on failure
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    return target


def _is_complete(voc_dir: Path) -> bool:
    try:
        VOC2012(str(voc_dir)).prepare()
    except DataError:
        return False
    return True


def _fetch(url: str, dest: Path, root: Path, progress: bool) -> None:
    by_hand = f"download {ARCHIVE_NAME} by hand into {root} and run again, or extract it and pass --data-root DIR"
    fetch(url, dest, "VOC 2012", by_hand, progress)


def fetch(url: str, dest: Path, what: str, by_hand: str, progress: bool = True) -> None:
    """Stream ``url`` into ``dest`` with a progress bar on stderr; OfflineError saying ``by_hand``
    (what to download and where to put it) when the network fails, DataError on an HTTP error."""
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not progress,
    )
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None  # bytes, None if unknown
            with bar:
                task = bar.add_task(dest.name, total=total)
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    bar.advance(task, len(chunk))
            if total is not None and out.tell() < total:  # read(n) returns b"" when the peer hangs up
                raise ConnectionError(f"connection closed after {out.tell()} of {total} bytes")
    except urllib.error.HTTPError as e:
        raise DataError(f"cannot download {what} from {url}: HTTP {e.code} {e.reason}; {by_hand}") from None
    except NETWORK_ERRORS as e:
        reason = getattr(e, "reason", None) or str(e) or type(e).__name__
        raise OfflineError(f"cannot download {what} from {url} (no network?): {reason}; {by_hand}") from None


def check_md5(archive: Path, expected: str, source: str) -> None:
    """Raise DataError unless the md5 of ``archive`` is ``expected`` (hex)."""
    _check_md5(archive, expected, source)


def extract_zip(archive: Path, dest: Path, source: str) -> None:
    """Extract a zip of plain files and folders; absolute paths and ``..`` are refused."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts:
                    raise DataError(f"{source}: unsafe archive member '{name}'; refusing to extract")
            zf.extractall(dest)
    except zipfile.BadZipFile as e:
        raise DataError(f"{source}: unreadable zip archive ({e})") from None


def _check_md5(archive: Path, expected: str, source: str) -> None:
    """Raise DataError unless the md5 of ``archive`` is ``expected`` (hex)."""
    digest = file_digest(archive, length=None, algorithm="md5")
    if digest != expected.lower():
        raise DataError(
            f"{source}: md5 {digest} does not match the expected {expected}; "
            f"the archive is corrupt or incomplete"
        )


def _extract(archive: Path, dest: Path, source: str) -> None:
    """Extract a tar of plain files and folders; absolute paths, ``..``, links and devices are refused."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                    raise DataError(f"{source}: unsafe archive member '{member.name}'; refusing to extract")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.12 and the 3.10/3.11 security releases
                tar.extractall(dest, members, filter="data")
            else:
                tar.extractall(dest, members)
    except tarfile.TarError as e:
        raise DataError(f"{source}: unreadable tar archive ({e})") from None
