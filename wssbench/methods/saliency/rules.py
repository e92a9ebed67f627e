"""The backward rules at rectifiers, and where they are applied (modules and functional calls).

For a rectifier ``y = clamp(x, lo, hi)`` (ReLU: ``lo = 0, hi = inf``; ReLU6: ``0, 6``) and an
incoming gradient ``g``, the signal passed to ``x`` is:

=========== =======================================================================
rule        signal passed to ``x``
=========== =======================================================================
``vanilla`` ``g * [lo < x < hi]`` (ordinary autograd; Simonyan et al. 2014)
``guided``  ``g * [lo < x < hi] * [g > 0]`` (Springenberg et al. 2015)
``deconv``  ``g * [g > 0]``, forward gate ignored (Zeiler & Fergus 2014)
=========== =======================================================================

Where the rules are applied, for ``guided`` and ``deconv`` (``vanilla`` is plain autograd):

* Every ``nn.ReLU`` (subclasses included), ``nn.ReLU6`` and ``nn.Hardtanh(min_val=0)``
  module of the model: a forward hook replaces the module's output with the same values
  produced by :class:`_RectifiedBackward`, whose backward implements the rule and sends the
  signal straight to the module's input. In-place modules (timm's ``nn.ReLU(inplace=True)``)
  are switched to ``inplace=False`` for the call and restored afterwards.
* Rectifiers called as functions in a ``forward`` outside those modules: ``F.relu``,
  ``F.relu_``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu``, ``Tensor.relu_``,
  ``F.relu6`` and ``F.hardtanh(min_val=0)``, in place or not. A
  :class:`torch.overrides.TorchFunctionMode` active during the forward pass intercepts them
  and applies the same function. Calls made by a hooked module are left to its hook, so no
  rectifier gets the rule twice. Not seen: other spellings of a rectifier
  (``x.clamp(min=0)``, ``torch.maximum(x, 0)``, ``F.threshold``) and code the mode does not
  reach (TorchScript, compiled graphs); those keep ordinary autograd.

The rules are undefined for smooth or non-rectifying activations (``GELU``, ``SiLU``,
``Hardswish``, ``Mish``, ``Sigmoid``, ...: any other module class defined in
``torch.nn.modules.activation`` or ``timm.layers.activations*``). A model with such a module
is refused with a :class:`~wssbench.errors.UsageError` naming the first one, unless
``unsupported="ignore"``, which back-propagates through them unchanged. Functional calls of
such activations are not detected.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from wssbench.errors import UsageError

__all__ = ["RULES", "UNSUPPORTED", "Rectifier", "check_rule", "rules_applied"]

RULES = ("vanilla", "guided", "deconv")
UNSUPPORTED = ("error", "ignore")

METHOD = {"vanilla": "bp", "guided": "gbp", "deconv": "deconv"}  # for error messages
TITLE = {"vanilla": "back-propagation", "guided": "guided back-propagation", "deconv": "the deconvnet rule"}

Gate = tuple[float, float]  # the forward gate lo < x < hi
Rectifier = tuple[str, nn.Module, Gate]  # (module path, module, gate)


# --------------------------------------------------------------------------------------
# Which activation modules get which rule
# --------------------------------------------------------------------------------------


def _rectifier_gate(module: nn.Module) -> Gate | None:
    """The forward gate ``lo < x < hi`` of a rectifier module, or ``None`` if it is not one."""
    if isinstance(module, nn.ReLU):
        return (0.0, math.inf)
    if isinstance(module, nn.Hardtanh) and module.min_val == 0:  # nn.ReLU6 is Hardtanh(0, 6)
        return (0.0, float(module.max_val))
    return None


def _is_activation(module: nn.Module) -> bool:
    """An element-wise (or softmax-like) nonlinearity module, as torch and timm define them."""
    if isinstance(module, nn.MultiheadAttention):
        return False
    mod = type(module).__module__
    return mod == "torch.nn.modules.activation" or mod.startswith("timm.layers.activations")


def _unsupported_error(rule: str, others: list[tuple[str, nn.Module]]) -> UsageError:
    path, module = others[0]
    more = f" (and {len(others) - 1} more activation modules)" if len(others) > 1 else ""
    where = f"'{path}'" if path else "the model itself"
    return UsageError(
        f"{METHOD[rule]}: {TITLE[rule]} is undefined for {type(module).__name__} at {where}{more}; "
        f"pass unsupported=ignore (-O saliency.unsupported=ignore) to back-propagate through "
        f"such activations unchanged, or use saliency 'bp'"
    )


def check_rule(model: nn.Module, rule: str, unsupported: str) -> list[Rectifier]:
    """Check ``rule`` and ``unsupported`` against the model; the rectifier modules to hook."""
    if rule not in RULES:
        raise UsageError(f"unknown back-propagation rule '{rule}'; available: {', '.join(RULES)}")
    if unsupported not in UNSUPPORTED:
        raise UsageError(f"bad value {unsupported!r} for unsupported: expected one of {', '.join(UNSUPPORTED)}")
    if rule == "vanilla":
        return []
    rectifiers, others = [], []
    for path, module in model.named_modules():
        gate = _rectifier_gate(module)
        if gate is not None:
            rectifiers.append((path, module, gate))
        elif _is_activation(module):
            others.append((path, module))
    if others and unsupported == "error":
        raise _unsupported_error(rule, others)
    return rectifiers


# --------------------------------------------------------------------------------------
# The modified backward
# --------------------------------------------------------------------------------------


class _RectifiedBackward(torch.autograd.Function):
    """Identity on the rectifier's output; backward sends ``relu(g)``, gated if guided, to its input.

    ``apply(x, y, lo, hi, guided)``: ``x`` the rectifier's input (the only differentiable
    argument), ``y = clamp(x, lo, hi)`` its output, detached. The forward gate
    ``lo < x < hi`` is read off ``y`` in the backward (``lo < y < hi`` for a clamp), as
    autograd's own ReLU backward does: nothing is computed in the forward pass, and ``y`` is
    usually saved by the next layer anyway. Written in the ``setup_context`` style so that the
    backward also runs under ``torch.autograd.grad(..., is_grads_batched=True)``.
    """

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor, lo: float, hi: float, guided: bool) -> torch.Tensor:
        # A new tensor object: the original op's graph node is not connected to it, so the
        # original forward gate is not applied a second time (that would break deconv).
        return y.detach()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, y, lo, hi, guided = inputs
        ctx.gate = (lo, hi) if guided else None
        ctx.save_for_backward(y if guided else None)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.gate is None:  # deconv: only positive signal crosses the rectifier
            return grad.clamp_min(0), None, None, None, None
        (y,) = ctx.saved_tensors
        lo, hi = ctx.gate
        if hi == math.inf:  # guided: only where the forward input was in the gate...
            grad = torch.ops.aten.threshold_backward(grad, y, lo)
        else:
            grad = torch.ops.aten.hardtanh_backward(grad, y, lo, hi)
        return grad.clamp_min_(0), None, None, None, None  # ...and only positive signal


def rectify(rule: str, x: torch.Tensor, y: torch.Tensor, gate: Gate) -> torch.Tensor:
    """``y = clamp(x, *gate)`` (computed by the caller) with ``rule``'s backward to ``x``."""
    return _RectifiedBackward.apply(x, y.detach(), gate[0], gate[1], rule == "guided")


