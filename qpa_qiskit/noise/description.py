"""The project's own description of a noise model; the one place that reads Aer's internals.

Why this exists: Aer's ``NoiseModel`` keeps which error follows which instruction on which
qubits in private attributes (``_local_quantum_errors``, ``_default_quantum_errors``,
``_local_readout_errors``, ``_default_readout_error``, ``_pass_manager()``); there is no
public accessor for them. The exact PTM engine (:mod:`qpa_qiskit.simulator`) and the
noise-model snapshots need exactly that information. Reading it here, once, into a plain
:class:`NoiseDescription` means an Aer release that renames an attribute breaks one function
(:func:`describe_noise`), and everything downstream works on a value it owns.

Semantics kept from Aer: after an instruction ``name`` on physical ``qubits`` Aer applies the
local error registered for exactly (name, qubits) if there is one, else the instruction's
all-qubit (default) error, else nothing; a measurement on a qubit reads through the local
readout error of that qubit, else the default readout error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NoiseDescription:
    """What an Aer noise model applies, as plain data.

    Attributes:
        basis_gates: the noise model's basis gates, sorted.
        gate_errors: (instruction name, physical qubits) -> the ``QuantumError`` applied
            right after that instruction on exactly those qubits.
        default_gate_errors: instruction name -> the ``QuantumError`` applied after it on
            qubits with no local error.
        readout_errors: physical qubits -> readout confusion matrix P(read j | true i)
            (2^k x 2^k for a k-qubit readout error).
        default_readout_error: the confusion matrix of qubits with no local readout error.
        has_noise_passes: the model adds noise through custom transpiler passes (relaxation
            during delays), which only Aer itself applies.
    """

    basis_gates: tuple[str, ...] = ()
    gate_errors: Mapping[tuple[str, tuple[int, ...]], Any] = field(default_factory=dict)
    default_gate_errors: Mapping[str, Any] = field(default_factory=dict)
    readout_errors: Mapping[tuple[int, ...], np.ndarray] = field(default_factory=dict)
    default_readout_error: np.ndarray | None = None
    has_noise_passes: bool = False

    def gate_error(self, name: str, qubits: tuple[int, ...]):
        """The ``QuantumError`` Aer applies after `name` on physical `qubits`, or None."""
        error = self.gate_errors.get((name, tuple(qubits)))
        return self.default_gate_errors.get(name) if error is None else error

    def readout_error(self, qubit: int) -> np.ndarray | None:
        """Confusion matrix of a measurement of physical `qubit`, or None (a perfect readout)."""
        matrix = self.readout_errors.get((qubit,))
        return self.default_readout_error if matrix is None else matrix

    @property
    def is_ideal(self) -> bool:
        return not (
            self.gate_errors
            or self.default_gate_errors
            or self.readout_errors
            or self.default_readout_error is not None
            or self.has_noise_passes
        )


def describe_noise(noise_model) -> NoiseDescription:
    """The :class:`NoiseDescription` of an Aer ``NoiseModel`` (None: an ideal description)."""
    if noise_model is None:
        return NoiseDescription()
    gate_errors = {
        (name, tuple(qubits)): error
        for name, by_qubits in noise_model._local_quantum_errors.items()
        for qubits, error in by_qubits.items()
    }
    readout = {
        tuple(qubits): np.asarray(error.probabilities, dtype=float)
        for qubits, error in noise_model._local_readout_errors.items()
    }
    default_readout = noise_model._default_readout_error
    return NoiseDescription(
        basis_gates=tuple(sorted(noise_model.basis_gates)),
        gate_errors=gate_errors,
        default_gate_errors=dict(noise_model._default_quantum_errors),
        readout_errors=readout,
        default_readout_error=None
        if default_readout is None
        else np.asarray(default_readout.probabilities, dtype=float),
        has_noise_passes=noise_model._pass_manager() is not None,
    )
