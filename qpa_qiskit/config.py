"""The old home of the run configuration, kept for old imports: re-exports only.

The run configuration moved into the run wing, :mod:`qpa_qiskit.train.run_config` (what a
resumed run may change, :data:`RESUMABLE`, to :mod:`qpa_qiskit.train.resume`);
``from qpa_qiskit.config import RunConfig`` and every other name this module exported keep
working, and are the same objects. Nothing in the package imports this module: its own code
imports these names from their homes. Importing it imports no torch, peft, transformers or
qiskit.
"""

from __future__ import annotations

from .train.resume import RESUMABLE
from .train.run_config import (
    CIRCUIT_TRAINING,
    FIELD_SECTION,
    LEGACY,
    PRESETS,
    QPA_ONLY,
    SECTIONS,
    TUNER_SETTINGS,
    AdapterConfig,
    BackendConfig,
    EvalConfig,
    GeneratorConfig,
    RunConfig,
    TaskConfig,
    TrainingConfig,
    check_given,
)

__all__ = [
    "CIRCUIT_TRAINING",
    "FIELD_SECTION",
    "LEGACY",
    "PRESETS",
    "QPA_ONLY",
    "RESUMABLE",
    "SECTIONS",
    "TUNER_SETTINGS",
    "AdapterConfig",
    "BackendConfig",
    "EvalConfig",
    "GeneratorConfig",
    "RunConfig",
    "TaskConfig",
    "TrainingConfig",
    "check_given",
]
