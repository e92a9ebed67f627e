"""ImageNet-trained networks with their own classifier: explained as they are, no training.

``imagenet_classifier(model_name, weights, head)`` builds a :class:`Classifier` from a timm
architecture and a checkpoint (any layout :mod:`wssbench.classifier.weights` reads):

* ``head="imagenet"``: the network's ``Linear(F, 1000)`` classifier becomes the Classifier's
  1x1 head with bias (weights reshaped), so the score maps before pooling are the FCN maps of
  the 1,000 ImageNet classes and ``gap`` pooling gives the network's own logits exactly
  (checked when the model is built: an architecture with something between its pooled
  features and its classifier, such as ConvNeXt's norm, is refused). The network keeps its
  own output stride (32) unless ``output_stride`` asks for dilation.
* ``head="voc"``: :class:`VocClassifier`, PASCAL VOC's 20 classes from those 1,000 through
  the WordNet-derived mapping in ``data/imagenet_voc.json`` (see ``voc_groups``).

Both carry ``class_names``, ``trained = True`` (nothing to train) and ``probabilities(scores)``
(softmax over the ImageNet logits; the VOC class's share of that softmax for the VOC head).
The input normalisation is the architecture's own, from timm's ``pretrained_cfg`` (mean and
std 0.5 for ``tf_efficientnet_lite*``).

``input_size``: the network sees its input resized to ``N x N`` (``"auto"``: the architecture's
own ``pretrained_cfg`` input size, 224 for Lite0; ``"native"``: the image as it is). A forward
pre-hook of the network (:class:`ResizeInput`) does it inside the graph, so every stage gets it
(scores, score maps, layer taps, Grad-CAM) and input gradients (``bp``, ``gbp``) come back at
the image's own size through the resize's backward. Why: these networks were trained on
224 px crops (RandomResizedCrop, aspect ratio 3/4 to 4/3, so a whole VOC photo squashed to
224 x 224 is within what they saw); at VOC's own ~500 x 375 their softmax goes flat (Lite0
gives ``airliner`` 0.02 on a VOC aeroplane photo, 0.77 at 224 x 224), and the VOC head, which
sums probability over members, then picks ``dog`` (118 breeds) for most images: on voc-mini
val the top VOC class is a true one for 7 of 43 images at native size, 35 of 43 at 224 x 224
(``benchmarks/README.md``). ``dcsm`` resizes its canvas per scale: give it ``"native"``.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from wssbench.classifier.model import POOLINGS, Classifier
from wssbench.classifier.weights import load_weights
from wssbench.data.voc2012 import CLASSES as VOC2012_CLASSES
from wssbench.errors import OfflineError, UsageError

HEADS = ("imagenet", "voc")
NO_MEMBER_SCORE = -20.0  # log-odds of a VOC class without ImageNet members: sigmoid ~ 2e-9, never detected
VOC_CLASSES = VOC2012_CLASSES[1:]  # the 20 foreground classes, in VOC label order


@lru_cache(maxsize=1)
def imagenet_descriptions() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class descriptions in output order ("tabby, tabby cat", ...), from timm."""
    info = timm.data.ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(1000))


def imagenet_names() -> tuple[str, ...]:
    """Short names: the first synonym of each description ("tabby", "Egyptian cat", ...)."""
    return tuple(d.split(",")[0].strip() for d in imagenet_descriptions())


def imagenet_index(name: str) -> int:
    """An ImageNet class by index, full description or any of its synonyms (case-insensitive).

    UsageError for an unknown or ambiguous name ("crane" is a bird and a machine: give the index).
    """
    name = name.strip()
    if name.isdigit() and int(name) < 1000:
        return int(name)
    wanted = name.lower()
    exact = [i for i, d in enumerate(imagenet_descriptions()) if d.lower() == wanted]
    hits = exact or [i for i, d in enumerate(imagenet_descriptions()) if wanted in (s.strip().lower() for s in d.split(","))]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UsageError(f"ImageNet class '{name}' is ambiguous: " + "; ".join(f"{i} ({imagenet_descriptions()[i]})" for i in hits) + "; give the index")

    close = difflib.get_close_matches(name, imagenet_names(), n=3)
    raise UsageError(f"unknown ImageNet class '{name}'" + (f"; did you mean {', '.join(close)}?" if close else "; give a name or an index 0-999"))


@lru_cache(maxsize=1)
def voc_mapping() -> dict:
    """``imagenet_voc.json``: VOC class -> ImageNet members (index, wnid, name), and its provenance."""
    text = resources.files("wssbench.data").joinpath("imagenet_voc.json").read_text(encoding="utf-8")
    return json.loads(text)


