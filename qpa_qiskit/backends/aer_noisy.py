"""The ``aer_noisy:<fake device>`` family: a fake IBM device's ISA and Aer noise model.

Why two engines: a training step evaluates the forward parameter set and 2P shifted sets of
one circuit. The ``ptm`` engine (:mod:`qpa_qiskit.simulator`) computes their exact noisy
distributions together, 30-170x faster than Aer's density-matrix method and equal to it to
rounding; ``aer`` runs Aer itself. ``auto`` (the default) uses ``ptm`` and falls back to Aer,
with one warning per circuit saying why, for circuits the PTM engine cannot represent exactly.
Both read the noise through :mod:`qpa_qiskit.noise`; only Aer's own run takes the NoiseModel.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import CapacityError, InputError, SpecError
from ..simulator import PTMProgram, UnsupportedCircuit, apply_readout, readout_matrices
from ..validate import one_of
from .core import (
    Family,
    Prepared,
    aer_run,
    available_memory,
    gib,
    measured_qubits,
    register,
    without_measurements,
)
from .devices import example_devices, fake_device, noise_description, noise_model

ENGINES = ("auto", "ptm", "aer")


class SlowEngineWarning(UserWarning):
    """``engine="auto"`` runs a circuit on Aer's density-matrix method, much slower than PTM."""


@register
class AerNoisyFamily(Family):
    name = "aer_noisy"
    forms = ('"aer_noisy:<fake device>"',)
    options = frozenset({"engine"})

    def __init__(self, backend: Any, options: dict[str, Any]) -> None:
        super().__init__(backend, options)
        try:
            self.engine = one_of(options.get("engine", "auto"), "engine", ENGINES)
        except InputError as exc:
            raise SpecError(str(exc)) from None

    def opens_at_start(self) -> bool:
        return True

    @classmethod
    def device_name(cls, text: str) -> str:
        return fake_device(text).name

    @classmethod
    def missing_device(cls) -> str:
        return f'"aer_noisy:<fake device>", e.g. aer_noisy:{", aer_noisy:".join(example_devices())}'

    def open_device(self) -> Any:
        return fake_device(self.backend.device_name)

    def program(self, prepared: Prepared) -> PTMProgram | None:
        """The circuit compiled for the PTM engine, or None where Aer runs it; built once."""
        if "program" not in prepared.extras:
            program = None
            if self.engine != "aer":
                try:
                    program = PTMProgram(prepared.isa, noise_description(self.backend.device_name))
                except UnsupportedCircuit as exc:
                    if self.engine == "ptm":
                        raise InputError(
                            f"engine='ptm' cannot simulate this circuit: {exc}; use engine='aer' or 'auto'"
                        ) from None
                    warnings.warn(
                        f"engine='auto': the exact PTM engine cannot simulate this circuit ({exc}); "
                        "it runs on Aer's density-matrix method instead, which is 30-170x slower. "
                        "Pass engine='aer' to choose Aer and silence this warning.",
                        SlowEngineWarning,
                        stacklevel=4,
                    )
            prepared.extras["program"] = program
        return prepared.extras["program"]

    def probabilities(self, prepared: Prepared, values: np.ndarray, shots: int | None) -> np.ndarray:
        program = self.program(prepared)
        if program is not None:
            need = program.memory_bytes(values.shape[0])
            if need > available_memory():
                raise CapacityError(
                    f"exact noisy simulation of {program.n_qubits} qubits for {values.shape[0]} "
                    f"parameter sets needs {gib(need)} ({gib(program.memory_bytes(1) / 2)} "
                    f"per set); {gib(available_memory())} is available. Use fewer qubits or "
                    "fewer parameter sets per call"
                )
            exact = program.probabilities(values)
            return exact if shots is None else self.backend.sample(exact, shots)
        return self._aer(prepared, values, shots)

    def _aer(self, prepared: Prepared, values: np.ndarray, shots: int | None) -> np.ndarray:
        isa = prepared.isa
        n_active = len({q for i in isa.data if i.operation.name != "barrier" for q in i.qubits})
        need = 16 * 4**n_active
        if need > available_memory():
            raise CapacityError(
                f"density-matrix simulation of {n_active} qubits needs {gib(need)} per "
                f"parameter set; {gib(available_memory())} is available"
            )
        from qiskit_aer import AerSimulator

        sim = AerSimulator(method="density_matrix", noise_model=noise_model(self.backend.device_name))
        seed = self.backend.simulator_seed()
        if shots is not None:
            return aer_run(sim, isa, prepared, values, shots, seed)
        exact = prepared.extras.get("exact")
        if exact is None:
            exact = prepared.extras["exact"] = without_measurements(isa)
        probs = aer_run(sim, exact, prepared, values, None, seed)
        try:
            matrices = readout_matrices(noise_description(self.backend.device_name), measured_qubits(isa))
        except UnsupportedCircuit as exc:
            raise InputError(
                f"exact probabilities are not possible: {exc}; pass shots or shots_factor"
            ) from None
        return apply_readout(probs, matrices)
