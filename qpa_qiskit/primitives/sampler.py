"""``Sampler``: Qiskit's ``BaseSamplerV2`` on a QPABackend's exact distributions."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.circuit import Measure
from qiskit.primitives import BaseSamplerV2, PrimitiveJob, SamplerPubResult
from qiskit.primitives.containers import BitArray, DataBin
from qiskit.primitives.containers.sampler_pub import SamplerPub, SamplerPubLike

from ..backends import flatten
from ..validate import positive_int
from .common import (
    PrimitiveCore,
    aer_options,
    check_real_values,
    flat_values,
    unsupported,
)


@dataclass
class _Plan:
    """How one circuit runs: its measured qubits in one register (the fast path), or why not."""

    circuit: QuantumCircuit
    canonical: QuantumCircuit | None = None  # gates as given, then one measurement per qubit read
    n_read: int = 0  # distinct qubits read, the canonical register's width
    registers: list[tuple[str, int, np.ndarray]] = field(default_factory=list)  # name, bits, source
    fallback: str | None = None
    isa: QuantumCircuit | None = None  # for the Aer fallback, transpiled once


class Sampler(PrimitiveCore, BaseSamplerV2):
    """Samples of circuits' measurements from their exact distribution on a QPABackend.

    Each parameter set's outcome distribution is computed exactly (statevector, or the exact
    noisy PTM engine with the device's readout errors on ``aer_noisy:``) and the PUB's shots
    are drawn from it: the same distribution Aer's sampler draws from, at the cost of one
    exact evaluation per parameter set whatever the shots. Results follow Qiskit's V2
    conventions: one ``BitArray`` per classical register, under its name, of shape
    ``(*pub.shape)`` with ``shots`` samples; bits no measurement writes read 0.

    Args:
        backend: a :class:`~qpa_qiskit.QPABackend` (built without shots) or a spec string,
            ``"statevector"`` or ``"aer_noisy:<device or snapshot>"``.
        default_shots: shots of a PUB that names none.
        seed: seeds the sampling, as in Qiskit's ``StatevectorSampler``: an integer restarts
            it for every PUB, so a seeded sampler repeats its samples run after run; a numpy
            Generator is one stream used on across runs (fresh samples each run, the sequence
            reproducible from the generator's seed); None is fresh entropy.
        **options: backend options (``noise_scale``, ``readout_error``, ``engine``, ...), with a
            spec string only.

    Circuits may be abstract (transpiled for the device once, as the backend does) or ISA
    for it (run as given); subcircuits added with ``append`` are expanded first, so they run
    on the fast engines. Mid-circuit measurements, resets and control flow, and a qubit
    measured into several bits under readout noise, run on Aer's ``SamplerV2`` with the
    same noise model instead (warned once per circuit).
    """

    name = "Sampler"

    def __init__(self, backend: Any, *, default_shots: int = 1024, seed: Any = None, **options: Any) -> None:
        self._setup(backend, options, seed)
        self._default_shots = positive_int(default_shots, "default_shots")

    @property
    def default_shots(self) -> int:
        return self._default_shots

    def run(self, pubs: Iterable[SamplerPubLike], *, shots: int | None = None) -> PrimitiveJob:
        if shots is None:
            shots = self._default_shots
        coerced = [SamplerPub.coerce(pub, shots) for pub in check_real_values(pubs, 1)]
        if any(len(pub.circuit.cregs) == 0 for pub in coerced):
            warnings.warn(
                "One of your circuits has no output classical registers and so the result will be "
                "empty. Did you mean to add measurement instructions?",
                UserWarning,
                stacklevel=2,
            )
        return self._submit(coerced)

    # ------------------------------------------------------------------ planning
    def _plan(self, original: QuantumCircuit) -> _Plan:
        plan = _Plan(original)
        circuit = flatten(original)  # the measurements and gates of appended subcircuits
        plan.fallback = unsupported(circuit)
        if plan.fallback is not None:
            return plan
        qubit_of: dict[int, int] = {}  # clbit -> qubit of its final measurement
        for inst in circuit.data:
            if isinstance(inst.operation, Measure):
                clbit = circuit.find_bit(inst.clbits[0]).index
                if clbit in qubit_of:
                    plan.fallback = f"classical bit {clbit} written by two measurements"
                    return plan
                qubit_of[clbit] = circuit.find_bit(inst.qubits[0]).index
        read = sorted(set(qubit_of.values()))
        if len(read) < len(qubit_of) and self.backend.noise_model is not None:
            plan.fallback = "a qubit measured into several bits, each with its own readout error"
            return plan
        position = {q: k for k, q in enumerate(read)}
        for creg in circuit.cregs:
            source = [position.get(qubit_of.get(circuit.find_bit(b).index), -1) for b in creg]
            plan.registers.append((creg.name, creg.size, np.array(source, dtype=int)))
        plan.n_read = len(read)
        if read:
            canonical = QuantumCircuit(circuit.qubits, global_phase=circuit.global_phase)
            for inst in circuit.data:
                if not isinstance(inst.operation, Measure):
                    canonical.append(inst.operation, inst.qubits, copy=False)
            canonical.add_register(ClassicalRegister(len(read), "read"))
            canonical.measure(read, range(len(read)))
            plan.canonical = canonical
        return plan

    # ------------------------------------------------------------------ running
    def _run_group(
        self, plan: _Plan, pubs: list[SamplerPub], rngs: list[np.random.Generator]
    ) -> list[SamplerPubResult]:
        flat = [flat_values(pub.parameter_values, plan.circuit.parameters) for pub in pubs]
        if plan.canonical is not None:
            probs = self.backend.probabilities(plan.canonical, np.concatenate(flat))
        results, start = [], 0
        for pub, rows, rng in zip(pubs, flat, rngs, strict=True):
            if plan.canonical is None:  # nothing measured: every bit reads 0
                outcomes = np.zeros((len(rows), pub.shots), dtype=np.int64)
            else:
                outcomes = self._draw(probs[start : start + len(rows)], pub.shots, rng)
            start += len(rows)
            results.append(self._result(pub, plan, outcomes))
        return results

    @staticmethod
    def _draw(probs: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
        """`shots` outcomes (B, shots) per row of exact probabilities, by inverse transform."""
        cdf = np.cumsum(np.clip(probs, 0.0, None), axis=1)
        u = rng.random((probs.shape[0], shots)) * cdf[:, -1:]
        out = np.empty((probs.shape[0], shots), dtype=np.int64)
        for b in range(probs.shape[0]):
            out[b] = np.minimum(np.searchsorted(cdf[b], u[b], side="right"), probs.shape[1] - 1)
        return out

    def _result(self, pub: SamplerPub, plan: _Plan, outcomes: np.ndarray) -> SamplerPubResult:
        bits = ((outcomes[..., None] >> np.arange(max(plan.n_read, 1))) & 1).astype(bool)
        zero = np.zeros((*bits.shape[:-1], 1), dtype=bool)
        padded = np.concatenate([bits, zero], axis=-1)  # source -1 reads the zero column
        data = {}
        for name, size, source in plan.registers:
            chosen = padded[..., source] if size else np.zeros((*bits.shape[:-1], 0), dtype=bool)
            chosen = chosen.reshape(*pub.shape, pub.shots, size)
            data[name] = (
                BitArray.from_bool_array(chosen, order="little")
                if size
                else BitArray(np.zeros((*pub.shape, pub.shots, 0), dtype=np.uint8), 0)
            )
        return SamplerPubResult(DataBin(**data, shape=pub.shape), metadata=_metadata(pub))

    def _aer(self, pub: SamplerPub, plan: _Plan, rng: np.random.Generator) -> SamplerPubResult:
        # lazy: qiskit-aer (seconds), only where Aer itself runs
        from qiskit_aer.primitives import SamplerV2 as AerSampler

        isa, values, seed = self._aer_inputs(plan, plan.circuit, pub, rng)
        sampler = AerSampler(seed=seed, options=aer_options(self.backend, seed))
        result = sampler.run([(isa, values, pub.shots)]).result()[0]
        return SamplerPubResult(result.data, metadata=_metadata(pub))


def _metadata(pub: SamplerPub) -> dict[str, Any]:
    """A PUB result's metadata, as Qiskit's reference sampler gives it."""
    return {"shots": pub.shots, "circuit_metadata": pub.circuit.metadata}
