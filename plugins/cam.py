"""Class maps ``cam`` and ``gradcam`` (being written)."""
