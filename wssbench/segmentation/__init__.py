"""Stage 2 of a WSSS method: a segmentation network trained on pseudo-masks or image labels.

Every WSSS paper since 2016 reports its final number this way: seeds -> pseudo-masks on the
training split -> a segmentation network (DeepLab) trained on them -> mIoU of the network on
val. EM-Adapt and CCNN train the network from image labels alone. The pieces:

* ``batch``: what an objective sees (:class:`SegBatch`).
* ``em_adapt``, ``ccnn``: the two papers' latent-label steps (pure functions, tested alone).
* ``data``: crops, flips and rescaling of training samples, read ahead by DataLoader workers.
* ``train``: SGD with the poly schedule, AMP, batch-norm modes, torchrun DDP, cached checkpoints.
* ``infer``: single or multi-scale + flip inference, optional dense CRF, the VOC confusion matrix.
* ``masks``: pseudo-masks from a ``wssbench run`` folder, with their own score.
* ``config``, ``run``, ``record``, ``presets``: the frozen run description, the whole run, its
  result record (``stage`` = "segmentation"), and the EM-Adapt and CCNN presets.

Networks (``segnet``) and objectives (``objective``) are plugin kinds like any other.
"""
