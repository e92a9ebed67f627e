"""Backbone provider ``timm``: any timm model name as a fully convolutional feature extractor."""

from __future__ import annotations

import difflib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import wssbench
from wssbench.errors import DataError, OfflineError, UsageError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class TimmBackbones:
    """Any timm model (timm.list_models()), e.g. resnet18, resnet50, vgg16; ResNets dilated to stride 16."""

    name = "timm"
    output_stride: int = 16  # 8 or 16 where the model supports dilation (ResNet family), else its own

    def build(self, model_name: str, pretrained: bool = False, weights: str | None = None) -> tuple[nn.Module, dict]:
        import timm

        if not timm.is_model(model_name):
            close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
            raise UsageError(f"unknown timm model '{model_name}'{hint}")
        kwargs: dict = {"num_classes": 0, "global_pool": ""}
        if weights is not None:
            if not Path(weights).is_file():
                raise DataError(f"{weights}: weights file not found")
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
        if pretrained and weights is None and not _hub_reachable():
            raise OfflineError(
                f"cannot download pretrained weights for timm model '{model_name}' (no network?); "
                f"pass --weights FILE with a local checkpoint instead"
            )
        model = self._create(model_name, pretrained or weights is not None, kwargs)
        cfg = model.pretrained_cfg
        return model, {"mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))), "std": tuple(cfg.get("std", (0.229, 0.224, 0.225)))}

    def _create(self, model_name: str, pretrained: bool, kwargs: dict) -> nn.Module:
        import timm

        try:
            try:
                return timm.create_model(model_name, pretrained=pretrained, output_stride=self.output_stride, **kwargs)
            except (TypeError, AssertionError, ValueError):
                # the architecture has no dilated variant (VGG, ViT, ...): keep its own stride
                return timm.create_model(model_name, pretrained=pretrained, **kwargs)
        except (OSError, ConnectionError, RuntimeError) as e:
            if not pretrained or "pretrained_cfg_overlay" in kwargs and not _is_network_error(e):
                raise DataError(f"cannot load weights for timm model '{model_name}': {e}") from e
            raise OfflineError(
                f"cannot download pretrained weights for timm model '{model_name}' (no network?); "
                f"pass --weights FILE with a local checkpoint instead"
            ) from e


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick connection probe, so that offline use fails at once instead of after retries."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _is_network_error(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(w in text for w in ("connection", "network", "resolve", "offline", "timed out", "urlopen", "hub"))


@wssbench.hookimpl
def register_backbones(register):
    register(TimmBackbones)
