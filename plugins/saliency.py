"""Built-in saliency methods: vanilla BP, guided BP, deconvnet and multi-layer maps.

Each is a frozen dataclass whose fields are its options, called as
``method(model, images, classes) -> maps (B, K, H, W)`` float32, raw (not normalised) and
non-negative (``multilayer`` with ``signed=True`` aside), over the core's gradient machinery
(:mod:`wssbench.methods.saliency`). Option ``signal``: what is back-propagated, ``pooled`` (the class
score the model returns, the default) or ``map`` (1 on every position of the class's score
map, as the DCSM authors do; needs a model with score maps, a wssbench Classifier).

Shared-forward capability (what the pipeline may use to run one forward pass for all stages):

* ``shares_forward: ClassVar[bool]``: True when the method can work from a forward pass
  recorded by someone else. Such a method also has
* ``forward_spec(model) -> dict``: the keyword arguments of
  :func:`wssbench.methods.saliency.record` it needs (``rule``, ``layers``, ``at_input``,
  ``unsupported``), and
* ``from_trace(trace, classes) -> maps (B, K, H, W)``: the same maps as
  ``method(model, trace.images, classes)``, taken from a trace recorded with that spec inside
  its ``record`` block (a trace recorded otherwise is refused with a UsageError).

``method(model, images, classes)`` is ``record(model, images, **forward_spec(model))`` then
``from_trace``. Torch and the machinery are imported when a method is created or called, not
when this module is imported (listing plugins stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import wssbench


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class _Backprop:
    """Base of the methods here: one recorded forward pass, one backward pass per class."""

    name: ClassVar[str]
    shares_forward: ClassVar[bool] = True
    rule: ClassVar[str] = "vanilla"
    unsupported: ClassVar[str] = "error"  # an option (a field) where the rule can meet one

    signal: str = "pooled"  # "pooled": the class score; "map": the sum of its score map (DCSM)

    def __post_init__(self) -> None:
        from wssbench.methods.saliency import RULES, SIGNALS, UNSUPPORTED

        _check_choice("signal", self.signal, SIGNALS)
        _check_choice("rule", self.rule, RULES)
        _check_choice("unsupported", self.unsupported, UNSUPPORTED)

    def layers_for(self, model: Any) -> tuple[str, ...]:
        return ()  # the input

    def forward_spec(self, model: Any) -> dict:
        return {"rule": self.rule, "layers": self.layers_for(model), "at_input": True, "unsupported": self.unsupported}

    def from_trace(self, trace: Any, classes: Any) -> Any:
        from wssbench.errors import UsageError

        want = self.forward_spec(trace.model)
        if trace.spec() != {k: want[k] for k in ("rule", "layers", "at_input")}:
            raise UsageError(f"{self.name}: the shared forward pass was recorded with {trace.spec()}, {self.name} needs {want}")
        return self.reduce_trace(trace, classes).float()  # (B, K, H, W)

    def reduce_trace(self, trace: Any, classes: Any) -> Any:
        from wssbench.methods.saliency import simonyan, trace_gradients

        return trace_gradients(trace, classes, self.signal, lambda grads: simonyan(grads[0]))  # (B, K, H, W)

    def __call__(self, model: Any, images: Any, classes: Any) -> Any:
        from wssbench.methods.saliency import record

        with record(model, images, **self.forward_spec(model)) as trace:
            return self.from_trace(trace, classes)


@dataclass(frozen=True, kw_only=True)
class VanillaBP(_Backprop):
    """Vanilla back-propagation saliency (Simonyan et al. 2014): max over channels of |dS_c/dx|.

    Ordinary autograd through every layer, so it works on any model. Option ``signal``.
    """

    name: ClassVar[str] = "bp"
    rule: ClassVar[str] = "vanilla"


@dataclass(frozen=True, kw_only=True)
class _RectifierRule(_Backprop):
    unsupported: str = "error"  # or "ignore": back-propagate through GELU, SiLU, ... unchanged


@dataclass(frozen=True, kw_only=True)
class GuidedBP(_RectifierRule):
    """Guided back-propagation saliency (Springenberg et al. 2015): ReLUs pass positive signal only.

    The backward signal crosses a ReLU where its forward input was positive (``0 < x < 6``
    for ReLU6; modules and functional ``F.relu`` calls alike) and the signal itself is
    positive. Option ``unsupported``: ``error`` (default) refuses a model with an activation
    where the rule is undefined (GELU, SiLU, ...); ``ignore`` back-propagates through those
    unchanged. Option ``signal``.
    """

    name: ClassVar[str] = "gbp"
    rule: ClassVar[str] = "guided"


@dataclass(frozen=True, kw_only=True)
class Deconvnet(_RectifierRule):
    """Deconvnet saliency (Zeiler & Fergus 2014): ReLUs pass positive signal, forward mask ignored.

    The backward signal crosses a ReLU (or ReLU6) wherever the signal itself is positive,
    whatever the forward input was. Options ``unsupported`` and ``signal`` as for ``gbp``.
    """

    name: ClassVar[str] = "deconv"
    rule: ClassVar[str] = "deconv"


@dataclass(frozen=True, kw_only=True)
class MultiLayer(_Backprop):
    """Multi-layer saliency (Shimoda & Yanai): summed max-|dS_c/dL_i| maps at intermediate layer inputs.

    Options: ``layers`` module names (default: conv3_1 ... conv5_3 for VGG, the last three
    stages otherwise; see :mod:`wssbench.methods.saliency.multilayer`), ``rule`` (``guided``
    default, ``vanilla``, ``deconv``), ``signed`` (max over channels of the signed derivative
    instead of its absolute value; maps may then be negative), ``unsupported`` and ``signal``.
    DCSM's distinct maps over scales are the separate method ``dcsm``.
    """

    name: ClassVar[str] = "multilayer"

    layers: tuple[str, ...] = ()
    rule: str = "guided"
    signed: bool = False
    unsupported: str = "error"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "layers", tuple(self.layers))

    def layers_for(self, model: Any) -> tuple[str, ...]:
        from wssbench.methods.saliency import layer_paths

        return tuple(layer_paths(model, self.layers))

    def reduce_trace(self, trace: Any, classes: Any) -> Any:
        from wssbench.methods.saliency import layer_maps, trace_gradients

        return trace_gradients(trace, classes, self.signal, layer_maps(tuple(trace.images.shape[-2:]), self.signed))


@wssbench.hookimpl
def register_saliency(register):
    register(VanillaBP)
    register(GuidedBP)
    register(Deconvnet)
    register(MultiLayer)
