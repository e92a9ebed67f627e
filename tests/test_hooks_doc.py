"""Every hook is documented in docs/hooks.md with its exact signature and contract (datasette's test_docs)."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

from wssbench.host import hookspecs
from wssbench.host.registry import KINDS

DOC = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"
HOOKS = [name for name, value in vars(hookspecs).items() if hasattr(value, "wssbench_spec")]


def sections() -> dict[str, str]:
    """Hook name -> the text of its ``## name`` section in docs/hooks.md."""
    parts = re.split(r"^## (\w+)\n", DOC.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_hookspecs_are_exactly_the_kinds():
    assert sorted(HOOKS) == sorted(KINDS.values())


def test_no_documented_hook_is_missing_or_extra():
    assert sorted(sections()) == sorted(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_documented_with_exact_signature_and_docstring(hook):
    spec = getattr(hookspecs, hook)
    signature = next(line for line in inspect.getsource(spec).splitlines() if line.startswith("def "))
    text = sections()[hook]
    assert f"```python\n{signature}\n```" in text, f"docs/hooks.md, {hook}: the signature should read\n{signature}"
    docstring = inspect.getdoc(spec)
    assert docstring in text, f"docs/hooks.md, {hook}: copy the hookspec's docstring verbatim:\n{docstring}"
    assert list(inspect.signature(spec).parameters) == ["register"]


def _resolves(dotted: str) -> bool:
    """True when ``a.b.c`` names a module or an attribute of one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_reference_in_the_contracts_exists():
    """``:class:`wssbench.x.Y``` and ````wssbench.x.f()```` in the hookspecs name real objects."""
    text = inspect.getsource(hookspecs)
    references = set(re.findall(r":(?:class|func|mod):`([\w.]+)`", text))
    references |= set(re.findall(r"``(wssbench(?:\.\w+)+)(?:\(\))?``", text))
    assert references, "the contracts name no object: the test would check nothing"
    missing = sorted(r for r in references if not _resolves(r))
    assert not missing, f"hookspecs.py names objects that do not exist: {missing}"
