"""The project's exact engines as Qiskit V2 primitives: :class:`Sampler` and :class:`Estimator`.

Why: Qiskit's algorithms and qiskit-machine-learning's QNNs talk to simulators through
``BaseSamplerV2``/``BaseEstimatorV2``. These two run any ``statevector`` or ``aer_noisy:``
:class:`~qpa_qiskit.QPABackend` behind that interface, so the exact noisy PTM engine (equal
to Aer's density-matrix method, much faster on parameter-shift batches) serves them all.

Both group the PUBs of one ``run`` by circuit and send each circuit's parameter sets to the
backend as ONE submission (a parameter-shift gradient's 2P PUBs become one batch, which the
PTM engine walks as one tree). Circuits the fast path cannot take (mid-circuit measurements,
resets, control flow) run on Aer's own V2 primitives with the same noise, and a
:class:`~qpa_qiskit.backends.SlowEngineWarning` says why, once per circuit.

The names below are imported on first use (PEP 562 ``__getattr__``, :mod:`qpa_qiskit.lazy`).
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".estimator": "Estimator",
    ".sampler": "Sampler",
})  # fmt: skip
