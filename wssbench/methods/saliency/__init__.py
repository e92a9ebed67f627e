"""The gradient machinery of the saliency methods (the methods themselves are plugins:
``plugins/saliency.py`` and ``plugins/dcsm.py``).

Modules: :mod:`.rules` (the backward rules at rectifiers), :mod:`.taps` (the tensors
gradients are taken at), :mod:`.backprop` (one recorded
forward pass, :func:`record`, and class-score gradients from it, :func:`trace_gradients`, at the
input or at layers; Simonyan's map), :mod:`.multilayer` (the poster's multi-layer maps),
:mod:`.dcsm` (DCSM as the authors' ``dcsm.m`` computes it, and its class detection).
"""

from wssbench.methods.saliency.backprop import SIGNALS, Trace, class_gradients, record, saliency_maps, simonyan, trace_gradients
from wssbench.methods.saliency.multilayer import default_layers, layer_maps, layer_paths, multilayer_maps
from wssbench.methods.saliency.rules import RULES, UNSUPPORTED

__all__ = [
    "RULES",
    "SIGNALS",
    "UNSUPPORTED",
    "Trace",
    "class_gradients",
    "default_layers",
    "layer_maps",
    "layer_paths",
    "multilayer_maps",
    "record",
    "saliency_maps",
    "simonyan",
    "trace_gradients",
]
