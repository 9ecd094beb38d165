"""Readout mitigation with M3 (the ``mthree`` package), and how gradients pass through it.

Why: QPA feeds the measured distribution straight into the mapping network, so a readout error
goes straight into the adapter. A hardware user corrects counts before using them; IBM's
runtime Sampler offers no correction of counts, and the Qiskit ecosystem's answer is M3
(Nation et al., PRX Quantum 2, 040326 (2021)): per-qubit 2x2 assignment matrices, a linear
solve restricted to the outcomes that were observed, giving quasi-probabilities.

What this module adds to mthree is the QPA-specific part:

* calibration from known per-qubit confusion matrices (a simulated device's readout errors,
  :class:`ReadoutMitigation`) or from balanced calibration circuits run like
  any other circuit (:func:`calibration_circuit`, :func:`calibration_strings`,
  :func:`confusion_from_calibration`: the estimator of mthree's "balanced" method, since on
  IBM Quantum those circuits run as recorded jobs rather than through mthree's own runner);
* the projection of the quasi-probabilities to the nearest probability distribution in the
  Euclidean norm (mthree's ``nearest_probability_distribution``, Smolin, Gambetta and Smith,
  PRL 108, 070502 (2012)), so the generator always sees probabilities;
* the vector-Jacobian product: in exact mode the correction is the fixed linear map A^-1
  (A the tensor product of the assignment matrices; M3 over the full outcome space at full
  Hamming distance is exactly it), followed by the projection, which is linear on the set
  T of outcomes it keeps: J = I - 1 1^T / |T| there, 0 elsewhere. So
  dL/dp = A^-T J^T dL/dq, and the backend's own pullback takes it from there.

mthree computes in single precision: corrected values carry rounding of about 1e-7.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from ..errors import InputError

MTHREE_HINT = 'pip install "qpa-qiskit[mitigation]"'


def mthree() -> Any:
    """The mthree module; InputError naming the extra to install when it is missing."""
    try:
        # lazy: an optional extra, only where mitigation="m3" is chosen
        import mthree as module
    except ImportError:
        raise InputError(
            f"mitigation='m3' needs the mthree package, which is not installed: {MTHREE_HINT} "
            "(or pip install mthree)"
        ) from None
    return module


def check_confusion(matrices: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per-bit readout confusion C[true, read] (rows sum to 1), each invertible and better
    than a coin (M3 calls a qubit with P(read 0 | 1) >= P(read 0 | 0) faulty)."""
    out = []
    for bit, matrix in enumerate(matrices):
        c = np.asarray(matrix, dtype=float)
        if c.shape != (2, 2) or not np.all(np.isfinite(c)) or np.any(c < 0) or not np.allclose(c.sum(1), 1):
            raise InputError(
                f"the readout confusion of bit {bit} must be a 2x2 stochastic matrix, got {c.tolist()}"
            )
        if c[1, 0] >= c[0, 0]:
            raise InputError(
                f"bit {bit} reads 0 as often from 1 as from 0 (P(0|1)={c[1, 0]:.3g} >= "
                f"P(0|0)={c[0, 0]:.3g}): its readout carries no information to correct; use other qubits "
                "(layout) or mitigation='none'"
            )
        out.append(c)
    return out


