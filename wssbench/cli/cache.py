"""``wssbench cache show|prune``: what the cache holds, and removing it."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from wssbench.cli import traceback_option
from wssbench.storage.cache import cache_dir
from wssbench.storage.locks import sweep_locks

SECTIONS = {
    "data": "generated and downloaded datasets",
    "classifiers": "trained classifiers (one .pt per configuration)",
    "classmaps": "fitted class-map producers (e.g. zoom-out mi-SVMs)",
    "maps": "class and saliency maps, per classifier and method",
    "predictions": "label maps after fusion and refiners, per run configuration (a killed run resumes from them)",
    "proposals": "object proposals per image, per objectness method and options",
    "superpixels": "superpixel labellings per image content, per method and options (SLIC)",
}
SIDECAR = ".json"  # beside a file entry (a checkpoint, a fitted producer): what it is; part of the entry


def _entries(section: str) -> list[Path]:
    """Entries of a section: hidden names (locks, temporary files) and sidecars are not entries."""
    root = cache_dir(section)
    if not root.is_dir():
        return []
    paths = [p for p in root.iterdir() if not p.name.startswith(".")]
    owners = {p.with_suffix("") for p in paths if p.suffix != SIDECAR}
    return sorted(p for p in paths if not (p.suffix == SIDECAR and p.with_suffix("") in owners))


def _parts(path: Path) -> list[Path]:
    """The files that make up an entry: a file and its sidecar, or a folder."""
    sidecar = path.with_suffix(SIDECAR)
    return [path, sidecar] if path.is_file() and path.suffix != SIDECAR and sidecar.is_file() else [path]


def _size(path: Path) -> int:
    total = 0
    for part in _parts(path):
        if part.is_file():
            total += part.stat().st_size
        else:
            total += _tree_size(str(part))
    return total


def _tree_size(folder: str) -> int:
    """Bytes of the files under ``folder``: one ``scandir`` per folder, one stat per file (a map
    entry holds a file per image: 1,449 for VOC val, 10,582 for train_aug)."""
    total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                total += _tree_size(entry.path)
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def classifier_info(stem: str) -> dict:
    """Dataset, split and backbone of cached classifier ``stem``, from its sidecar (empty if unknown)."""
    key = _read_json(cache_dir("classifiers", f"{stem}{SIDECAR}")).get("key", {})
    if not key:
        return {}
    recipe = key.get("recipe") or {}
    return {
        "dataset": key.get("dataset"), "split": key.get("split"), "backbone": key.get("backbone"),
        "pooling": key.get("pooling"), "epochs": recipe.get("epochs"),
    }


def _classifier_text(info: dict, stem: str) -> str:
    if not info:
        return f"classifier {stem} (not in the cache)"
    epochs = f"{info['epochs']} epoch{'' if info['epochs'] == 1 else 's'}"
    return f"{info['dataset']}/{info['split']}, {info['backbone']} ({info['pooling']}, {epochs})"


def describe(section: str, path: Path) -> dict:
    """What a cache entry is: ``what`` (one line for people) and the fields it was read from."""
    if section == "classifiers":
        info = classifier_info(path.stem)
        return {"what": _classifier_text(info, path.stem) if info else "classifier (no description)", **info}
    if section in ("maps", "predictions"):  # a folder of per-image entries, its key beside them
        key = _read_json(path / "key.json")
        if not key:
            return {"what": f"{'maps' if section == 'maps' else 'label maps'} (no key.json)"}
        stem = str(key.get("classifier"))
        info = classifier_info(stem)
        if section == "maps":
            what, method = f"{key.get('kind')} {key.get('name')} of", f"{key.get('kind')}:{key.get('name')}"
        else:
            steps = [str((key.get("fusion") or {}).get("name"))] + [str(r.get("name")) for r in key.get("refiners") or []]
            what, method = f"label maps of {' + '.join(steps)} from", f"fusion:{steps[0]}"
        return {"what": f"{what} {_classifier_text(info, stem)}", "method": method, "classifier": stem, **info}
    if section == "classmaps":
        meta = _read_json(path.with_suffix(SIDECAR))
        if not meta:
            return {"what": f"{path.name.partition('-')[0]} fit (no description)"}
        stem = str(meta.get("classifier"))
        info = classifier_info(stem)
        return {"what": f"{meta.get('classmap')} fit on {meta.get('split')} of {_classifier_text(info, stem)}",
                "method": f"classmap:{meta.get('classmap')}", "classifier": stem, **info}
    if section == "data":
        spec = _read_json(path / ".complete")
        if spec:
            return {"what": f"synthetic, {spec.get('n_train')} train + {spec.get('n_val')} val images of "
                            f"{spec.get('size')} px, seed {spec.get('seed')}", "dataset": "synthetic"}
        return {"what": "dataset folder"}
    if section == "superpixels":
        key = _read_json(path / "key.json")
        options = ", ".join(f"{k} {v}" for k, v in (key.get("options") or {}).items())
        return {"what": f"{key.get('method', path.name.rpartition('-')[0])} superpixels of {sum(1 for _ in path.glob('*.npz'))} "
                        f"images ({options})", "method": f"superpixels:{key.get('method')}"}
    if section == "proposals":
        method = path.name.rpartition("-")[0]
        return {"what": f"{method} proposals of {sum(1 for _ in path.glob('*.npz'))} images", "method": f"objectness:{method}"}
    return {"what": ""}


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@click.group("cache")
def cache() -> None:
    """Show and prune wssbench's cache ($WSSBENCH_HOME, default ~/.cache/wssbench)."""


