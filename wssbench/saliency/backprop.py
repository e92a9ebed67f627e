"""Back-propagation saliency: vanilla BP, guided BP and deconvnet from one shared machinery.

The raw map of every method here is Simonyan et al.'s (2014): for a class score ``S_c``
(the model output, before any sigmoid or softmax) the map at a pixel is the largest absolute
value over the colour channels of the back-propagated signal ``d S_c / d x``. The methods
differ only in how the backward signal crosses a rectifier (``y = relu(x)``, incoming
gradient ``g``):

========== ============== ==============================================================
name       rule           signal passed to ``x``
========== ============== ==============================================================
``bp``     ``"vanilla"``  ``g * [x > 0]`` (ordinary autograd; Simonyan et al. 2014)
``gbp``    ``"guided"``   ``g * [x > 0] * [g > 0]`` (Springenberg et al. 2015)
``deconv`` ``"deconv"``   ``g * [g > 0]``, forward mask ignored (Zeiler & Fergus 2014)
========== ============== ==============================================================

These are exactly captum's ``Saliency``, ``GuidedBackprop`` and ``Deconvolution``. For
``nn.ReLU6`` (and ``nn.Hardtanh(0, t)``) the forward gate is ``0 < x < t`` instead of
``x > 0`` (captum leaves ReLU6 as plain autograd; here ``gbp`` gates it correctly).

How the rules are applied. A forward hook on every ``nn.ReLU`` (subclasses included),
``nn.ReLU6`` and ``nn.Hardtanh(min_val=0)`` module replaces the module's output with the
same values produced by a custom autograd function whose backward implements the rule and
sends the signal straight to the module's input. In-place activations (timm's
``nn.ReLU(inplace=True)``) are switched to ``inplace=False`` for the call, because an
in-place op destroys the input the rule needs; the flags are restored afterwards.

Limitations:

* Only activation *modules* are seen. Rectifiers called as functions inside a ``forward``
  (``F.relu``, ``torch.relu``, ``x.clamp(min=0)``) keep ordinary autograd, so ``gbp`` and
  ``deconv`` silently fall back to vanilla BP there (captum has the same limitation).
* Guided BP and deconvnet are undefined for smooth or non-rectifying activations
  (``GELU``, ``SiLU``/``Swish``, ``Hardswish``, ``Mish``, ``Sigmoid``, ``Tanh``, ``ELU``,
  ``LeakyReLU``, ``PReLU``, ``Softmax``..., i.e. any other module class defined in
  ``torch.nn.modules.activation`` or ``timm.layers.activations*``). ``gbp`` and ``deconv``
  refuse such a model with a :class:`~wssbench.errors.UsageError` naming the first one, unless
  ``unsupported="ignore"`` is given, which back-propagates through them unchanged.

The model is left exactly as it was: same modules, no hooks left behind, ``inplace`` flags,
``requires_grad`` and train/eval mode unchanged, parameters' ``.grad`` untouched (gradients
are taken with :func:`torch.autograd.grad` with respect to the input only), and buffers
(BatchNorm running statistics) restored when the forward pass ran in training mode, even
when an exception is raised mid-way. The forward pass runs in whatever mode the caller left
the model in; call ``model.eval()`` first for the usual maps (in training mode BatchNorm
uses batch statistics, which couples the images of a batch, and dropout is random).

All requested classes of a batch share ONE forward pass, then one backward pass per class
column ``k`` (``retain_graph=True``), whose ``grad_outputs`` is the one-hot matrix
selecting ``classes[b, k]`` for every image ``b`` (so different images may ask for
different classes). A single batched backward (``torch.autograd.grad(...,
is_grads_batched=True)``, which vmaps the backward over the K one-hot matrices) gives the
same gradients and works with the hooks, but it was measured 5-15 % slower on CPU and it
needs K times the backward memory, so the loop is used (see ``BATCHED_BACKWARD``).
:func:`saliency_maps` reduces each class's gradient to its map as soon as it is computed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator

import torch
from torch import nn

from ..errors import UsageError

__all__ = [
    "RULES",
    "Deconvnet",
    "GuidedBP",
    "VanillaBP",
    "class_gradients",
    "saliency_maps",
]

RULES = ("vanilla", "guided", "deconv")
UNSUPPORTED = ("error", "ignore")

# One shared forward, then a loop of K backward passes (False), or one backward vmapped over
# the K one-hot grad_outputs with is_grads_batched=True (True); both give identical gradients.
# Measured on CPU (1 thread, median of 7, 224 px, B=2, rule guided unless said): resnet18 K=1
# vanilla loop 0.110 s / batched 0.119 s, K=3 vanilla 0.224 / 0.259, K=3 0.230 / 0.260, K=8
# 0.514 / 0.586; vgg16 K=3 2.37 / 2.54; resnet50 K=3 0.71 / 0.77. The loop is 5-15 % faster
# and needs 1/K of the backward memory (the vmapped backward holds K copies of every
# intermediate gradient), so it is the default; the flag stays for GPUs, where it may pay.
BATCHED_BACKWARD = False

_METHOD = {"vanilla": "bp", "guided": "gbp", "deconv": "deconv"}
_TITLE = {
    "vanilla": "back-propagation",
    "guided": "guided back-propagation",
    "deconv": "the deconvnet rule",
}


# --------------------------------------------------------------------------------------
# Which activation modules get which rule
# --------------------------------------------------------------------------------------


def _rectifier_gate(module: nn.Module) -> tuple[float, float] | None:
    """The forward gate ``lo < x < hi`` of a rectifier module, or ``None`` if it is not one."""
    if isinstance(module, nn.ReLU):
        return (0.0, float("inf"))
    if isinstance(module, nn.Hardtanh) and module.min_val == 0:  # nn.ReLU6 is Hardtanh(0, 6)
        return (0.0, float(module.max_val))
    return None


def _is_activation(module: nn.Module) -> bool:
    """An element-wise (or softmax-like) nonlinearity module, as torch and timm define them."""
    if isinstance(module, nn.MultiheadAttention):
        return False
    mod = type(module).__module__
    return mod == "torch.nn.modules.activation" or mod.startswith("timm.layers.activations")


def _find_activations(model: nn.Module) -> tuple[list[tuple[str, nn.Module, tuple[float, float]]], list[tuple[str, nn.Module]]]:
    """(rectifiers with their gates, other activation modules), by module path."""
    rectifiers, others = [], []
    for path, module in model.named_modules():
        gate = _rectifier_gate(module)
        if gate is not None:
            rectifiers.append((path, module, gate))
        elif _is_activation(module):
            others.append((path, module))
    return rectifiers, others


def _unsupported_error(rule: str, others: list[tuple[str, nn.Module]]) -> UsageError:
    path, module = others[0]
    more = f" (and {len(others) - 1} more activation modules)" if len(others) > 1 else ""
    where = f"'{path}'" if path else "the model itself"
    return UsageError(
        f"{_METHOD[rule]}: {_TITLE[rule]} is undefined for {type(module).__name__} at {where}{more}; "
        f"pass unsupported=ignore (-O saliency.unsupported=ignore) to back-propagate through "
        f"such activations unchanged, or use saliency 'bp'"
    )


# --------------------------------------------------------------------------------------
# The modified backward rule
# --------------------------------------------------------------------------------------


class _RectifiedBackward(torch.autograd.Function):
    """Identity on the activation's output; backward sends ``relu(g) * mask`` to its input.

    ``apply(x, y, mask)``: ``x`` the activation's input (the only differentiable argument),
    ``y`` its output, detached, ``mask`` the forward gate (bool, like ``y``) or ``None`` for
    the deconvnet rule. Written in the ``setup_context`` style so that the backward also runs
    under ``torch.autograd.grad(..., is_grads_batched=True)``.
    """

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # A new tensor object: the original op's graph node is not connected to it, so the
        # original forward gate is not applied a second time (that would break deconv).
        return y.detach()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[2])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        grad = grad.clamp_min(0)  # only positive signal crosses the rectifier
        if mask is not None:
            grad = grad * mask  # guided: and only where the forward input was in the gate
        return grad, None, None


def _rule_hook(rule: str, path: str, gate: tuple[float, float]):
    lo, hi = gate

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        if output is x or (output.numel() > 0 and output.data_ptr() == x.data_ptr()):
            raise UsageError(
                f"{_METHOD[rule]}: the activation at '{path}' ({type(module).__name__}) ran in place "
                f"although its inplace flag was turned off; {_TITLE[rule]} cannot be applied to it"
            )
        if rule == "guided":
            # The gate is read off the output: lo < x < hi  <=>  lo < y < hi for a clamp.
            mask = output > lo if hi == float("inf") else (output > lo) & (output < hi)
        else:
            mask = None
        return _RectifiedBackward.apply(x, output.detach(), mask)

    return hook


def _rectifiers_for(model: nn.Module, rule: str, unsupported: str) -> list[tuple[str, nn.Module, tuple[float, float]]]:
    """Check ``rule`` and ``unsupported`` against the model; the rectifiers to hook (path, module, gate)."""
    if rule not in RULES:
        raise UsageError(f"unknown back-propagation rule '{rule}'; available: {', '.join(RULES)}")
    if unsupported not in UNSUPPORTED:
        raise UsageError(f"bad value {unsupported!r} for unsupported: expected one of {', '.join(UNSUPPORTED)}")
    if rule == "vanilla":
        return []
    rectifiers, others = _find_activations(model)
    if others and unsupported == "error":
        raise _unsupported_error(rule, others)
    return rectifiers


@contextlib.contextmanager
def _rules_applied(rule: str, rectifiers: list[tuple[str, nn.Module, tuple[float, float]]]) -> Iterator[None]:
    """Hook the rectifiers with ``rule`` for the duration of the block, then undo it."""
    handles = []
    flags: list[tuple[nn.Module, bool]] = []
    try:
        for path, module, gate in rectifiers:
            if getattr(module, "inplace", False):
                flags.append((module, module.inplace))
                module.inplace = False
            handles.append(module.register_forward_hook(_rule_hook(rule, path, gate)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            module.inplace = flag


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
def _tapped(model: nn.Module, at: str | None, images: torch.Tensor, store: list) -> Iterator[torch.Tensor]:
    """Yield the tensor the model is called with; ``store`` gets the tensor to differentiate.

    ``at=None``: the input itself. ``at="layer.path"``: the output of that submodule, seen by a
    forward hook; the model continues from a copy of it, so in-place ops further down cannot
    change the tapped tensor, and the graph above the tap is cut (not back-propagated).
    """
    x = images.detach()
    if at is None:
        x.requires_grad_(True)
        store.append(x)
        yield x
        return
    try:
        module = model.get_submodule(at)
    except AttributeError:
        raise UsageError(f"no submodule '{at}' in {type(model).__name__} to take gradients at") from None

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise UsageError(f"cannot take gradients at '{at}': its output is not a tensor")
        if store:
            raise UsageError(f"cannot take gradients at '{at}': the module is called more than once")
        tap = output.detach().requires_grad_(True)
        store.append(tap)
        return tap.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield x
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def _check_classes(classes: torch.Tensor, batch: int) -> torch.Tensor:
    classes = torch.as_tensor(classes)
    if classes.dim() != 2 or classes.shape[0] != batch:
        raise UsageError(f"classes must be (B, K) with B={batch}, got shape {tuple(classes.shape)}")
    if classes.dtype.is_floating_point or classes.dtype == torch.bool:
        raise UsageError(f"classes must be an integer tensor, got {classes.dtype}")
    return classes.long()


def class_gradients(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor,
    rule: str = "vanilla",
    at: str | None = None,
    unsupported: str = "error",
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The gradient of each requested class score, ``(B, K, *shape)``, from one forward pass.

    ``model(images) -> scores (B, C)``; ``images (B, 3, H, W)``; ``classes (B, K)`` int model
    output indices, entries < 0 are padding (zero gradient). ``rule`` is ``"vanilla"``,
    ``"guided"`` or ``"deconv"`` (see the module docstring); ``unsupported`` is ``"error"``
    or ``"ignore"`` for activations where the rule is undefined. ``at=None`` differentiates
    with respect to the input (``shape = (3, H, W)``); ``at="layer.path"`` with respect to
    that submodule's output (``shape`` = its per-image shape), for multi-layer maps.
    ``reduce`` maps each class's gradient ``(B, *shape) -> (B, *shape')`` as soon as it is
    computed (e.g. ``lambda g: g.abs().amax(1)``), so that K full gradients are never held
    at once; the result is then ``(B, K, *shape')``. Returns the dtype of the model's
    computation, on the images' device.
    """
    if reduce is None:
        reduce = _identity
    classes = _check_classes(classes, images.shape[0])
    batch, k_count = classes.shape
    rectifiers = _rectifiers_for(model, rule, unsupported)
    if at is None and not bool((classes >= 0).any()):  # only padding: no need to run the model
        zero = reduce(torch.zeros(images.shape, dtype=images.dtype, device=images.device))  # (B, *shape')
        return torch.stack([zero] * k_count, dim=1) if k_count else zero.new_zeros((batch, 0) + zero.shape[1:])
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        if images.is_inference():
            images = images.clone()
        stack.enter_context(_buffers_preserved(model))
        stack.enter_context(_rules_applied(rule, rectifiers))
        store: list[torch.Tensor] = []
        x = stack.enter_context(_tapped(model, at, images, store))
        scores = model(x)  # (B, C)
        if scores.dim() != 2 or scores.shape[0] != batch:
            raise UsageError(f"the model must return scores (B, C) with B={batch}, got {tuple(scores.shape)}")
        if not store:
            raise UsageError(f"cannot take gradients at '{at}': the module was not called")
        target = store[0]  # (B, *shape)
        num_classes = scores.shape[1]
        if (classes >= num_classes).any():
            raise UsageError(f"class index {int(classes.max())} out of range for a model with {num_classes} outputs")
        if not scores.requires_grad:
            raise UsageError("the model's scores do not depend on the input through autograd")

        valid = classes >= 0  # (B, K)
        columns = [k for k in range(k_count) if bool(valid[:, k].any())]
        one_hot = torch.zeros((len(columns), batch, num_classes), dtype=scores.dtype, device=scores.device)
        for i, k in enumerate(columns):
            rows = valid[:, k].nonzero().flatten().to(scores.device)
            one_hot[i, rows, classes[rows, k].to(scores.device)] = 1  # (K', B, C)

        per_class: list[torch.Tensor] = []  # K' x (B, *shape')
        if columns and BATCHED_BACKWARD:
            (g,) = torch.autograd.grad(scores, target, grad_outputs=one_hot, is_grads_batched=True)  # (K', B, *shape)
            g = reduce(g.flatten(0, 1))  # (K' B, *shape')
            per_class = list(g.unflatten(0, (len(columns), batch)))
        else:
            for i in range(len(columns)):
                last = i == len(columns) - 1
                (g,) = torch.autograd.grad(scores, target, grad_outputs=one_hot[i], retain_graph=not last)  # (B, *shape)
                per_class.append(reduce(g))  # (B, *shape')
                del g
        if per_class:
            zero = torch.zeros_like(per_class[0])  # (B, *shape')
        else:
            zero = reduce(torch.zeros_like(target))  # (B, *shape')
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
    """Simonyan's raw saliency ``max_channel |d S_c / d x|`` per requested class, ``(B, K, H, W)`` float32."""
    maps = class_gradients(model, images, classes, rule=rule, unsupported=unsupported, reduce=_simonyan)
    return maps.float()  # (B, K, H, W)


