"""wssbench: benchmark weakly-supervised semantic segmentation methods as plugins.

``create``/``names`` reach the plugin registry; ``run``, ``Pipeline``, ``create_classifier`` and
``build_config`` are the run as a library (:mod:`wssbench.api`), imported on first use so that
``import wssbench`` stays light.
"""

from wssbench.host.hookspecs import hookimpl
from wssbench.host.registry import KINDS, create, names

__version__ = "0.1.0"
__all__ = ["KINDS", "Pipeline", "RunConfig", "build_config", "create", "create_classifier", "hookimpl", "names", "run", "__version__"]

# the run as a library, imported on first use: ``import wssbench`` stays light (no torch)
_LAZY = {"Pipeline": "api", "create_classifier": "api", "run": "api", "build_config": "seed.config", "RunConfig": "seed.config"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # the lazy names: 'import wssbench' imports no torch

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'wssbench' has no attribute {name!r}")
