"""Public names of a package imported on first use (PEP 562 module ``__getattr__``).

The package and its subpackages re-export names whose modules import torch, peft or qiskit;
loaded on first use, importing the package (or its light configuration modules) costs nothing.
One implementation serves every package that does this.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], names: dict[str, str], before: Callable[[], None] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package whose ``globals()`` is `namespace`:
    `names` maps each public name to the submodule that defines it; `before` runs before the
    first import of any of them (the backends load their families). A name once imported is an
    ordinary attribute of the package."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if before is not None:
            before()
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
