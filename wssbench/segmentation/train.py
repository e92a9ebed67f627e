"""Training a segmentation network: the shared SGD solver (:mod:`wssbench.runtime.optim`), AMP,
batch-norm modes, torchrun DDP, cache.

Under torchrun every rank trains: each global batch of ``batch_size`` samples is split
evenly across the ranks, DistributedDataParallel averages the gradients, and since every
objective is a mean over images, the step equals the single-process step (up to the float
order of the all-reduce). Batch-norm statistics in ``train`` mode are per rank (use ``sync``
on CUDA for statistics over the global batch), and dropout draws differ per rank.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from wssbench.errors import UsageError
from wssbench.runtime import optim
from wssbench.runtime.distributed import World
from wssbench.runtime.precision import autocast, grad_scaler
from wssbench.segmentation.batch import SegBatch
from wssbench.segmentation.config import SegRecipe
from wssbench.segmentation.data import TrainSamples, augment, epoch_order, sample_rng
from wssbench.storage.cache import cache_dir, fingerprint
from wssbench.storage.io import atomic_path

CHECKPOINT_VERSION = 1


class SegModel(nn.Module):
    """A segnet's module with its input normalisation: ``preprocess`` then ``forward``."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def fill(self) -> tuple[int, int, int]:
        """The uint8 colour that normalises to 0 (crop padding)."""
        return tuple(int(round(255 * m)) for m in self.mean.flatten().tolist())

    def preprocess(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> normalised (B, 3, H, W) on the model's device."""
        batch = torch.from_numpy(np.stack(list(images)) if isinstance(images, list) else images)
        batch = batch.to(self.mean.device).permute(0, 3, 1, 2).float().div_(255.0)
        return (batch - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)  # (B, N, h, w)


def param_groups(net: nn.Module, recipe: SegRecipe) -> list[dict]:
    """The pretrained body and the new layers (``new_parameters()``, at ``head_lr_mult``), biases
    apart where the recipe has Caffe's bias settings (:func:`wssbench.runtime.optim.param_groups`)."""
    new_ids = {id(p) for p in net.new_parameters()} if hasattr(net, "new_parameters") else set()
    named = list(net.named_parameters())
    return optim.param_groups([(n, p) for n, p in named if id(p) not in new_ids],
                              [(n, p) for n, p in named if id(p) in new_ids], recipe)


def freeze_batchnorm(net: nn.Module) -> None:
    """Batch-norm layers keep their running statistics and affine parameters (``bn = frozen``)."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def train(model: SegModel, samples: TrainSamples, objective: Callable, recipe: SegRecipe, device: torch.device,
          world: World = World(), on_step: Callable[[int, int, float], None] | None = None,
          precision: str = "fp32", loader_workers: int = 0) -> list[float]:
    """Train ``model`` in place; returns the mean loss per epoch (over all ranks' images)."""
    if recipe.batch_size % world.size:
        raise UsageError(f"--batch-size {recipe.batch_size} is not divisible by the {world.size} torchrun ranks")
    torch.manual_seed(recipe.seed + world.rank)  # dropout; augmentation has its own generators
    model.to(device).train()
    net: nn.Module = model.net
    if recipe.bn == "frozen":
        freeze_batchnorm(net)
    if recipe.bn == "sync" and world.size > 1:
        if torch.device(device).type != "cuda":
            raise UsageError("--bn sync needs CUDA ranks (torch's SyncBatchNorm); use frozen or train on the CPU")
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        model.net = net
    optimizer = optim.sgd(param_groups(net, recipe), recipe)
    wrapped = net
    if world.size > 1:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    n = len(samples.ids)
    steps_per_epoch = n // recipe.batch_size
    if steps_per_epoch == 0:
        raise UsageError(f"--batch-size {recipe.batch_size} is larger than the {n} training images")
    total, epochs = optim.total_steps(recipe, steps_per_epoch)
    per_rank = recipe.batch_size // world.size
    scaler = grad_scaler(device, precision)
    history, step, batch_no = [], 0, 0
    for epoch in range(epochs):
        order = epoch_order(n, recipe.seed, epoch)
        mine = [b * recipe.batch_size + world.rank * per_rank + j for b in range(steps_per_epoch) for j in range(per_rank)]
        stream = samples.stream(mine, order, loader_workers)
        losses = []
        for b in range(steps_per_epoch):
            if step == total:
                break
            positions = mine[b * per_rank : (b + 1) * per_rank]
            crops = [augment(*next(stream), recipe, sample_rng(recipe.seed, epoch, p), model.fill) for p in positions]
            batch = SegBatch(
                images=model.preprocess([c[0] for c in crops]),
                image_labels=torch.from_numpy(samples.labels[order[positions]]).to(device),
                valid=torch.from_numpy(np.stack([c[2] for c in crops])).to(device),
                masks=None if crops[0][1] is None else torch.from_numpy(np.stack([c[1] for c in crops])).long().to(device),
            )
            with autocast(device, precision):
                logits = wrapped(batch.images)  # (B, N, h, w)
            loss = objective(logits.float(), batch)
            optim.backward(scaler, loss, recipe)
            value = float(world.sum(np.array([loss.item()], dtype=np.float64))[0]) / world.size
            losses.append(value)
            batch_no += 1
            if batch_no % recipe.iter_size == 0:
                optim.step(optimizer, scaler, base_lrs, recipe, step, total)
                step += 1
                if on_step:
                    on_step(step, total, value)
        if losses:
            history.append(float(np.mean(losses)))
    model.eval()
    return history


def checkpoint_path(key: dict) -> Path:
    return cache_dir("segnets", f"{fingerprint(key)}.pt")


def save_checkpoint(path: Path, model: SegModel, meta: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.net.state_dict(), "meta": meta}, tmp)
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")


def load_checkpoint(path: Path, model: SegModel) -> dict:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model.net.load_state_dict(blob["state_dict"])
    return blob["meta"]


def recipe_dict(recipe: SegRecipe) -> dict:
    """The recipe as a cache key holds it (solver settings at their defaults left out)."""
    return optim.solver_key(recipe)


def load_or_train(model: SegModel, key: dict, train_fn: Callable[[], list[float]], world: World = World()) -> dict:
    """The cached network for ``key``, or train it (all ranks) and cache it (rank 0)."""
    path = checkpoint_path(key)
    cached = path.is_file()
    world.barrier()  # every rank has looked before rank 0 can write
    if cached:
        meta = load_checkpoint(path, model)
        return {**meta, "checkpoint": str(path), "cached": True}
    start = time.perf_counter()
    history = train_fn()
    meta: dict[str, Any] = {"key": key, "loss_history": history, "train_seconds": time.perf_counter() - start}
    if world.is_main:
        device = model.mean.device
        save_checkpoint(path, model.cpu(), meta)
        model.to(device)
    world.barrier()
    return {**meta, "checkpoint": str(path), "cached": False}
