"""The ``aer_noisy:<device>`` family: a device's ISA and Aer noise model, for a fake IBM
device or a noise-model snapshot (:mod:`qpa_qiskit.noise.snapshot`), at any noise scale and
with any noise component switched off (:mod:`qpa_qiskit.noise.settings`).

The ISA circuit is always transpiled for the device as calibrated: a scaled or switched noise
model changes the noise, never the physical qubits a circuit runs on, so a sweep over noise
scales compares like with like.

Why two engines: a training step evaluates the forward parameter set and 2P shifted sets of
one circuit. The ``ptm`` engine (:mod:`qpa_qiskit.simulator`) computes their exact noisy
distributions together, 30-170x faster than Aer's density-matrix method and equal to it to
rounding; ``aer`` runs Aer itself. ``auto`` (the default) uses ``ptm`` and falls back to Aer,
with one warning per circuit saying why, for circuits the PTM engine cannot represent exactly.
Both read the noise through :mod:`qpa_qiskit.noise`; only Aer's own run takes the NoiseModel.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..circuits import measured_qubits
from ..errors import CapacityError, InputError, SpecError
from ..noise import NoiseSettings, Snapshot, check_scale
from ..noise.settings import OPTIONS as NOISE_OPTIONS
from ..simulator import MemoryBudgetError, PTMProgram, UnsupportedCircuit, apply_readout, readout_matrices
from ..validate import one_of, torch_device
from .aer_run import (
    aer_expectation_values,
    aer_run,
    available_memory,
    check_memory,
    gib,
    without_measurements,
)
from .config import ENGINES
from .devices import (
    example_devices,
    noise_description,
    noise_model,
    noise_source,
    noisy_device_name,
    snapshot_names,
)
from .family import Family, Prepared, register


class SlowEngineWarning(UserWarning):
    """``engine="auto"`` runs a circuit on Aer's density-matrix method, much slower than PTM."""


