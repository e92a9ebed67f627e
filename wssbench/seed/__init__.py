"""Stage 1 of a WSSS method: seeds. A classifier trained on image labels, its class maps and
saliency maps per image, fused and refined into label maps, scored against the masks.

``config`` (what a run is), ``presets`` (the published methods), ``pipeline`` (the run) and
``record`` (what it writes) mirror :mod:`wssbench.segmentation`, stage 2.
"""