class ReadoutMitigation:
    """M3 correction of distributions over N classical bits, bit i read through confusion[i]."""

    def __init__(self, confusion: Sequence[np.ndarray]) -> None:
        self.confusion = check_confusion(confusion)
        self.n_bits = len(self.confusion)
        self._mitigator = mthree().M3Mitigation()
        # mthree's calibration columns are the prepared state: cal[read, true] = C^T
        self._mitigator.cals_from_matrices([c.T.astype(np.float32) for c in self.confusion])
        self._inverse = [np.linalg.inv(c) for c in self.confusion]  # A = (x) C_i^T, so A^-T = (x) C_i^-1
        self._keys = [format(k, f"0{self.n_bits}b") for k in range(2**self.n_bits)]

    def quasi_probabilities(self, probs: np.ndarray) -> np.ndarray:
        """M3's quasi-probabilities (B, 2^N) of distributions (B, 2^N), at full Hamming distance
        on each row's observed outcomes (rows of exact probabilities: all of them)."""
        probs = np.asarray(probs, dtype=float)
        out = np.zeros_like(probs)
        qubits = list(range(self.n_bits))
        for b, row in enumerate(probs):
            seen = {self._keys[k]: float(row[k]) for k in np.flatnonzero(row > 0)}
            quasi = self._mitigator.apply_correction(seen, qubits, distance=-1, method="direct")
            for key, value in quasi.items():
                out[b, int(key, 2)] = value
        return out

    def correct(self, probs: np.ndarray) -> np.ndarray:
        """The mitigated distributions (B, 2^N): M3's quasi-probabilities projected to the
        nearest probability distribution (Euclidean norm), each row summing to 1."""
        return (
            np.stack([nearest_probability(q) for q in self.quasi_probabilities(probs)])
            if len(probs)
            else probs
        )

    def pullback(self, raw: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        """dL/dp (2^N,) at the unmitigated exact distribution `raw` from dL/dq of the mitigated
        one: through the projection's Jacobian on its kept outcomes, then A^-T."""
        quasi = self.linear_inverse(raw[None, :])[0]
        kept = nearest_probability(quasi) > 0
        u = np.where(kept, upstream - upstream[kept].mean(), 0.0)
        return self._apply(u[None, :], self._inverse)[0]

    def linear_inverse(self, probs: np.ndarray) -> np.ndarray:
        """A^-1 p in double precision: what M3 computes when every outcome is observed."""
        return self._apply(np.asarray(probs, dtype=float), [m.T for m in self._inverse])

    def _apply(self, probs: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
        """One 2x2 map per bit applied to little-endian rows (B, 2^N): out = (⊗ M_i) p."""
        n = self.n_bits
        t = probs.reshape([probs.shape[0]] + [2] * n)
        for bit, m in enumerate(matrices):
            axis = n - bit  # bit i is axis n - i of (batch, bit n-1, ..., bit 0)
            t = np.moveaxis(np.tensordot(m, t, axes=([1], [axis])), 0, axis)
        return t.reshape(probs.shape[0], -1)


def nearest_probability(quasi: np.ndarray) -> np.ndarray:
    """The probability vector nearest to `quasi` in the Euclidean norm, by mthree's
    ``nearest_probability_distribution`` (Smolin et al. 2012): entries below a threshold are
    set to 0, and what they held is shared equally by the others."""
    quasi = np.asarray(quasi, dtype=float)
    distribution = mthree().classes.QuasiDistribution({k: float(v) for k, v in enumerate(quasi)})
    out = np.zeros_like(quasi)
    for k, value in distribution.nearest_probability_distribution().items():
        out[int(k)] = value
    return out


# --------------------------------------------------------------------------- calibration circuits
def calibration_circuit(n_bits: int) -> QuantumCircuit:
    """N qubits, each flipped by RX(theta_i) (0 or pi: prepare 0 or 1) and measured into bit i:
    one parameterised circuit, so every calibration string is one parameter set of one job."""
    thetas = [Parameter(f"cal_{i:03d}") for i in range(n_bits)]
    circuit = QuantumCircuit(n_bits, n_bits, name="m3_calibration")
    for i, theta in enumerate(thetas):
        circuit.rx(theta, i)
    circuit.measure(range(n_bits), range(n_bits))
    return circuit


def calibration_strings(n_bits: int) -> np.ndarray:
    """Balanced calibration strings (K, N) of 0/1, bit i in column i: mthree's Hadamard
    generator, in which every bit is prepared 0 in half the strings and 1 in the other half."""
    generator = mthree().generators.HadamardGenerator(n_bits)
    return np.array([np.asarray(s, dtype=int)[::-1] for s in generator])  # mthree's strings are bit n-1 first


def calibration_values(strings: np.ndarray) -> np.ndarray:
    """The parameter values (K, N) of :func:`calibration_circuit` preparing `strings`."""
    return np.pi * np.asarray(strings, dtype=float)


def confusion_from_calibration(strings: np.ndarray, frequencies: np.ndarray) -> list[np.ndarray]:
    """Per-bit confusion C[true, read] estimated from the measured frequencies (K, 2^N) of
    the balanced calibration `strings` (K, N): P(read b | prepared b) is the share of correct
    reads of bit i over the strings that prepared b there (mthree's balanced estimator)."""
    strings = np.asarray(strings, dtype=int)
    frequencies = np.asarray(frequencies, dtype=float)
    n = strings.shape[1]
    outcomes = np.arange(frequencies.shape[1])
    out = []
    for bit in range(n):
        read_one = (outcomes >> bit) & 1
        correct = {0: [], 1: []}
        for row, prepared in zip(frequencies, strings[:, bit], strict=True):
            correct[prepared].append(row[read_one == prepared].sum())
        if not correct[0] or not correct[1]:
            raise InputError(f"the calibration strings never prepare bit {bit} in both states")
        p00, p11 = float(np.mean(correct[0])), float(np.mean(correct[1]))
        out.append(np.array([[p00, 1 - p00], [1 - p11, p11]]))
    return out
