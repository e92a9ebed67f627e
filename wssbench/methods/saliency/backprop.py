"""Class-score gradients at the input or at intermediate layers, from one shared forward pass.

The raw map of ``bp``, ``gbp`` and ``deconv`` is Simonyan et al.'s (2014): for a class score
``S_c`` (the model output, before any sigmoid or softmax) the map at a pixel is the largest
absolute value over the colour channels of the back-propagated signal ``d S_c / d x``. The
methods differ only in the rule at rectifiers (:mod:`wssbench.methods.saliency.rules`): ``bp`` uses
``"vanilla"``, ``gbp`` ``"guided"``, ``deconv`` ``"deconv"``. These are exactly captum's
``Saliency``, ``GuidedBackprop`` and ``Deconvolution`` where captum applies its rules, and
correct where captum does not (``nn.ReLU6``, functional ``F.relu``).

The model is left exactly as it was: same modules, no hooks left behind, ``inplace`` flags,
``requires_grad`` and train/eval mode unchanged, parameters' ``.grad`` untouched (gradients
are taken with :func:`torch.autograd.grad` with respect to the input or the tapped tensors
only), and buffers (BatchNorm running statistics) restored when the forward pass ran in
training mode, even when an exception is raised mid-way. The forward pass runs in whatever
mode the caller left the model in; call ``model.eval()`` first for the usual maps.

The forward pass and the backward passes are split so that other stages can share the
forward: :func:`record` runs ONE forward pass (a context manager yielding a :class:`Trace`:
scores, score maps and features of a :class:`~wssbench.classifier.model.Classifier` from that same
pass), :func:`trace_gradients` takes class gradients from it, as often as wanted inside the
block; :func:`class_gradients` is the two composed.

What is back-propagated (``signal``): ``"pooled"``, the class score ``S_c`` the model
returns; ``"map"``, the sum over the class's score map ``sum_xy S_c(x, y)``, i.e. 1 on every
position of the map, as in the DCSM authors' code (``shimoda-uec/mat_dcsm``, ``dcsm.m``,
``d(:,:,c) = 1`` on the fc8 map). With global max pooling ``"pooled"`` enters the map at one
position only, so one instance of a class gets saliency; ``"map"`` reaches every instance.

All requested classes of a batch share ONE forward pass, then one backward pass per class
column ``k`` (``retain_graph=True``) that yields the gradients at every tapped tensor at once;
its ``grad_outputs`` is the one-hot matrix selecting ``classes[b, k]`` for every image ``b``
(so different images may ask for different classes). When gradients are taken at layers
(``at=...``), the forward pass runs without autograd up to the first tapped tensor, which
becomes a leaf: the backward passes stop there instead of at the input. A single batched
backward (``torch.autograd.grad(..., is_grads_batched=True)``, which vmaps the backward over
the K one-hot matrices) gives the same gradients, but it was measured 5-15 % slower on CPU
and it needs K times the backward memory, so the loop is used (see ``BATCHED_BACKWARD``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from wssbench.errors import UsageError
from wssbench.methods.saliency.rules import check_rule, rules_applied
from wssbench.methods.saliency.taps import Taps

__all__ = [
    "BATCHED_BACKWARD",
    "SIGNALS",
    "Trace",
    "channel_max_abs",
    "check_classes",
    "class_gradients",
    "record",
    "saliency_maps",
    "simonyan",
    "trace_gradients",
]

SIGNALS = ("pooled", "map")  # what is back-propagated: the pooled class score, or the sum of its score map

# One shared forward, then a loop of K backward passes (False), or one backward vmapped over
# the K one-hot grad_outputs with is_grads_batched=True (True); both give identical gradients.
# Measured on CPU (1 thread, median of 7, 224 px, B=2, rule guided unless said): resnet18 K=1
# vanilla loop 0.110 s / batched 0.119 s, K=3 vanilla 0.224 / 0.259, K=3 0.230 / 0.260, K=8
# 0.514 / 0.586; vgg16 K=3 2.37 / 2.54; resnet50 K=3 0.71 / 0.77. The loop is 5-15 % faster
# and needs 1/K of the backward memory (the vmapped backward holds K copies of every
# intermediate gradient), so it is the default; the flag stays for GPUs, where it may pay.
BATCHED_BACKWARD = False


# --------------------------------------------------------------------------------------
# Gradients of class scores
# --------------------------------------------------------------------------------------


def check_classes(classes: torch.Tensor, batch: int, device: torch.device | None = None) -> torch.Tensor:
    """``classes`` as an int64 ``(B, K)`` tensor (on ``device``), or a :class:`UsageError`."""
    classes = torch.as_tensor(classes)
    if classes.dim() != 2 or classes.shape[0] != batch:
        raise UsageError(f"classes must be (B, K) with B={batch}, got shape {tuple(classes.shape)}")
    if classes.dtype.is_floating_point or classes.dtype == torch.bool:
        raise UsageError(f"classes must be an integer tensor, got {classes.dtype}")
    return classes.long().to(device) if device is not None else classes.long()


@contextlib.contextmanager
def _buffers_preserved(model: nn.Module) -> Iterator[None]:
    """Restore the buffers (BatchNorm running statistics) a training-mode forward updates."""
    if not any(m.training for m in model.modules()):
        yield
        return
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


@contextlib.contextmanager
def _autograd_on() -> Iterator[None]:
    """Autograd recording on, also inside a caller's ``no_grad`` or ``inference_mode`` block."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _one_hot(classes: torch.Tensor, num_classes: int, like: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """The class columns with at least one real entry, and their one-hot ``grad_outputs`` (K', B, C)."""
    valid = classes >= 0  # (B, K)
    columns = [k for k in range(classes.shape[1]) if bool(valid[:, k].any())]
    one_hot = torch.zeros((len(columns), classes.shape[0], num_classes), dtype=like.dtype, device=like.device)
    for i, k in enumerate(columns):
        rows = valid[:, k].nonzero().flatten().to(like.device)
        one_hot[i, rows, classes[rows, k].to(like.device)] = 1  # (K', B, C)
    return columns, one_hot


def _identity(x):
    return x


# --------------------------------------------------------------------------------------
# One recorded forward pass, then any number of backward passes
# --------------------------------------------------------------------------------------


@dataclass
class Trace:
    """One forward pass of ``images`` through ``model``, as :func:`record` leaves it.

    Inside the ``record`` block, ``scores``, ``score_maps`` and ``features`` carry the recorded
    graph (``.detach()`` them for their values); when the block exits they are replaced by
    their detached values and ``targets`` by detached copies, so the graph is freed even if
    the trace is kept. Their values are those of a plain ``torch.no_grad()`` forward pass of
    the same model (bitwise on CPU: the rules and taps change backward passes only).
    """

    model: nn.Module
    images: torch.Tensor  # (B, 3, H, W) what went in
    scores: torch.Tensor  # (B, C) pooled class scores
    score_maps: torch.Tensor | None  # (B, C, h, w) from model.forward_parts (a Classifier), else None
    features: torch.Tensor | None  # (B, F, h, w) likewise
    targets: list[torch.Tensor]  # the tensors gradients are taken at: [input leaf] or the tapped layers
    rule: str | None  # the backward rule at rectifiers; None: recorded without gradients
    layers: tuple[str, ...] = ()  # the tapped module paths, () for the input
    at_input: bool = True  # taps at the layers' inputs (else outputs)
    live: bool = True  # inside the record block: the graph is there

    def spec(self) -> dict:
        """The :func:`record` keyword arguments this trace answers (``unsupported`` aside)."""
        return {"rule": self.rule, "layers": self.layers, "at_input": self.at_input}

    def release(self) -> None:
        """Drop the graph now (what leaving the ``record`` block does): values stay, detached."""
        self.scores = self.scores.detach()
        self.score_maps = None if self.score_maps is None else self.score_maps.detach()
        self.features = None if self.features is None else self.features.detach()
        self.targets = [t.detach() for t in self.targets]
        self.live = False


def _forward(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(scores (B, C), score maps (B, C, h, w) or None, features (B, F, h, w) or None)."""
    parts = getattr(model, "forward_parts", None)
    if callable(parts):
        features, maps, scores = parts(images)
        return scores, maps, features
    return model(images), None, None


