"""Download, verify and extract a dataset's archives (VOC 2012's tar, COCO's zips).

Streams with a progress bar, checks md5s, refuses unsafe archive members, and leaves nothing
behind on failure: an archive and its extraction live in a temporary folder beside the target
until the finished folder is moved into place. Offline, one line says what to fetch by hand.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from wssbench.errors import DataError, OfflineError
from wssbench.storage.cache import file_digest

TIMEOUT_S = 60  # per blocking socket operation, not for the whole download
CHUNK = 1 << 20
# What a failed read looks like: no route or DNS (URLError), a stalled or dropped connection.
NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


def download_archive(
    url: str, md5: str, target: Path, inside: str, is_complete: Callable[[Path], bool], *, root: Path, what: str,
    progress: bool = True, name: str | None = None,
) -> Path:
    """Fetch the tar at ``url`` (or use ``root/<its file name>`` when already there), check its md5,
    extract it and move its folder ``inside`` (a relative path in the archive) to ``target``.
    ``name`` is the archive's file name (default: the URL's last part).

    Nothing is left behind on failure: the archive and its extraction live in a temporary folder
    beside ``target``, and folders this call created are removed again. :class:`OfflineError`
    when the network fails, :class:`DataError` for a corrupt or unsafe archive, for an archive
    whose ``inside`` is not ``is_complete``, or when ``target`` already exists.
    """
    name = name or PurePosixPath(url).name
    if target.exists():
        raise DataError(f"{target}: exists but is not a complete {what} folder; remove it or pick another --root")
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]  # deepest first
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{target.name.lower()}-", suffix=".tmp", dir=target.parent) as tmp:
            work = Path(tmp)
            archive, source = root / name, str(root / name)
            if not archive.is_file():
                archive, source = work / name, url
                by_hand = f"download {name} by hand into {root} and run again, or extract it and pass --data-root DIR"
                fetch(url, archive, what, by_hand, progress)
            _check_md5(archive, md5, source)
            _extract(archive, work / "extracted", source)
            extracted = work / "extracted" / inside
            if not is_complete(extracted):
                raise DataError(f"{source}: archive holds no complete {inside}/ folder")
            os.replace(extracted, target)
    except BaseException:
        for path in created:  # removed again on failure
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    return target


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
