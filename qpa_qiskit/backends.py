"""One backend abstraction over exact Aer simulation, Aer with IBM noise models, and IBM Quantum.

A backend is chosen by a spec string:

* ``"statevector"`` (alias ``"ideal"``): Aer's statevector method. Exact probabilities
  unless shots are asked for.
* ``"aer_noisy:<device>"``: the circuit is transpiled once, deterministically, to the ISA of
  a fake device of ``qiskit_ibm_runtime.fake_provider`` and simulated under that device's
  Aer noise model. Exact noisy probabilities come from :mod:`qpa_qiskit.simulator`
  (equal to Aer's density-matrix method to rounding, much faster for parameter-shift
  batches) or from Aer itself with ``engine="aer"``.
* ``"ibm:<backend>"``: IBM Quantum through qiskit-ibm-runtime's client-side Sampler. With
  ``"ibm:fake_<device>"`` the same code path runs in the runtime's local testing mode.

Every call of :meth:`QPABackend.probabilities` sends all parameter sets as one submission:
one Aer run with parameter binds, or one Sampler PUB ``(isa_circuit, values)``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Measure
from qiskit.transpiler import generate_preset_pass_manager

from .errors import AccountError, CapacityError, InputError, SpecError
from .simulator import PTMProgram, UnsupportedCircuit, apply_readout, readout_matrices

KINDS = ("statevector", "aer_noisy", "ibm")
ENGINES = ("auto", "ptm", "aer")
_COMMON_OPTIONS = {"optimization_level", "seed_transpiler"}
_OPTIONS = {
    "statevector": _COMMON_OPTIONS,
    "aer_noisy": _COMMON_OPTIONS | {"engine"},
    "ibm": _COMMON_OPTIONS | {"service", "sampler_options", "mode", "connect", "hardware_loop"},
}
_SPEC_FORMS = '"statevector" (or "ideal"), "aer_noisy:<fake device>", "ibm:<backend>" or "ibm:fake_<device>"'


# --------------------------------------------------------------------------- devices
@functools.cache
def _fake_device_classes() -> dict[str, type]:
    """Fake IBM devices by their backend name (``fake_brisbane``), built once."""
    import qiskit_ibm_runtime.fake_provider as fake_provider
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

    table: dict[str, type] = {}
    for attr in dir(fake_provider):
        cls = getattr(fake_provider, attr)
        if inspect.isclass(cls) and issubclass(cls, FakeBackendV2) and cls is not FakeBackendV2:
            stem = re.sub(r"V2$", "", attr[len("Fake") :])
            table["fake_" + re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()] = cls
    return table


@functools.cache
def fake_device(name: str):
    """Instance of the fake device `name` (``fake_brisbane``, ``brisbane``, ``FakeBrisbane``)."""
    key = name.strip().lower()
    key = key if key.startswith("fake_") else "fake_" + key.removeprefix("fake")
    table = _fake_device_classes()
    if key not in table:
        # class names do not always spell the device name: look at the instances
        for cls in table.values():
            if _instance(cls).name == key:
                return _instance(cls)
        known = sorted(table)
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise SpecError(
            f"unknown fake device {name!r}.{hint} Known devices: {', '.join(known)} "
            "(case-insensitive, the fake_ prefix is optional)"
        )
    return _instance(table[key])


@functools.cache
def _instance(cls: type):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. "properties are not typical"
        return cls()


@functools.cache
def noise_model(device_name: str):
    """Aer's noise model of a fake device, ``NoiseModel.from_backend``: gate errors
    (depolarising and thermal relaxation) and readout errors from its calibration data.

    It is the model qiskit-ibm-runtime's client-side Sampler simulates with in local testing
    mode, so ``aer_noisy:fake_x`` and ``ibm:fake_x`` sample the same distributions (a test
    checks this).
    """
    from qiskit_aer.noise import NoiseModel

    return NoiseModel.from_backend(fake_device(device_name))


def list_backends() -> list[tuple[str, int | None]]:
    """Valid backend specs with their qubit counts (None: limited by memory only)."""
    rows: list[tuple[str, int | None]] = [("statevector", None)]
    devices = []
    for cls in _fake_device_classes().values():
        dev = _instance(cls)
        devices.append((dev.name, dev.num_qubits))
    devices.sort()
    rows += [(f"aer_noisy:{name}", n) for name, n in devices]
    rows += [(f"ibm:{name}", n) for name, n in devices]
    rows.append(("ibm:<device of your IBM Quantum account>", None))
    return rows


def available_memory() -> int:
    """Bytes of memory available to a simulation now."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