def _check_scores(scores: torch.Tensor, batch: int) -> None:
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[0] != batch:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise UsageError(f"the model must return scores (B, C) with B={batch}, got {shape}")


@contextlib.contextmanager
def record(
    model: nn.Module,
    images: torch.Tensor,
    rule: str | None = "vanilla",
    layers: Sequence[str] = (),
    at_input: bool = True,
    unsupported: str = "error",
) -> Iterator[Trace]:
    """One forward pass of ``images (B, 3, H, W)`` through ``model``, recorded for later
    backward passes (:func:`trace_gradients`) under ``rule`` (:mod:`wssbench.methods.saliency.rules`).

    ``rule=None``: a plain ``torch.no_grad()`` forward, nothing recorded (for stages that need
    no gradients). ``layers=()``: gradients are taken at the input; else at those submodules'
    inputs (``at_input``) or outputs, the forward running without autograd up to the
    shallowest of them (see ``Taps``). A model with ``forward_parts`` (wssbench's
    :class:`~wssbench.classifier.model.Classifier`) gives features, score maps and scores from the
    same pass; any other model is called as ``model(images) -> scores (B, C)``.

    The rule's hooks, the taps and the switched ``inplace`` flags are removed as soon as the
    forward pass is done (the recorded graph needs none of them); buffers a training-mode
    forward updates are restored when the block exits. So the model is left exactly as it
    was, also when an exception is raised inside the block.
    """
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    at_input = bool(at_input) or not layers  # at the input, "input or output" means nothing
    batch = images.shape[0]
    if rule is None:
        with torch.no_grad(), _buffers_preserved(model):
            scores, maps, features = _forward(model, images)
        _check_scores(scores, batch)
        yield Trace(model, images, scores, maps, features, [], None, layers, at_input, live=False)
        return
    rectifiers = check_rule(model, rule, unsupported)
    with _buffers_preserved(model):
        with _autograd_on():
            x = images.clone() if images.is_inference() else images
            taps = Taps(model, layers, at_input)
            with rules_applied(rule, rectifiers), taps.installed():
                if layers:
                    with torch.no_grad():  # autograd starts at the first tap (see Taps)
                        scores, maps, features = _forward(model, x)
                    targets = taps.targets()
                else:
                    targets = [x.detach().requires_grad_(True)]
                    scores, maps, features = _forward(model, targets[0])
        _check_scores(scores, batch)
        if not scores.requires_grad:
            raise UsageError("the model's scores do not depend on the input through autograd")
        trace = Trace(model, images, scores, maps, features, targets, rule, layers, at_input)
        try:
            yield trace
        finally:
            trace.release()


