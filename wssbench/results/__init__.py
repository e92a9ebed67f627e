"""Scoring and context: the VOC metric (``metrics``) and published numbers (``references``)."""
