"""The optimiser both trainers share (the classifier's and the segmentation networks'): SGD with
momentum, Caffe's solver knobs, one step of it with gradient accumulation and mixed precision.

A recipe (:class:`~wssbench.classifier.training.TrainRecipe`,
:class:`~wssbench.segmentation.config.SegRecipe`) is a :class:`Solver`: besides its lr, momentum
and weight decay it may say

- ``iterations``: the number of optimiser steps (the released Caffe solvers count iterations),
  instead of epochs;
- ``iter_size``: batches whose gradients are summed per step (Caffe's ``iter_size``: MIL-FCN
  accumulates 20 single images);
- ``lr_policy``: ``poly`` (``base * (1 - step/total)^0.9``, DeepLab v2 and later WSSS work),
  ``step`` (``base * lr_gamma^(step // lr_step)``, Caffe's ``step``) or ``fixed``;
- ``bias_lr_mult`` and ``bias_decay``: Caffe's per-blob ``lr_mult: 2`` and ``decay_mult: 0`` on
  biases (the released VGG/DeepLab prototxts); a new head's biases learn
  ``head_lr_mult * bias_lr_mult`` times faster (EM-Adapt's classifier: 10x weights, 20x bias).

At their defaults these add nothing (poly, one batch per step, biases as weights), and
:func:`solver_key` leaves them out of cache keys, so that networks trained before they existed
are found again.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable

import torch

from wssbench.errors import UsageError

LR_POLICIES = ("poly", "step", "fixed")
POLY_POWER = 0.9


@dataclass(frozen=True)
class Solver:
    """Caffe-style solver settings shared by both recipes (module docstring)."""

    iterations: int | None = None  # optimiser steps in all; None: epochs x batches per epoch / iter_size
    iter_size: int = 1  # batches accumulated per optimiser step
    lr_policy: str = "poly"  # poly, step or fixed
    lr_step: int = 0  # steps between decays of the step policy
    lr_gamma: float = 0.1  # the step policy's factor
    bias_lr_mult: float = 1.0  # biases learn this much faster than weights
    bias_decay: bool = True  # weight decay on biases too

    def check_solver(self) -> None:
        if self.iterations is not None and self.iterations < 1:
            raise UsageError(f"--iterations: expected at least 1, got {self.iterations}")
        if self.iter_size < 1:
            raise UsageError(f"--iter-size: expected at least 1, got {self.iter_size}")
        if self.lr_policy not in LR_POLICIES:
            raise UsageError(f"--lr-policy: expected one of {', '.join(LR_POLICIES)}, got '{self.lr_policy}'")
        if self.lr_policy == "step" and self.lr_step < 1:
            raise UsageError("--lr-step: the step policy needs the steps between decays (at least 1)")
        if not 0 < self.lr_gamma <= 1 or self.bias_lr_mult <= 0:
            raise UsageError("lr_gamma must be in (0, 1] and bias_lr_mult positive")


SOLVER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Solver)}


def solver_key(recipe: Any) -> dict:
    """The recipe as a cache key holds it: solver settings at their defaults left out."""
    data = dataclasses.asdict(recipe)
    return {k: v for k, v in data.items() if not (k in SOLVER_DEFAULTS and v == SOLVER_DEFAULTS[k])}


def total_steps(recipe: Any, batches_per_epoch: int) -> tuple[int, int]:
    """(optimiser steps, epochs over the data) for ``recipe``: its ``iterations``, or its
    ``epochs`` (each epoch ``batches_per_epoch // iter_size`` steps)."""
    if recipe.iterations is not None:
        batches = recipe.iterations * recipe.iter_size
        return recipe.iterations, max(1, math.ceil(batches / batches_per_epoch))
    return max(1, recipe.epochs * batches_per_epoch // recipe.iter_size), recipe.epochs


def param_groups(body: Iterable[tuple[str, torch.nn.Parameter]], head: Iterable[tuple[str, torch.nn.Parameter]],
                 recipe: Any) -> list[dict]:
    """SGD parameter groups: the pretrained body at ``lr``, the new head at ``lr * head_lr_mult``;
    with Caffe's bias settings (not the defaults) biases in groups of their own, at
    ``bias_lr_mult`` times their part's rate and without weight decay unless ``bias_decay``."""
    split_biases = recipe.bias_lr_mult != 1.0 or not recipe.bias_decay
    groups = []
    for params, mult in ((list(body), 1.0), (list(head), recipe.head_lr_mult)):
        params = [(n, p) for n, p in params if p.requires_grad]
        if not split_biases:
            if params:
                groups.append({"params": [p for _, p in params], "lr": recipe.lr * mult, "weight_decay": recipe.weight_decay})
            continue
        weights = [p for n, p in params if not n.endswith("bias")]
        biases = [p for n, p in params if n.endswith("bias")]
        if weights:
            groups.append({"params": weights, "lr": recipe.lr * mult, "weight_decay": recipe.weight_decay})
        if biases:
            groups.append({"params": biases, "lr": recipe.lr * mult * recipe.bias_lr_mult,
                           "weight_decay": recipe.weight_decay if recipe.bias_decay else 0.0})
    return groups


def sgd(groups: list[dict], recipe: Any) -> torch.optim.SGD:
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def lr_factor(recipe: Any, step: int, total: int) -> float:
    """The learning rate at optimiser step ``step`` of ``total``, as a factor of the base rate."""
    if recipe.lr_policy == "poly":
        return (1 - step / total) ** POLY_POWER
    if recipe.lr_policy == "step":
        return recipe.lr_gamma ** (step // recipe.lr_step)
    return 1.0


def backward(scaler: Any, loss: torch.Tensor, recipe: Any) -> None:
    """One batch's gradients, added to the step's (a mean over the ``iter_size`` batches)."""
    scaler.scale(loss / recipe.iter_size if recipe.iter_size > 1 else loss).backward()


def step(optimizer: torch.optim.Optimizer, scaler: Any, base_lrs: list[float], recipe: Any, step: int, total: int) -> None:
    """One optimiser step at the scheduled rate for ``step`` (the accumulated gradients), through
    the AMP grad scaler (a pass-through at fp32/bf16); the gradients are then cleared."""
    factor = lr_factor(recipe, step, total)
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
