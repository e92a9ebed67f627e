"""STC, simple to complex (Wei, Liang, Chen, Shen, Cheng, Feng, Zhao & Yan, TPAMI 2016).

Three segmentation networks, each trained on what the previous one predicts:

1. **Initial-DCNN** on the *simple* images (one class, clean background) with targets from a
   saliency map ``S`` (a registered ``salient`` detector): for an image of class ``c``, pixel
   ``j`` has the soft target ``p_jc = S_j``, ``p_j0 = 1 - S_j`` (background), 0 for the other
   classes, and the loss is the paper's multi-label cross-entropy
   ``-1/(h w) sum_j sum_k p_jk log q_jk`` with ``q`` the network's softmax (:class:`InitialLoss`).
2. **Enhanced-DCNN** on the same simple images, with the Initial-DCNN's masks of them
   *constrained by the image labels*: each pixel takes the most probable class among
   background and the image's own classes (absent classes never win; :func:`constrained_mask`).
3. **Powerful-DCNN** on the Enhanced-DCNN's label-constrained masks of the *complex* images
   (and, with ``step3_simple``, of the simple ones too): the network that segments val.

Steps 2 and 3 train with the run's objective (``pseudo-masks``: cross-entropy on the masks).
What wssbench changes (recorded as departures of the ``stc`` preset): the simple images are the
single-label images of the training split itself (the paper: 40K Flickr images), the complex
ones its other images (the paper: VOC's train_aug, all of it), and the saliency detector is a
published bottom-up one implemented here (the paper: DRFI).

Only the paper's abstract could be read while writing this (no public code exists): the soft
targets and loss of step 1 and the label constraint of steps 2-3 follow the paper's method as
described above, but their details (e.g. no CRF on the masks, softmax rather than per-class
sigmoids) were not checked against its text. Chosen likewise (listed ``unverified`` in the preset): each
network starts from the same (ImageNet) initialisation, not from the previous step's weights;
the Powerful-DCNN also trains on the simple images (``step3_simple``); masks are predicted at
one scale without CRF; each step trains with the run's recipe (epochs, lr, crop).

Each step's network is cached as the single network is (its key adds the step and the digest
of the masks it trains on); the saliency maps and each step's masks are cached under
``$WSSBENCH_HOME/stc/``, keyed by what made them. The record's ``training.steps`` lists per
step its images (``simple``, ``complex`` or ``all``) and their count, what it trains on, the
folders of the masks it reads (``masks_in``) and writes (``masks_out``), the loss per epoch,
the training time and ``seconds`` (the step's wall time, its masks included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wssbench.errors import DataError
from wssbench.host.registry import creating_registry
from wssbench.runtime.distributed import World
from wssbench.segmentation.batch import IGNORE, SegBatch, per_image_mean
from wssbench.segmentation.data import TrainSamples
from wssbench.segmentation.infer import predict_probs
from wssbench.segmentation.network import build_model, network_key
from wssbench.segmentation.train import SegModel, load_or_train, train
from wssbench.storage.cache import cache_dir, file_digest, fingerprint
from wssbench.storage.io import atomic_dir, read_mask, write_mask

STC_VERSION = 1
LEVELS = 254  # saliency in [0, 1] is stored as a mask of levels 0..254 (255 stays "ignore")
STEPS = ("initial", "enhanced", "powerful")


def split_simple(dataset: Any, ids: list[str]) -> tuple[list[str], list[str]]:
    """(simple, complex) ids, in order: simple images have exactly one foreground class."""
    simple = [i for i in ids if int(np.asarray(dataset.image_labels(i)).sum()) == 1]
    chosen = set(simple)
    return simple, [i for i in ids if i not in chosen]


def constrained_mask(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class probabilities (N, H, W) and foreground labels (N-1,) -> (H, W) uint8: per pixel the
    most probable class among background and the image's classes."""
    present = np.concatenate([[True], np.asarray(labels) > 0.5])  # (N,)
    return np.where(present[:, None, None], probs, -1.0).argmax(0).astype(np.uint8)


