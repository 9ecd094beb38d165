"""Weight generators (:mod:`.core`: :class:`QPAGenerator`, :class:`LowRankGenerator`) and their
configuration section (:mod:`.config`: :class:`GeneratorConfig`, :data:`PRESETS`).

Why a package: the section sits beside the generator it configures, and the run configuration
imports it without torch. The generator's names are imported on first use (PEP 562
``__getattr__``): ``from qpa_qiskit.generator import QPAGenerator`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import PRESETS, GeneratorConfig

if TYPE_CHECKING:  # what type checkers and editors see
    from .core import (
        ACTIVATIONS,
        CIRCUIT_SOURCES,
        COUNTERFACTUALS,
        LABELS,
        MAPPINGS,
        PROBABILITIES,
        TRAINED_SOURCES,
        LowRankGenerator,
        QPAGenerator,
        chunk_spread,
        mapping_widths,
        qpa_trainable,
        qubits_for,
        split_weights,
    )


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    core = importlib.import_module(".core", __name__)
    try:
        value = getattr(core, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # once imported, an ordinary attribute
    return value


__all__ = [
    "ACTIVATIONS",
    "CIRCUIT_SOURCES",
    "COUNTERFACTUALS",
    "LABELS",
    "MAPPINGS",
    "PRESETS",
    "PROBABILITIES",
    "TRAINED_SOURCES",
    "GeneratorConfig",
    "LowRankGenerator",
    "QPAGenerator",
    "chunk_spread",
    "mapping_widths",
    "qpa_trainable",
    "qubits_for",
    "split_weights",
]
