"""The old home of a run's folder, kept for old imports: re-exports only.

:class:`RunFolder` and its file names moved into the run wing, :mod:`qpa_qiskit.train.folder`;
``from qpa_qiskit.run_folder import RunFolder`` keeps working, and gives the same objects.
Nothing in the package imports this module: its own code imports these names from their home.
"""

from __future__ import annotations

from .train.folder import CHECKPOINT, CONFIG, LAYOUT, LOCK, METRICS, RunFolder

__all__ = ["CHECKPOINT", "CONFIG", "LAYOUT", "LOCK", "METRICS", "RunFolder"]