def _identity(grad: torch.Tensor) -> torch.Tensor:
    return grad


def _simonyan(grad: torch.Tensor) -> torch.Tensor:
    return grad.abs().amax(dim=1)  # (B, 3, H, W) -> (B, H, W): max over colour channels


# --------------------------------------------------------------------------------------
# The registered methods
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Backprop:
    """Shared ``__call__``: ``method(model, images, classes) -> maps (B, K, H, W)`` float32."""

    rule: ClassVar[str] = "vanilla"

    def __call__(self, model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return saliency_maps(model, images, classes, rule=self.rule, unsupported=self._unsupported())

    def _unsupported(self) -> str:
        return "error"


@dataclass(frozen=True)
class VanillaBP(_Backprop):
    """Vanilla back-propagation saliency (Simonyan et al. 2014): max over channels of |dS_c/dx|.

    Ordinary autograd through every layer, so it works on any model. No options.
    """

    name: ClassVar[str] = "bp"
    rule: ClassVar[str] = "vanilla"


@dataclass(frozen=True)
class _RectifierRule(_Backprop):
    unsupported: str = "error"

    def __post_init__(self) -> None:
        if self.unsupported not in UNSUPPORTED:
            raise ValueError(f"unsupported must be one of {', '.join(UNSUPPORTED)}, got {self.unsupported!r}")

    def _unsupported(self) -> str:
        return self.unsupported


@dataclass(frozen=True)
class GuidedBP(_RectifierRule):
    """Guided back-propagation saliency (Springenberg et al. 2015): ReLUs pass positive signal only.

    The backward signal crosses a ReLU where its forward input was positive (``0 < x < 6``
    for ReLU6) and the signal itself is positive. Option ``unsupported``: ``error``
    (default) refuses a model with an activation where the rule is undefined (GELU, SiLU,
    ...); ``ignore`` back-propagates through those unchanged. Functional ``F.relu`` calls are
    invisible to the rule (plain gradient there).
    """

    name: ClassVar[str] = "gbp"
    rule: ClassVar[str] = "guided"


@dataclass(frozen=True)
class Deconvnet(_RectifierRule):
    """Deconvnet saliency (Zeiler & Fergus 2014): ReLUs pass positive signal, forward mask ignored.

    The backward signal crosses a ReLU (or ReLU6) wherever the signal itself is positive,
    whatever the forward input was. Option ``unsupported``: ``error`` (default) or
    ``ignore``, as for ``gbp``. Functional ``F.relu`` calls are invisible to the rule.
    """

    name: ClassVar[str] = "deconv"
    rule: ClassVar[str] = "deconv"
