"""Class-score gradients at the input or at intermediate layers, from one shared forward pass.

The raw map of ``bp``, ``gbp`` and ``deconv`` is Simonyan et al.'s (2014): for a class score
``S_c`` (the model output, before any sigmoid or softmax) the map at a pixel is the largest
absolute value over the colour channels of the back-propagated signal ``d S_c / d x``. The
methods differ only in the rule at rectifiers (:mod:`wssbench.saliency.rules`): ``bp`` uses
``"vanilla"``, ``gbp`` ``"guided"``, ``deconv`` ``"deconv"``. These are exactly captum's
``Saliency``, ``GuidedBackprop`` and ``Deconvolution`` where captum applies its rules, and
correct where captum does not (``nn.ReLU6``, functional ``F.relu``).

The model is left exactly as it was: same modules, no hooks left behind, ``inplace`` flags,
``requires_grad`` and train/eval mode unchanged, parameters' ``.grad`` untouched (gradients
are taken with :func:`torch.autograd.grad` with respect to the input or the tapped tensors
only), and buffers (BatchNorm running statistics) restored when the forward pass ran in
training mode, even when an exception is raised mid-way. The forward pass runs in whatever
mode the caller left the model in; call ``model.eval()`` first for the usual maps.

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
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ..errors import UsageError
from .rules import check_rule, rules_applied

__all__ = ["BATCHED_BACKWARD", "channel_max_abs", "check_classes", "class_gradients", "saliency_maps"]

# One shared forward, then a loop of K backward passes (False), or one backward vmapped over
# the K one-hot grad_outputs with is_grads_batched=True (True); both give identical gradients.
# Measured on CPU (1 thread, median of 7, 224 px, B=2, rule guided unless said): resnet18 K=1
# vanilla loop 0.110 s / batched 0.119 s, K=3 vanilla 0.224 / 0.259, K=3 0.230 / 0.260, K=8
# 0.514 / 0.586; vgg16 K=3 2.37 / 2.54; resnet50 K=3 0.71 / 0.77. The loop is 5-15 % faster
# and needs 1/K of the backward memory (the vmapped backward holds K copies of every
# intermediate gradient), so it is the default; the flag stays for GPUs, where it may pay.
BATCHED_BACKWARD = False


# --------------------------------------------------------------------------------------
# Taps: the tensors gradients are taken at
# --------------------------------------------------------------------------------------


class _Taps:
    """Forward hooks that record the tensors at ``layers`` (their inputs or outputs).

    The first tensor recorded while autograd is off becomes a leaf: the forward pass runs
    without autograd up to it (``forward`` is called under ``torch.no_grad()``) and the hook
    turns autograd on from there, so nothing below the shallowest tap is recorded or
    back-propagated. Taps further up stay inside the graph (the gradient reaching them goes on
    to the shallower ones). The model continues from a copy of each tapped tensor, so
    in-place ops of the tapped module or further down cannot change it; an in-place change
    of it elsewhere is an error.

    At an input, the derivative is taken through the module only, like at a leaf: where the
    same tensor also feeds other modules (a residual shortcut around the tapped module), their
    paths are not included; tap the enclosing block's input to include them.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], at_input: bool):
        self.model, self.layers, self.at_input = model, list(layers), at_input
        self.tensors: dict[str, torch.Tensor] = {}
        self.versions: dict[str, int] = {}
        self.where = "the input of" if at_input else "the output of"

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        handles = []
        try:
            for layer in self.layers:
                try:
                    module = self.model.get_submodule(layer)
                except AttributeError:
                    raise UsageError(f"no submodule '{layer}' in {type(self.model).__name__} to take gradients at") from None
                if self.at_input:
                    handles.append(module.register_forward_pre_hook(self._input_hook(layer)))
                else:
                    handles.append(module.register_forward_hook(self._output_hook(layer)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _input_hook(self, layer: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple) -> tuple:
            return (self._record(layer, inputs[0] if inputs else None),) + inputs[1:]

        return hook

    def _output_hook(self, layer: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output) -> torch.Tensor:
            return self._record(layer, output)

        return hook

    def _record(self, layer: str, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise UsageError(f"cannot take gradients at {self.where} '{layer}': it is not a tensor")
        if layer in self.tensors:
            raise UsageError(f"cannot take gradients at '{layer}': the module is called more than once")
        if not torch.is_grad_enabled() or not x.requires_grad:
            x = x.detach().requires_grad_(True)  # the shallowest tap (or one off the graph): a leaf
            torch.set_grad_enabled(True)  # record the graph from here on
        elif self.at_input:
            x = x.view_as(x)  # a node of its own: only the path through the module counts
        self.tensors[layer] = x
        self.versions[layer] = x._version
        return x.clone()

    def targets(self) -> list[torch.Tensor]:
        """The tapped tensors in ``layers`` order, checked after the forward pass."""
        for layer in self.layers:
            if layer not in self.tensors:
                raise UsageError(f"cannot take gradients at '{layer}': the module was not called")
            if self.tensors[layer]._version != self.versions[layer]:
                raise UsageError(f"cannot take gradients at {self.where} '{layer}': it was modified in place later on")
        return [self.tensors[layer] for layer in self.layers]


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


def _one_hot(classes: torch.Tensor, num_classes: int, like: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """The class columns with at least one real entry, and their one-hot ``grad_outputs`` (K', B, C)."""
    valid = classes >= 0  # (B, K)
    columns = [k for k in range(classes.shape[1]) if bool(valid[:, k].any())]
    one_hot = torch.zeros((len(columns), classes.shape[0], num_classes), dtype=like.dtype, device=like.device)
    for i, k in enumerate(columns):
        rows = valid[:, k].nonzero().flatten().to(like.device)
        one_hot[i, rows, classes[rows, k].to(like.device)] = 1  # (K', B, C)
    return columns, one_hot


def class_gradients(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor,
    rule: str = "vanilla",
    at: str | Sequence[str] | None = None,
    at_input: bool = False,
    unsupported: str = "error",
    reduce: Callable | None = None,
) -> torch.Tensor:
    """The gradient of each requested class score, ``(B, K, *shape)``, from one forward pass.

    ``model(images) -> scores (B, C)``; ``images (B, 3, H, W)``; ``classes (B, K)`` int model
    output indices, entries < 0 are padding (zero gradient). ``rule`` is ``"vanilla"``,
    ``"guided"`` or ``"deconv"`` (:mod:`wssbench.saliency.rules`); ``unsupported`` is
    ``"error"`` or ``"ignore"`` for activations where the rule is undefined.

    Where the gradient is taken: ``at=None``, the input (``shape = (3, H, W)``);
    ``at="layer.path"``, that submodule's output, or its input with ``at_input=True`` (through
    that module only, see ``_Taps``); ``shape`` is then that tensor's per-image shape.
    ``at=[path, ...]``: several such tensors, all from the same backward pass per class,
    which stops at the shallowest of them.

    ``reduce`` maps each class's gradient ``(B, *shape) -> (B, *shape')`` as soon as it is
    computed (e.g. ``lambda g: g.abs().amax(1)``), so that K full gradients are never held at
    once; the result is then ``(B, K, *shape')``. With a sequence ``at``, ``reduce`` is
    required and receives the list of the layers' gradients, in ``at`` order. Returns the
    dtype of the model's computation, on the images' device.
    """
    several = at is not None and not isinstance(at, str)
    if several and reduce is None:
        raise UsageError("class_gradients: gradients at several layers need a reduce function")
    layers = [] if at is None else list(at) if several else [at]
    reduce_all = reduce if several else (lambda grads: (reduce or _identity)(grads[0]))
    classes = check_classes(classes, images.shape[0], images.device)
    batch, k_count = classes.shape
    rectifiers = check_rule(model, rule, unsupported)
    if not layers and not bool((classes >= 0).any()):  # only padding: no need to run the model
        zero = reduce_all([images.new_zeros(images.shape)])  # (B, *shape')
        return torch.stack([zero] * k_count, dim=1) if k_count else zero.new_zeros((batch, 0) + zero.shape[1:])
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        stack.enter_context(_buffers_preserved(model))
        stack.enter_context(rules_applied(rule, rectifiers))
        taps = _Taps(model, layers, at_input)
        stack.enter_context(taps.installed())
        if images.is_inference():
            images = images.clone()
        if layers:
            with torch.no_grad():  # autograd starts at the first tap (see _Taps)
                scores = model(images)  # (B, C)
            targets = taps.targets()
        else:
            targets = [images.detach().requires_grad_(True)]
            scores = model(targets[0])  # (B, C)
        if scores.dim() != 2 or scores.shape[0] != batch:
            raise UsageError(f"the model must return scores (B, C) with B={batch}, got {tuple(scores.shape)}")
        if (classes >= scores.shape[1]).any():
            raise UsageError(f"class index {int(classes.max())} out of range for a model with {scores.shape[1]} outputs")
        if not scores.requires_grad:
            raise UsageError("the model's scores do not depend on the input through autograd")
        columns, one_hot = _one_hot(classes, scores.shape[1], scores)  # (K', B, C)
        per_class: list[torch.Tensor] = []  # K' x (B, *shape')
        if columns and BATCHED_BACKWARD:
            grads = torch.autograd.grad(scores, targets, grad_outputs=one_hot, is_grads_batched=True)  # L x (K', B, *shape_l)
            reduced = reduce_all([g.flatten(0, 1) for g in grads])  # (K' B, *shape')
            per_class = list(reduced.unflatten(0, (len(columns), batch)))
        else:
            for i in range(len(columns)):
                last = i == len(columns) - 1
                grads = torch.autograd.grad(scores, targets, grad_outputs=one_hot[i], retain_graph=not last)  # L x (B, *shape_l)
                per_class.append(reduce_all(list(grads)))  # (B, *shape')
                del grads
        zero = torch.zeros_like(per_class[0]) if per_class else reduce_all([torch.zeros_like(t) for t in targets])
        by_column = dict(zip(columns, per_class))
        if not k_count:
            return zero.new_zeros((batch, 0) + zero.shape[1:])
        return torch.stack([by_column.get(k, zero) for k in range(k_count)], dim=1)  # (B, K, *shape')


def saliency_maps(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor,
    rule: str = "vanilla",
    unsupported: str = "error",
) -> torch.Tensor:
    """Simonyan's raw saliency ``max_channel |d S_c / d x|`` per requested class, ``(B, K, H, W)``."""
    return class_gradients(model, images, classes, rule=rule, unsupported=unsupported, reduce=_simonyan)


def _identity(grad: torch.Tensor) -> torch.Tensor:
    return grad


def channel_max_abs(grad: torch.Tensor) -> torch.Tensor:
    """``grad.abs().amax(dim=1)`` without the ``|grad|`` copy: ``(B, C, H, W) -> (B, H, W)``."""
    low, high = torch.aminmax(grad, dim=1)  # (B, H, W) each, one pass
    return torch.maximum(high, low.neg_())


def _simonyan(grad: torch.Tensor) -> torch.Tensor:
    return channel_max_abs(grad)  # (B, 3, H, W) -> (B, H, W): max over colour channels of |grad|