# --------------------------------------------------------------------------------------
# Functional rectifiers: a TorchFunctionMode
# --------------------------------------------------------------------------------------


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _relu_call(args: tuple, kwargs: dict) -> tuple[Gate, bool]:
    return (0.0, math.inf), bool(_arg(args, kwargs, 1, "inplace", False))


def _relu6_call(args: tuple, kwargs: dict) -> tuple[Gate, bool]:
    return (0.0, 6.0), bool(_arg(args, kwargs, 1, "inplace", False))


def _hardtanh_call(args: tuple, kwargs: dict) -> tuple[Gate, bool] | None:
    if _arg(args, kwargs, 1, "min_val", -1.0) != 0:
        return None  # not a rectifier
    return (0.0, float(_arg(args, kwargs, 2, "max_val", 1.0))), bool(_arg(args, kwargs, 3, "inplace", False))


# function -> (args, kwargs) -> ((lo, hi), in place) or None when the call is no rectifier
_FUNCTIONAL: dict[Callable, Callable[[tuple, dict], tuple[Gate, bool] | None]] = {
    F.relu: _relu_call,
    torch.relu: lambda args, kwargs: ((0.0, math.inf), False),
    torch.Tensor.relu: lambda args, kwargs: ((0.0, math.inf), False),
    torch.relu_: lambda args, kwargs: ((0.0, math.inf), True),  # also F.relu_
    torch.Tensor.relu_: lambda args, kwargs: ((0.0, math.inf), True),
    F.relu6: _relu6_call,
    F.hardtanh: _hardtanh_call,
}


class _FunctionalRectifiers(TorchFunctionMode):
    """Applies ``rule`` to the functional rectifier calls of a forward pass.

    ``inside`` counts the hooked rectifier modules currently running: their own functional
    calls are left alone (the module's hook applies the rule to the module as a whole).
    Nothing is done while autograd is off (below the shallowest gradient tap).
    """

    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule
        self.inside = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        parse = _FUNCTIONAL.get(func)
        call = parse(args, kwargs) if parse is not None else None
        if call is None or self.inside or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        gate, inplace = call
        x = args[0]
        with torch.no_grad():
            y = x.clamp(gate[0], None if gate[1] == math.inf else gate[1])
        out = rectify(self.rule, x, y, gate)
        if inplace:  # same values written into x; x's history now runs through the rule
            return x.copy_(out)
        return out


# --------------------------------------------------------------------------------------
# Applying the rule for the duration of a forward pass
# --------------------------------------------------------------------------------------


def _module_hooks(rule: str, path: str, gate: Gate, mode: _FunctionalRectifiers) -> tuple[Callable, Callable]:
    """(forward pre-hook, forward hook) applying ``rule`` to one rectifier module."""

    def enter(module: nn.Module, inputs: tuple) -> None:
        mode.inside += 1

    def leave(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        mode.inside -= 1
        if not torch.is_grad_enabled():
            return None  # below the shallowest tap: nothing is back-propagated here
        x = inputs[0]
        if output is x or (output.numel() > 0 and output.data_ptr() == x.data_ptr()):
            raise UsageError(
                f"{METHOD[rule]}: the activation at '{path}' ({type(module).__name__}) ran in place "
                f"although its inplace flag was turned off; {TITLE[rule]} cannot be applied to it"
            )
        return rectify(rule, x, output, gate)

    return enter, leave


@contextlib.contextmanager
def rules_applied(rule: str, rectifiers: list[Rectifier]) -> Iterator[None]:
    """Apply ``rule`` to the rectifier modules and functional calls of the forward passes run
    inside the block; everything is undone on exit (hooks removed, inplace flags restored)."""
    if rule == "vanilla":
        yield
        return
    mode = _FunctionalRectifiers(rule)
    handles = []
    flags: list[tuple[nn.Module, bool]] = []
    try:
        for path, module, gate in rectifiers:
            if getattr(module, "inplace", False):
                flags.append((module, module.inplace))
                module.inplace = False
            enter, leave = _module_hooks(rule, path, gate, mode)
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
        with mode:
            yield
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            module.inplace = flag
