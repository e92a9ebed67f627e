"""Built-in saliency methods: vanilla BP, guided BP and deconvnet."""

import wssbench
from wssbench.saliency.backprop import Deconvnet, GuidedBP, VanillaBP


@wssbench.hookimpl
def register_saliency(register):
    register(VanillaBP)
    register(GuidedBP)
    register(Deconvnet)