def voc_groups() -> list[list[int]]:
    """Per VOC class (``VOC_CLASSES`` order), the ImageNet indices in its WordNet hyponym trees.

    Every ImageNet class under a VOC class's synsets: the 118 dog breeds 151-268 -> dog,
    airliner 404 and warplane 895 -> aeroplane, ... WordNet files ``person`` over three roles
    only (ballplayer 981, groom 982, scuba diver 983), weak evidence for people in general;
    a class with no member at all would score ``NO_MEMBER_SCORE`` everywhere.
    """
    classes = voc_mapping()["classes"]
    return [[m["index"] for m in classes[c]] for c in VOC_CLASSES]


def class_log_odds(logits: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """ImageNet logits (B, 1000, ...) -> per group log-odds (B, G, ...) of the group's softmax share.

    ``members`` (G, 1000) bool. For group g with members M: ``LSE_{i in M} z_i - LSE_{i not in
    M} z_i`` = ``log(p / (1 - p))`` with ``p`` the softmax probability summed over M, so its
    sigmoid is that probability. Log-sum-exp and not max, because the softmax is what the
    network was trained with: 118 dog breeds at 1 % each are a confident dog. A group with no
    member gets ``NO_MEMBER_SCORE``.
    """
    out = []
    for row in members:  # G steps of (B, 1000, ...): never a (B, G, 1000, ...) tensor
        if not bool(row.any()):
            out.append(torch.full_like(logits[:, 0], NO_MEMBER_SCORE))
            continue
        mask = row.view(1, -1, *([1] * (logits.dim() - 2)))
        inside = torch.logsumexp(logits.masked_fill(~mask, -torch.inf), dim=1)
        outside = torch.logsumexp(logits.masked_fill(mask, -torch.inf), dim=1)
        out.append(inside - outside)
    return torch.stack(out, dim=1)


class ImageNetClassifier(Classifier):
    """The network with its own ImageNet classifier as a biased 1x1 head; ``gap`` scores = its logits."""

    trained = True

    @property
    def class_names(self) -> tuple[str, ...]:
        return imagenet_names()

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.softmax(dim=1)


class VocHead(nn.Module):
    """ImageNet 1x1 head, then per VOC class the log-odds of its members (``class_log_odds``).

    Not a linear map: ``weight`` raises a UsageError, so that CAM (which reads the head's
    weights) says so instead of using the wrong rows; Grad-CAM and ``fcn`` work.
    """

    def __init__(self, imagenet: nn.Conv2d, groups: list[list[int]]):
        super().__init__()
        self.imagenet = imagenet
        members = torch.zeros(len(groups), imagenet.out_channels, dtype=torch.bool)
        for g, indices in enumerate(groups):
            members[g, indices] = True
        self.register_buffer("members", members, persistent=False)
        self.out_channels = len(groups)

    @property
    def weight(self) -> torch.Tensor:
        raise UsageError("the ImageNet->VOC head is not linear (log-odds of ImageNet classes): use gradcam or fcn, not cam")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return class_log_odds(self.imagenet(features), self.members)  # (B, 20, h, w)


class VocClassifier(Classifier):
    """PASCAL VOC's 20 classes from an ImageNet network, no training.

    Score maps (B, 20, h, w): per position, ``class_log_odds`` of the ImageNet score maps.
    Scores (B, 20): ``class_log_odds`` of the network's own logits (the ImageNet score maps
    average-pooled first), so ``sigmoid(score)`` is the softmax probability the network gives
    the VOC class as a whole. These are not the pooled score maps (the log-odds is not linear);
    the ``pooling`` option does not apply.
    """

    trained = True
    class_names = VOC_CLASSES

    def imagenet_logits(self, features: torch.Tensor) -> torch.Tensor:
        return POOLINGS["gap"](self.head.imagenet(features), 0.0)  # (B, 1000)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return class_log_odds(self.imagenet_logits(self.features(images)), self.head.members)  # (B, 20)

    def forward_parts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.features(images)  # (B, F, h, w)
        maps = self.head(features)  # (B, 20, h, w)
        return features, maps, class_log_odds(self.imagenet_logits(features), self.head.members)

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(scores)


class ResizeInput:
    """Forward pre-hook: the module's input (B, 3, H, W) resized to (size, size), bilinear with
    antialiasing (PIL's and timm's eval resize filter when shrinking); an input of that size
    already passes unchanged, bit for bit. Differentiable: gradients reach the full-size input.
    A plain object (no closure), so a ``copy.deepcopy`` of the model keeps it."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, module: nn.Module, args: tuple) -> tuple | None:
        x = args[0]
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return None
        return (F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True), *args[1:])

    def __repr__(self) -> str:
        return f"ResizeInput({self.size})"


def resolve_input_size(input_size: int | str, own: int) -> int | None:
    """``"auto"`` -> ``own`` (the architecture's ``pretrained_cfg`` input size); ``"native"`` ->
    None (no resize); an integer (or its string) >= 32 -> itself. UsageError otherwise."""
    text = str(input_size).strip().lower()
    if text == "auto":
        return own
    if text == "native":
        return None
    if text.isdigit() and int(text) >= 32:
        return int(text)
    raise UsageError(f"input_size must be 'auto', 'native' or a size in pixels >= 32, got '{input_size}'")


def _create(model_name: str, output_stride: int, pretrained: bool = False) -> nn.Module:
    if not timm.is_model(model_name):

        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        raise UsageError(f"unknown timm model '{model_name}'" + (f"; did you mean {', '.join(close)}?" if close else ""))
    kwargs = {} if output_stride == 32 else {"output_stride": output_stride}
    try:
        return timm.create_model(model_name, pretrained=pretrained, num_classes=1000, **kwargs)
    except (TypeError, AssertionError, ValueError) as e:
        raise UsageError(f"timm model '{model_name}' cannot run at output stride {output_stride}: {e}") from None
    except (OSError, RuntimeError) as e:  # only a download can fail this way
        raise OfflineError(
            f"cannot download ImageNet weights for timm model '{model_name}' ({type(e).__name__}); "
            f"pass --weights FILE with a local checkpoint instead"
        ) from None


def imagenet_classifier(
    model_name: str, weights: str | Path | None, head: str = "imagenet", output_stride: int = 32, pretrained: bool = False,
    input_size: int | str = "auto",
) -> ImageNetClassifier | VocClassifier:
    """A timm ImageNet network with its own classifier, in eval mode, on the CPU (see the module docstring).

    ``weights``: a local checkpoint (any layout ``load_weights`` matches); without one,
    ``pretrained=True`` downloads timm's (OfflineError when that cannot be done).
    ``input_size``: what the network sees (``"auto"``, ``"native"`` or N; see :class:`ResizeInput`);
    the resolved size is ``model.input_size`` (None: native).
    """
    if head not in HEADS:
        raise UsageError(f"unknown head '{head}'; available: {', '.join(HEADS)}")
    resolve_input_size(input_size, 224)  # a bad value fails before the network is built
    if weights is None and not pretrained:
        raise UsageError(f"an ImageNet classifier needs its weights: pass --weights FILE for '{model_name}'")
    net = _create(model_name, output_stride, pretrained=weights is None)
    if weights is not None:
        load_weights(net, weights)
    net.eval()
    fc = net.get_classifier()
    if not isinstance(fc, nn.Linear) or fc.out_features != 1000:
        raise UsageError(f"timm model '{model_name}' has no Linear(F, 1000) ImageNet classifier ({type(fc).__name__})")
    probe = torch.linspace(-1, 1, 3 * 96 * 96).view(1, 3, 96, 96)  # any image will do
    with torch.no_grad():
        reference = net(probe)  # (1, 1000)
    net.reset_classifier(0, "")  # now (B, F, h, w) feature maps
    cfg = net.pretrained_cfg
    model = ImageNetClassifier(
        net, fc.in_features, 1000, "gap", mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))), bias=fc.bias is not None,
    )
    with torch.no_grad():
        model.head.weight.copy_(fc.weight[:, :, None, None])
        if fc.bias is not None:
            model.head.bias.copy_(fc.bias)
        model.eval()
        out = model.features(probe)
        if out.dim() != 4 or not torch.allclose(model(probe), reference, atol=1e-4, rtol=1e-4):
            raise UsageError(
                f"timm model '{model_name}': its classifier is not a linear map of average-pooled feature maps, "
                f"so its ImageNet classes have no score maps"
            )
    model.input_size = resolve_input_size(input_size, int(cfg.get("input_size", (3, 224, 224))[-1]))
    if model.input_size is not None:
        net.register_forward_pre_hook(ResizeInput(model.input_size))
    return voc_classifier(model) if head == "voc" else model


def voc_classifier(model: ImageNetClassifier) -> VocClassifier:
    """The VOC view of an ImageNet classifier; shares its modules (and so its weights and device)."""
    voc = VocClassifier(nn.Identity(), 1, 1, "gap", mean=tuple(model.mean.flatten().tolist()), std=tuple(model.std.flatten().tolist()))
    voc.features = model.features  # with its ResizeInput hook, if any
    voc.head = VocHead(model.head, voc_groups())
    voc.input_size = getattr(model, "input_size", None)
    return voc.to(model.mean.device).train(model.training)
