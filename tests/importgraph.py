"""The import graph of the qpa_qiskit package, read from the source with :mod:`ast`.

    python tests/importgraph.py
    python tests/importgraph.py --layers

prints (1) the cycles among qpa_qiskit modules in the module-level import graph, (2) the
cycles there would be if the imports inside functions were at module level (the cycles such
imports dodge), and (3) every import inside a function, with the comment that gives its
reason (on its line or the line above; the statements that follow it without a comment of
their own share it). ``tests/test_import_graph.py`` holds the package to
no cycle and to a short allow-list of function-level imports of its own modules. With
``--layers`` it prints the layer table docs/architecture.md shows, drawn from the code.

Module level means what runs when the module is imported: the module body, including class
bodies and ``if``/``try`` blocks, but not ``if TYPE_CHECKING:`` blocks (type checkers read
them, Python does not). ``from a.b import c`` is an edge to ``a.b.c`` where that is a module,
to ``a.b`` otherwise. The implicit import of parent packages is not an edge (a package's
``__init__`` that imports its submodules would otherwise close a cycle with each of them that
imports a sibling), nor is :func:`importlib.import_module` (the lazy loading of the package's
``__init__`` and of the command line's command modules).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "qpa_qiskit"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
ARCHITECTURE = ROOT.parent / "docs" / "architecture.md"
# the block of docs/architecture.md that layer_table() writes, between these two lines
DRAWN_BEGIN = (
    "<!-- drawn from the code by `python tests/importgraph.py --layers`; "
    "tests/test_import_graph.py checks it -->"
)
DRAWN_END = "<!-- end of the drawn block -->"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (qpa_qiskit's own resolved as described above)
    line: int
    function: str | None  # the enclosing function (dotted through classes), None at module level
    reason: str  # the comment on the import's line or the line above it ("" if none)

    @property
    def internal(self) -> bool:
        return self.target == PACKAGE or self.target.startswith(PACKAGE + ".")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _comment(lines: list[str], line: int) -> str:
    """The comment of the statement at `line` (1-based): at its end, else the line above."""
    text = lines[line - 1]
    if "#" in text:
        return text.split("#", 1)[1].strip()
    above = lines[line - 2].strip() if line >= 2 else ""
    return above[1:].strip() if above.startswith("#") else ""


def imports(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    """The imports of module `name` (file `path`); `known`: the package's module names."""
    source = path.read_text()
    lines = source.splitlines()
    is_package = path.name == "__init__.py"
    # the package that relative imports start from
    base = name.split(".") if is_package else name.split(".")[:-1]

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        anchor = base[: len(base) - (node.level - 1)]
        return ".".join([*anchor, *([node.module] if node.module else [])])

    def visit(node: ast.AST, function: str | None, scope: str) -> Iterator[Import]:
        group = ""  # the reason of a run of import statements: its first one's comment
        previous_import = False
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from (i for n in child.orelse for i in visit_one(n, function, scope, ""))
                previous_import = False
                continue
            is_import = isinstance(child, ast.Import | ast.ImportFrom)
            if is_import:
                own = _comment(lines, child.lineno)
                group = own or (group if previous_import else "")
            previous_import = is_import
            yield from visit_one(child, function, scope, group)

    def visit_one(node: ast.AST, function: str | None, scope: str, reason: str) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno, function, reason)
        elif isinstance(node, ast.ImportFrom):
            source_module = resolve(node)
            for alias in node.names:
                full = f"{source_module}.{alias.name}"
                target = full if full in known else source_module
                yield Import(name, target, node.lineno, function, reason)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = f"{scope}{node.name}"
            yield from visit(node, inner, inner + ".")
        elif isinstance(node, ast.ClassDef):
            yield from visit(node, function, f"{scope}{node.name}.")
        else:
            yield from visit(node, function, scope)

    yield from visit(ast.parse(source), None, "")


def all_imports(root: Path = ROOT) -> list[Import]:
    found = modules(root)
    known = set(found)
    # one record per imported module and statement (``from .x import a, b`` is one)
    return list(dict.fromkeys(i for name, path in found.items() for i in imports(name, path, known)))


