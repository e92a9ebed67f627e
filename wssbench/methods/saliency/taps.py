"""Taps: forward hooks recording the tensors class-score gradients are taken at (layer inputs
or outputs), so that the backward passes stop at the shallowest of them."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from wssbench.errors import UsageError

__all__ = ["Taps"]


class Taps:
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