@register
class AerNoisyFamily(Family):
    name = "aer_noisy"
    forms = ('"aer_noisy:<fake device | snapshot name | snapshot.json>"',)
    options = frozenset({"engine", "memory_budget", "torch_device", "mitigation", *NOISE_OPTIONS})
    has_noise_model = True
    noise_options = frozenset(NOISE_OPTIONS)
    noise_text = "simulates a device's noise model"

    @classmethod
    def config_options(
        cls, section: Any, hardware_loop: Any = None, device: str | None = None
    ) -> dict[str, Any]:
        """The engine, noise_scale and the component switches, and where the PTM engine computes:
        the section's ``torch_device``, else the run's `device` where it is a CUDA device (the
        engine computes in float64, which MPS lacks), else the CPU."""
        names = ("engine", *NOISE_OPTIONS)
        options = {name: getattr(section, name) for name in names}
        if section.torch_device is not None:
            options["torch_device"] = section.torch_device
        elif device is not None:
            options["torch_device"] = device if device.startswith("cuda") else "cpu"
        return options

    def __init__(self, backend: Any, options: dict[str, Any]) -> None:
        super().__init__(backend, options)
        try:
            self.engine = one_of(options.get("engine", "auto"), "engine", ENGINES)
            self.torch_device = torch_device(options.get("torch_device", "cpu"), "torch_device")
        except InputError as exc:
            raise SpecError(str(exc)) from None
        self.settings = NoiseSettings.from_options(options)
        if options.get("mitigation", "none") != "none" and (
            not self.settings.readout_error or not self.settings.scale
        ):
            raise SpecError(
                f"mitigation={options['mitigation']!r} corrects readout errors, and "
                f"{self.settings.describe()} simulates none: it would do nothing. Keep readout_error on "
                "or drop the mitigation"
            )

    def opens_at_start(self) -> bool:
        return True

    @classmethod
    def device_name(cls, text: str) -> str:
        return noisy_device_name(text)

    @classmethod
    def missing_device(cls) -> str:
        names = [*snapshot_names()[:2], *example_devices()]
        return f'"aer_noisy:<device>", e.g. aer_noisy:{", aer_noisy:".join(names)}'

    def open_device(self) -> Any:
        """The device as calibrated (scale 1): what circuits are transpiled for."""
        source = noise_source(self.backend.device_name)
        return source.device() if isinstance(source, Snapshot) else source

    @property
    def noise_settings(self) -> NoiseSettings:
        """The noise scale and component switches simulated."""
        return self.settings

    def noise_device(self) -> Any:
        """The device as simulated: its calibration scaled by ``noise_scale``."""
        if self.settings.scale == 1.0:
            return self.backend.connect()
        source = noise_source(self.backend.device_name)
        snapshot = source if isinstance(source, Snapshot) else Snapshot.from_fake_device(source.name)
        return snapshot.device(self.settings.scale)

    def noise_model(self) -> Any:
        """The Aer noise model this backend simulates (scaled and switched)."""
        return noise_model(self.backend.device_name, self.settings)

    def noise_description(self):
        return noise_description(self.backend.device_name, self.settings)

    def readout_confusion(self, prepared: Prepared) -> list[np.ndarray]:
        """The simulated readout errors of the measured qubits, scaled as simulated: what a
        calibration with unlimited shots would measure on this device."""
        try:
            return readout_matrices(self.noise_description(), measured_qubits(prepared.isa))
        except UnsupportedCircuit as exc:
            raise InputError(f"mitigation='m3' models each qubit's readout on its own: {exc}") from None

    def check_scale(self, prepared: Prepared) -> None:
        """InputError if the noise scale makes a probability invalid on this circuit's qubits."""
        if self.settings.scale <= 1.0 or prepared.extras.get("scale_checked"):
            return
        target = self.backend.connect().target
        gates: dict[tuple[str, tuple[int, ...]], float] = {}
        for inst in prepared.isa.data:
            name = inst.operation.name
            qubits = tuple(prepared.isa.find_bit(q).index for q in inst.qubits)
            props = target[name].get(qubits) if name in target.operation_names else None
            if props is not None and props.error is not None and name not in ("measure", "reset"):
                gates[(name, qubits)] = props.error
        readout = {}
        for q in measured_qubits(prepared.isa):
            props = target["measure"].get((q,)) if "measure" in target.operation_names else None
            if props is not None and props.error is not None:
                readout[q] = {"readout_error": props.error}  # what Aer's model flips with
        check_scale(self.settings.scale, gates, readout, self.backend.name)
        prepared.extras["scale_checked"] = True

    def check_circuit_scale(self, circuit: Any) -> None:
        """:meth:`check_scale` for `circuit` as this backend runs it: the one check of the noise
        scale, for every run and for ``qpa noise show``."""
        self.check_scale(self.backend._prepare(circuit))

    def program(self, prepared: Prepared) -> PTMProgram | None:
        """The circuit compiled for the PTM engine, or None where Aer runs it; built once."""
        return self._compiled(prepared, "program", prepared.isa)

    def _compiled(self, prepared: Prepared, key: str, circuit: Any) -> PTMProgram | None:
        """`circuit` (the ISA circuit, or it without measurements) compiled for the PTM engine
        and kept as ``prepared.extras[key]``; None where Aer runs it (warned once, and why)."""
        if key not in prepared.extras:
            program = None
            if self.engine != "aer":
                try:
                    program = PTMProgram(circuit, self.noise_description(), device=self.torch_device)
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
                        stacklevel=5,
                    )
            prepared.extras[key] = program
        return prepared.extras[key]

    def probabilities(self, prepared: Prepared, values: np.ndarray, shots: int | None) -> np.ndarray:
        self.check_scale(prepared)
        program = self.program(prepared)
        if program is not None:
            try:
                exact = program.probabilities(
                    prepared.isa_values(values), memory_budget=self.backend.memory_budget
                )
            except MemoryBudgetError as exc:
                raise self._too_little_memory(exc) from None
            return exact if shots is None else self.backend.sample(exact, shots)
        return self._aer(prepared, values, shots)

    def expectation_values(
        self, prepared: Prepared, values: np.ndarray, terms: list[dict[int, int]]
    ) -> np.ndarray:
        """Exact noisy expectation values: gate errors and relaxation, no readout error (the
        values are of the state before measurement, as Aer's EstimatorV2 reports them)."""
        self.check_scale(prepared)
        unmeasured = prepared.unmeasured
        program = self._compiled(prepared, "estimator_program", unmeasured)
        if program is not None:
            try:
                return program.expectation_values(
                    prepared.isa_values(values), terms, memory_budget=self.backend.memory_budget
                )
            except MemoryBudgetError as exc:
                raise self._too_little_memory(exc) from None
        return aer_expectation_values(
            self._density_matrix_simulator(unmeasured, {q for term in terms for q in term}),
            unmeasured,
            prepared,
            values,
            terms,
        )

    def _density_matrix_simulator(self, circuit: Any, read: set[int] = frozenset()) -> Any:
        """Aer's density-matrix method with this noise model, after checking that `circuit` fits
        in memory: its qubits that instructions touch (Aer drops the others), and those `read`."""
        touched = {
            circuit.find_bit(q).index for i in circuit.data if i.operation.name != "barrier" for q in i.qubits
        }
        n_active = len(touched | set(read))
        what = f"density-matrix simulation of {n_active} qubits"
        check_memory(what, 16 * 4**n_active, self.backend.memory_budget_option)
        # lazy: qiskit-aer (seconds), only where Aer itself runs
        from qiskit_aer import AerSimulator

        return AerSimulator(method="density_matrix", noise_model=self.noise_model())

    def _aer(self, prepared: Prepared, values: np.ndarray, shots: int | None) -> np.ndarray:
        isa = prepared.isa
        sim = self._density_matrix_simulator(isa)
        seed = self.backend.simulator_seed()
        if shots is not None:
            return aer_run(sim, isa, prepared, values, shots, seed)
        exact = prepared.extras.get("exact")
        if exact is None:
            exact = prepared.extras["exact"] = without_measurements(isa)
        probs = aer_run(sim, exact, prepared, values, None, seed)
        try:
            matrices = readout_matrices(self.noise_description(), measured_qubits(isa))
        except UnsupportedCircuit as exc:
            raise InputError(
                f"exact probabilities are not possible: {exc}; pass shots or shots_factor"
            ) from None
        return apply_readout(probs, matrices)

    def gradient_unavailable(self, prepared: Prepared) -> str | None:
        self.check_scale(prepared)
        if self.program(prepared) is None:
            why = (
                "engine='aer' was chosen"
                if self.engine == "aer"
                else "the PTM engine cannot run this circuit"
            )
            return f"exact gradients need the PTM engine, and {why}"
        return None

    def vjp(self, prepared: Prepared, values: np.ndarray) -> tuple[np.ndarray, Callable]:
        try:
            probs, pullback = self.program(prepared).vjp(
                prepared.isa_values(values[None, :])[0], self.backend.memory_budget
            )
        except MemoryBudgetError as exc:
            raise self._too_little_memory(exc) from None
        return probs, lambda upstream: prepared.circuit_gradient(pullback(upstream)[0])

    @staticmethod
    def _too_little_memory(exc: MemoryBudgetError) -> CapacityError:
        available = available_memory()
        if exc.need > available:
            return CapacityError(f"{exc}; {gib(available)} is available here: use fewer qubits")
        return CapacityError(
            f"{exc}; raise the backend option memory_budget (up to the {gib(available)} available) "
            "or use fewer qubits"
        )
