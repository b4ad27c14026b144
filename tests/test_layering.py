"""The house's layering: packages import only downward, inference never
imports training or data preparation (at run time: a fresh process that
classifies with an exported model, in ``test_export.py``), and no import
cycle."""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "amser_sb")

#: What each package may import of amser_sb (besides itself).
ALLOWED = {
    "core": set(),
    "lobes": {"core"},
    "data": {"core"},
    "config": {"core", "lobes", "data"},
    "weights": {"core"},
    "training": {"core", "lobes", "data", "config"},
    "inference": {"core", "lobes", "config"},
    "cli": {"core", "lobes", "data", "config", "training", "inference",
            "weights"},
}


def _modules(top_level_only=False):
    """``{dotted module name: set of amser_sb modules it imports}``
    (only the imports run when the module is imported, with
    ``top_level_only``; else also those inside functions)."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, os.path.dirname(PACKAGE))
            module = rel[:-3].replace(os.sep, ".")
            module = module.removesuffix(".__init__")
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
            imports = set()
            nodes = ast.walk(tree)
            if top_level_only:
                nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                         if not isinstance(stmt, (ast.FunctionDef,
                                                  ast.ClassDef))]
            for node in nodes:
                if isinstance(node, ast.ImportFrom) and node.module:
                    if node.module.startswith("amser_sb"):
                        imports.add(node.module)
                elif isinstance(node, ast.Import):
                    imports |= {a.name for a in node.names
                                if a.name.startswith("amser_sb")}
            found[module] = imports
    return found


def _package(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_top_level_entry_is_a_package():
    entries = sorted(os.listdir(PACKAGE))
    modules = [e for e in entries if e.endswith(".py")]
    assert modules == ["__init__.py"], modules
    for entry in entries:
        path = os.path.join(PACKAGE, entry)
        if os.path.isdir(path) and entry != "__pycache__":
            assert os.path.isfile(os.path.join(path, "__init__.py")), entry


def test_packages_import_only_downward():
    bad = []
    for module, imports in _modules().items():
        package = _package(module)
        if package not in ALLOWED:
            continue
        for target in imports:
            other = _package(target)
            if other and other != package and other not in ALLOWED[package]:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycle():
    graph = _modules(top_level_only=True)
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_no_module_imports_another_modules_private_name():
    bad = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (
                        node.module or "").startswith("amser_sb"):
                    bad += [f"{path}: {node.module}.{a.name}"
                            for a in node.names if a.name.startswith("_")]
    assert not bad, bad