# --------------------------------------------------------------------------- circuits
def measured_qubits(circuit: QuantumCircuit) -> list[int]:
    """Qubit measured into each classical bit; all measurements must be final."""
    qubit_of: dict[int, int] = {}
    done: set[int] = set()
    for inst in circuit.data:
        qs = [circuit.find_bit(q).index for q in inst.qubits]
        if isinstance(inst.operation, Measure):
            c = circuit.find_bit(inst.clbits[0]).index
            if c in qubit_of:
                raise InputError(f"classical bit {c} is measured twice; measure each bit once")
            qubit_of[c] = qs[0]
            done.add(qs[0])
        elif inst.operation.name != "barrier" and done.intersection(qs):
            raise InputError(
                f"{inst.operation.name!r} acts on a qubit after its measurement; "
                "only final measurements are supported"
            )
    missing = [c for c in range(circuit.num_clbits) if c not in qubit_of]
    if missing:
        raise InputError(f"classical bits {missing} are never measured; measure every bit once")
    return [qubit_of[c] for c in range(circuit.num_clbits)]


def with_measurements(circuit: QuantumCircuit) -> QuantumCircuit:
    """The circuit itself if it measures; otherwise a copy measuring every qubit."""
    if any(isinstance(i.operation, Measure) for i in circuit.data):
        return circuit
    if circuit.num_clbits:
        raise InputError("the circuit has classical bits but no measurements")
    return circuit.measure_all(inplace=False)


def _without_measurements(circuit: QuantumCircuit) -> QuantumCircuit:
    """ISA circuit with final measurements replaced by an exact probability snapshot."""
    qubits = measured_qubits(circuit)
    exact = circuit.remove_final_measurements(inplace=False)
    exact.save_probabilities(qubits)
    return exact


@dataclass
class _Prepared:
    """What a backend builds once per circuit; the ISA circuit when it is first needed."""

    circuit: QuantumCircuit
    measured: QuantumCircuit
    n_bits: int
    parameters: list
    transpile: Any  # measured circuit -> ISA circuit
    extras: dict[str, Any] = field(default_factory=dict)
    _isa: QuantumCircuit | None = None

    @property
    def isa(self) -> QuantumCircuit:
        if self._isa is None:
            self._isa = self.transpile(self.measured)
        return self._isa


