"""Saliency ``objectness`` (a class-agnostic objectness map, the poster's FCN+MCG) and refiner
``proposals`` (MIL-ILP's smoothing prior on object proposals, MIL-bb / MIL-seg).

Both take an objectness method by name (``method``: ``ss-boxes``, ``ss-segments`` or a third
party's, see ``register_objectness``) and cache its proposals per image content
(:func:`wssbench.methods.objectness.cached`), so that a bench tuning a threshold computes them once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

import wssbench
from wssbench.methods.objectness import cached, objectness_map, smooth


def parse_proposer(text: str) -> dict[str, str]:
    """``"max_proposals=500,scale=200"`` -> ``{"max_proposals": "500", "scale": "200"}``."""
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        if not (eq and key.strip()):
            raise ValueError(f"proposer: expected KEY=VALUE[,KEY=VALUE...], e.g. max_proposals=500; got '{item}'")
        options[key.strip()] = value.strip()
    return options


@dataclass(frozen=True)
class _UsesObjectness:
    """``method``: the objectness method (``register_objectness``), looked up in the registry
    that creates this component, so a third party's method is found wherever its plugin is
    registered; ``proposer``: that method's own options, ``KEY=VALUE`` pairs separated by commas
    (``-O proposals.proposer=max_proposals=500,scale=200``; ``wssbench list objectness --options``)."""

    method: str = "ss-segments"
    proposer: str = ""
    cache: bool = True  # proposals cached under $WSSBENCH_HOME/proposals/

    def __post_init__(self) -> None:
        from wssbench.host.registry import creating_registry

        registry = creating_registry()  # unknown names and options: UsageError naming those that exist
        object.__setattr__(self, "_proposer", registry.create("objectness", self.method, **parse_proposer(self.proposer)))

    def proposals(self, image: np.ndarray) -> Any:
        proposer = self._proposer
        if not self.cache:
            return proposer(image)
        options = dataclasses.asdict(proposer) if dataclasses.is_dataclass(proposer) else {}
        return cached(proposer, self.method, options, image)


@dataclass(frozen=True)
class ObjectnessSaliency(_UsesObjectness):
    """Objectness from object proposals as every requested class's map: class-agnostic (the poster's FCN+MCG).

    The map is :func:`wssbench.methods.objectness.objectness_map` of the proposals of ``method``
    (default ``ss-segments``, standing in for MCG): the proposal mass covering each pixel,
    divided by its maximum, in [0, 1]; the same for every requested class of an image (zeros
    for padding). The model is not used except for its ``mean`` and ``std``, which turn the
    normalised images back into the uint8 pixels the proposals are computed on.
    """

    name = "objectness"

    def __call__(self, model, images, classes):
        import torch

        pixels = ((images.detach().float() * model.std + model.mean).clamp(0, 1) * 255).round()
        pixels = pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
        wanted = classes.cpu() >= 0  # (B, K)
        maps = torch.zeros(*classes.shape, *images.shape[-2:])  # (B, K, H, W)
        for b, image in enumerate(pixels):
            if wanted[b].any():
                maps[b, wanted[b]] = torch.from_numpy(objectness_map(self.proposals(image)))  # (H, W)
        return maps.to(images.device)


@dataclass(frozen=True)
class ProposalSmoothing(_UsesObjectness):
    """MIL-ILP's smoothing prior on object proposals (SP-bb, SP-seg): class probabilities averaged over the proposals covering each pixel, weighted by objectness.

    :func:`wssbench.methods.objectness.smooth` with the proposals of ``method`` (``ss-boxes`` for
    MIL-bb, ``ss-segments`` for MIL-seg): each pixel takes the weighted mean of the mean
    probabilities of the proposals covering it (every row, background included), then the
    foreground rows are multiplied by the objectness ``O(x) ** power`` and renormalised, so
    that background wins where little proposal mass lies (``power = 0``: smoothing alone).
    """

    name = "proposals"
    method: str = "ss-boxes"
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.power < 0:
            raise ValueError(f"power must be non-negative, got {self.power}")
        super().__post_init__()

    def __call__(self, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return smooth(probs, self.proposals(image), self.power)  # (K+1, H, W)


@wssbench.hookimpl
def register_saliency(register):
    register(ObjectnessSaliency)


@wssbench.hookimpl
def register_refiners(register):
    register(ProposalSmoothing)
