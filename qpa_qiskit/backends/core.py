"""The :class:`QPABackend` facade, the registry of backend families, and what they share.

Why a facade over a registry: every caller (the torch layer, the generator, training, job
stores) needs the same few things of a backend: the ISA circuit, the number of outcome bits,
shots, and probabilities (B, 2^N) of one submission. What differs between an exact
simulator, a noisy simulator and IBM Quantum is how a prepared circuit is run. That part is a
:class:`Family`, one module each (:mod:`.statevector`, :mod:`.aer_noisy`, :mod:`.ibm`),
registered by name with :func:`register`; a spec ``"<family>:<device>"`` picks one. A new
family is a new module and a ``register`` call; nothing here changes.

The facade keeps what every family shares: spec parsing, option and input checks (through
:mod:`qpa_qiskit.validate`), the per-circuit preparation cache, the shot sampler and its
random state, and the width check against the device.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, Measure

from ..credentials import redact
from ..errors import CapacityError, InputError, SpecError
from ..noise.settings import OPTIONS as NOISE_OPTIONS
from ..simulator.ptm import size_text
from ..validate import integer, memory_size, number, one_of, positive_int
from ..validate import layout as layout_value
from .config import MITIGATIONS, BackendConfig
from .layout import check_physical, pass_manager, placement
from .mitigation import ReadoutMitigation

# The most shots one parameter set can take: numpy's multinomial draws int64 counts.
MAX_SHOTS = int(np.iinfo(np.int64).max)
COMMON_OPTIONS = frozenset({"optimization_level", "seed_transpiler", "layout"})


# --------------------------------------------------------------------------- registry
class Family:
    """One kind of backend: how a spec names its device and how a prepared circuit runs.

    Subclasses set the class attributes, implement :meth:`probabilities`, and are made
    available by :func:`register`. One instance belongs to one :class:`QPABackend`.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    #: the spec forms for error messages, e.g. ``'"aer_noisy:<fake device>"'``
    forms: ClassVar[tuple[str, ...]] = ()
    #: options accepted beyond :data:`COMMON_OPTIONS`
    options: ClassVar[frozenset[str]] = frozenset()
    #: the spec names a device after the colon
    needs_device: ClassVar[bool] = True
    #: it can only sample (no exact probabilities): shots or shots_factor are required
    samples_only: ClassVar[bool] = False

    def __init__(self, backend: QPABackend, options: dict[str, Any]) -> None:
        self.backend = backend

    @classmethod
    def device_name(cls, text: str) -> str:
        """The canonical device name of the text after the colon; SpecError if unknown."""
        return text

    @classmethod
    def missing_device(cls) -> str:
        """What to write after the colon, for the error of a spec that names no device."""
        return ""

    def opens_at_start(self) -> bool:
        """Open the device when the backend is built (else on first use)."""
        return False

    def open_device(self) -> Any:
        """The device (a qiskit BackendV2), or None where there is none (an ideal simulator)."""
        return None

    def transpile_target(self) -> Any:
        """What the ISA circuit is transpiled for."""
        return self.backend.connect()

    def check_capacity(self, measured: QuantumCircuit) -> None:
        """CapacityError if this circuit cannot be simulated here (before any work)."""

    def probabilities(self, prepared: Prepared, values: np.ndarray, shots: int | None) -> np.ndarray:
        """(B, 2^N) probabilities, exact when `shots` is None, else shot frequencies."""
        raise NotImplementedError

    def expectation_values(
        self, prepared: Prepared, values: np.ndarray, terms: list[dict[int, int]]
    ) -> np.ndarray:
        """Exact expectation values (B, K) of Pauli terms ({physical qubit: 1 X, 2 Y, 3 Z}) on
        the state the ISA circuit prepares before its measurements."""
        raise InputError(f"{self.name} backends compute no exact expectation values")

    def noise_model(self) -> Any:
        """The Aer NoiseModel this family simulates, or None (noiseless, or real hardware)."""
        return None

    def readout_confusion(self, prepared: Prepared) -> list[np.ndarray]:
        """The readout confusion C[true, read] of each classical bit of the ISA circuit, as
        the mitigation is calibrated here (a family with the ``mitigation`` option overrides it)."""
        raise InputError(f"{self.name} backends read out exactly: there is no readout error to mitigate")

    @classmethod
    def config_options(cls, section: Any, hardware_loop: Any = None) -> dict[str, Any]:
        """The options of :class:`QPABackend` this family takes from a backend configuration
        section (:class:`~qpa_qiskit.backends.config.BackendConfig`); `hardware_loop` is for a
        family that runs its jobs through one."""
        return {}

    # The accessors of one family only (a remote service's account, runtime Sampler and local
    # testing mode): the facade asks the family, the family that has them overrides these,
    # and the others refuse here, naming the families that have one.
    @property
    def local_testing(self) -> bool:
        """The family's local testing mode (a remote service simulated here, with no account)."""
        return False

    @property
    def service(self) -> Any:
        """The family's account service; only a remote family has one."""
        having = _having("service")
        raise InputError(f"only {having} backends have an account service, not {self.backend.name!r}")

    def sampler(self) -> Any:
        """The family's runtime Sampler; only a remote family has one."""
        having = _having("sampler")
        raise InputError(f"only {having} backends run a runtime Sampler, not {self.backend.name!r}")

    def program(self, prepared: Prepared) -> Any:
        """The circuit compiled for this family's own engine, or None where there is none."""
        return None

    def gradient_unavailable(self, prepared: Prepared) -> str | None:
        """None where :meth:`vjp` gives exact gradients of this circuit, else why it cannot."""
        return f"{self.name} backends have no engine for exact gradients"

    def vjp(self, prepared: Prepared, values: np.ndarray) -> tuple[np.ndarray, Callable]:
        """Exact p (2^N,) for one parameter set (circuit order), and the pullback that maps
        dL/dp to dL/dθ (circuit order)."""
        raise NotImplementedError


