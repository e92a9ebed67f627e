"""What PSA (AffinityNet) and IRN share to train an affinity network: pair labels from confident
regions, a timm backbone's feature levels, the authors' poly-decay SGD and their batch order.

Pair labels (psa voc12/data.py ``ExtractAffinityLabelInRadius`` lines 123-173, irn
voc12/dataloader.py ``GetAffinityLabelFromIndices`` lines 80-105), from a label map with 0 for
confident background, 1 .. for confident classes and ``IGNORE`` (255) for neither:

- bg-pos: both pixels background;
- fg-pos: both the same class, not background;
- neg: different labels, neither ignored.

The authors write "valid" as ``< 255`` (PSA) and ``< 21`` (IRN, VOC's 21 labels); here a label is
valid when it is not 255, which is both for VOC and keeps COCO's 81 labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

IGNORE = 255


def pair_labels(labels: np.ndarray | torch.Tensor, src: np.ndarray | torch.Tensor, dst: np.ndarray | torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(bg_pos, fg_pos, neg), each float (..., M) of 0/1, for the pairs ``(src[m], dst[m])`` (flat
    pixel indices, :func:`wssbench.methods.random_walk.pair_indices`) of label maps (..., h, w)."""
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long()
    flat = labels.reshape(*labels.shape[:-2], -1)  # (..., N)
    a = flat[..., torch.as_tensor(src)]  # (..., M)
    b = flat[..., torch.as_tensor(dst)]
    valid = (a != IGNORE) & (b != IGNORE)
    same = a == b
    bg_pos = same & (a == 0)
    fg_pos = same & (a != 0) & valid
    neg = ~same & valid
    return bg_pos.float(), fg_pos.float(), neg.float()


