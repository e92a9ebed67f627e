"""Datasets in the VOCdevkit layout."""
