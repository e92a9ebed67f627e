"""Built-in saliency methods: vanilla BP, guided BP, deconvnet and multi-layer maps."""

import wssbench
from wssbench.saliency import Deconvnet, GuidedBP, MultiLayer, VanillaBP


@wssbench.hookimpl
def register_saliency(register):
    register(VanillaBP)
    register(GuidedBP)
    register(Deconvnet)
    register(MultiLayer)
