"""The :class:`QPABackend` facade: the one interface over every backend family.

Why a facade: every caller (the torch layer, the generator, training, job stores) needs the
same few things of a backend: the ISA circuit, the number of outcome bits, shots, and
probabilities (B, 2^N) of one submission. How a prepared circuit is run is its family's
(:mod:`.family`: the contract and what each family declares; :mod:`.specs`: the spec names
one); nothing here names a family, and a new family changes nothing here.

The facade keeps what every family shares: option and input checks (through
:mod:`qpa_qiskit.validate`), the per-circuit preparation cache, the shot sampler and its
random state, and the width check against the device. The names that lived here before the
contract, the circuit helpers (:mod:`qpa_qiskit.circuits`) and the Aer helpers
(:mod:`.aer_run`) moved are still importable from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Measure

from ..circuits import (
    NO_MEASUREMENTS,
    fingerprint,
    flatten,
    is_isa,
    measured_qubits,
    non_unitary,
    pauli_terms,
    with_measurements,
)
from ..credentials import redact
from ..errors import InputError, SpecError
from ..validate import integer, memory_size, number, one_of, positive_int
from ..validate import layout as layout_value
from .aer_run import (
    aer_expectation_values,
    aer_run,
    available_memory,
    check_memory,
    gib,
    without_measurements,
)
from .config import MITIGATIONS, BackendConfig
from .family import COMMON_OPTIONS, FAMILIES, Family, Prepared, register
from .layout import check_physical, pass_manager, placement
from .mitigation import ReadoutMitigation
from .specs import family_class, parse_spec, spec_forms

__all__ = [  # the facade, and the names that moved out of this module (old imports keep working)
    "COMMON_OPTIONS",
    "FAMILIES",
    "MAX_SHOTS",
    "NO_MEASUREMENTS",
    "Family",
    "Prepared",
    "QPABackend",
    "aer_expectation_values",
    "aer_run",
    "available_memory",
    "check_memory",
    "family_class",
    "fingerprint",
    "flatten",
    "gib",
    "is_isa",
    "measured_qubits",
    "non_unitary",
    "parse_spec",
    "pauli_terms",
    "register",
    "spec_forms",
    "with_measurements",
    "without_measurements",
]

# The most shots one parameter set can take: numpy's multinomial draws int64 counts.
MAX_SHOTS = int(np.iinfo(np.int64).max)


def _takers(wanted: Callable[[type[Family]], bool], device: bool = False) -> str:
    """The registered families that `wanted` holds for, for messages: ``"aer_noisy or ibm"``
    (with `device`, the spec form of each: ``"aer_noisy:<device>"``)."""
    names = [f"{n}:<device>" if device and f.needs_device else n for n, f in FAMILIES.items() if wanted(f)]
    return " or ".join(names)


def _check_options(kind: str, family: type[Family], options: dict[str, Any]) -> None:
    """SpecError for an option the family `kind` does not take, saying which families take it."""
    accepted = COMMON_OPTIONS | family.options
    unknown = set(options) - accepted
    noise = unknown & frozenset().union(*(f.noise_options for f in FAMILIES.values()))
    if noise:
        noisy = lambda f: bool(f.noise_options)  # noqa: E731
        raise SpecError(
            f"{', '.join(sorted(noise))} set(s) the strength or components of a simulated noise model, "
            f"which only {_takers(noisy, device=True)} backends have; {kind} "
            f"{family.noise_text}. Use an {_takers(noisy)} backend or drop the option"
        )
    if options.get("mitigation", "none") != "none" and "mitigation" not in family.options:
        raise SpecError(
            f"mitigation={options['mitigation']!r} corrects readout errors, and {kind} reads out "
            f"exactly (an ideal simulator); use an {_takers(lambda f: 'mitigation' in f.options)} backend "
            "or drop the option"
        )
    unknown.discard("mitigation")
    if unknown:
        raise SpecError(
            f"unknown option(s) {sorted(unknown)} for a {kind} backend; accepted: {sorted(accepted)}"
        )


# --------------------------------------------------------------------------- backend
class QPABackend:
    """Probabilities of a parameterised circuit on an ideal, noisy or IBM backend.

    Args:
        spec: ``"statevector"``/``"ideal"``, ``"aer_noisy:<device>"`` or ``"ibm:<backend>"``
            (:func:`parse_spec`; ``list_backends()`` lists them).
        shots_factor: c > 0; sample n_shot = ceil(c * 2^N) shots per parameter set.
        shots: an explicit shot count instead of ``shots_factor``.
        seed: a non-negative integer seeding shot sampling, so a sequence of calls is
            reproducible (:attr:`rng_state` saves and restores it exactly).
        **options: ``optimization_level`` (0-3, default 1), ``seed_transpiler`` (default 0)
            and ``layout`` (``"noise_aware"``, the default: Qiskit's error-scored layout search;
            ``"preset"``: the level's own layout stage; or a list of physical qubits, circuit
            qubit 0 first; :mod:`.layout`) for the ISA transpilation; ``engine`` ("auto",
            "ptm", "aer"), ``noise_scale`` (every error x s, T1 and T2 / s), the switches ``gate_error``,
            ``thermal_relaxation``, ``readout_error``, and ``torch_device`` ("cpu", "cuda",
            "cuda:1": where the PTM engine's states live) on ``aer_noisy``;
            ``memory_budget`` (bytes or "12GiB"; default half the available memory: what a
            simulation and its gradients may hold) on ``statevector`` and ``aer_noisy``;
            ``service``, ``mode``, ``sampler_options``, ``connect`` and ``hardware_loop``
            on ``ibm`` (``connect=False``: open the account only when a circuit must be
            transpiled or a job submitted or fetched, so recorded results can be read with no
            account; ``hardware_loop``: an object whose ``probabilities(backend, circuit,
            values, shots)`` runs every evaluation, e.g. through recorded, resumable jobs);
            ``mitigation`` ("none" or "m3": readout mitigation with mthree, projected to the
            nearest probability distribution; :meth:`mitigator`) on ``aer_noisy`` and ``ibm``.
    """

    def __init__(
        self,
        spec: str,
        *,
        shots_factor: float | None = None,
        shots: int | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        self.spec = spec
        self.kind, self.device_name = parse_spec(spec)
        family = FAMILIES[self.kind]
        _check_options(self.kind, family, options)
        self.options = options
        try:
            self.optimization_level = integer(
                options.get("optimization_level", 1), "optimization_level", minimum=0, maximum=3
            )
            self.seed_transpiler = integer(options.get("seed_transpiler", 0), "seed_transpiler", minimum=0)
            self.layout = layout_value(options.get("layout", "noise_aware"), "layout")
            self.mitigation = one_of(options.get("mitigation", "none"), "mitigation", MITIGATIONS)
            self.memory_budget_option = (
                None
                if options.get("memory_budget") is None
                else memory_size(options["memory_budget"], "memory_budget")
            )
        except InputError as exc:
            raise SpecError(str(exc)) from None
        if not isinstance(self.layout, str) and not family.needs_device:
            raise SpecError(
                f"layout {list(self.layout)} names physical qubits, and {self.kind} has no device to place "
                f"a circuit on; drop the layout, or use an {_takers(lambda f: f.needs_device)} backend"
            )
        if shots_factor is not None and shots is not None:
            raise InputError("give shots_factor or shots, not both")
        self.shots_factor = None if shots_factor is None else number(shots_factor, "shots_factor", above=0)
        self.shots = None if shots is None else positive_int(shots, "shots")
        if self.shots is not None and self.shots > MAX_SHOTS:
            raise InputError(f"shots must be at most {MAX_SHOTS}, got {shots!r}")
        if family.samples_only and shots is None and shots_factor is None:
            raise InputError(
                f"{redact(repr(spec))} runs on {family.runs_on}, which samples: exact probabilities are "
                "not possible there. Pass shots_factor=c (n_shot = ceil(c * 2^N)) or shots=n."
            )
        seed = None if seed is None else integer(seed, "seed", minimum=0)
        self._rng = np.random.default_rng(seed)
        self._prepared: dict[int, Prepared] = {}
        self.last_job_id: str | None = None
        self.device: Any = None
        self.family: Family = family(self, options)
        if self.family.opens_at_start():
            self.connect()

    @classmethod
    def from_config(
        cls,
        section: BackendConfig,
        hardware_loop: Any = None,
        *,
        seed: int | None = None,
        device: str | None = None,
    ) -> QPABackend:
        """The backend a configuration section describes (:class:`~.config.BackendConfig`):
        its family takes the options it has from the section (:meth:`Family.config_options`);
        `seed` seeds the shots, `hardware_loop` is for a family that runs its jobs through one,
        `device` (the run's torch device) for a family whose engine computes on one."""
        family = family_class(section.backend)
        if section.engine != "auto" and "engine" not in family.options:
            takers = ", ".join(n for n, f in FAMILIES.items() if "engine" in f.options)
            raise InputError(
                f"engine {section.engine!r} applies to {takers} backends only, not {section.backend!r}"
            )
        options = family.config_options(section, hardware_loop, device)
        if section.mitigation != "none":
            options["mitigation"] = section.mitigation
        return cls(
            section.backend, shots_factor=section.shots_factor, seed=seed, layout=section.layout, **options
        )

    # ------------------------------------------------------------------ description
    @property
    def name(self) -> str:
        return self.kind if self.device_name is None else f"{self.kind}:{self.device_name}"

    @property
    def num_qubits(self) -> int | None:
        """Qubits of the device, None for the statevector simulator (or before connecting)."""
        return None if self.device is None else self.device.num_qubits

    @property
    def is_local_testing(self) -> bool:
        """A remote family's local testing mode (``ibm:fake_<device>``): no account needed."""
        return self.family.local_testing

    @property
    def rng_state(self) -> dict:
        """The shot sampler's numpy bit-generator state; set it to resume sampling exactly."""
        return self._rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state: dict) -> None:
        try:
            self._rng.bit_generator.state = state
        except (TypeError, ValueError, KeyError) as exc:
            raise InputError(
                f"rng_state must be a state read from QPABackend.rng_state "
                f"({type(self._rng.bit_generator).__name__}): {exc}"
            ) from None

    @property
    def service(self) -> Any:
        """The QiskitRuntimeService of an ``ibm:`` backend, opening the account on first use
        (None in local testing mode, ``ibm:fake_<device>``, which needs no account)."""
        return self.family.service

    def num_shots(self, n_qubits: int) -> int | None:
        """Shots per parameter set for an N-qubit distribution; None means exact."""
        if self.shots is not None:
            return self.shots
        if self.shots_factor is None:
            return None
        try:
            wanted = math.ldexp(self.shots_factor, n_qubits)  # c * 2^N
        except OverflowError:
            wanted = math.inf
        if not math.isfinite(wanted) or wanted > MAX_SHOTS:
            raise InputError(
                f"shots_factor={self.shots_factor:g} asks for {wanted:.3g} shots per parameter set "
                f"of a {n_qubits}-bit distribution; at most {MAX_SHOTS:.3g} are possible. "
                "Use a smaller shots_factor"
            )
        return math.ceil(wanted)

    def __repr__(self) -> str:
        settings = self.noise_settings
        shots = "" if settings is None or settings.is_device else f", {settings.describe()}"
        shots += f", shots_factor={self.shots_factor}" if self.shots_factor else ""
        shots += f", shots={self.shots}" if self.shots else ""
        return f"QPABackend({self.name!r}{shots})"

    # ------------------------------------------------------------------ device
    def connect(self) -> Any:
        """The device, opened on first use (an ``ibm:`` backend opens the account here)."""
        if self.device is None:
            self.device = self.family.open_device()
            if self.device is not None:
                for prepared in self._prepared.values():  # deferred width checks
                    self._check_width(prepared.measured)
        return self.device

    def sampler(self) -> Any:
        """The runtime Sampler of an ``ibm:`` backend, built once."""
        return self.family.sampler()

    # ------------------------------------------------------------------ circuits
    def _prepare(self, circuit: QuantumCircuit, *, estimation: bool = False) -> Prepared:
        """The circuit prepared once; ``estimation``: for expectation values, where classical
        bits that no measurement writes do not matter (:func:`with_measurements`)."""
        if not isinstance(circuit, QuantumCircuit):
            raise InputError(f"expected a qiskit QuantumCircuit, got {type(circuit).__name__}")
        key = fingerprint(circuit)
        hit = self._prepared.get(id(circuit))
        if hit is not None and hit.circuit is circuit and hit.fingerprint == key:
            if hit.extras.get("estimation_only") and not estimation:
                raise InputError(NO_MEASUREMENTS)
            return hit
        flat = flatten(circuit)
        measured = with_measurements(flat, estimation=estimation)
        measured_qubits(measured)
        self._check_width(measured)
        self.family.check_capacity(measured)

        prepared = Prepared(
            circuit, key, measured, measured.num_clbits, list(circuit.parameters), self.transpile
        )
        if self.device is not None or not self.family.needs_device:
            prepared.isa  # noqa: B018 - transpile now: errors surface at the first call
        if measured is not flat and flat.num_clbits:
            prepared.extras["estimation_only"] = True  # its own bits were dropped
        self._prepared[id(circuit)] = prepared
        return prepared

    def _check_width(self, measured: QuantumCircuit) -> None:
        if self.device is not None and measured.num_qubits > self.device.num_qubits:
            raise InputError(
                f"the circuit has {measured.num_qubits} qubits but {self.device_name} has "
                f"{self.device.num_qubits}; use a larger device or fewer qubits"
            )

    def transpile(self, circuit: QuantumCircuit) -> QuantumCircuit:
        """The circuit as it runs here: as given when it is already ISA for the device (every
        instruction native on its qubits, :func:`is_isa`), else transpiled for it,
        deterministically (``optimization_level``, ``seed_transpiler``), its qubits placed as
        ``layout`` says (:mod:`.layout`)."""
        source = self.family.transpile_target()
        if is_isa(circuit, source.target):
            return circuit
        if not isinstance(self.layout, str):
            check_physical(self.layout, circuit, source, self.name)
        return pass_manager(source, self.optimization_level, self.seed_transpiler, self.layout).run(circuit)

    def placement(self, circuit: QuantumCircuit, target: Any = None) -> dict[str, Any]:
        """The physical qubits the circuit runs on here and their errors (:func:`.layout.placement`),
        as `target` states them (default the device's own calibration); InputError for a backend
        without a device (the statevector simulator)."""
        device = self.connect()
        if device is None:
            raise InputError(f"{self.name} has no device, so no physical qubits to report")
        return placement(self.isa_circuit(circuit), device.target if target is None else target)

    @property
    def noise_model(self) -> Any:
        """The Aer NoiseModel this backend simulates, None where it simulates none (statevector,
        ibm: the device's own noise)."""
        return self.family.noise_model()

    @property
    def noise_settings(self) -> Any:
        """The :class:`~qpa_qiskit.noise.NoiseSettings` of the noise model this backend simulates,
        None where it simulates none (:attr:`Family.noise_settings`)."""
        return self.family.noise_settings

    @property
    def sampler_options(self) -> Any:
        """The runtime Sampler's options of a family that takes them (``ibm:``), else None."""
        return self.family.sampler_options

    @property
    def samples_only(self) -> bool:
        """It can only sample: no exact probabilities (:attr:`Family.samples_only`)."""
        return self.family.samples_only

    @property
    def runs_remotely(self) -> bool:
        """Its circuits run as jobs on a remote service (:attr:`Family.runs_remotely`)."""
        return self.family.runs_remotely

    def num_outcome_bits(self, circuit: QuantumCircuit) -> int:
        """N: the distribution has 2^N outcomes (the circuit's classical bits)."""
        return self._prepare(circuit).n_bits

    def isa_circuit(self, circuit: QuantumCircuit) -> QuantumCircuit:
        """Exactly the circuit that runs: transpiled once, deterministically, measurements kept."""
        return self._prepare(circuit).isa

    @staticmethod
    def _values(prepared: Prepared, parameter_values: Any) -> np.ndarray:
        n_params = len(prepared.parameters)
        if hasattr(parameter_values, "detach"):  # a torch tensor, maybe requiring grad
            parameter_values = parameter_values.detach().cpu()
        accepted = f"real numbers of shape ({n_params},) or (B, {n_params})"
        try:
            values = np.asarray(parameter_values)
            if np.iscomplexobj(values):
                if np.any(values.imag != 0):
                    raise InputError(
                        f"parameter values must be {accepted}: angles are real, got complex values "
                        f"with a non-zero imaginary part (e.g. {complex(values[values.imag != 0].flat[0])})"
                    )
                values = values.real
            values = np.asarray(values, dtype=float)
        except (TypeError, ValueError, RuntimeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(
                f"parameter values must be {accepted}, got {type(parameter_values).__name__}"
            ) from None
        if values.ndim == 1:
            values = values[None, :]
        if values.ndim != 2 or values.shape[1] != n_params:
            raise InputError(
                f"parameter values must have shape ({n_params},) or (B, {n_params}) for a "
                f"circuit with {n_params} parameters (in circuit.parameters order), "
                f"got shape {np.shape(parameter_values)}"
            )
        if not np.all(np.isfinite(values)):
            raise InputError("parameter values must be finite numbers")
        return values

    # ------------------------------------------------------------------ evaluation
    def probabilities(self, circuit: QuantumCircuit, parameter_values: Any = ()) -> np.ndarray:
        """Outcome probabilities, float64 (B, 2^N), Qiskit little-endian order, rows sum to 1.

        ``parameter_values`` has shape (P,) or (B, P) in ``circuit.parameters`` order (a numpy
        array, a list or a torch tensor); all B sets go out in one submission. N is the number
        of classical bits (every qubit is measured if the circuit has no measurements). A
        circuit without parameters takes ``()``, ``[]`` or an array of shape (B, 0).
        """
        prepared = self._prepare(circuit)
        values = self._values(prepared, parameter_values)
        if not len(values):  # no parameter sets (B = 0): nothing to run
            return np.zeros((0, 2**prepared.n_bits))
        probs = self.family.probabilities(prepared, values, self.num_shots(prepared.n_bits))
        mitigator = self._mitigator(prepared)
        return probs if mitigator is None else mitigator.correct(probs)

    def mitigator(self, circuit: QuantumCircuit) -> ReadoutMitigation | None:
        """The readout mitigation of this circuit's measured bits (None with ``mitigation="none"``),
        calibrated once per circuit (:mod:`.mitigation`): from the simulated device's readout
        errors on aer_noisy, from calibration circuits on the same physical qubits on ibm."""
        return None if self.mitigation == "none" else self._mitigator(self._prepare(circuit))

    def _mitigator(self, prepared: Prepared) -> ReadoutMitigation | None:
        if self.mitigation == "none":
            return None
        if "mitigator" not in prepared.extras:
            prepared.extras["mitigator"] = ReadoutMitigation(self.family.readout_confusion(prepared))
        return prepared.extras["mitigator"]

    def expectation_values(
        self, circuit: QuantumCircuit, observables: list[str], parameter_values: Any = ()
    ) -> np.ndarray:
        """Exact expectation values, float64 (B, K), of K Pauli observables on the state the
        circuit prepares, for parameter values (P,) or (B, P) in ``circuit.parameters`` order.

        ``observables`` are Pauli labels over the circuit's qubits (``"IZX"``: X on qubit 0,
        Z on qubit 1); they follow the circuit's qubits through the transpiler's layout and
        routing. The circuit must not measure (the values are of the state, and readout
        errors, which act on measurements, do not enter); gate errors and relaxation do on
        noisy backends. Exact always: ``shots`` settings are for :meth:`probabilities`.
        Classical bits that nothing writes are ignored, as by Qiskit's and Aer's estimators.
        """
        if isinstance(circuit, QuantumCircuit) and any(
            isinstance(i.operation, Measure) for i in flatten(circuit).data
        ):
            raise InputError(
                "expectation values are of the state before measurement: pass the circuit without "
                "measurements (circuit.remove_final_measurements(inplace=False))"
            )
        prepared = self._prepare(circuit, estimation=True)
        values = self._values(prepared, parameter_values)
        terms = pauli_terms(list(observables), circuit.num_qubits)
        if not len(values):  # no parameter sets (B = 0): nothing to run
            return np.zeros((0, len(terms)))
        if "physical" not in prepared.extras:  # virtual qubit i was measured into clbit i
            prepared.extras["physical"] = measured_qubits(prepared.isa)
        physical = prepared.extras["physical"]
        placed = [{physical[q]: pauli for q, pauli in term.items()} for term in terms]
        return self.family.expectation_values(prepared, values, placed)

    def program(self, circuit: QuantumCircuit) -> Any:
        """The ISA circuit compiled for this backend's own engine (a PTMProgram on aer_noisy, a
        StatevectorProgram on statevector), or None where Aer or IBM runs it."""
        return self.family.program(self._prepare(circuit))

    @property
    def memory_budget(self) -> int:
        """Bytes a simulation may hold: the ``memory_budget`` option, else a safe share (half)
        of the memory available now."""
        if self.memory_budget_option is not None:
            return self.memory_budget_option
        return available_memory() // 2

    def gradient_unavailable(self, circuit: QuantumCircuit) -> str | None:
        """None where :meth:`vjp` gives exact gradients of this circuit, else why it cannot."""
        return self._gradient_unavailable(self._prepare(circuit))

    def _gradient_unavailable(self, prepared: Prepared) -> str | None:
        shots = self.num_shots(prepared.n_bits)
        if shots is not None:
            return (
                f"{self.name} samples {shots} shots per parameter set, and exact gradients need exact "
                "probabilities; with shots, gradients come from the parameter-shift rule"
            )
        return self.family.gradient_unavailable(prepared)

    def vjp(self, circuit: QuantumCircuit, parameter_values: Any) -> tuple[np.ndarray, Callable]:
        """Exact probabilities p (2^N,) and ``pullback(upstream) -> upstream · dp/dθ (P,)``.

        For one parameter set (P,) in ``circuit.parameters`` order, by the adjoint method:
        the forward pass here keeps what the backward one needs (within ``memory_budget``),
        and the pullback, given dL/dp (2^N,), runs the backward pass: about three passes over
        the circuit instead of the 2P + 1 circuits of the parameter-shift rule, equal to it
        to rounding. Backends that sample, and circuits an exact engine cannot run, raise
        InputError saying why (:meth:`gradient_unavailable`).
        """
        prepared = self._prepare(circuit)
        values = self._values(prepared, parameter_values)
        if values.shape[0] != 1:
            raise InputError(
                f"vjp takes one parameter set of shape ({len(prepared.parameters)},), got {values.shape}"
            )
        reason = self._gradient_unavailable(prepared)  # prepared once per step, not twice
        if reason is not None:
            raise InputError(f"no exact gradients here: {reason}")
        probs, family_pullback = self.family.vjp(prepared, values[0])
        n_out = 2**prepared.n_bits
        mitigator = self._mitigator(prepared)
        if mitigator is not None:  # a fixed linear map, then the projection (.mitigation)
            raw, unmitigated_pullback = probs, family_pullback
            probs = mitigator.correct(raw[None, :])[0]

            def family_pullback(upstream: np.ndarray) -> np.ndarray:
                return unmitigated_pullback(mitigator.pullback(raw, upstream))

        def pullback(upstream: Any) -> np.ndarray:
            if hasattr(upstream, "detach"):
                upstream = upstream.detach().cpu()
            upstream = np.asarray(upstream, dtype=float)
            if upstream.shape != (n_out,):
                raise InputError(f"upstream must have shape ({n_out},), got {upstream.shape}")
            return family_pullback(upstream)

        return probs, pullback

    def sample(self, exact: np.ndarray, shots: int) -> np.ndarray:
        """Shot frequencies: `shots` independent outcomes per row of exact probabilities.

        This is the distribution a simulator's measurement sampling draws from; one
        multinomial draw per parameter set is just the fastest way to draw it.
        """
        exact = np.clip(exact, 0.0, None)
        counts = np.stack([self._rng.multinomial(shots, p / p.sum()) for p in exact])
        return counts / shots

    def simulator_seed(self) -> int:
        """A seed for one simulator run, drawn from the shot sampler (reproducible with seed)."""
        return int(self._rng.integers(2**31))
