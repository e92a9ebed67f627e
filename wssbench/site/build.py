"""Build the site: ``index.html``, a page per record under ``runs/``, each record's copy and its
gallery beside its page, and the manifest (``wssbench.site.output``)."""

from __future__ import annotations

import json
import os
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from wssbench.leaderboard import Group
from wssbench.site.content import PAGES, Entry, site_groups
from wssbench.site.index import index_page
from wssbench.site.output import write_site
from wssbench.site.page import record_page
from wssbench.storage.io import default_gallery_dir

GALLERY = "gallery.png"  # what ``wssbench show`` writes


def gallery_images(result: Path) -> list[Path]:
    """The gallery of the run whose record is ``result``: ``RUN-gallery/gallery.png`` beside the
    run (``wssbench show``'s default), or ``gallery.png`` inside it (older runs)."""
    run = result.parent
    found = [p for p in (default_gallery_dir(run) / GALLERY, run / GALLERY) if p.is_file()]
    return found[:1]


def shown_path(path: Path, base: Path) -> str:
    """``path`` as the user names it from ``base`` (the folder the command ran in): relative
    where it lies under ``base``, else absolute."""
    full = Path(os.path.abspath(path))
    try:
        return full.relative_to(Path(os.path.abspath(base))).as_posix()
    except ValueError:
        return full.as_posix()


def _wssbench_version() -> str:
    try:
        return version("wssbench")
    except PackageNotFoundError:
        return "(unknown version)"


def build_site(groups: list[Group], records: dict[Path, dict], out: Path, *, root: Path, base: Path,
               n_folders: int = 1, sort: str = "miou") -> tuple[bool, int]:
    """Write the site of ``groups`` into ``out``; returns (an earlier site was replaced, pages written).

    ``records``: result.json path -> record, for every path in the rows' ``paths``; ``root``:
    the folder the rows' sources are named from; ``base``: the folder re-run commands name
    records from (where the user ran the command).
    """
    sites, entries = site_groups(groups, records, root)
    by_path: dict[Path, Entry] = {e.path: e for e in entries}

    def fill(tmp: Path) -> None:
        (tmp / "index.html").write_text(
            index_page(sites, n_records=len(entries), n_folders=n_folders, sort=sort, version=_wssbench_version()), encoding="utf-8")
        pages = tmp / PAGES
        pages.mkdir()
        for entry in entries:
            files = pages / entry.name
            files.mkdir()
            (files / "record.json").write_text(json.dumps(entry.record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            gallery = []
            for image in gallery_images(entry.path):
                shutil.copyfile(image, files / image.name)
                gallery.append(image.name)
            page = record_page(entry, sites[entry.group], shown_path=shown_path(entry.path, base), gallery=gallery, entries=by_path)
            (pages / f"{entry.name}.html").write_text(page, encoding="utf-8")

    return write_site(out, fill), len(entries)
