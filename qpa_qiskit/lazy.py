"""Public names of a package imported on first use (PEP 562 module ``__getattr__``).

Every package of qpa_qiskit that re-exports names says each of them once, in one table given to
:func:`lazy_exports`: the module that defines them (relative, as in an import statement) ->
their names. The table makes the package's ``__getattr__``, ``__dir__`` and ``__all__``::

    __getattr__, __dir__, __all__ = lazy_exports(globals(), {
        ".config": "ENGINES BackendConfig",
        ".core": "QPABackend",
    })

Many of those modules import torch, peft or qiskit; loaded on first use, importing the package
(or its light configuration modules) costs nothing. A name once imported is an ordinary
attribute of the package. Type checkers and editors see the names through ``__getattr__``,
untyped; the defining module (``qpa_qiskit.backends.core``) gives them with their types.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], table: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for the package whose ``globals()`` is
    `namespace`: `table` maps each module (``".core"``, ``"..choices"``) to the public names,
    separated by white space, that the package takes from it. A name listed twice is refused
    (:class:`ValueError`): each is said once."""
    package = namespace["__name__"]
    names: dict[str, str] = {}
    for module, listed in table.items():
        for name in listed.split():
            if name in names:
                raise ValueError(f"{package}: {name!r} is listed twice, from {names[name]} and {module}")
            names[name] = module

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__, sorted(names)