FAMILIES: dict[str, type[Family]] = {}
_ALIASES: dict[str, str] = {}


def load_families() -> None:
    """Import every family module, each of which registers its family (:func:`register`).

    They import this module, so it cannot import them; the package names them and loads them
    here, on the first lookup of a spec, so that importing ``backends.core`` alone is enough."""
    importlib.import_module(__package__).load_families()


def _having(accessor: str) -> str:
    """The spec forms of the families that override a :class:`Family` accessor (``"ibm:"``)."""
    load_families()
    names = [f"{n}:" if f.needs_device else n for n, f in FAMILIES.items()
             if getattr(f, accessor) is not getattr(Family, accessor)]  # fmt: skip
    return ", ".join(names) or "no"


def register(family: type[Family]) -> type[Family]:
    """Make a :class:`Family` available to specs under its name and aliases (a decorator)."""
    FAMILIES[family.name] = family
    for alias in (family.name, *family.aliases):
        _ALIASES[alias] = family.name
    return family


def spec_forms() -> str:
    """The accepted spec forms of every registered family, for error messages."""
    load_families()
    return ", ".join(form for family in FAMILIES.values() for form in family.forms)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``(family, device_name)`` of a backend spec, the device name canonical (or None).

    ``"ideal"`` -> ``("statevector", None)``, ``"aer_noisy:Fake_Brisbane"`` ->
    ``("aer_noisy", "fake_brisbane")``, ``"ibm:ibm_torino"`` -> ``("ibm", "ibm_torino")``.
    Raises SpecError naming the accepted forms (and close matches) for anything else.
    """
    if not isinstance(spec, str):
        raise SpecError(f"a backend spec is a string, got {type(spec).__name__}; accepted: {spec_forms()}")
    load_families()
    text = spec.strip()
    head, _, rest = text.partition(":")
    key = head.strip().lower()
    family = FAMILIES.get(_ALIASES.get(key, ""))
    if family is None:
        names = [*_ALIASES, *(f"{n}:" for n, f in FAMILIES.items() if f.needs_device)]
        close = difflib.get_close_matches(text.lower(), names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"unknown backend spec {redact(repr(spec))}.{hint} Accepted: {spec_forms()}")
    rest = rest.strip()
    if not family.needs_device:
        if rest:
            raise SpecError(
                f"{family.name!r} takes no device, got {redact(repr(spec))}. Accepted: {spec_forms()}"
            )
        return family.name, None
    if not rest:
        raise SpecError(
            f"{redact(repr(spec))} names no device: write {family.missing_device()}. Accepted: {spec_forms()}"
        )
    return family.name, family.device_name(rest)


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


#: instructions kept as they are by :func:`flatten` (the engines and Aer know them)
_NOT_COMPOSITE = frozenset({"measure", "reset", "barrier", "delay"})


def _composite(inst: Any) -> bool:
    """An instruction that is only a name for its definition: a subcircuit added with
    ``append`` (``QuantumCircuit.to_instruction``), not a gate, measurement or reset."""
    op = inst.operation
    return (
        not isinstance(op, Gate)
        and op.name not in _NOT_COMPOSITE
        and not inst.is_control_flow()
        and getattr(op, "definition", None) is not None
    )


def flatten(circuit: QuantumCircuit) -> QuantumCircuit:
    """The circuit with every composite instruction (a subcircuit added with ``append``:
    ``qc.append(real_amplitudes(n), qubits)``, a QNN's feature map) replaced by its
    definition, recursively: the same gates, measurements and resets as the ``compose``d
    circuit, so they are classified (unitary or not, measured where) and simulated as those.
    Gates (``to_gate``) stay: they are unitary, and the transpiler unrolls them. The circuit
    itself when it has no composite instruction."""
    if not any(_composite(inst) for inst in circuit.data):
        return circuit
    out = circuit.copy_empty_like()
    _inline(out, circuit, list(circuit.qubits), list(circuit.clbits))
    return out


def _inline(out: QuantumCircuit, circuit: QuantumCircuit, qubits: list, clbits: list) -> None:
    """Append `circuit`'s instructions to `out` on `qubits`/`clbits`, composites expanded."""
    qmap = dict(zip(circuit.qubits, qubits, strict=True))
    cmap = dict(zip(circuit.clbits, clbits, strict=True))
    for inst in circuit.data:
        inner_q = [qmap[q] for q in inst.qubits]
        inner_c = [cmap[c] for c in inst.clbits]
        if _composite(inst):
            definition = inst.operation.definition
            out.global_phase += definition.global_phase
            _inline(out, definition, inner_q, inner_c)
        else:
            out.append(inst.operation, inner_q, inner_c, copy=False)


def non_unitary(circuit: QuantumCircuit) -> str | None:
    """The name of the first instruction that makes the state mixed (a reset, a channel, control
    flow), None if the circuit is gates, barriers, delays and measurements only."""
    for inst in flatten(circuit).data:
        op = inst.operation
        if inst.is_control_flow() or not (isinstance(op, Gate) or op.name in ("measure", "barrier", "delay")):
            return op.name
    return None


NO_MEASUREMENTS = (
    "the circuit has classical bits but no measurements: measure into them (every bit once), "
    "or build it without classical bits to measure every qubit"
)


def with_measurements(circuit: QuantumCircuit, *, estimation: bool = False) -> QuantumCircuit:
    """The circuit itself if it measures; otherwise a copy measuring every qubit.

    A circuit with classical bits but no measurements has no outcome to give probabilities
    of (InputError); for expectation values (``estimation``) its bits do not matter, as for
    Qiskit's and Aer's estimators, and every qubit is measured into new bits instead."""
    if any(isinstance(i.operation, Measure) for i in circuit.data):
        return circuit
    if circuit.num_clbits:
        if not estimation or any(inst.clbits for inst in circuit.data):
            raise InputError(NO_MEASUREMENTS)
        bare = QuantumCircuit(circuit.qubits, *circuit.qregs, global_phase=circuit.global_phase)
        for inst in circuit.data:
            bare.append(inst.operation, inst.qubits, copy=False)
        return bare.measure_all(inplace=False)
    return circuit.measure_all(inplace=False)


def without_measurements(circuit: QuantumCircuit) -> QuantumCircuit:
    """ISA circuit with final measurements replaced by an exact probability snapshot."""
    qubits = measured_qubits(circuit)
    exact = circuit.remove_final_measurements(inplace=False)
    exact.save_probabilities(qubits)
    return exact


def is_isa(circuit: QuantumCircuit, target: Any) -> bool:
    """True when every instruction of the circuit is native to `target` on its qubits (barriers
    aside) and the circuit fits the target: such a circuit runs as given, not transpiled."""
    if target.num_qubits is not None and circuit.num_qubits > target.num_qubits:
        return False
    for inst in circuit.data:
        name = inst.operation.name
        if name == "barrier":
            continue
        if inst.is_control_flow():
            return False
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if not target.instruction_supported(name, qargs):
            return False
    return True


def pauli_terms(labels: list[str], n_qubits: int) -> list[dict[int, int]]:
    """Pauli labels (Qiskit order: the last character is qubit 0) -> {qubit: 1 X, 2 Y, 3 Z}
    for the qubits that carry a non-identity Pauli; InputError for a malformed label."""
    terms = []
    for label in labels:
        if not isinstance(label, str) or len(label) != n_qubits or set(label) - set("IXYZ"):
            raise InputError(
                f"a Pauli observable is a string of {n_qubits} characters from I, X, Y, Z "
                f"(one per qubit of the circuit, qubit 0 last), got {label!r}"
            )
        terms.append({q: "IXYZ".index(c) for q, c in enumerate(reversed(label)) if c != "I"})
    return terms


def _param_key(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:  # a matrix (a unitary gate) or another unhashable parameter
        return value.tobytes() if isinstance(value, np.ndarray) else repr(value)


def fingerprint(circuit: QuantumCircuit) -> int:
    """A hash of what a circuit does: every instruction's name, parameters, qubits and bits.

    Cheap next to a simulation (microseconds per instruction); it changes when the circuit
    is edited in place, which an ``id()`` does not.
    """
    return hash(
        (
            circuit.num_qubits,
            circuit.num_clbits,
            tuple(
                (
                    inst.operation.name,
                    tuple(_param_key(p) for p in inst.operation.params),
                    inst.qubits,
                    inst.clbits,
                )
                for inst in circuit.data
            ),
        )
    )


@dataclass
class Prepared:
    """What a backend builds once per circuit; the ISA circuit when it is first needed."""

    circuit: QuantumCircuit
    fingerprint: int
    measured: QuantumCircuit
    n_bits: int
    parameters: list
    transpile: Callable[[QuantumCircuit], QuantumCircuit]
    extras: dict[str, Any] = field(default_factory=dict)
    _isa: QuantumCircuit | None = None

    @property
    def isa(self) -> QuantumCircuit:
        if self._isa is None:
            self._isa = self.transpile(self.measured)
        return self._isa

    @property
    def unmeasured(self) -> QuantumCircuit:
        """The ISA circuit without its final measurements: the state expectation values are of."""
        if "unmeasured" not in self.extras:
            self.extras["unmeasured"] = self.isa.remove_final_measurements(inplace=False)
        return self.extras["unmeasured"]

    def isa_values(self, values: np.ndarray) -> np.ndarray:
        """`values` (B, P) in circuit.parameters order -> columns in isa.parameters order."""
        column = {p: i for i, p in enumerate(self.parameters)}
        return values[:, [column[p] for p in self.isa.parameters]]

    def circuit_gradient(self, isa_gradient: np.ndarray) -> np.ndarray:
        """A gradient (P_isa,) in isa.parameters order -> (P,) in circuit.parameters order;
        a parameter the transpiler removed has none."""
        column = {p: i for i, p in enumerate(self.parameters)}
        out = np.zeros(len(self.parameters))
        for p, g in zip(self.isa.parameters, isa_gradient, strict=True):
            out[column[p]] += g
        return out


def available_memory() -> int:
    """Bytes of memory available to a simulation now."""
    try:
        # lazy: psutil, only when a memory budget is checked
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_memory(what: str, need: int, budget: int | None) -> None:
    """Refuse an Aer simulation (`what`, such as "density-matrix simulation of 5 qubits") that
    needs `need` bytes per parameter set, more than is available or than `budget` allows."""
    available = available_memory()
    if need > available:
        raise CapacityError(f"{what} needs {gib(need)} per parameter set; {gib(available)} is available")
    if budget is not None and need > budget:
        raise CapacityError(
            f"{what} needs {size_text(need)} per parameter set, more than memory_budget="
            f"{size_text(budget)}: raise memory_budget (to at least {size_text(need)}, at most the "
            f"{gib(available)} available) or use fewer qubits"
        )


def aer_run(
    simulator: Any,
    circuit: QuantumCircuit,
    prepared: Prepared,
    values: np.ndarray,
    shots: int | None,
    seed: int,
) -> np.ndarray:
    """One Aer run of all B parameter sets: exact probabilities (a ``save_probabilities``
    circuit, ``shots=None``) or shot frequencies, (B, 2^N)."""
    n_sets = values.shape[0]
    result = _aer_result(simulator, circuit, prepared, values, shots, seed)
    if shots is None:
        return np.array([np.asarray(result.results[b].data.probabilities) for b in range(n_sets)])
    out = np.zeros((n_sets, 2**prepared.n_bits))
    for b in range(n_sets):
        for key, count in result.results[b].data.counts.items():
            out[b, int(key, 16)] += count
    return out / shots


def _aer_result(
    simulator: Any,
    circuit: QuantumCircuit,
    prepared: Prepared,
    values: np.ndarray,
    shots: int | None,
    seed: int,
) -> Any:
    """One Aer run of `circuit` for every parameter set (B, P) in ``prepared.parameters`` order."""
    if prepared.parameters:
        column = {p: i for i, p in enumerate(prepared.parameters)}
        binds = [{p: values[:, column[p]] for p in circuit.parameters}]
        circuits = [circuit]
    else:  # no parameters to bind: B copies, so every row is its own experiment
        binds, circuits = None, [circuit] * values.shape[0]
    result = simulator.run(circuits, parameter_binds=binds, shots=shots, seed_simulator=seed).result()
    if not result.success:
        raise RuntimeError(f"Aer failed: {result.status}")
    return result


def aer_expectation_values(
    simulator: Any,
    unmeasured: QuantumCircuit,
    prepared: Prepared,
    values: np.ndarray,
    terms: list[dict[int, int]],
) -> np.ndarray:
    """Exact expectation values (B, K) of Pauli terms on physical qubits, by one Aer run with
    a ``save_expectation_value`` per term (what Aer's EstimatorV2 does)."""
    # lazy: a qiskit submodule (import time), only on this path
    from qiskit.quantum_info import Pauli

    circuit = unmeasured.copy()
    # every term on the same qubits, padded with I: Aer 0.18's qubit truncation remaps a save on
    # a subset of them wrongly (qiskit-aer issue 2442: all the subsets then read as their union)
    qubits = sorted({q for term in terms for q in term})
    for k, term in enumerate(terms):
        if term:
            label = "".join("IXYZ"[term.get(q, 0)] for q in reversed(qubits))
            circuit.save_expectation_value(Pauli(label), qubits, label=f"term{k}")
    result = _aer_result(simulator, circuit, prepared, values, None, 0)
    out = np.ones((values.shape[0], len(terms)))
    for b in range(values.shape[0]):
        data = result.data(b)
        for k, term in enumerate(terms):
            if term:
                out[b, k] = float(np.real(data[f"term{k}"]))
    return out


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
        accepted = COMMON_OPTIONS | family.options
        unknown = set(options) - accepted
        if unknown & set(NOISE_OPTIONS):
            raise SpecError(
                f"{', '.join(sorted(unknown & set(NOISE_OPTIONS)))} set(s) the strength or components of "
                f"a simulated noise model, which only aer_noisy:<device> backends have; {self.kind} "
                + ("is noiseless" if self.kind == "statevector" else "runs IBM's own noise")
                + ". Use an aer_noisy backend or drop the option"
            )
        if options.get("mitigation", "none") != "none" and "mitigation" not in family.options:
            raise SpecError(
                f"mitigation={options['mitigation']!r} corrects readout errors, and {self.kind} reads out "
                "exactly (an ideal simulator); use an aer_noisy or ibm backend or drop the option"
            )
        unknown.discard("mitigation")
        if unknown:
            raise SpecError(
                f"unknown option(s) {sorted(unknown)} for a {self.kind} backend; accepted: {sorted(accepted)}"
            )
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
                "a circuit on; drop the layout, or use an aer_noisy or ibm backend"
            )
        if shots_factor is not None and shots is not None:
            raise InputError("give shots_factor or shots, not both")
        self.shots_factor = None if shots_factor is None else number(shots_factor, "shots_factor", above=0)
        self.shots = None if shots is None else positive_int(shots, "shots")
        if self.shots is not None and self.shots > MAX_SHOTS:
            raise InputError(f"shots must be at most {MAX_SHOTS}, got {shots!r}")
        if family.samples_only and shots is None and shots_factor is None:
            raise InputError(
                f"{redact(repr(spec))} runs on IBM Quantum, which samples: exact probabilities are "
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
        `seed` seeds the shots, `hardware_loop` is for a family that runs its jobs through one.
        `device` is the run's torch device: a family with a ``torch_device`` option (the PTM
        engine) runs there unless the section sets one; a CUDA device only, since the engine
        computes in float64, which MPS lacks (the CPU otherwise)."""
        kind, _ = parse_spec(section.backend)
        family = FAMILIES[kind]
        if section.engine != "auto" and "engine" not in family.options:
            takers = ", ".join(n for n, f in FAMILIES.items() if "engine" in f.options)
            raise InputError(
                f"engine {section.engine!r} applies to {takers} backends only, not {section.backend!r}"
            )
        options = family.config_options(section, hardware_loop)
        if device is not None and "torch_device" in family.options and "torch_device" not in options:
            options["torch_device"] = device if device.startswith("cuda") else "cpu"
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
        settings = getattr(self.family, "settings", None)
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
