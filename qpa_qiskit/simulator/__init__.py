"""Exact simulation engines that the backends run circuits on.

* :mod:`.ptm`: noisy circuits as Pauli transfer matrices, equal to Aer's density-matrix
  method, batched over parameter sets, with adjoint gradients in bounded memory;
* :mod:`.statevector`: ideal circuits on the statevector, with adjoint gradients;
* :mod:`.checkpoints`: the reverse sweep both gradient paths share, storing states only at
  checkpoints within a memory budget.

The names below are imported on first use (PEP 562 ``__getattr__``, :mod:`qpa_qiskit.lazy`).
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".checkpoints": "MIN_SLOTS",
    ".ptm": "MemoryBudgetError PTMProgram UnsupportedCircuit apply_readout readout_matrices",
    ".statevector": "StatevectorProgram",
})  # fmt: skip
