"""Class map ``zoomout`` (being written)."""