# --------------------------------------------------------------------------- backend
class QPABackend:
    """Probabilities of a parameterised circuit on an ideal, noisy or IBM backend.

    Args:
        spec: ``"statevector"``/``"ideal"``, ``"aer_noisy:<device>"`` or ``"ibm:<backend>"``.
        shots_factor: c > 0; sample n_shot = ceil(c * 2^N) shots per parameter set.
        shots: an explicit shot count instead of ``shots_factor``.
        seed: seeds shot sampling, so a sequence of calls is reproducible.
        **options: ``optimization_level`` (0-3, default 1) and ``seed_transpiler`` (default 0)
            for the ISA transpilation; ``engine`` ("auto", "ptm", "aer") on ``aer_noisy``;
            ``service``, ``mode``, ``sampler_options`` and ``connect`` on ``ibm``
            (``connect=False``: open the account only when a circuit must be transpiled or
            a job submitted or fetched, so recorded results can be read with no account);
            ``hardware_loop`` on ``ibm``: an object whose
            ``probabilities(backend, circuit, values, shots)`` runs every evaluation instead
            of the Sampler (:class:`qpa_qiskit.ibm.HardwareLoop`: recorded, resumable jobs).
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
        self.kind, self.device_name = self._parse(spec)
        unknown = set(options) - _OPTIONS[self.kind]
        if unknown:
            raise SpecError(
                f"unknown option(s) {sorted(unknown)} for a {self.kind} backend; "
                f"accepted: {sorted(_OPTIONS[self.kind])}"
            )
        self.options = options
        self.optimization_level = options.get("optimization_level", 1)
        if self.optimization_level not in (0, 1, 2, 3):
            raise SpecError(f"optimization_level must be 0, 1, 2 or 3, got {self.optimization_level!r}")
        self.seed_transpiler = options.get("seed_transpiler", 0)
        self.engine = options.get("engine", "auto")
        if self.engine not in ENGINES:
            raise SpecError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if shots_factor is not None and shots is not None:
            raise InputError("give shots_factor or shots, not both")
        if shots_factor is not None:
            if isinstance(shots_factor, bool) or not isinstance(shots_factor, (int, float)):
                raise InputError(f"shots_factor must be a number > 0, got {shots_factor!r}")
            if not math.isfinite(shots_factor) or shots_factor <= 0:
                raise InputError(f"shots_factor must be a number > 0, got {shots_factor!r}")
        if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
            raise InputError(f"shots must be a positive integer, got {shots!r}")
        self.shots_factor = shots_factor
        self.shots = shots
        if self.kind == "ibm" and shots is None and shots_factor is None:
            raise InputError(
                f"{spec!r} runs on IBM Quantum, which samples: exact probabilities are not "
                "possible there. Pass shots_factor=c (n_shot = ceil(c * 2^N)) or shots=n."
            )
        self._rng = np.random.default_rng(seed)
        self._prepared: dict[int, tuple[QuantumCircuit, _Prepared]] = {}
        self.last_job_id: str | None = None
        self._service = None  # the QiskitRuntimeService, once the account is open
        self.device = None
        self._sampler = None
        if self.kind == "aer_noisy":
            self.device = fake_device(self.device_name)
        elif self.kind == "ibm" and (self.is_local_testing or options.get("connect", True)):
            self.connect()

    # ------------------------------------------------------------------ parsing
    @staticmethod
    def _parse(spec: str) -> tuple[str, str | None]:
        if not isinstance(spec, str):
            raise SpecError(f"a backend spec is a string, got {spec!r}; accepted: {_SPEC_FORMS}")
        text = spec.strip()
        low = text.lower()
        if low in ("statevector", "ideal"):
            return "statevector", None
        kind, sep, rest = text.partition(":")
        kind = kind.lower()
        if sep and kind == "aer_noisy" and rest.strip():
            return "aer_noisy", fake_device(rest).name
        if sep and kind == "ibm" and rest.strip():
            rest = rest.strip()
            if rest.lower().startswith("fake"):
                return "ibm", fake_device(rest).name
            return "ibm", rest
        close = difflib.get_close_matches(low, ["statevector", "ideal", "aer_noisy:", "ibm:"], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"unknown backend spec {spec!r}.{hint} Accepted: {_SPEC_FORMS}")

    @property
    def name(self) -> str:
        if self.kind == "statevector":
            return "statevector"
        return f"{self.kind}:{self.device_name}"

    @property
    def num_qubits(self) -> int | None:
        """Qubits of the device, None for the statevector simulator."""
        return None if self.device is None else self.device.num_qubits

    @property
    def is_local_testing(self) -> bool:
        return self.kind == "ibm" and str(self.device_name).startswith("fake_")

    def num_shots(self, n_qubits: int) -> int | None:
        """Shots per parameter set for an N-qubit distribution; None means exact."""
        if self.shots is not None:
            return self.shots
        if self.shots_factor is not None:
            return math.ceil(self.shots_factor * 2**n_qubits)
        return None

    def __repr__(self) -> str:
        shots = f", shots_factor={self.shots_factor}" if self.shots_factor else ""
        shots += f", shots={self.shots}" if self.shots else ""
        return f"QPABackend({self.name!r}{shots})"

    # ------------------------------------------------------------------ IBM
    def connect(self):
        """The device, opening the IBM Quantum account on first use (``ibm:`` specs)."""
        if self.device is None and self.kind == "ibm":
            self.device = self._ibm_backend()
            for _, prepared in self._prepared.values():  # deferred width checks
                self._check_width(prepared.measured)
        return self.device

    @property
    def service(self):
        """The QiskitRuntimeService of an ``ibm:`` device, opening the account on first use;
        None for ``ibm:fake_<device>`` (the local testing mode has no service)."""
        self.connect()
        return self._service

    def _ibm_backend(self):
        if self.is_local_testing:
            return fake_device(self.device_name)
        service = self.options.get("service")
        if service is None:
            try:
                from qiskit_ibm_runtime import QiskitRuntimeService

                service = QiskitRuntimeService()
            except Exception as exc:
                raise AccountError(
                    f"cannot open an IBM Quantum account for {self.spec!r} "
                    f"({type(exc).__name__}). Save one with "
                    "QiskitRuntimeService.save_account(channel=..., token=..., instance=...) "
                    "or set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE); the ibm:fake_<device> "
                    "specs run locally with no account."
                ) from None
        self._service = service
        try:
            return service.backend(self.device_name)
        except Exception as exc:
            raise SpecError(
                f"IBM Quantum backend {self.device_name!r} is not available to this account "
                f"({type(exc).__name__}); list yours with QiskitRuntimeService().backends()"
            ) from None

    def sampler(self):
        """The runtime Sampler, built once (local testing mode for fake devices).

        The client-side ``executor_sampler.Sampler`` (``SamplerV2`` is deprecated since
        qiskit-ibm-runtime 0.51).
        """
        if self._sampler is None:
            from qiskit_ibm_runtime.executor_sampler import Sampler

            mode = self.options.get("mode") or self.connect()
            self._sampler = Sampler(mode=mode, options=self.options.get("sampler_options"))
        return self._sampler

    # ------------------------------------------------------------------ circuits
    def _prepare(self, circuit: QuantumCircuit) -> _Prepared:
        if not isinstance(circuit, QuantumCircuit):
            raise InputError(f"expected a qiskit QuantumCircuit, got {type(circuit).__name__}")
        hit = self._prepared.get(id(circuit))
        if hit is not None and hit[0] is circuit:
            return hit[1]
        measured = with_measurements(circuit)
        measured_qubits(measured)
        self._check_width(measured)
        if self.kind == "statevector":
            need = 16 * 2**measured.num_qubits
            if need > available_memory():
                raise CapacityError(
                    f"statevector simulation of {measured.num_qubits} qubits needs {_gib(need)} "
                    f"per parameter set; {_gib(available_memory())} is available"
                )

        def transpile(measured: QuantumCircuit) -> QuantumCircuit:
            from qiskit_aer import AerSimulator

            target = AerSimulator() if self.kind == "statevector" else self.connect()
            pm = generate_preset_pass_manager(
                optimization_level=self.optimization_level,
                backend=target,
                seed_transpiler=self.seed_transpiler,
            )
            return pm.run(measured)

        prepared = _Prepared(circuit, measured, measured.num_clbits, list(circuit.parameters), transpile)
        if self.device is not None or self.kind == "statevector":
            prepared.isa  # noqa: B018 - transpile now: errors surface at the first call
        self._prepared[id(circuit)] = (circuit, prepared)
        return prepared

    def _check_width(self, measured: QuantumCircuit) -> None:
        if self.device is not None and measured.num_qubits > self.device.num_qubits:
            raise InputError(
                f"the circuit has {measured.num_qubits} qubits but {self.device_name} has "
                f"{self.device.num_qubits}; use a larger device or fewer qubits"
            )

    def num_outcome_bits(self, circuit: QuantumCircuit) -> int:
        """N: the distribution has 2^N outcomes (the circuit's classical bits)."""
        return self._prepare(circuit).n_bits

    def isa_circuit(self, circuit: QuantumCircuit) -> QuantumCircuit:
        """Exactly the circuit that runs: transpiled once, deterministically, measurements kept."""
        return self._prepare(circuit).isa

    def _values(self, prepared: _Prepared, parameter_values) -> np.ndarray:
        n_params = len(prepared.parameters)
        try:
            values = np.asarray(parameter_values, dtype=float)
        except (TypeError, ValueError):
            raise InputError(
                f"parameter values must be numbers of shape ({n_params},) or (B, {n_params})"
            ) from None
        if values.ndim == 1:
            values = values[None, :]
        if values.ndim != 2 or values.shape[1] != n_params or values.shape[0] < 1:
            raise InputError(
                f"parameter values must have shape ({n_params},) or (B, {n_params}) for a "
                f"circuit with {n_params} parameters (in circuit.parameters order), "
                f"got shape {np.shape(parameter_values)}"
            )
        if not np.all(np.isfinite(values)):
            raise InputError("parameter values must be finite numbers")
        return values

    # ------------------------------------------------------------------ evaluation
    def probabilities(self, circuit: QuantumCircuit, parameter_values=()) -> np.ndarray:
        """Outcome probabilities, float64 (B, 2^N), Qiskit little-endian order, rows sum to 1.

        ``parameter_values`` has shape (P,) or (B, P) in ``circuit.parameters`` order; all B
        sets go out in one submission. N is the number of classical bits (every qubit is
        measured if the circuit has no measurements).
        """
        prepared = self._prepare(circuit)
        values = self._values(prepared, parameter_values)
        shots = self.num_shots(prepared.n_bits)
        if self.kind == "statevector":
            return self._run_statevector(prepared, values, shots)
        if self.kind == "aer_noisy":
            return self._run_noisy(prepared, values, shots)
        return self._run_ibm(prepared, values, shots)

    def _binds(self, isa: QuantumCircuit, prepared: _Prepared, values: np.ndarray):
        if not prepared.parameters:
            return None
        column = {p: i for i, p in enumerate(prepared.parameters)}
        return [{p: values[:, column[p]] for p in isa.parameters}]

    def _aer_run(self, simulator, circuit, prepared, values, shots):
        binds = self._binds(circuit, prepared, values)
        seed = int(self._rng.integers(2**31))
        job = simulator.run([circuit], parameter_binds=binds, shots=shots, seed_simulator=seed)
        result = job.result()
        if not result.success:
            raise RuntimeError(f"Aer failed: {result.status}")
        n_sets = values.shape[0]
        if shots is None:
            probs = np.array([np.asarray(result.results[b].data.probabilities) for b in range(n_sets)])
            return probs
        out = np.zeros((n_sets, 2**prepared.n_bits))
        for b in range(n_sets):
            for key, count in result.results[b].data.counts.items():
                out[b, int(key, 16)] += count
        return out / shots

    def _run_statevector(self, prepared, values, shots):
        from qiskit_aer import AerSimulator

        sim = prepared.extras.get("simulator")
        if sim is None:
            sim = prepared.extras["simulator"] = AerSimulator(method="statevector")
        exact = prepared.extras.get("exact")
        if exact is None:
            exact = prepared.extras["exact"] = _without_measurements(prepared.isa)
        probs = self._aer_run(sim, exact, prepared, values, None)
        return probs if shots is None else self._sample(probs, shots)

    def _sample(self, exact: np.ndarray, shots: int) -> np.ndarray:
        """Shot frequencies: `shots` independent outcomes per row of exact probabilities.

        This is the distribution a simulator's measurement sampling draws from; one
        multinomial draw per parameter set is just the fastest way to draw it.
        """
        exact = np.clip(exact, 0.0, None)
        counts = np.stack([self._rng.multinomial(shots, p / p.sum()) for p in exact])
        return counts / shots

    def _program(self, prepared: _Prepared) -> PTMProgram | None:
        if "program" not in prepared.extras:
            program = None
            if self.engine != "aer":
                try:
                    program = PTMProgram(prepared.isa, noise_model(self.device_name))
                except UnsupportedCircuit as exc:
                    if self.engine == "ptm":
                        raise InputError(f"engine='ptm' cannot simulate this circuit: {exc}") from None
            prepared.extras["program"] = program
        return prepared.extras["program"]

    def _run_noisy(self, prepared, values, shots):
        program = self._program(prepared)
        if program is not None:
            need = program.memory_bytes(values.shape[0])
            if need > available_memory():
                raise CapacityError(
                    f"exact noisy simulation of {program.n_qubits} qubits for {values.shape[0]} "
                    f"parameter sets needs {_gib(need)} ({_gib(program.memory_bytes(1) / 2)} "
                    f"per set); {_gib(available_memory())} is available. Use fewer qubits or "
                    "fewer parameter sets per call"
                )
            exact = program.probabilities(values)
            return exact if shots is None else self._sample(exact, shots)
        n_active = len({q for i in prepared.isa.data if i.operation.name != "barrier" for q in i.qubits})
        need = 16 * 4**n_active
        if need > available_memory():
            raise CapacityError(
                f"density-matrix simulation of {n_active} qubits needs {_gib(need)} per "
                f"parameter set; {_gib(available_memory())} is available"
            )
        from qiskit_aer import AerSimulator

        nm = noise_model(self.device_name)
        sim = AerSimulator(method="density_matrix", noise_model=nm)
        if shots is not None:
            return self._aer_run(sim, prepared.isa, prepared, values, shots)
        exact = prepared.extras.get("exact")
        if exact is None:
            exact = prepared.extras["exact"] = _without_measurements(prepared.isa)
        probs = self._aer_run(sim, exact, prepared, values, None)
        matrices = readout_matrices(nm, measured_qubits(prepared.isa))
        return apply_readout(probs, matrices)

    def _run_ibm(self, prepared, values, shots):
        if self.options.get("hardware_loop") is not None:  # recorded, resumable jobs (qpa_qiskit.ibm)
            return self.options["hardware_loop"].probabilities(self, prepared.circuit, values, shots)
        sampler = self.sampler()
        column = {p: i for i, p in enumerate(prepared.parameters)}
        isa_values = values[:, [column[p] for p in prepared.isa.parameters]]
        pub = (prepared.isa, isa_values) if prepared.parameters else (prepared.isa,)
        job = sampler.run([pub], shots=shots)
        self.last_job_id = job.job_id()
        start = time.monotonic()
        result = job.result()
        self.last_wait_s = time.monotonic() - start
        return counts_to_probabilities(result[0], prepared.isa, values.shape[0], shots)


def pub_counts(pub_result, isa: QuantumCircuit, n_sets: int) -> np.ndarray:
    """Counts (B, 2^N), int64, of one Sampler PUB result over all classical bits of `isa`,
    outcomes in Qiskit's little-endian order (the order of :meth:`QPABackend.probabilities`)."""
    bits = pub_result.join_data(names=[c.name for c in isa.cregs])
    out = np.zeros((n_sets, 2**isa.num_clbits), dtype=np.int64)
    for b in range(n_sets):
        loc = np.unravel_index(b, bits.shape) if bits.shape else None
        for value, count in bits.get_int_counts(loc=loc).items():
            out[b, value] += count
    return out


def counts_to_probabilities(pub_result, isa: QuantumCircuit, n_sets: int, shots: int) -> np.ndarray:
    """Turn one Sampler PUB result into (B, 2^N) probabilities over all classical bits."""
    return pub_counts(pub_result, isa, n_sets) / shots
