"""Backbone providers: ``timm`` (any timm model as a fully convolutional feature extractor) and
``imagenet`` (a timm ImageNet network with its own classifier, no training).

``--weights FILE`` loads a local checkpoint of any key layout (:mod:`wssbench.classifier.weights`) and the
input is normalised with the architecture's own ``pretrained_cfg`` mean and std.
"""

from __future__ import annotations

import difflib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import wssbench
from wssbench.errors import DataError, OfflineError, UsageError

if TYPE_CHECKING:  # torch and timm are imported where they are used, so listing the plugins stays fast
    from torch import nn

    from wssbench.classifier.model import Classifier

HEADS = ("imagenet", "voc")  # wssbench.classifier.imagenet.HEADS, spelled here without importing torch


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
        if weights is not None and not Path(weights).is_file():
            raise DataError(f"{weights}: weights file not found")
        if pretrained and weights is None and not _hub_reachable():
            raise OfflineError(
                f"cannot download pretrained weights for timm model '{model_name}' (no network?); "
                f"pass --weights FILE with a local checkpoint instead"
            )
        model = self._create(model_name, pretrained and weights is None, kwargs)
        if weights is not None:
            from wssbench.classifier.weights import load_weights

            load_weights(model, weights)  # a classifier in the checkpoint is left out
        return model, pretrained_normalisation(model)

    def _create(self, model_name: str, pretrained: bool, kwargs: dict) -> nn.Module:
        import timm

        try:
            try:
                return timm.create_model(model_name, pretrained=pretrained, output_stride=self.output_stride, **kwargs)
            except (TypeError, AssertionError, ValueError):
                # the architecture has no dilated variant (VGG, ViT, ...): keep its own stride
                return timm.create_model(model_name, pretrained=pretrained, **kwargs)
        except (OSError, ConnectionError, RuntimeError) as e:
            if not pretrained or not _is_network_error(e):
                raise DataError(f"cannot load weights for timm model '{model_name}': {e}") from e
            raise OfflineError(
                f"cannot download pretrained weights for timm model '{model_name}' (no network?); "
                f"pass --weights FILE with a local checkpoint instead"
            ) from e


def pretrained_normalisation(model: nn.Module) -> dict:
    """The mean and std the architecture's ImageNet weights expect (timm's ``pretrained_cfg``)."""
    cfg = model.pretrained_cfg
    return {"mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))), "std": tuple(cfg.get("std", (0.229, 0.224, 0.225)))}


@dataclass(frozen=True)
class ImageNetBackbones:
    """A timm ImageNet network with its own classifier (no training): head=imagenet (1,000 classes) or voc (20)."""

    name = "imagenet"
    provides_classifier = True  # the pipeline calls classifier() and skips training (model.trained)
    head: str = "voc"  # "imagenet": the 1,000 ImageNet classes; "voc": VOC's 20 through the WordNet mapping
    output_stride: int = 32  # the network's own; 16 or 8 dilates it (timm), its logits then differ
    input_size: str = "auto"  # what the network sees: N x N ("auto": its pretrained input size, 224 for Lite0) or "native"

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise UsageError(f"backbone imagenet: head must be one of {', '.join(HEADS)}, got '{self.head}'")
        if self.output_stride not in (8, 16, 32):
            raise UsageError(f"backbone imagenet: output_stride must be 8, 16 or 32, got {self.output_stride}")
        size = str(self.input_size).strip().lower()
        if size not in ("auto", "native") and not (size.isdigit() and int(size) >= 32):
            raise UsageError(f"backbone imagenet: input_size must be 'auto', 'native' or a size in pixels >= 32, got '{self.input_size}'")

    def classifier(self, model_name: str, pretrained: bool = False, weights: str | None = None) -> Classifier:
        from wssbench.classifier.imagenet import imagenet_classifier

        return imagenet_classifier(
            model_name, weights, head=self.head, output_stride=self.output_stride, pretrained=pretrained, input_size=self.input_size,
        )

    def build(self, model_name: str, pretrained: bool = False, weights: str | None = None) -> tuple[nn.Module, dict]:
        """The feature extractor alone, for a pipeline that trains its own head on it."""
        model = self.classifier(model_name, pretrained, weights)
        return model.features, {"mean": tuple(model.mean.flatten().tolist()), "std": tuple(model.std.flatten().tolist())}


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
    register(ImageNetBackbones)