@cache.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@traceback_option
def show(as_json: bool) -> None:
    """Entries per section: what each is (dataset, backbone, method), its size and age.

    Lock files left by finished runs (one per entry a run computed) are removed on the way."""
    swept = sum(sweep_locks(cache_dir(s)) for s in SECTIONS if cache_dir(s).is_dir())
    rows = [
        {"section": s, "entry": p.name, "bytes": _size(p), "modified": p.stat().st_mtime, **describe(s, p)}
        for s in SECTIONS for p in _entries(s)
    ]
    if as_json:
        click.echo(json.dumps({"root": str(cache_dir()), "entries": rows}, indent=2))
        return
    table = Table(title=f"wssbench cache: {cache_dir()}")
    for col, justify in (("section", "left"), ("what", "left"), ("entry", "left"), ("size", "right"), ("age", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        age = (time.time() - r["modified"]) / 86400
        table.add_row(r["section"], r["what"], r["entry"], _human(r["bytes"]), f"{age:.1f} d")
    table.caption = f"total {_human(sum(r['bytes'] for r in rows))}" + (f"; {swept} stale lock files removed" if swept else "")
    Console().print(table)


@cache.command("prune")
@click.argument("sections", nargs=-1, type=click.Choice(list(SECTIONS)))
@click.option("--older-than", type=click.FloatRange(min=0), default=0.0, help="Only entries not modified for this many days.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, remove nothing.")
@traceback_option
def prune(sections: tuple[str, ...], older_than: float, dry_run: bool) -> None:
    """Remove cached SECTIONS (default: maps only; name several, e.g. maps classifiers)."""
    cutoff = time.time() - older_than * 86400
    freed = 0
    for section in sections or ("maps",):
        for path in _entries(section):
            if path.stat().st_mtime > cutoff:
                continue
            freed += _size(path)
            click.echo(f"{'would remove' if dry_run else 'removed'} {section}/{path.name}")
            if not dry_run:
                for part in _parts(path):
                    shutil.rmtree(part) if part.is_dir() else part.unlink()
        if not dry_run and cache_dir(section).is_dir():
            sweep_locks(cache_dir(section))  # the removed entries' locks, and any a finished run left
    click.echo(f"{'would free' if dry_run else 'freed'} {_human(freed)}", err=True)