def trace_gradients(
    trace: Trace,
    classes: torch.Tensor,
    signal: str = "pooled",
    reduce: Callable[[list[torch.Tensor]], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The gradient of each requested class's ``signal`` at ``trace.targets``: ``(B, K, *shape')``.

    ``classes (B, K)`` int model output indices, entries < 0 are padding (zero gradient).
    ``signal``: ``"pooled"``, the class score ``S_c`` (``trace.scores``); ``"map"``, the sum
    over the class's score map ``sum_xy S_c(x, y)`` (1 on every position of the map, as the
    DCSM authors back-propagate; needs ``trace.score_maps``).

    ``reduce`` receives the list of the targets' gradients ``[(B, *shape_l), ...]`` of one
    class column as soon as they are computed and returns ``(B, *shape')``, so that K full
    gradients are never held at once; without it the trace must have one target and
    ``shape' = shape``. One backward pass per class column; the graph is retained, so this
    may be called more than once inside the same ``record`` block. Returns the dtype of the
    model's computation, on the trace's device.
    """
    if trace.rule is None:
        raise UsageError("trace_gradients: the trace was recorded without gradients (rule=None)")
    if not trace.live:
        raise UsageError("trace_gradients: the trace's record block has exited; its graph is gone")
    if signal not in SIGNALS:
        raise UsageError(f"bad value {signal!r} for signal: expected one of {', '.join(SIGNALS)}")
    if reduce is None and len(trace.targets) != 1:
        raise UsageError("trace_gradients: gradients at several layers need a reduce function")
    reduce = reduce or (lambda grads: grads[0])
    scores = trace.scores
    batch, num_classes = scores.shape
    classes = check_classes(classes, batch, scores.device)
    k_count = classes.shape[1]
    if (classes >= num_classes).any():
        raise UsageError(f"class index {int(classes.max())} out of range for a model with {num_classes} outputs")
    output = scores  # (B, C)
    if signal == "map":
        if trace.score_maps is None:
            raise UsageError(f"signal=map needs class score maps: {type(trace.model).__name__} has no forward_parts; use signal=pooled")
        output = trace.score_maps  # (B, C, h, w)
    columns, one_hot = _one_hot(classes, num_classes, output)  # (K', B, C)
    if signal == "map":
        one_hot = one_hot[..., None, None].expand(*one_hot.shape, *output.shape[-2:])  # (K', B, C, h, w)
    per_class: list[torch.Tensor] = []  # K' x (B, *shape')
    with _autograd_on():
        if columns and BATCHED_BACKWARD:
            grads = torch.autograd.grad(output, trace.targets, grad_outputs=one_hot, retain_graph=True, is_grads_batched=True)
            reduced = reduce([g.flatten(0, 1) for g in grads])  # (K' B, *shape')
            per_class = list(reduced.unflatten(0, (len(columns), batch)))
        else:
            for i in range(len(columns)):
                grads = torch.autograd.grad(output, trace.targets, grad_outputs=one_hot[i], retain_graph=True)  # L x (B, *shape_l)
                per_class.append(reduce(list(grads)))  # (B, *shape')
                del grads
    zero = torch.zeros_like(per_class[0]) if per_class else reduce([torch.zeros_like(t) for t in trace.targets])
    if not k_count:
        return zero.new_zeros((batch, 0) + zero.shape[1:])
    by_column = dict(zip(columns, per_class))
    return torch.stack([by_column.get(k, zero) for k in range(k_count)], dim=1)  # (B, K, *shape')


def class_gradients(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor,
    rule: str = "vanilla",
    at: str | Sequence[str] | None = None,
    at_input: bool = False,
    unsupported: str = "error",
    reduce: Callable | None = None,
    signal: str = "pooled",
) -> torch.Tensor:
    """The gradient of each requested class score, ``(B, K, *shape)``, from one forward pass:
    :func:`record` then :func:`trace_gradients`.

    ``model(images) -> scores (B, C)``; ``images (B, 3, H, W)``; ``classes (B, K)`` int model
    output indices, entries < 0 are padding (zero gradient). ``rule`` is ``"vanilla"``,
    ``"guided"`` or ``"deconv"`` (:mod:`wssbench.methods.saliency.rules`); ``unsupported`` is
    ``"error"`` or ``"ignore"`` for activations where the rule is undefined; ``signal`` as in
    :func:`trace_gradients`.

    Where the gradient is taken: ``at=None``, the input (``shape = (3, H, W)``);
    ``at="layer.path"``, that submodule's output, or its input with ``at_input=True`` (through
    that module only, see ``Taps``); ``shape`` is then that tensor's per-image shape.
    ``at=[path, ...]``: several such tensors, all from the same backward pass per class,
    which stops at the shallowest of them.

    ``reduce`` maps each class's gradient ``(B, *shape) -> (B, *shape')`` as soon as it is
    computed (e.g. ``lambda g: g.abs().amax(1)``); the result is then ``(B, K, *shape')``.
    With a sequence ``at``, ``reduce`` is required and receives the list of the layers'
    gradients, in ``at`` order.
    """
    several = at is not None and not isinstance(at, str)
    if several and reduce is None:
        raise UsageError("class_gradients: gradients at several layers need a reduce function")
    layers = () if at is None else tuple(at) if several else (at,)
    reduce_all = reduce if several else (lambda grads: (reduce or _identity)(grads[0]))
    classes = check_classes(classes, images.shape[0], images.device)
    if not layers and not bool((classes >= 0).any()):  # only padding: no need to run the model
        check_rule(model, rule, unsupported)
        zero = reduce_all([images.new_zeros(images.shape)])  # (B, *shape')
        return zero[:, None].expand(-1, classes.shape[1], *zero.shape[1:]).clone()  # (B, K, *shape')
    with record(model, images, rule, layers, at_input, unsupported) as trace:
        return trace_gradients(trace, classes, signal, reduce_all)


def saliency_maps(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor,
    rule: str = "vanilla",
    unsupported: str = "error",
    signal: str = "pooled",
) -> torch.Tensor:
    """Simonyan's raw saliency ``max_channel |d S_c / d x|`` per requested class, ``(B, K, H, W)``."""
    return class_gradients(model, images, classes, rule=rule, unsupported=unsupported, reduce=simonyan, signal=signal)


def channel_max_abs(grad: torch.Tensor) -> torch.Tensor:
    """``grad.abs().amax(dim=1)`` without the ``|grad|`` copy: ``(B, C, H, W) -> (B, H, W)``."""
    low, high = torch.aminmax(grad, dim=1)  # (B, H, W) each, one pass
    return torch.maximum(high, low.neg_())


def simonyan(grad: torch.Tensor) -> torch.Tensor:
    """Simonyan's reduction of an input gradient: max over colour channels of ``|grad|``,
    ``(B, 3, H, W) -> (B, H, W)``."""
    return channel_max_abs(grad)
