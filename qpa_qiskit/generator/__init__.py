"""Weight generators (:mod:`.core`: :class:`QPAGenerator`, :class:`LowRankGenerator`) and their
configuration section (:mod:`.config`: :class:`GeneratorConfig`, :data:`PRESETS`).

Why a package: the section sits beside the generator it configures, and the run configuration
imports it without torch. The names are imported on first use (PEP 562 ``__getattr__``, the
one of :mod:`qpa_qiskit.lazy`): ``from qpa_qiskit.generator import QPAGenerator`` works as before,
and the tables of names (``PROBABILITIES``, ...) come from :mod:`qpa_qiskit.choices` without torch.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    "..choices": "CIRCUIT_SOURCES COUNTERFACTUALS LABELS MAPPINGS PROBABILITIES TRAINED_SOURCES",
    ".config": "PRESETS GeneratorConfig",
    ".core": "ACTIVATIONS LowRankGenerator QPAGenerator chunk_spread mapping_widths qpa_trainable qubits_for "
             "split_weights",
})  # fmt: skip
