"""A run's segmentation network before training: built from its segnet component with a seeded
initialisation, and keyed by everything that determines its trained weights (the cache key).
Shared by the single-network run and STC's steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from wssbench.errors import OfflineError
from wssbench.runtime.distributed import World
from wssbench.seed.classifier import compute_key
from wssbench.segmentation.config import SegmentConfig
from wssbench.segmentation.train import SegModel, recipe_dict
from wssbench.storage.cache import file_digest, fingerprint

NETWORK_VERSION = 2  # 2: LargeFOV drops single units (Caffe's dropout), not whole channels


def build_model(config: SegmentConfig, parts: Any) -> SegModel:
    """The untrained network, its random initialisation drawn from the recipe's seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.recipe.seed)
        try:
            net = parts.segnet.build(parts.dataset.num_classes, weights=config.weights)
        except OfflineError as e:
            if not config.preset:
                raise
            encoder = config.options_for("segnet").get("encoder", "its encoder")
            raise OfflineError(
                f"--preset {config.preset} starts from ImageNet weights of '{encoder}', which cannot be downloaded here: "
                f"pass --weights FILE (a local checkpoint of it), or --backbone MODEL --no-pretrained (recorded as deviations)"
            ) from e
    return SegModel(net, parts.segnet.mean, parts.segnet.std)


def network_key(config: SegmentConfig, parts: Any, train_ids: list[str], world: World) -> dict:
    """Everything that determines the trained network's weights."""
    masks = None
    if parts.masks is not None:
        masks = fingerprint([[i, file_digest(parts.masks.path(i))] for i in train_ids])
    component = {kind: config.options_for(kind) for kind in ("dataset", "segnet", "objective")}
    return {
        "version": NETWORK_VERSION,
        "dataset": config.dataset,
        "data": [str(Path(parts.dataset.root).resolve()), len(train_ids), train_ids[:5], train_ids[-5:]],
        "split": config.train_split,
        "segnet": config.segnet,
        "objective": config.objective,
        "options": component,
        "masks": masks,
        "weights": file_digest(config.weights) if config.weights else None,
        "recipe": recipe_dict(config.recipe),
        "world_size": world.size,
        **compute_key(config),
    }
