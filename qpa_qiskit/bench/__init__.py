"""The benchmarks, one module per benchmark, run as ``python -m qpa_qiskit.bench qnn``,
``... bench primitives`` and ``... bench train`` (docs/benchmarks.md):

* :mod:`.command`: the command line, ``main``; it imports a benchmark's module only when that
  benchmark runs, so ``--help`` is fast;
* :mod:`.cells`: what they share: a cell run in a process of its own (so its peak memory is its
  own), its timing and memory, the optional qiskit-machine-learning, the table cells;
* :mod:`.qnn`: the quantum layer's scaling table against Aer and SamplerQNN + TorchConnector;
* :mod:`.primitives`: a QNN training step on our V2 primitives against Aer's;
* :mod:`.train`: the training-step time of each method, the feature cache off and on.

The names below are imported on first use (PEP 562 ``__getattr__``): importing the package
(as ``python -m qpa_qiskit.bench --help`` does) imports no torch or qiskit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

# public name -> the submodule that defines it
_LAZY: dict[str, str] = {
    "main": "command",
    "QML": "cells",
    "require_qml": "cells",
    "memory_bandwidth": "qnn",
    "bench_qnn": "qnn",
    "bench_primitives": "primitives",
    "bench_train": "train",
}

if TYPE_CHECKING:  # what type checkers and editors see
    from .cells import QML, require_qml
    from .command import main
    from .primitives import bench_primitives
    from .qnn import bench_qnn, memory_bandwidth
    from .train import bench_train


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = ["QML", "bench_primitives", "bench_qnn", "bench_train", "main", "memory_bandwidth", "require_qml"]
