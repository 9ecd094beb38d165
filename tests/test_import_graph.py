"""The layers of qpa_qiskit, read from its imports (``tests/importgraph.py``).

No cycle among its modules, and no import inside a function that would close one if it were
at module level: each layer imports only those below it. An import of a qpa_qiskit module
inside a function is allowed only where :data:`ALLOWED` says why (start-up time and memory,
never a cycle), and only with a comment that says so; so is an import of another library
inside a function (a heavy or optional one, imported where it is used).
"""

import ast
import re

from importgraph import (
    ARCHITECTURE,
    DRAWN_BEGIN,
    DRAWN_END,
    all_imports,
    cycles,
    documented_layers,
    function_imports,
    graph,
    layer_rows,
    layer_table,
    modules,
)

# importer (a module, or a package ending in ".") or (importer, imported) -> why its
# functions may import qpa_qiskit modules
ALLOWED = {
    "qpa_qiskit.cli.": "a command module imports a command's implementation (torch, qiskit) when "
    "that command runs: the command line's documented lazy loading (cli/parsing.py)",
    "qpa_qiskit.bench.command": "the benchmark command imports a benchmark's module (torch, qiskit) "
    "when that benchmark runs, so that python -m qpa_qiskit.bench --help is fast",
    ("qpa_qiskit.adapters.registry", "qpa_qiskit.adapters.ffa"): "ffa imports peft's tuner machinery, "
    "which only an ffa adapter needs",
}


def _allowed_by(i):
    for key in ALLOWED:
        if isinstance(key, tuple):
            if (i.module, i.target) == key:
                return key
        elif i.module == key or (key.endswith(".") and i.module.startswith(key)):
            return key
    return None


def test_no_cycle_among_the_modules():
    assert cycles(graph(all_imports())) == []


def test_no_import_inside_a_function_dodges_a_cycle():
    assert cycles(graph(all_imports(), functions=True)) == []


def test_function_level_imports_of_the_package_are_allowed_and_say_why():
    inner = function_imports(all_imports(), internal=True)
    unlisted = [f"{i.module}:{i.line} {i.function}: {i.target}" for i in inner if _allowed_by(i) is None]
    assert unlisted == [], "import at module level, or add the importer to ALLOWED with its reason"
    silent = [f"{i.module}:{i.line} {i.function}: {i.target}" for i in inner if not i.reason]
    assert silent == [], "say why in a comment on the import or the line above it"
    used = {_allowed_by(i) for i in inner}
    assert used == set(ALLOWED), f"ALLOWED lists what nothing needs: {set(ALLOWED) - used}"


def test_every_function_level_import_says_why():
    inner = function_imports(all_imports())
    silent = [f"{i.module}:{i.line} {i.function}: {i.target}" for i in inner if not i.reason]
    assert silent == [], "import at module level, or say why in a comment on the import or the line above it"


def test_the_reader_finds_a_cycle_and_a_dodged_one(tmp_path):
    pkg = tmp_path / "qpa_qiskit"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("from .a import x\n")
    (pkg / "sub" / "__init__.py").write_text("from .c import y\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\n"
        "def f():\n    # why\n    from ..sub import d\n    from ..a import z\n"
    )
    (pkg / "sub" / "d.py").write_text("from .c import y\n")
    found = all_imports(pkg)
    assert set(modules(pkg)) == {
        "qpa_qiskit",
        "qpa_qiskit.a",
        "qpa_qiskit.b",
        "qpa_qiskit.sub",
        "qpa_qiskit.sub.c",
        "qpa_qiskit.sub.d",
    }
    assert cycles(graph(found)) == [["qpa_qiskit.a", "qpa_qiskit.b"]]
    assert cycles(graph(found, functions=True)) == [
        ["qpa_qiskit.a", "qpa_qiskit.b"],
        ["qpa_qiskit.sub.c", "qpa_qiskit.sub.d"],
    ]
    inner = function_imports(found, internal=True)
    assert [(i.target, i.function, i.reason) for i in inner] == [
        ("qpa_qiskit.sub.d", "f", "why"),
        ("qpa_qiskit.a", "f", "why"),
    ]


def test_every_module_is_in_a_documented_layer():
    assert len(layer_rows()) >= 5, "docs/architecture.md has no layer table"
    layers = documented_layers()
    missing = sorted(m for m in modules() if m not in layers and m != "qpa_qiskit")
    assert missing == [], f"modules with no layer in docs/architecture.md: {missing}"


def test_module_level_imports_point_only_down_the_documented_layers():
    layers = documented_layers()
    upward = sorted(
        f"{i.module} (layer {layers[i.module]}) imports {i.target} (layer {layers[i.target]}), line {i.line}"
        for i in all_imports()
        if i.internal
        and i.function is None
        and i.module in layers
        and i.target in layers
        and layers[i.target] > layers[i.module]
    )
    assert upward == []


def test_the_drawn_layer_table_is_the_code_s():
    """docs/architecture.md's block drawn from the code is what the code gives now."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert DRAWN_BEGIN in text and DRAWN_END in text
    drawn = text.split(DRAWN_BEGIN, 1)[1].split(DRAWN_END, 1)[0].strip()
    assert drawn == layer_table(), "redraw it: python tests/importgraph.py --layers"


def test_every_module_has_a_row_in_the_layout():
    """Each module of the package is described in docs/architecture.md's Layout: a row of its
    own (`a/b.py`) or of its package (`a/`)."""
    layout = ARCHITECTURE.read_text(encoding="utf-8").split("## The layering rule")[0]
    rows = set(re.findall(r"^\| `qpa_qiskit/([^`]*)`", layout, flags=re.M))
    missing = []
    for module in modules():
        path = module.removeprefix("qpa_qiskit").lstrip(".").replace(".", "/")
        in_package = any(path.startswith(r) for r in rows if r.endswith("/"))
        if path and not ({f"{path}.py", f"{path}/"} & rows or in_package):
            missing.append(module)
    assert missing == [], f"modules with no row in docs/architecture.md's Layout: {missing}"


# the old homes of modules that moved into the run wing (qpa_qiskit/train/): re-exports for old imports
OLD_HOMES = ("qpa_qiskit.config", "qpa_qiskit.run_folder", "qpa_qiskit.export")


def test_the_old_homes_are_imported_by_nothing_in_the_package():
    users = sorted(f"{i.module}:{i.line} imports {i.target}" for i in all_imports() if i.target in OLD_HOMES)
    assert users == [], "import the names from their homes in qpa_qiskit/train/"
    table = modules()["qpa_qiskit"].read_text()  # the package's lazy table: relative to qpa_qiskit
    assert not re.search(r'"\.(config|run_folder|export)"', table), "the lazy table names an old home"


def test_the_run_configuration_imports_no_heavy_library():
    """``import qpa_qiskit.config`` (what ``qpa --help`` and the option parsers need) imports
    no torch, peft, transformers or qiskit: its sections beside their code are import-light."""
    import subprocess
    import sys

    code = (
        "import sys, qpa_qiskit.config\n"
        "print([m for m in ('torch', 'peft', 'transformers', 'qiskit') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_no_module_over_600_lines_and_no_function_over_80():
    """The sizes docs/architecture.md promises: a module that grows past 600 lines holds more
    than one concept, a function past 80 more than one step."""
    long_modules, long_functions = [], []
    for module, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 600:
            long_modules.append(module)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 80:
                    long_functions.append(f"{module}.{node.name}")
    assert long_modules == [] and long_functions == []
