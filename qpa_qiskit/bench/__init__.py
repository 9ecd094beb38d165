"""The benchmarks, one module per benchmark, run as ``python -m qpa_qiskit.bench qnn``,
``... bench primitives``, ``... bench train``, ``... bench eval`` and ``... bench precision``
(docs/benchmarks.md):

* :mod:`.command`: the command line, ``main``; it imports a benchmark's module only when that
  benchmark runs, so ``--help`` is fast;
* :mod:`.cells`: what they share: a cell run in a process of its own (so its peak memory is its
  own), its timing and memory, the optional qiskit-machine-learning, the table cells;
* :mod:`.qnn`: the quantum layer's scaling table against Aer and SamplerQNN + TorchConnector;
* :mod:`.primitives`: a QNN training step on our V2 primitives against Aer's;
* :mod:`.train`: the training-step time of each method, the feature cache off and on;
* :mod:`.eval`: what scoring the test split costs a run, the full model against the feature
  cache (cold, warm), extrapolated to the whole split;
* :mod:`.precision`: bf16 autocast against fp32, a training step and an evaluation, with a
  profile of each step.

The names below are imported on first use (PEP 562 ``__getattr__``): importing the package
(as ``python -m qpa_qiskit.bench --help`` does) imports no torch or qiskit.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".cells": "QML require_qml",
    ".command": "main",
    ".eval": "bench_eval",
    ".precision": "bench_precision",
    ".primitives": "bench_primitives",
    ".qnn": "bench_qnn memory_bandwidth",
    ".train": "bench_train",
})  # fmt: skip
