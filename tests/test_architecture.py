"""The tree reads as the architecture: dependencies point one way, and every package ships.

The import graph is computed from the code (every import, at module level, inside functions
and under TYPE_CHECKING alike), with setuptools' package mapping applied. Layers, from the
bottom: records, errors, settings and their kind -> models and vocab (which never import
each other) -> store and kafka -> pipeline, tagger, vocabulary_change, model_change, workbench
-> worker -> cli. A module may import its own layer's package or a lower layer, nothing above.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from tests.conftest import REPO

PACKAGE_DIRS = {"columnist": REPO / "streams", "columnist.models": REPO / "models", "columnist.vocab": REPO / "vocab"}

LAYERS = [
    {"columnist", "columnist.records", "columnist.errors", "columnist.settings",
     "columnist.faults", "columnist.printable", "columnist.vectors", "columnist.retry", "columnist.files",
     "columnist.lookup", "columnist.watchdog", "columnist.tower_watch", "columnist.decode_watch"},
    {"columnist.models", "columnist.vocab"},
    {"columnist.store", "columnist.kafka"},
    {"columnist.pipeline", "columnist.prompt_cache", "columnist.tagger", "columnist.vocabulary_change",
     "columnist.model_change", "columnist.sidecars", "columnist.watch", "columnist.workbench"},
    {"columnist.worker"},
    {"columnist.cli", "columnist.__main__"},
]
"""Each module belongs to the first group that names it or a package above it."""


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "columnist" and parts and parts[0] in ("models", "vocab"):
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path, name: str) -> set[str]:
    """Every columnist module ``path`` imports, wherever the import sits."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("columnist")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("columnist"):
                found.add(target)
                found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def layer(module: str) -> int:
    for index, group in enumerate(LAYERS):
        if any(module == g or module.startswith(g + ".") for g in group if g != "columnist") or module in group:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def group(module: str) -> str:
    """The package a module counts under for cycles: columnist.<first part>."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_dependencies_point_down_the_layers():
    known = modules()
    upward = []
    for name, path in known.items():
        for target in imports(path, name):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]  # `from columnist.x import Name` names a module or a name
            if target not in known or target == name:
                continue
            if layer(target) > layer(name):
                upward.append(f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})")
            if {group(name), group(target)} == {"columnist.models", "columnist.vocab"}:
                upward.append(f"{name} imports {target}: models and vocab never import each other")
    assert upward == []


def test_no_cycle_between_packages():
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        for target in imports(path, name):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and group(target) != group(name):
                edges.setdefault(group(name), set()).add(group(target))
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        if state.get(node) == "active":
            return path[path.index(node):] + [node]
        if state.get(node) == "done":
            return None
        state[node] = "active"
        for nxt in sorted(edges.get(node, ())):
            cycle = visit(nxt, path + [node])
            if cycle:
                return cycle
        state[node] = "done"
        return None

    for start in sorted(edges):
        assert visit(start, []) is None


def test_every_package_is_in_the_wheels_package_list():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    dirs = {name: Path(REPO / folder) for name, folder in config["package-dir"].items()}
    expected = set()
    for package, folder in dirs.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            if package == "columnist" and parts and parts[0] in ("models", "vocab"):
                continue
            expected.add(".".join((package, *parts)))
    expected |= {"columnist.ddl"}
    assert expected - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - expected == set()


def test_nothing_outside_tests_imports_from_tests():
    offenders = []
    for folder in ("streams", "models", "vocab", "bench", "deploy"):
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n == "tests" or n.startswith("tests.")]
    assert offenders == []
