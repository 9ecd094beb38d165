"""Each public name said once per package (:mod:`qpa_qiskit.lazy`), and every one resolves.

A package's ``__init__`` re-exports through one table given to ``lazy_exports`` (module ->
names), which makes its ``__getattr__``, ``__dir__`` and ``__all__``: no ``__all__`` list, no
``TYPE_CHECKING`` block and no import that says a name again.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qpa_qiskit.lazy import lazy_exports

ROOT = Path(__file__).resolve().parent.parent / "qpa_qiskit"

# (package, name) -> why an exported name may also be a submodule of its package. Once the
# submodule is imported, the package's attribute is the module until the name is looked up.
SHADOWED = {
    ("qpa_qiskit", "export"): "the function export (of qpa_qiskit.train.export), exported since the first "
    "release; qpa_qiskit/export.py, its old home, re-exports it for old imports and nothing in the package "
    "imports it: only a user's own import qpa_qiskit.export rebinds the name",
}


def packages() -> dict[str, Path]:
    """Every package of qpa_qiskit: dotted name -> its ``__init__.py``."""
    return {
        ".".join(path.parent.relative_to(ROOT.parent).parts): path
        for path in sorted(ROOT.rglob("__init__.py"))
    }


def said(source: str) -> list[tuple[str, str]]:
    """Where a package's ``__init__`` (`source`) says a name, one (name, how) per saying:
    ``import`` (bound by a module-level import, the ``TYPE_CHECKING`` blocks included, but not
    ``lazy_exports`` itself nor ``annotations``), ``__all__`` (a literal list or tuple) or the
    module of the ``lazy_exports`` table that lists it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                if name not in ("annotations", "lazy_exports"):
                    found.append((name, "import"))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            if isinstance(node.value, ast.List | ast.Tuple):
                found += [(e.value, "__all__") for e in node.value.elts if isinstance(e, ast.Constant)]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            table = node.args[1]
            assert isinstance(table, ast.Dict), "lazy_exports takes its table as a dict literal"
            for module, names in zip(table.keys, table.values, strict=True):
                found += [(name, module.value) for name in names.value.split()]
    return found


def twice(source: str) -> dict[str, list[str]]:
    """The names `source` says more than once -> how it says each."""
    ways: dict[str, list[str]] = {}
    for name, how in said(source):
        ways.setdefault(name, []).append(how)
    return {name: sorted(how) for name, how in ways.items() if len(how) > 1}


def test_each_public_name_is_said_once_per_package():
    assert len(packages()) >= 14
    repeated = {package: found for package, path in packages().items() if (found := twice(path.read_text()))}
    assert repeated == {}


def test_the_check_sees_a_name_said_twice():
    table = 'lazy_exports(globals(), {".core": "QPABackend", ".config": "BackendConfig"})\n'
    assert twice(table) == {}
    checking = "if TYPE_CHECKING:\n    from .core import QPABackend\n"
    assert twice(checking + table) == {"QPABackend": [".core", "import"]}
    assert twice(table + '__all__ = ["BackendConfig"]\n') == {"BackendConfig": [".config", "__all__"]}
    eager = "from .config import BackendConfig\n"
    assert twice(eager + table.replace('"BackendConfig"', '"BackendConfig QPABackend"')) == {
        "BackendConfig": [".config", "import"],
        "QPABackend": [".config", ".core"],
    }


def test_a_name_listed_twice_is_refused_at_import():
    with pytest.raises(ValueError, match=r"'x' is listed twice, from \.a and \.b"):
        lazy_exports({"__name__": "pkg"}, {".a": "x y", ".b": "x"})


def test_lazy_exports_make_all_dir_and_getattr():
    namespace = {"__name__": "qpa_qiskit"}
    table = {".errors": "SpecError InputError", ".lazy": "lazy_exports"}
    getattr_, dir_, all_ = lazy_exports(namespace, table)
    assert all_ == ["InputError", "SpecError", "lazy_exports"]
    assert set(all_) <= set(dir_())
    from qpa_qiskit.errors import SpecError

    assert getattr_("SpecError") is SpecError and namespace["SpecError"] is SpecError
    with pytest.raises(AttributeError, match="module 'qpa_qiskit' has no attribute 'nothing'"):
        getattr_("nothing")


def test_no_exported_name_is_also_a_submodule_unless_listed():
    clashes = set()
    for package, path in packages().items():
        folder = path.parent
        submodules = {p.stem for p in folder.glob("*.py")} | {
            p.parent.name for p in folder.glob("*/__init__.py")
        }
        exported = {name for name, how in said(path.read_text()) if how != "import"}
        clashes |= {(package, name) for name in exported & submodules}
    assert clashes == set(SHADOWED)


def test_every_name_in_every_packages_all_resolves():
    """In a fresh interpreter: each package imports, and each name of its ``__all__`` is in its
    ``dir()`` and resolves (a table that names the wrong module, or a name its module lacks, fails)."""
    code = (
        "import importlib, json, sys, types\n"
        f"shadowed = {set(SHADOWED)!r}\n"
        "failed = []\n"
        f"for package in {sorted(packages())!r}:\n"
        "    module = importlib.import_module(package)\n"
        "    names = getattr(module, '__all__', [])\n"
        "    if not set(names) <= set(dir(module)):\n"
        "        failed.append([package, 'not in dir()', sorted(set(names) - set(dir(module)))])\n"
        "    for name in names:\n"
        "        try:\n"
        "            value = getattr(module, name)\n"
        "        except Exception as exc:\n"
        "            failed.append([package, name, repr(exc)])\n"
        "            continue\n"
        "        if isinstance(value, types.ModuleType) and (package, name) not in shadowed:\n"
        "            failed.append([package, name, 'is a module'])\n"
        "print(json.dumps(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
