import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def wssbench_home(tmp_path_factory):
    """Every test caches data and classifiers in one temporary home, never in ~/.cache.

    Session-scoped so that module-scoped fixtures (which run before function-scoped ones)
    see it too; tests that need their own home still monkeypatch WSSBENCH_HOME.
    """
    home = tmp_path_factory.getbasetemp() / "wssbench-home"
    previous = os.environ.get("WSSBENCH_HOME")
    os.environ["WSSBENCH_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("WSSBENCH_HOME", None)
    else:
        os.environ["WSSBENCH_HOME"] = previous