@dataclass(frozen=True)
class InitialLoss:
    """The Initial-DCNN's loss: cross-entropy to soft targets from saliency levels.

    ``batch.masks`` (B, H, W) holds saliency as levels 0..254 (255 = ignore) and each image has
    exactly one foreground class ``c``: target ``p_c = s / 254``, ``p_0 = 1 - p_c``, others 0;
    the loss per pixel is ``-sum_k p_k log softmax(logits)_k`` (logits upsampled bilinearly to
    the mask size), the mean over pixels per image, then over images."""

    def __call__(self, logits: torch.Tensor, batch: SegBatch) -> torch.Tensor:
        counts = (batch.image_labels > 0.5).sum(1)
        if bool((counts != 1).any()):
            raise DataError("the Initial-DCNN trains on simple images only (exactly one foreground class each)")
        size = batch.masks.shape[-2:]
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, N, H, W)
        logp = F.log_softmax(logits.float(), dim=1)  # (B, N, H, W)
        c = (batch.image_labels.argmax(1) + 1).view(-1, 1, 1, 1).expand(-1, 1, *size)  # (B, 1, H, W)
        keep = batch.valid & (batch.masks != IGNORE)  # (B, H, W)
        s = torch.where(keep, batch.masks, torch.zeros_like(batch.masks)).float() / LEVELS  # (B, H, W)
        loss = -(s * logp.gather(1, c)[:, 0] + (1 - s) * logp[:, 0])  # (B, H, W)
        return per_image_mean(loss, keep.float())


@dataclass(frozen=True)
class StcSchedule:
    """STC's three-step training (module docstring); ``-O schedule.KEY=VALUE`` sets:

    ``saliency``: the salient-object detector of step 1, a registered ``salient`` component
    (``u2netp``, learned from masks: the closest offline substitute for DRFI; ``frequency-tuned``,
    ``spectral-residual``: bottom-up); ``step3_simple``: the Powerful-DCNN trains on the simple
    images' masks as well as the complex ones'."""

    name = "stc"
    saliency: str = "frequency-tuned"
    step3_simple: bool = True

    def __post_init__(self) -> None:
        registry = creating_registry()
        if self.saliency not in registry.names("salient"):
            raise ValueError(f"unknown salient-object detector '{self.saliency}'; available: {', '.join(registry.names('salient'))}")
        object.__setattr__(self, "_detector", registry.create("salient", self.saliency))

    @property
    def priors(self) -> tuple[dict, ...]:
        """What the detector learned from besides image labels (a ``salient`` capability)."""
        return tuple(getattr(self._detector, "priors", ()))

    def train(self, config: Any, parts: Any, world: World, device: str, progress: Any = None) -> tuple[SegModel, dict]:
        return train_stc(self, config, parts, world, device, progress)


SCHEDULES: dict[str, type] = {"stc": StcSchedule}


def _folder_key(parts: Any, ids: list[str]) -> list:
    return [str(Path(parts.dataset.root).resolve()), len(ids), fingerprint(ids)]