def poly_sgd(param_groups: list[dict], lr: float, weight_decay: float, max_step: int, power: float = 0.9
             ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """The authors' ``PolyOptimizer`` (psa tool/torchutils.py, irn misc/torchutils.py), quirk kept.

    ``PolyOptimizer.__init__(params, lr, weight_decay, max_step, momentum=0.9)`` calls
    ``torch.optim.SGD.__init__(params, lr, weight_decay)``: SGD's third positional parameter is
    ``momentum``, so the weight-decay value becomes SGD's momentum (5e-4 in PSA, 1e-4 in IRN:
    in effect no momentum), while the actual weight decay comes from each param group's own
    ``weight_decay``. The attribute named ``momentum`` (0.9) is the poly power: step ``s`` runs
    at ``lr * (1 - s / max_step) ** 0.9``. Returns the optimizer and a scheduler to ``step()``
    after each optimizer step.
    """
    optimizer = torch.optim.SGD(param_groups, lr, weight_decay)  # positional on purpose: momentum = weight_decay
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - min(step, max_step - 1) / max_step) ** power)
    return optimizer, schedule


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Batches per epoch, the last incomplete one dropped (the authors' ``drop_last=True``)."""
    steps = n_samples // batch_size
    if steps == 0:
        raise ValueError(f"{n_samples} samples make no batch of {batch_size}")
    return steps


def batches(samples: Sequence[Any], augment: Callable[[Any], tuple[np.ndarray, np.ndarray]], batch_size: int, epochs: int,
            rng: np.random.Generator, device: torch.device | str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training batches of train_aff.py and train_irn.py: each epoch a new permutation of the
    samples, cut into batches (the last incomplete one dropped), each sample passed through
    ``augment`` -> (image (3, S, S) float32, label map) in that order; yields (images (B, 3, S, S)
    on ``device``, labels (B, ...) on the CPU, where :func:`pair_labels` reads them)."""
    steps = steps_per_epoch(len(samples), batch_size)
    for _ in range(epochs):
        order = rng.permutation(len(samples))
        for step in range(steps):
            batch = [augment(samples[i]) for i in order[step * batch_size: (step + 1) * batch_size]]
            yield torch.from_numpy(np.stack([b[0] for b in batch])).to(device), torch.from_numpy(np.stack([b[1] for b in batch]))


def sgd_step(optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler, loss: torch.Tensor) -> float:
    """One step of :func:`poly_sgd`'s optimizer and schedule on ``loss``; returns its value."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss.item()


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


class BackboneLevels(nn.Module):
    """Feature maps of several levels of a timm model, through timm's ``forward_intermediates``.

    ``levels`` indexes ``model.feature_info`` (negative from the end); ``channels`` and
    ``reductions`` describe them. Batch norms stay in eval mode (``train()`` does not switch
    them): both authors freeze them (PSA resnet38d.py ``train``: BN eval and no gradient; IRN:
    ``FixedBatchNorm``). ``freeze="all"`` also stops every gradient (IRN's detached backbone),
    ``"stem"`` only the stem's (timm's ``group_matcher()['stem']``; PSA freezes conv1a and b2,
    its layers above stride 2), ``"none"`` nothing but the batch norms.
    """

    def __init__(self, model: nn.Module, levels: list[int], freeze: str = "stem"):
        super().__init__()
        info = getattr(model, "feature_info", None)
        if not info or not hasattr(model, "forward_intermediates"):
            raise ValueError(f"{type(model).__name__} has no feature_info/forward_intermediates (timm >= 1.0 models have)")
        n = len(info)
        self.model = model
        self.indices = [i % n for i in levels]
        self.channels = [int(info[i]["num_chs"]) for i in self.indices]
        self.reductions = [int(info[i]["reduction"]) for i in self.indices]
        if freeze not in ("all", "stem", "none"):
            raise ValueError(f"freeze must be 'all', 'stem' or 'none', got '{freeze}'")
        self.freeze = freeze
        for module in model.modules():
            if _is_batchnorm(module):
                module.requires_grad_(False)
        if freeze == "all":
            model.requires_grad_(False)
        elif freeze == "stem":
            pattern = model.group_matcher().get("stem") if hasattr(model, "group_matcher") else None
            if isinstance(pattern, str):
                for name, p in model.named_parameters():
                    if re.match(pattern, name):
                        p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> BackboneLevels:
        super().train(mode)
        if self.freeze == "all":
            self.model.eval()
        for module in self.model.modules():
            if _is_batchnorm(module):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.freeze == "all":
            with torch.no_grad():
                return self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True)
        return self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """The trainable backbone parameters as (weights, biases), by name: PSA's groups 0 and 1
        (``get_parameter_groups``, resnet38_aff.py lines 79-99: weights of convolutions and group
        norms, their biases; batch norms are frozen)."""
        weights, biases = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (biases if name.rsplit(".", 1)[-1] == "bias" else weights).append(p)
        return weights, biases


def feature_size(size: int, stride: int) -> int:
    """The side of a stride-``stride`` map of a ``size`` px input: ceil, as padded convolutions give."""
    return math.ceil(size / stride)


def random_crop(arrays: list[np.ndarray], crop_size: int, fills: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """One random square crop of several (H, W, ...) arrays at the same place, as both authors
    crop (psa tool/imutils.py ``RandomCrop``, irn misc/imutils.py ``random_crop``): a side
    longer than ``crop_size`` is cut at a random offset, a shorter one is placed at a random
    offset in a ``crop_size`` container filled with ``fills[i]`` (0 for a normalised image: its
    mean colour; 255 for a label map; 0 for PSA's score stacks, read later as "no score")."""
    h, w = arrays[0].shape[:2]
    ch, cw = min(crop_size, h), min(crop_size, w)

    def place(space: int) -> tuple[int, int]:  # (container offset, image offset)
        return (0, int(rng.integers(space + 1))) if space > 0 else (int(rng.integers(-space + 1)), 0)

    cont_left, img_left = place(w - crop_size)
    cont_top, img_top = place(h - crop_size)
    out = []
    for a, fill in zip(arrays, fills):
        container = np.full((crop_size, crop_size, *a.shape[2:]), fill, dtype=a.dtype)
        container[cont_top: cont_top + ch, cont_left: cont_left + cw] = a[img_top: img_top + ch, img_left: img_left + cw]
        out.append(container)
    return out
