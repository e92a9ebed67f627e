"""The pseudo-mask stage, between the seeds and the segmentation network: a method (``psa``,
``irn`` or a third party's, ``register_pseudomasks``) learns from the seeds of the training split
and turns each image's seeds into the mask ``wssbench segment`` trains on."""
