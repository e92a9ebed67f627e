"""Pseudo-masks from a ``wssbench run`` or ``wssbench pseudo-mask`` folder: ``masks/<id>.png`` and
``result.json``.

The run's own score (its mIoU on the split it segmented, usually the training split with
ground-truth image labels) is kept beside the network's as the ``pseudo-mask`` stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wssbench.errors import DataError, UsageError
from wssbench.host.registry import default_registry
from wssbench.results.records import read_record
from wssbench.seed.labels import method_label
from wssbench.seed.run import default_out, run


@dataclass(frozen=True)
class PseudoMaskRun:
    folder: Path
    record: dict

    def path(self, image_id: str) -> Path:
        return self.folder / "masks" / f"{image_id}.png"

    def ids(self) -> set[str]:
        return {p.stem for p in (self.folder / "masks").glob("*.png")}

    def summary(self) -> dict:
        """The pseudo-masks' own score and where they came from, for the record."""
        r = self.record
        made = r.get("method") if r.get("stage") == "pseudo-mask" else method_label(r["config"])  # 'wssbench pseudo-mask' or a seed run
        return {
            "stage": "pseudo-mask", "method": made, "dataset": r["dataset"], "split": r["split"],
            "protocol": r["protocol"], "n_images": r["n_images"], "miou": r["miou"],
            "pixel_accuracy": r.get("pixel_accuracy"), "run": str(self.folder),
        }


def open_mask_run(folder: str | Path, dataset: str, train_split: str) -> PseudoMaskRun:
    """A run folder checked against the dataset and split the network trains on."""
    folder = Path(folder)
    result = folder / "result.json"
    if not result.is_file():
        raise DataError(f"--masks {folder}: no result.json (expected the output folder of 'wssbench run --split {train_split}' "
                        f"or 'wssbench pseudo-mask')")
    record = read_record(result)
    if not (folder / "masks").is_dir():
        raise DataError(f"--masks {folder}: no masks/ folder")
    if record["dataset"] != dataset:
        raise UsageError(f"--masks {folder}: made on dataset '{record['dataset']}', training is on '{dataset}'")
    if record["split"] != train_split:
        raise UsageError(f"--masks {folder}: masks of split '{record['split']}', the network trains on '{train_split}'")
    return PseudoMaskRun(folder, record)


def make_pseudo_masks(config: Any, out: Path | None = None) -> Path:
    """The folder of a seed run's masks to train on: run ``config`` (a
    :class:`~wssbench.seed.config.RunConfig`, usually the train split with ground-truth image
    labels) into ``out`` (default: the run's own default folder), unless a result is there already."""
    out = out or default_out(config)
    if not (out / "result.json").is_file():
        run(config, default_registry(), out)
    return out