def graph(found: list[Import], *, functions: bool = False) -> dict[str, set[str]]:
    """Module -> the qpa_qiskit modules it imports (at module level; with `functions`, also
    inside its functions). An import of a module by itself is no edge."""
    edges: dict[str, set[str]] = {}
    for i in found:
        edges.setdefault(i.module, set())
        if i.internal and i.target != i.module and (functions or i.function is None):
            edges[i.module].add(i.target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(components)


def function_imports(found: list[Import], *, internal: bool | None = None) -> list[Import]:
    """The imports inside functions; `internal`: only those of qpa_qiskit modules (True), only
    the others (False), or all (None)."""
    return [i for i in found if i.function is not None and (internal is None or i.internal == internal)]


def layer_rows(text: str | None = None) -> list[tuple[int, str, str]]:
    """The layer table of docs/architecture.md: (number, name, cell of paths) per row."""
    text = ARCHITECTURE.read_text(encoding="utf-8") if text is None else text
    rows = re.findall(r"^\| (\d+)\. ([^|]+)\| (.+) \|$", text, flags=re.M)
    return [(int(n), name.strip(), cell) for n, name, cell in rows]


def documented_layers(root: Path = ROOT) -> dict[str, int]:
    """qpa_qiskit's modules -> their layer in docs/architecture.md's table (``| 1. name | `a.py`,
    `pkg/` ... |``); a path in the table stands for its module, a folder for its package and
    every module under it, the most specific entry winning."""
    entries: dict[str, int] = {}
    for layer, _, cell in layer_rows():
        for path in re.findall(r"`([\w/]+(?:\.py|/))`", cell):
            stem = path.removesuffix(".py").removesuffix("/").replace("/", ".")
            entries[f"{PACKAGE}.{stem}"] = layer
    layers: dict[str, int] = {}
    for module in modules(root):
        prefixes = [e for e in entries if module == e or module.startswith(e + ".")]
        if prefixes:
            layers[module] = entries[max(prefixes, key=len)]
    return layers


def layer_table(root: Path = ROOT) -> str:
    """The layers as the code has them: per layer of docs/architecture.md, its modules, their
    lines, and the layers its module-level imports reach (with how many imports), read from the
    source; the markdown between DRAWN_BEGIN and DRAWN_END in that file."""
    layers, names = documented_layers(root), {n: name for n, name, _ in layer_rows()}
    files = modules(root)
    reach: dict[int, dict[int, int]] = {n: {} for n in names}
    for i in all_imports(root):
        if i.internal and i.function is None and i.module in layers and i.target in layers:
            src, dst = layers[i.module], layers[i.target]
            if dst != src:
                reach[src][dst] = reach[src].get(dst, 0) + 1
    lines = [
        "| layer | modules | lines | its imports reach (layer: imports) |",
        "|---|---|---|---|",
    ]
    for n, name in sorted(names.items()):
        members = sorted(m for m, layer in layers.items() if layer == n)
        count = sum(len(files[m].read_text(encoding="utf-8").splitlines()) for m in members)
        below = ", ".join(f"{d}: {k}" for d, k in sorted(reach[n].items(), reverse=True)) or "-"
        lines.append(f"| {n}. {name} | {len(members)} | {count:,} | {below} |")
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:] == ["--layers"]:
        print(layer_table())
        return 0
    found = all_imports()
    for title, functions in (("module-level", False), ("with function-level imports", True)):
        comps = cycles(graph(found, functions=functions))
        print(f"cycles among {PACKAGE} modules, {title}: {len(comps)}")
        for comp in comps:
            print("   ", " ".join(comp))
    for title, internal in (("of qpa_qiskit modules", True), ("of other libraries", False)):
        inner = function_imports(found, internal=internal)
        print(f"imports inside functions {title}: {len(inner)}")
        for i in inner:
            print(f"    {i.module}:{i.line} {i.function}: {i.target}  # {i.reason or '(no reason given)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
