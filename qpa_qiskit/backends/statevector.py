"""The ``statevector`` family (alias ``ideal``): Aer's statevector method, no noise.

Why: the exact reference every other family is compared with, and the fast backend for
training without noise. Probabilities are exact unless shots are asked for; shots are then
drawn from the exact distribution by the backend's own sampler (one multinomial draw per
parameter set), so a seed makes them reproducible. Exact gradients come from the adjoint
method on the statevector (:mod:`qpa_qiskit.simulator.statevector`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from ..circuits import non_unitary
from ..simulator import StatevectorProgram, UnsupportedCircuit
from .aer_run import aer_expectation_values, aer_run, check_memory, without_measurements
from .family import Family, Prepared, register


@register
class StatevectorFamily(Family):
    name = "statevector"
    aliases = ("ideal",)
    forms = ('"statevector" (or "ideal")',)
    needs_device = False
    options = frozenset({"memory_budget"})
    runs_on = "Aer's statevector simulator"

    def transpile_target(self) -> Any:
        # lazy: qiskit-aer (seconds), only where Aer itself runs
        from qiskit_aer import AerSimulator

        return AerSimulator()

    def check_capacity(self, measured: QuantumCircuit) -> None:
        """A state (a density matrix for a circuit with resets) per parameter set must fit in the
        memory available and in the ``memory_budget`` option where one is given."""
        n = measured.num_qubits
        mixed = non_unitary(measured) is not None
        need = 16 * (4 if mixed else 2) ** n
        what = f"{'density-matrix' if mixed else 'statevector'} simulation of {n} qubits"
        check_memory(what, need, self.backend.memory_budget_option)

    def probabilities(self, prepared: Prepared, values: np.ndarray, shots: int | None) -> np.ndarray:
        exact = prepared.extras.get("exact")
        if exact is None:
            exact = prepared.extras["exact"] = without_measurements(prepared.isa)
        probs = aer_run(
            self._simulator(prepared), exact, prepared, values, None, self.backend.simulator_seed()
        )
        return probs if shots is None else self.backend.sample(probs, shots)

    def expectation_values(
        self, prepared: Prepared, values: np.ndarray, terms: list[dict[int, int]]
    ) -> np.ndarray:
        return aer_expectation_values(self._simulator(prepared), prepared.unmeasured, prepared, values, terms)

    @staticmethod
    def _simulator(prepared: Prepared):
        """Aer's statevector method, built once per circuit; its density-matrix method for a
        circuit with resets, which the statevector method would sample (one branch per run),
        so that probabilities and expectation values stay exact."""
        # lazy: qiskit-aer (seconds), only where Aer itself runs
        from qiskit_aer import AerSimulator

        if "simulator" not in prepared.extras:
            method = "statevector" if non_unitary(prepared.isa) is None else "density_matrix"
            prepared.extras["simulator"] = AerSimulator(method=method)
        return prepared.extras["simulator"]

    def program(self, prepared: Prepared) -> StatevectorProgram | None:
        """The ISA circuit compiled for the adjoint method, or None if it cannot be; built once."""
        if "program" not in prepared.extras:
            try:
                prepared.extras["program"] = StatevectorProgram(prepared.isa)
            except UnsupportedCircuit as exc:
                prepared.extras["program"] = None
                prepared.extras["unsupported"] = str(exc)
        return prepared.extras["program"]

    def gradient_unavailable(self, prepared: Prepared) -> str | None:
        if self.program(prepared) is None:
            return (
                f"the statevector adjoint engine cannot run this circuit ({prepared.extras['unsupported']})"
            )
        return None

    def vjp(self, prepared: Prepared, values: np.ndarray) -> tuple[np.ndarray, Callable]:
        probs, pullback = self.program(prepared).vjp(prepared.isa_values(values[None, :])[0])
        return probs, lambda upstream: prepared.circuit_gradient(pullback(upstream)[0])
