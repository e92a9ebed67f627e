"""wssbench: benchmark weakly-supervised semantic segmentation methods as plugins."""

from .hookspecs import hookimpl
from .registry import KINDS, create, names

__version__ = "0.1.0"
__all__ = ["KINDS", "create", "hookimpl", "names", "__version__"]
