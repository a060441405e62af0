"""The import-order checker: reads a package's imports with `ast` and names each one that breaks the order.

docs/architecture.md writes the order down (one row per layer, top to bottom); this
module reads it from there, so the document and the check cannot drift apart. It
counts imports inside function bodies too, because those are where cycles hid.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted (the deepest part that is a module)
    line: int
    in_function: bool


def modules(package_dir: Path) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    root = package_dir.parent
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The deepest module in `known` that `name` names or lies inside."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def read_imports(package_dir: Path) -> list[Import]:
    known = modules(package_dir)
    package = package_dir.name
    found = []
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, in_function in _walk(tree, False):
            for name in _imported_names(node, module, is_package):
                if name != package and not name.startswith(package + "."):
                    continue
                target = _resolve(name, known)
                if target and target != module:
                    found.append(Import(module, target, node.lineno, in_function))
    return found


def _walk(node, in_function):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _walk(child, inside)


def _imported_names(node, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([base] if base else []))
    # `from a import b` may name the module a.b or a name inside a; _resolve picks the deepest module
    return [f"{base}.{alias.name}" for alias in node.names]


def read_order(document: Path) -> list[list[str]]:
    """The rows of the ```order block in `document`, top first; each row's entries split on '·'."""
    block = re.search(r"```order\n(.*?)```", document.read_text(), re.S)
    if not block:
        raise ValueError(f"{document}: no ```order block")
    return [[entry.strip() for entry in line.split("·") if entry.strip()]
            for line in block.group(1).splitlines() if line.strip()]


def place(module: str, order: list[list[str]]) -> tuple[int, str] | None:
    """(row, entry) of the longest entry that `module` is or lies inside; None when no row names it."""
    best = None
    for row, entries in enumerate(order):
        for entry in entries:
            # the package itself (no dot) is its face alone: the root __init__, not all below it
            if module == entry or ("." in entry and module.startswith(entry + ".")):
                if best is None or len(entry) > len(best[1]):
                    best = (row, entry)
    return best


def problems(package_dir: Path, order: list[list[str]], lazy_allowed: frozenset[str] = frozenset()) -> list[str]:
    """Every broken rule, as 'file:line: what'; empty when the package keeps the order.

    - each module belongs to a row of the order;
    - an import points down the order, or stays inside its own entry;
    - no cycle among modules, counting imports inside functions;
    - an import of the package's own modules sits at module top, except in `lazy_allowed`
      (the places whose laziness keeps `import posttrain` and `--help` fast).
    """
    known = modules(package_dir)
    imports = read_imports(package_dir)
    found = []
    places = {}
    for module, path in known.items():
        places[module] = place(module, order)
        if places[module] is None and path.read_text().strip():  # an empty __init__ imports nothing
            found.append(f"{path}: module {module} is in no row of the order")
    for imp in dict.fromkeys(imports):
        where = f"{known[imp.source]}:{imp.line}"
        source, target = places[imp.source], places[imp.target]
        if source and target and source[1] != target[1] and target[0] <= source[0]:
            how = "up" if target[0] < source[0] else "across"
            found.append(f"{where}: {imp.source} imports {imp.target}, {how} the order ({source[1]} -> {target[1]})")
        if imp.in_function and imp.source not in lazy_allowed:
            found.append(f"{where}: {imp.source} imports {imp.target} inside a function; imports of the package go at the top")
    for cycle in cycles(imports):
        found.append(f"import cycle among {len(cycle)} modules: {', '.join(cycle)}")
    return found


def cycles(imports: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        # iterative Tarjan: a deep package graph must not hit the recursion limit
        work = [(node, iter(sorted(graph[node])))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[current] = min(low[current], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[current])
                if low[current] == index[current]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == current:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
