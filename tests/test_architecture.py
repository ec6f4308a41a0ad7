"""The package's shape: layers that import only downwards, no import cycle, one list of each thing.

The import graph is read from the source with ``ast`` (every ``import`` and ``from … import``,
inside functions too), not by importing, so a lazy import cannot hide an edge.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "anomclip"

#: each module's layer; a module may import its own layer and the layers below it
LAYERS = {"foundation": 0, "data": 1, "model": 1, "methods": 2, "engine": 3, "book": 4, "bench": 5, "cli": 6, "api": 6}
FOUNDATION = {"anomclip.errors", "anomclip.io", "anomclip.recipes"}
#: the entry points: the public API (the package root, lazy for the engine) and ``python -m anomclip``
API = {"anomclip", "anomclip.__main__"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def layer_of(mod: str) -> str:
    if mod in FOUNDATION:
        return "foundation"
    if mod in API:
        return "api"
    if mod == "anomclip.cli":
        return "cli"
    return mod.split(".")[1]


def imports_of(mod: str, path: Path, known: set[str]) -> set[str]:
    """The anomclip modules ``mod`` imports (a name imported from a package that is a submodule
    counts as that submodule; the package's ``__init__`` counts too)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "anomclip"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "anomclip":
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            out |= subs
            if len(subs) < len(node.names):
                out.add(target)
    # a package's parents are imported with it
    closed = set()
    for t in out:
        parts = t.split(".")
        closed |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    ancestors = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
    return (closed & known) - {mod} - ancestors  # a submodule's own packages are being imported already


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(m, p, set(mods)) for m, p in mods.items()}


def test_the_graph_reader_sees_relative_lazy_and_package_imports(tmp_path):
    """The reader itself: a function-level relative import of a submodule, and a package import."""
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from ..data import layouts\n    from ..engine.runner import run_experiment\n")
    known = {"anomclip", "anomclip.data", "anomclip.data.layouts", "anomclip.engine", "anomclip.engine.runner",
             "anomclip.model", "anomclip.model.x"}
    assert imports_of("anomclip.model.x", src, known) == {"anomclip.data", "anomclip.data.layouts",
                                                           "anomclip.engine", "anomclip.engine.runner"}


def test_every_module_belongs_to_a_layer():
    for mod in modules():
        assert layer_of(mod) in LAYERS, mod


def test_layers_import_only_downwards(graph):
    """model ← methods ← engine ← book ← bench ← CLI, with data beside the model, all on the foundation."""
    wrong = []
    for mod, deps in graph.items():
        for dep in deps:
            a, b = layer_of(mod), layer_of(dep)
            if a == "api":  # the entry points may import every layer
                continue
            if LAYERS[b] > LAYERS[a] or (LAYERS[a] == LAYERS[b] and a != b):
                wrong.append(f"{mod} ({a}) imports {dep} ({b})")
    assert not wrong, "\n".join(wrong)


def test_the_foundation_and_the_core_import_nothing_above_them(graph):
    for mod, deps in graph.items():
        if layer_of(mod) in ("foundation", "data", "model"):
            above = {d for d in deps if layer_of(d) in ("methods", "engine", "book", "bench", "cli", "api")}
            assert not above, f"{mod} imports {sorted(above)}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph (depth-first search), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, " → ".join(cycle)


def test_one_catalogue_of_datasets_and_one_of_methods():
    """Every list of datasets or methods is derived from the catalogue (checked by content)."""
    from anomclip.book import labels, plots
    from anomclip.data.catalogue import DATASET_ORDER, DATASETS
    from anomclip.data.releases import LAYOUTS
    from anomclip.methods.registry import CLASSES
    from anomclip.recipes import METHODS, RECIPES

    assert len(DATASETS) == 17 and len({d.key for d in DATASETS}) == 17
    assert set(LAYOUTS) == {d.key for d in DATASETS} | {"folder"}
    assert [LAYOUTS[d.key].title for d in DATASETS] == [d.name for d in DATASETS]
    assert labels.DATASET_ORDER is DATASET_ORDER and plots.DATASET_ORDER is DATASET_ORDER
    assert list(CLASSES) == list(METHODS)
    assert all(RECIPES[m.recipe].method == key for key, m in METHODS.items())
    # no module but the catalogues spells out the 17 names or the six methods as a literal list
    names = {d.name for d in DATASETS}
    for path in PKG.rglob("*.py"):
        if path.name in ("catalogue.py", "recipes.py", "registry.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                assert len(strings & names) < 5, f"{path.name}:{node.lineno} lists the datasets again"
                assert len(strings & {"clip", "clip-ac", "winclip", "vand", "coop"}) < 4, \
                    f"{path.name}:{node.lineno} lists the methods again"
