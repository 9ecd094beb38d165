"""Exact simulation engines that the backends run circuits on.

* :mod:`.ptm`: noisy circuits as Pauli transfer matrices, equal to Aer's density-matrix
  method, batched over parameter sets, with adjoint gradients in bounded memory;
* :mod:`.statevector`: ideal circuits on the statevector, with adjoint gradients;
* :mod:`.checkpoints`: the reverse sweep both gradient paths share, storing states only at
  checkpoints within a memory budget.
"""

from .checkpoints import MIN_SLOTS
from .ptm import MemoryBudgetError, PTMProgram, UnsupportedCircuit, apply_readout, readout_matrices
from .statevector import StatevectorProgram

__all__ = [
    "MIN_SLOTS",
    "MemoryBudgetError",
    "PTMProgram",
    "StatevectorProgram",
    "UnsupportedCircuit",
    "apply_readout",
    "readout_matrices",
]
