"""The run wing: a run's code, from its configuration to its export, in layers that import only
downward (docs/architecture.md):

* configuration, import-light: :mod:`.run_config` (:class:`RunConfig`, every setting of a run),
  :mod:`.config` (its training section, :class:`TrainingConfig`), :mod:`.resume` (what a resumed
  run may change: one rule for ``qpa train --resume``, evaluation and a study's runs);
* a run's parts: :mod:`.folder` (:class:`RunFolder`), :mod:`.device`, :mod:`.optimiser`,
  :mod:`.checks`, :mod:`.scoring` (:func:`evaluate`), :mod:`.hardware`, :mod:`.cost`,
  :mod:`.budget`;
* the run: :mod:`.trainer` (:class:`Run`);
* on a run: :mod:`.evaluation` (:func:`evaluate_run`, ``qpa eval``; :func:`evaluate_opened`, on a
  run already open), :mod:`.export` (``qpa export``; the function is ``qpa_qiskit.export``).

The names are imported on first use (PEP 562 ``__getattr__``): ``from qpa_qiskit.train import
Run`` works as before, importing the package imports no torch, and a caller that looks up
``train.check_config`` when it calls it sees a replacement set on the package.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".run_config": "RunConfig",
    ".config": "PRECISIONS SCHEDULES TrainingConfig",
    ".folder": "RunFolder",
    ".checks": "check_config check_fits_model check_splits load_texts model_positions",
    ".device": "autocast run_device",
    ".scoring": "evaluate",
    ".trainer": "Run",
    ".evaluation": "evaluate_opened evaluate_run",
})  # fmt: skip