def saliency_map(image: np.ndarray, detector: Any) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (H, W) in [0, 1]: the detector's map, min-max normalised
    (a constant map is all 0)."""
    s = np.asarray(detector(image), np.float64)
    lo, hi = float(s.min()), float(s.max())
    return np.zeros(s.shape, np.float32) if hi - lo < 1e-12 else ((s - lo) / (hi - lo)).astype(np.float32)


def saliency_folder(parts: Any, ids: list[str], schedule: StcSchedule, world: World) -> Path:
    """The folder of ``<id>.png`` saliency levels (0..254) of ``ids``, made once (rank 0) and cached."""
    detector = schedule.saliency
    folder = cache_dir("stc", "saliency", fingerprint({"version": STC_VERSION, "data": _folder_key(parts, ids), "detector": detector}))
    with world.main_first():
        if world.is_main and not folder.is_dir():
            with atomic_dir(folder) as tmp:
                for i in ids:
                    s = saliency_map(parts.dataset.load_image(i), schedule._detector)  # (H, W) in [0, 1]
                    write_mask(tmp / f"{i}.png", np.round(s * LEVELS).astype(np.uint8))
    return folder


@torch.no_grad()
def mask_folder(model: SegModel, parts: Any, ids: list[str], key: dict, precision: str, world: World) -> Path:
    """The folder of ``<id>.png`` label-constrained masks of ``ids`` predicted by ``model``
    (the network of ``key``), made once (rank 0) and cached."""
    folder = cache_dir("stc", "masks", fingerprint({"version": STC_VERSION, "network": key, "data": _folder_key(parts, ids)}))
    with world.main_first():
        if world.is_main and not folder.is_dir():
            model.eval()
            with atomic_dir(folder) as tmp:
                for i in ids:
                    probs = predict_probs(model, [parts.dataset.load_image(i)], precision=precision)[0].numpy()  # (N, H, W)
                    write_mask(tmp / f"{i}.png", constrained_mask(probs, parts.dataset.image_labels(i)))
    return folder


def train_stc(schedule: StcSchedule, config: Any, parts: Any, world: World, device: str,
              progress: Any = None) -> tuple[SegModel, dict]:
    """Train the three networks in turn; returns the Powerful-DCNN and the record's ``training``."""
    ids = parts.dataset.ids(config.train_split)
    simple, complex_ = split_simple(parts.dataset, ids)
    if len(simple) < config.recipe.batch_size:
        raise DataError(f"STC: only {len(simple)} of the {len(ids)} '{config.train_split}' images have a single class, "
                        f"fewer than a batch of {config.recipe.batch_size}")
    step3_ids = ids if schedule.step3_simple else complex_
    if not step3_ids:
        raise DataError(f"STC: the '{config.train_split}' images have no complex (multi-class) image")
    sets = {"initial": ("simple", simple), "enhanced": ("simple", simple),
            "powerful": ("all" if schedule.step3_simple else "complex", step3_ids)}
    masks_in = saliency_folder(parts, simple, schedule, world)
    supervision = f"saliency ({schedule.saliency})"
    steps: list[dict] = []
    model = None
    for k, step in enumerate(STEPS):
        which, step_ids = sets[step]
        objective = InitialLoss() if step == "initial" else parts.objective
        model = build_model(config, parts).to(device)
        samples = TrainSamples(parts.dataset, step_ids, lambda i, folder=masks_in: folder / f"{i}.png")
        key = {**network_key(config, parts, step_ids, world), "schedule": "stc", "stc_step": step,
               "stc_version": STC_VERSION, "masks": fingerprint([[i, file_digest(masks_in / f"{i}.png")] for i in step_ids])}
        if step == "initial":
            key["objective"] = "stc-initial"
        task = progress.add_task(f"STC {step}", total=None) if progress else None

        def on_step(n: int, total: int, loss: float, task=task, step=step) -> None:
            if progress:
                progress.update(task, completed=n, total=total, description=f"STC {k + 1}/3 {step} (loss {loss:.3f})")

        def fit(model=model, samples=samples, objective=objective, on_step=on_step) -> list[float]:
            return train(model, samples, objective, config.recipe, torch.device(device), world, on_step,
                         config.precision, config.loader_workers)

        start = time.perf_counter()
        trained = load_or_train(model, key, fit, world)
        if progress:
            progress.remove_task(task)
        model.to(device).eval()
        entry = {"step": step, "network": f"{step.capitalize()}-DCNN", "images": which, "n_images": len(step_ids),
                 "trains_on": supervision, "masks_in": str(masks_in), "loss_history": trained["loss_history"],
                 "train_seconds": trained["train_seconds"], "cached": trained["cached"], "checkpoint": trained["checkpoint"]}
        if k + 1 < len(STEPS):
            _, next_ids = sets[STEPS[k + 1]]
            masks_in = mask_folder(model, parts, next_ids, key, config.precision, world)
            supervision = f"{entry['network']} masks, constrained by image labels"
            entry["masks_out"] = str(masks_in)
        entry["seconds"] = time.perf_counter() - start
        steps.append(entry)
    last = steps[-1]
    training = {"schedule": "stc", "steps": steps, "n_images": last["n_images"], "loss_history": last["loss_history"],
                "train_seconds": sum(s["train_seconds"] for s in steps), "cached": all(s["cached"] for s in steps),
                "checkpoint": last["checkpoint"], "n_simple": len(simple), "n_complex": len(complex_)}
    return model, training


def read_levels(folder: Path, image_id: str) -> np.ndarray:
    """A cached saliency map back as float32 (H, W) in [0, 1]."""
    return read_mask(folder / f"{image_id}.png").astype(np.float32) / LEVELS
