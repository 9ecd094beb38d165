"""qpa-qiskit: Quantum Parameter Adaptation with Qiskit.

A small parameterised circuit and a classical mapping network generate the adapter weights
of a classical LLM: backends and circuits (the quantum half), a torch layer with
parameter-shift gradients, the parameter generator, completion of finite-shot data, and
peft adapters whose weights it generates (LoRA, DoRA, prefix tuning, feed-forward adapters),
Quantum-Train for whole networks, device noise as reproducible data, IBM Quantum job
stores that survive restarts, and the exact engines as Qiskit V2 primitives
(:mod:`qpa_qiskit.primitives`: ``Sampler``, ``Estimator``).

The names below are imported on first use (PEP 562 ``__getattr__``), not when the package is:
they pull in torch, transformers, peft and qiskit, seconds that the ``qpa`` command line
(whose entry point imports this package first) spends only for the command that needs them.
``from qpa_qiskit import QPABackend`` works as before.
"""

from __future__ import annotations

from .lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".adapters": "AdaptedModel",
    ".backends": "QPABackend list_backends",
    ".circuits": "ansatz",
    ".completion": "GenerativeInterpolation",
    ".errors": "AccountError BudgetReached BusyError CapacityError InputError JobsError QPAError SpecError "
               "StateError TrialsFailed",
    ".generator": "LowRankGenerator QPAGenerator",
    ".hf": "QPACallback QPAConfig QPAModel get_qpa_model",
    ".jobs": "JobStore",
    ".noise": "NoiseSettings Snapshot",
    ".qnn": "QuantumProbabilities",
    ".quantum_train": "QuantumTrain",
    ".train": "Run evaluate_run",
    ".train.export": "export",
    ".train.run_config": "AdapterConfig EvalConfig GeneratorConfig RunConfig TaskConfig TrainingConfig",
})  # fmt: skip
