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

from typing import TYPE_CHECKING

from .errors import (
    AccountError,
    BudgetReached,
    BusyError,
    CapacityError,
    InputError,
    JobsError,
    QPAError,
    SpecError,
    StateError,
    TrialsFailed,
)
from .lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the submodule that defines it
_LAZY: dict[str, str] = {
    "AdaptedModel": "adapters",
    "QPABackend": "backends",
    "list_backends": "backends",
    "ansatz": "circuits",
    "GenerativeInterpolation": "completion",
    "AdapterConfig": "config",
    "EvalConfig": "config",
    "GeneratorConfig": "config",
    "RunConfig": "config",
    "TaskConfig": "config",
    "TrainingConfig": "config",
    "export": "export",
    "LowRankGenerator": "generator",
    "QPAGenerator": "generator",
    "JobStore": "jobs",
    "NoiseSettings": "noise",
    "Snapshot": "noise",
    "QPACallback": "hf",
    "QPAConfig": "hf",
    "QPAModel": "hf",
    "get_qpa_model": "hf",
    "QuantumProbabilities": "qnn",
    "QuantumTrain": "quantum_train",
    "Run": "train",
    "evaluate_run": "train",
}

if TYPE_CHECKING:  # what type checkers and editors see
    from .adapters import AdaptedModel
    from .backends import QPABackend, list_backends
    from .circuits import ansatz
    from .completion import GenerativeInterpolation
    from .config import AdapterConfig, EvalConfig, GeneratorConfig, RunConfig, TaskConfig, TrainingConfig
    from .export import export
    from .generator import LowRankGenerator, QPAGenerator
    from .hf import QPACallback, QPAConfig, QPAModel, get_qpa_model
    from .jobs import JobStore
    from .noise import NoiseSettings, Snapshot
    from .qnn import QuantumProbabilities
    from .quantum_train import QuantumTrain
    from .train import Run, evaluate_run


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "AccountError",
    "AdaptedModel",
    "AdapterConfig",
    "BudgetReached",
    "BusyError",
    "CapacityError",
    "EvalConfig",
    "GenerativeInterpolation",
    "GeneratorConfig",
    "InputError",
    "JobStore",
    "JobsError",
    "LowRankGenerator",
    "NoiseSettings",
    "QPABackend",
    "QPACallback",
    "QPAConfig",
    "QPAError",
    "QPAGenerator",
    "QPAModel",
    "QuantumProbabilities",
    "QuantumTrain",
    "Run",
    "RunConfig",
    "Snapshot",
    "SpecError",
    "StateError",
    "TaskConfig",
    "TrainingConfig",
    "TrialsFailed",
    "ansatz",
    "evaluate_run",
    "export",
    "get_qpa_model",
    "list_backends",
]
