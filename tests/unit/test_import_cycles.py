"""No import cycles in services/ and shared/.

The graph is built from the source (AST), top-level imports only: imports inside
functions are not followed, nor `if TYPE_CHECKING:` blocks (never run). Importing
`a.b.c` also imports the package `a.b` (its `__init__`), unless the importer is inside
`a.b` (then that package is already being imported first)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("services", "shared", "devtools")

# Cycles accepted for now, each as its sorted list of modules, with the reason.
KNOWN: list[list[str]] = []

# Imports of our own modules inside a function: the way a cycle hides from the graph.
# Each one left is a cycle still to untie, or a forwarder until its callers move.
LOCAL_IMPORTS_LEFT = {
    # routes/spec.py builds its table from openapi.py's Op helpers.
    ("services/alerting/openapi.py", "services.alerting.routes.spec"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _top_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is: not in functions, not under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                found += _top_level_imports(node.body)
            found += _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            found += _top_level_imports(node.body) + _top_level_imports(node.orelse)
            found += _top_level_imports(node.finalbody)
            for handler in node.handlers:
                found += _top_level_imports(handler.body)
    return found


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    # `from pkg import name`: a submodule if there is one, else an attribute of pkg.
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def ours(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        parts = module.split(".")
        inside = {".".join(parts[:i]) for i in range(1, len(parts) + is_package)}
        edges: set[str] = set()
        for node in _top_level_imports(ast.parse(path.read_text()).body):
            for name in _imported_names(node, module, is_package):
                target = ours(name)
                if target is None:
                    continue
                pieces = target.split(".")
                edges |= {".".join(pieces[:i]) for i in range(1, len(pieces) + 1)}
        graph[module] = {e for e in edges if e in modules and e not in inside and e != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_services_and_shared_have_no_import_cycles() -> None:
    cycles = [c for c in _cycles(_graph()) if c not in KNOWN]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _imports_in_functions(tree: ast.Module) -> set[str]:
    """Our modules imported inside a function ("." for a relative import)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom):
                names.add("." if inner.level else inner.module or "")
            elif isinstance(inner, ast.Import):
                names |= {alias.name for alias in inner.names}
    return {n for n in names if n == "." or n.split(".")[0] in PACKAGES}


def test_no_other_function_imports_our_modules() -> None:
    found = {
        (str(path.relative_to(ROOT)), name)
        for path in _modules().values()
        for name in _imports_in_functions(ast.parse(path.read_text()))
    }
    # (One gone from the code is fine: drop it from LOCAL_IMPORTS_LEFT when you see it.)
    assert found - LOCAL_IMPORTS_LEFT == set(), "import these at the top (untie the cycle)"


def test_the_checker_finds_a_cycle_and_follows_package_inits() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    edges = _graph()
    # keys.py imports notify.deps, so it imports the notify package too
    assert "services.alerting.notify" in edges["services.alerting.keys"]
    # a module inside a package does not depend on its own package's __init__
    assert "services.alerting.notify" not in edges["services.alerting.notify.routes"]


def test_type_checking_imports_are_not_followed() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\nelse:\n    import y\n"
    )
    names = [a.name for n in _top_level_imports(tree.body) for a in n.names]
    assert names == ["TYPE_CHECKING", "y"]
