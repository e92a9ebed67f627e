"""Finds the packages: every ``wssbench`` package, and the built-in plugins, which live in
``plugins/`` and import as ``wssbench_plugins`` (``package-dir`` in pyproject.toml). The rest of
the project's metadata is in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["wssbench", "wssbench.*"]), "wssbench_plugins"])
