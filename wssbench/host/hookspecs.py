"""Every hook a wssbench plugin can implement, one per component kind.

Each hook receives a ``register`` callback owned by the host (llm's pattern)::

    register(factory, name=None, description=None)

``factory`` is called with the component's options as keyword arguments and returns the
component. The usual factory is a frozen dataclass whose fields are its options, so
``wssbench.create("fusion", "threshold", bg_threshold=0.3)`` and
``-O fusion.bg_threshold=0.3`` on the command line validate and convert the same way.
``name`` defaults to ``factory.name`` and ``description`` to the first line of its docstring.
A name registered twice (by any plugins) is a clash: using it is an error naming both plugins.

Plugins are modules or objects with functions marked ``@wssbench.hookimpl``, shipped in an
entry point of the group ``wssbench``. The built-ins in ``plugins/`` register the same way.

Conventions shared by the contracts below:

* ``model`` is a :class:`wssbench.classifier.model.Classifier`: ``model(images) -> scores (B, C)``,
  ``model.score_maps(images) -> (B, C, h, w)``; ``images`` are normalised ``(B, 3, H, W)``
  float tensors on the model's device.
* ``classes`` is an int64 tensor ``(B, K)`` of model output indices (0 .. C-1) per image;
  an entry < 0 is padding and its map is all zeros.
* Each kind's contract is also a ``typing.Protocol`` below (``Dataset``, ``SaliencyMethod``, ...;
  ``CONTRACTS`` maps a kind to its Protocol), so an editor shows it.
* ``labels`` (fusion and refinement) are dataset label values: 0 is background, a foreground
  class with model output index ``c`` has label ``c + 1``; 255 is "ignore".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pluggy

if TYPE_CHECKING:  # annotations only: importing torch here would slow ``wssbench --help``
    import numpy as np
    import torch
    from torch import nn

hookspec = pluggy.HookspecMarker("wssbench")
hookimpl = pluggy.HookimplMarker("wssbench")

Register = Callable[..., None]


# The contract of each component kind as a typing.Protocol: what the host calls and the capability
# attributes it reads, with their defaults (an attribute left out takes the default, so these are
# not runtime_checkable: isinstance would demand every optional attribute). A component need not
# inherit from them; they are for editors, type checkers and the contract tests (``capabilities``).


class Dataset(Protocol):
    """What ``register_datasets`` factories return (see :class:`wssbench.data.layout.SegmentationDataset`)."""

    name: str
    classes: tuple[str, ...]  # label names, background first
    # capabilities: check_files(ids) -> None; content_key() -> str; downloads: {NAME: fetch(root)}

    @property
    def num_classes(self) -> int: ...
    def prepare(self) -> None: ...
    def splits(self) -> list[str]: ...
    def check_split(self, split: str) -> None: ...
    def ids(self, split: str) -> list[str]: ...
    def load_image(self, image_id: str) -> np.ndarray: ...  # uint8 (H, W, 3)
    def load_mask(self, image_id: str) -> np.ndarray: ...  # uint8 (H, W), 255 ignore
    def image_labels(self, image_id: str) -> np.ndarray: ...  # bool (C,) over the foreground classes


class BackboneProvider(Protocol):
    """What ``register_backbones`` factories return."""

    def build(self, model_name: str, pretrained: bool, weights: Any) -> tuple[nn.Module, dict]: ...


class SaliencyMethod(Protocol):
    """What ``register_saliency`` factories return."""

    shares_forward: ClassVar[bool] = False  # True: also forward_spec(model) -> dict, from_trace(trace, classes)
    # capability: detect(model, images) -> (present (B, C) bool, evidence (B, C)), for --detect-by saliency

    def __call__(self, model: Any, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor: ...


class ClassMapProducer(Protocol):
    """What ``register_classmaps`` factories return."""

    needs_fit: ClassVar[bool] = False  # True: also fit(model, dataset, split, key, progress=None)
    uses_forward: ClassVar[bool] = False  # True: also from_forward(model, forward, classes)

    def __call__(self, model: Any, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor: ...


class ObjectnessMethod(Protocol):
    """What ``register_objectness`` factories return."""

    def __call__(self, image: np.ndarray) -> Any: ...  # BoxProposals or SegmentProposals


class FusionMethod(Protocol):
    """What ``register_fusion`` factories return."""

    needs_maps: ClassVar[bool] = True
    needs_scores: ClassVar[bool] = False  # True: called with scores=(K,)
    uses_background: ClassVar[bool] = False  # True: called with background=(H, W) | None, background_score

    def __call__(self, image: np.ndarray, labels: np.ndarray, class_maps: np.ndarray | None,
                 saliency_maps: np.ndarray | None, **extra: Any) -> np.ndarray: ...


class Refiner(Protocol):
    """What ``register_refiners`` factories return."""

    def __call__(self, image: np.ndarray, probs: np.ndarray) -> np.ndarray: ...


class PseudoMaskMethod(Protocol):
    """What ``register_pseudomasks`` factories return."""

    output_stride: ClassVar[int] = 16  # the stride its backbone is built with (dilated where the model can)
    code_over_paper: ClassVar[tuple[str, ...]] = ()  # where the released code departs from the paper and the method follows the code

    def fit(self, seeds: list[Any], backbone: nn.Module, norm: dict, device: str = "cpu", seed: int = 0) -> dict: ...

    def __call__(self, seed: Any) -> np.ndarray: ...


class SalientDetector(Protocol):
    """What ``register_salient`` factories return."""

    priors: ClassVar[tuple[dict, ...]] = ()  # {"mark", "what"}: what it learned from besides image labels

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


class Segnet(Protocol):
    """What ``register_segnets`` factories return."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def build(self, num_classes: int, weights: Any = None) -> nn.Module: ...


