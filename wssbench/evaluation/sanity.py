"""The model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018, sec. 3.1, "cascading randomization").

The weights of the model are re-initialised layer by layer from the top (the class head
first, then ever deeper blocks of the backbone), cumulatively, and after each step the
saliency maps are computed again on the same images and compared with the maps of the trained
model by Spearman rank correlation, with and without absolute value (the paper reports both).
A method whose maps depend on what the model learned decorrelates quickly; guided
back-propagation is the paper's example of one that does not (its maps stay close to an
edge detector's whatever the weights).

Choices (the paper's code randomised Inception v3 blocks; Quantus's ``MPRT`` randomises every
module that has ``reset_parameters``):

* The cascade's units: the model's ``head``, then the children of ``model.features`` from the
  last to the first, containers (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``)
  opened up, parameter-free modules skipped: for a timm ResNet the residual blocks
  ``layer4.1``, ``layer4.0``, ... then the stem; for a timm VGG each convolution. These are
  the paper's "layers" (its Inception v3 cascade names blocks: ``mixed_7c``, ...).
* Randomising a unit re-initialises every module in it that has ``reset_parameters`` with its
  own default initialisation (as Quantus does), from a generator seeded per step; batch-norm
  layers get weight 1, bias 0 and fresh running statistics.
* The model is deep-copied once and the copy is randomised; the model passed in is never
  touched.
* Spearman's rho over all pixels of a map (``scipy.stats.spearmanr``), per image and class;
  where either map is constant (rho undefined) it counts as 0, no rank agreement.
* The summary is the mean over the cascade steps of the mean rho of the absolute maps
  (``rho_mean``: high = the maps ignore the weights, the check fails), and the rho after
  the full cascade (``rho_final``).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from scipy import stats
from torch import nn

SaliencyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _blocks(module: nn.Module, prefix: str) -> Iterator[str]:
    for name, child in module.named_children():
        if isinstance(child, CONTAINERS):
            yield from _blocks(child, f"{prefix}{name}.")
        elif any(True for _ in child.parameters()):
            yield f"{prefix}{name}"


def cascade_units(model: nn.Module) -> list[str]:
    """Names of the modules randomised one after the other, top (``head``) first."""
    return ["head", *reversed(list(_blocks(model.features, "features.")))]


def randomise(module: nn.Module, seed: int) -> None:
    """Re-initialise, in place, every submodule of ``module`` that has ``reset_parameters``."""
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for sub in module.modules():
            if callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps over all their pixels; 0 when either is constant."""
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a, b).statistic)


@dataclass
class SanityResult:
    """Rank correlations per cascade step (rows) and map (columns): of |maps| and of the maps."""

    layers: list[str]
    rank_abs: np.ndarray  # (L, M)
    rank: np.ndarray  # (L, M)

    def table(self) -> list[dict]:
        """One row per cascade step: the layer randomised last and the mean correlations."""
        return [
            {"layer": layer, "rank_abs": float(a.mean()), "rank": float(s.mean())}
            for layer, a, s in zip(self.layers, self.rank_abs, self.rank)
        ]

    def summary(self) -> dict:
        per_step = self.rank_abs.mean(axis=1)  # (L,)
        return {"rho_mean": float(per_step.mean()), "rho_final": float(per_step[-1])}

    @staticmethod
    def concatenate(results: list[SanityResult]) -> SanityResult:
        return SanityResult(
            results[0].layers,
            np.concatenate([r.rank_abs for r in results], axis=1),
            np.concatenate([r.rank for r in results], axis=1),
        )


def sanity_check(model: nn.Module, method: SaliencyFn, images: torch.Tensor, classes: torch.Tensor,
                 seed: int = 0, layers: list[str] | None = None) -> SanityResult:
    """Cascading randomisation of a copy of ``model``: maps of ``method`` after each step vs the original.

    ``images`` (B, 3, H, W), ``classes`` (B, K) with -1 padding (padded entries are skipped);
    ``layers`` defaults to :func:`cascade_units`. Step ``i`` randomises ``layers[: i + 1]``.
    """
    layers = cascade_units(model) if layers is None else layers
    keep = (classes >= 0).cpu().numpy()  # (B, K)
    original = method(model, images, classes).detach().float().cpu().numpy()[keep]  # (M, H, W)
    randomised = copy.deepcopy(model)
    rank_abs = np.zeros((len(layers), len(original)))
    rank = np.zeros_like(rank_abs)
    for step, name in enumerate(layers):
        randomise(randomised.get_submodule(name), seed + step)
        maps = method(randomised, images, classes).detach().float().cpu().numpy()[keep]  # (M, H, W)
        for m, (before, after) in enumerate(zip(original, maps)):
            rank_abs[step, m] = spearman(np.abs(before), np.abs(after))
            rank[step, m] = spearman(before, after)
    return SanityResult(list(layers), rank_abs, rank)
