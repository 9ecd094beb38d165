"""Training runs (:mod:`.trainer`: :class:`Run`, :func:`evaluate_run`) and the run's training
section (:mod:`.config`: :class:`TrainingConfig`).

Why a package: the section sits beside the trainer it configures, and the run configuration
imports it without torch. The names are imported on first use (PEP 562
``__getattr__``): ``from qpa_qiskit.train import Run`` works as before, and a caller that
looks up ``train.check_config`` when it calls it sees a replacement set on the package.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".config": "PRECISIONS SCHEDULES TrainingConfig",
    ".folder": "RunFolder",
    ".run_config": "RunConfig",
    ".checks": "check_config check_fits_model check_splits load_texts model_positions",
    ".device": "autocast run_device",
    ".evaluation": "evaluate_run",
    ".scoring": "evaluate",
    ".trainer": "Run",
})  # fmt: skip