class Objective(Protocol):
    """What ``register_objectives`` factories return."""

    needs_masks: ClassVar[bool] = False

    def __call__(self, logits: torch.Tensor, batch: Any) -> torch.Tensor: ...


# kind (as the registry names it) -> its Protocol
CONTRACTS: dict[str, type] = {
    "dataset": Dataset, "backbone": BackboneProvider, "saliency": SaliencyMethod, "classmap": ClassMapProducer,
    "objectness": ObjectnessMethod, "fusion": FusionMethod, "refiner": Refiner, "pseudomask": PseudoMaskMethod,
    "salient": SalientDetector,
    "segnet": Segnet, "objective": Objective,
}


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets.

    A dataset factory takes ``root`` (a folder or ``None`` for its default) and its options
    and returns a :class:`wssbench.data.layout.SegmentationDataset`: ``classes`` (label names,
    background first), ``ids(split)``, ``load_image(id) -> uint8 (H, W, 3)``,
    ``load_mask(id) -> uint8 (H, W)`` with 255 = ignore, ``image_labels(id) -> bool (C,)``
    over the foreground classes, and ``prepare()`` which makes the data ready (generates it,
    or checks the layout) and raises :class:`wssbench.errors.DataError` when it cannot.

    Optional capabilities: ``check_files(ids)``, a cheap check that every id's files exist,
    called when a run starts so that missing data fails before training; ``content_key()``,
    what determines the data's content, for the classifier's cache key (else the split's ids,
    image labels and file sizes are used).
    """


@hookspec
def register_backbones(register: Register) -> None:
    """Register backbone providers.

    A provider factory takes its options and returns an object with
    ``build(model_name, pretrained, weights) -> (features, preprocess)``: ``features`` is an
    ``nn.Module`` mapping ``(B, 3, H, W)`` to feature maps ``(B, F, h, w)`` with a
    ``num_features`` attribute, ``preprocess`` a dict with ``mean`` and ``std`` (RGB, 0..1).
    On the command line a backbone is written ``PROVIDER:MODEL`` or just ``MODEL`` for the
    ``timm`` provider.
    """


@hookspec
def register_saliency(register: Register) -> None:
    """Register saliency methods.

    A saliency method is called as ``method(model, images, classes) -> maps (B, K, H, W)``:
    one class-specific saliency map per requested class, at the input resolution, raw (not
    normalised), float32, non-negative unless the method documents otherwise. The model is
    left exactly as it was (modules, hooks, ``requires_grad``, mode).

    A method that can work from the forward pass the pipeline shares between its stages
    declares ``shares_forward = True`` (absent or False: it runs its own forward passes, as
    ``dcsm`` does) and two methods: ``forward_spec(model) -> dict``, the keyword arguments of
    :func:`wssbench.methods.saliency.record` it needs (``rule``, ``layers``, ``at_input``,
    ``unsupported``), and ``from_trace(trace, classes) -> maps (B, K, H, W)``, the same maps as
    ``method(model, trace.images, classes)``, taken inside the ``record`` block from a
    :class:`wssbench.methods.saliency.Trace` recorded with that spec. The host takes the classifier's
    scores, score maps and features from the same pass. A method with its own class detection
    (DCSM's union over scales) offers ``detect(model, images) -> (present (B, C) bool,
    evidence (B, C))``, used with ``--detect-by saliency``. Back-propagation methods take the
    option ``signal``: ``pooled`` (the class score) or ``map`` (the sum of the class's score map).
    """


@hookspec
def register_classmaps(register: Register) -> None:
    """Register class-map producers.

    A class-map producer is called as ``producer(model, images, classes) -> maps (B, K, H, W)``:
    one map per requested class at the input resolution, float32 in [0, 1] (each map divided
    by its maximum, negatives clipped). A producer that must be fitted on training data first
    declares ``needs_fit = True`` and a method ``fit(model, dataset, split, key)``, called once
    per run before any map is asked for; ``key`` is a string identifying the trained classifier,
    so the producer can cache what it fits (under ``wssbench.storage.cache.cache_dir()``). ``fit`` may
    take a keyword ``progress``: it is then called ``progress(done, total)`` as the fit goes.

    A producer that can make its maps from the pipeline's shared forward pass declares a true
    ``uses_forward`` (an attribute or property) and ``from_forward(model, forward, classes) ->
    maps``, the same maps as ``producer(model, forward.images, classes)`` from
    ``forward.scores`` (B, C), ``forward.score_maps`` (B, C, h, w) and ``forward.features``
    (B, F, h, w) (see :mod:`wssbench.methods.forward`).
    """


@hookspec
def register_objectness(register: Register) -> None:
    """Register objectness methods (object proposals).

    An objectness method is called per image as ``method(image) -> proposals``: ``image``
    uint8 (H, W, 3); ``proposals`` a :class:`wssbench.methods.objectness.BoxProposals` (boxes
    ``x0, y0, x1, y1``, half-open) or :class:`wssbench.methods.objectness.SegmentProposals` (segments
    as unions of the cells of a partition; ``SegmentProposals.from_masks`` builds one from bool
    masks), each proposal with a non-negative weight (its score, or 1), in rank order. Methods
    are deterministic. They are not a pipeline stage of their own: the saliency method
    ``objectness`` and the refiner ``proposals`` take one by name (``-O saliency.method=NAME``,
    ``-O proposals.method=NAME``; its options as ``-O proposals.proposer=KEY=VALUE,...``), looking
    it up in the registry that creates them, and cache its proposals per image content and options.
    """


@hookspec
def register_fusion(register: Register) -> None:
    """Register fusion methods.

    A fusion method is called per image on NumPy arrays as
    ``fuse(image, labels, class_maps, saliency_maps) -> probs``: ``image`` uint8 (H, W, 3),
    ``labels`` int (K,) the detected foreground labels, ``class_maps`` and ``saliency_maps``
    float32 (K, H, W) or ``None`` when that stage is off. ``probs`` is float32 (K+1, H, W),
    non-negative and summing to 1 over the first axis; row 0 is background and row ``k+1``
    is ``labels[k]``. The predicted label of a pixel is that of its largest probability.

    Capabilities: ``needs_maps = False`` says the method reads no maps (the pipeline then
    computes none); ``needs_scores = True`` has it called with a keyword ``scores``, the
    classifier scores (K,) of ``labels`` (an image-level prior needs them);
    ``uses_background = True`` has it called with keywords ``background``, the classifier's
    per-pixel background probability (H, W), and ``background_score``, its pooled background
    score, both None unless the classifier has a background output (MIL-FCN, MIL-sppxl).
    """


@hookspec
def register_refiners(register: Register) -> None:
    """Register refiners.

    A refiner is called per image as ``refine(image, probs) -> probs`` with the same shapes
    and meaning as a fusion method's output (uint8 (H, W, 3) and float32 (K+1, H, W)).
    """


@hookspec
def register_pseudomasks(register: Register) -> None:
    """Register pseudo-mask methods: what turns a training split's seeds into the masks a
    segmentation network trains on (PSA's and IRN's random walks).

    A method first learns from the seeds of the whole split,
    ``method.fit(seeds, backbone, norm, device="cpu", seed=0) -> info``, then turns each image's
    seeds into its pseudo-mask, ``method(seed) -> labels``. A seed
    (:class:`wssbench.seed.maps.ImageMaps`) has ``image`` uint8 (H, W, 3), ``labels`` (K,) the
    image's classes as label values and ``class_maps`` float32 (K, H, W) in [0, 1], one per
    class; ``labels`` is uint8 (H, W), label values with 255 = unsure. ``backbone`` is a timm
    model without head, built by the host with the method's ``output_stride`` (an int) from the
    user's backbone and ImageNet weights, ``norm`` its ``{"mean", "std"}``; ``info`` is kept in
    the record (JSON). A method's option defaults are its authors' recipe: a run that sets an
    option to another value lists it among its deviations; ``code_over_paper`` (a tuple of str)
    says where the authors' released code departs from their paper and the method follows the
    code, copied into every record.
    """


@hookspec
def register_salient(register: Register) -> None:
    """Register salient-object detectors (what STC's first network trains on).

    A detector is called per image as ``detector(image) -> saliency``: ``image`` uint8
    (H, W, 3), ``saliency`` float (H, W), larger where an object stands out, in any range (its
    user min-max normalises it). Detectors are deterministic. Capability: ``priors``, a tuple
    of ``{"mark", "what"}`` naming what besides image labels the detector learned from (a
    detector trained on salient-object masks declares ``{"mark": "S", ...}``), shown as a badge
    on the leaderboard.
    """


@hookspec
def register_segnets(register: Register) -> None:
    """Register segmentation networks (the second stage: trained on pseudo-masks or image labels).

    A segnet factory takes its options and returns an object with
    ``build(num_classes, weights=None) -> nn.Module`` and ``mean``, ``std`` (RGB, 0..1, the
    normalisation its ImageNet initialisation expects). The module maps normalised images
    ``(B, 3, H, W)`` to logits ``(B, N, h, w)`` over ``N = num_classes`` labels (row 0 is
    background), at any output stride. ``weights`` is a local ImageNet checkpoint of the
    encoder (offline use); a factory option ``pretrained`` may download one instead. A module
    that defines ``new_parameters()`` (the layers not initialised from ImageNet) has them
    trained ``head_lr_mult`` times faster. Building is seeded by the caller.
    """


@hookspec
def register_objectives(register: Register) -> None:
    """Register training objectives of segmentation networks.

    An objective is called as ``loss(logits, batch) -> scalar tensor``: ``logits`` (B, N, h, w)
    float32 from a segnet, ``batch`` a :class:`wssbench.segmentation.batch.SegBatch` with
    ``images`` (B, 3, H, W), ``image_labels`` (B, N-1) in {0, 1} over the foreground classes,
    ``valid`` bool (B, H, W) (False on crop padding) and ``masks`` int64 (B, H, W) with
    255 = ignore, or ``None``. Each image weighs the same (the loss is a mean over images), so
    that data-parallel ranks average to the single-process loss. An objective that needs
    pseudo-masks declares ``needs_masks = True``; the others train from image labels only.
    """


def capabilities(kind: str) -> dict[str, Any]:
    """The capability attributes a component of ``kind`` may declare, with their defaults."""
    protocol = CONTRACTS[kind]
    return {name: value for name, value in vars(protocol).items()
            if not name.startswith("_") and isinstance(value, (bool, tuple))}
