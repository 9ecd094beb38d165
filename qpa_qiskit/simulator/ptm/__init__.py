"""Exact batched noisy simulation in the Pauli-transfer-matrix (PTM) picture.

Why this exists: a QNN step needs the 2^N probabilities of the same circuit for the forward
parameter set and all 2P parameter-shifted sets, under a device noise model. Aer's
density-matrix method simulates each of those 2P+1 circuits from scratch, one noisy gate at a
time, and that is where the time of a noisy training step goes. This package computes exactly
the same channel (the same gates, the same `QuantumError` after each gate, the same readout
errors, in the same order) but

* works on real Pauli coefficients (a density matrix on n qubits is 4^n real numbers),
* fuses every run of gates that acts on at most two qubits into one 16x16 matrix, so a whole
  circuit is a few dozen dense matrix products instead of hundreds of noisy gate updates,
* evaluates all parameter sets as a *tree*: a parameter set that equals the first one up to
  some gate shares its prefix; it is branched off where it first differs. For parameter
  shift this halves the work, and every fused block is applied to all live branches in one
  matrix product, on a view of one tensor in a fixed layout (no transposes),
* keeps, after the last gate on a qubit, only the Pauli coefficients the measurement reads.

The result agrees with Aer's density-matrix simulation of the same ISA circuit to rounding
(the test-suite checks 1e-10). Circuits or noise models it cannot represent exactly raise
`UnsupportedCircuit` when compiled, so the caller can fall back to Aer.

The noise comes as a :class:`~qpa_qiskit.noise.NoiseDescription`, never as an Aer
``NoiseModel``: :mod:`qpa_qiskit.noise` is the one module that reads Aer's internals.

Modules: :mod:`.compile` (the circuit as fused blocks, the angle table, the light cone: a
:class:`~.compile.Compiled` value), :mod:`.program` (:class:`PTMProgram`: the forward walk
over parameter sets), :mod:`.adjoint` (the adjoint gradient), :mod:`.state` (the operations
on states both walks share), :mod:`.budget` (memory budgets).

The names below are imported on first use (PEP 562 ``__getattr__``, :mod:`qpa_qiskit.lazy`).
"""

from __future__ import annotations

from ...lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".budget": "MemoryBudgetError size_text",
    ".compile": "IGNORED_INSTRUCTIONS Angles Compiled UnsupportedCircuit readout_matrices",
    ".program": "PTMProgram",
    ".state": "apply_readout",
})  # fmt: skip
