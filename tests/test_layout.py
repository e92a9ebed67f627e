"""The package's shape, checked: no import circles, no import against the layering, in-function
imports only where start-up time needs them (each saying so), and a fast ``wssbench --help``.

Layers, lowest first (a module may import its own layer and those below, never above):

0. ``errors``, ``host`` (the plugin host), ``storage``, ``runtime``, ``results``
1. ``classifier``, ``methods`` (shared building blocks), ``data``, ``evaluation``
2. ``engine`` (what both stages share)
3. ``seed`` (stage 1), ``pseudomask`` (between them), ``segmentation`` (stage 2)
4. ``api``, ``bench``, ``leaderboard``, ``site`` (the public face: the leaderboard as a web page)
5. ``cli``; and the package's ``__init__`` / ``__main__``

Imports inside ``if TYPE_CHECKING:`` are annotations only and do not count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "errors": 0, "host": 0, "storage": 0, "runtime": 0, "results": 0,
    "classifier": 1, "methods": 1, "data": 1, "evaluation": 1,
    "engine": 2,
    "seed": 3, "pseudomask": 3, "segmentation": 3,
    "api": 4, "bench": 4, "leaderboard": 4, "site": 4,
    "cli": 5, "__init__": 6, "__main__": 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "plugins":
        parts[0] = "wssbench_plugins"
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def sources() -> dict[str, Path]:
    files = [*ROOT.glob("wssbench/**/*.py"), *ROOT.glob("plugins/*.py")]
    return {module_name(p): p for p in files}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, known: set[str]) -> list[tuple[str, bool, int]]:
    """(imported wssbench module, inside a function?, line) for every import of ``path``."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if _type_checking(node):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function = True
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                out.append((target, in_function, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, in_function, node.lineno) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, in_function)

    visit(tree, False)
    return out


def resolve(name: str, known: set[str]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "wssbench":
        return None
    return LAYERS["__init__" if len(parts) == 1 else parts[1]]


def test_every_top_level_package_has_a_layer():
    for path in ROOT.glob("wssbench/*"):
        if path.name.startswith((".", "_")) and path.name not in ("__init__.py", "__main__.py"):
            continue
        if path.suffix in (".py", "") and (path.is_dir() and (path / "__init__.py").exists() or path.suffix == ".py"):
            assert path.stem in LAYERS, f"wssbench/{path.name} has no layer in tests/test_layout.py"


def graph() -> dict[str, set[str]]:
    known = set(sources())
    edges: dict[str, set[str]] = {}
    for module, path in sources().items():
        for name, _, _ in imports(path, known):
            target = resolve(name, known)
            if target and target != module and (target.startswith("wssbench")):
                edges.setdefault(module, set()).add(target)
    return edges


def test_no_import_circles():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            dfs(node)
    assert circles == []


def test_no_import_against_the_layering():
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            if module.startswith("wssbench_plugins") or target.startswith("wssbench_plugins"):
                continue  # plugins sit above the core (they register through it), checked below
            if layer(target) > layer(module) and not (module == "wssbench" or target.startswith(module + ".")):
                wrong.append(f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})")
    assert wrong == []


def test_the_core_never_imports_a_built_in_plugin():
    """The core names no method: plugins are found through the registry (and private helper
    modules are imported only by their own plugins)."""
    offenders = [f"{m} -> {t}" for m, ts in graph().items() if m.startswith("wssbench.") or m == "wssbench"
                 for t in ts if t.startswith("wssbench_plugins")]
    assert offenders == []


def test_in_function_imports_are_for_start_up_time_and_say_so():
    """An import inside a function keeps a heavy dependency (torch, scipy, ...) or a module that
    loads one off the start-up path (``wssbench --help``, ``list``, ``plugins``), and a comment on
    its line or the line above says why. The built-in plugins import torch inside their methods
    by design (registering must import no torch): ``test_listing_imports_no_torch`` holds them to it."""
    known = set(sources())
    unexplained = []
    for module, path in sources().items():
        lines = path.read_text().splitlines()
        for name, in_function, lineno in imports(path, known):
            if not in_function:
                continue
            if module.startswith("wssbench_plugins"):
                continue
            here, above = lines[lineno - 1], lines[lineno - 2] if lineno > 1 else ""
            if "#" in here or above.strip().startswith("#"):
                continue
            unexplained.append(f"{path.relative_to(ROOT)}:{lineno}: {here.strip()}")
    assert unexplained == []


def test_wssbench_help_is_fast_and_imports_no_torch():
    code = ("import sys, time; t = time.perf_counter(); from wssbench.cli import main; sys.argv = ['wssbench', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', time.perf_counter() - t, file=sys.stderr)")
    best = min(_timed(code) for _ in range(3))
    assert best[0] == "NOTORCH"
    assert best[1] < 0.5, f"wssbench --help took {best[1]:.2f} s"


def _timed(code: str) -> tuple[str, float]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    flag, seconds = result.stderr.strip().splitlines()[-1].split()
    return flag, float(seconds)


@pytest.mark.parametrize("command", [["list", "saliency"], ["plugins"]])
def test_listing_imports_no_torch(command):
    code = (f"import sys; sys.argv = ['wssbench', *{command!r}]\nfrom wssbench.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('TORCH' if 'torch' in sys.modules else 'NOTORCH', file=sys.stderr)")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "NOTORCH", (result.stderr, time.perf_counter() - start)


def test_reading_records_imports_no_torch():
    """The leaderboard reads records and counts only: over 1,000 runs it answers in about a second
    (benchmarks/leaderboard_scale.py), most of which would be torch's import."""
    code = "import sys, wssbench.leaderboard, wssbench.cli.leaderboard\nprint('TORCH' if 'torch' in sys.modules else 'NOTORCH')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "NOTORCH"


def test_recipe_defaults_for_labels_are_the_recipes():
    from wssbench.classifier.training import TrainRecipe
    from wssbench.seed.keys import RECIPE_DEFAULTS, RECIPE_KEYS

    assert RECIPE_DEFAULTS == {k: getattr(TrainRecipe, k) for k in RECIPE_KEYS}
