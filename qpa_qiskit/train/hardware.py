"""A run's hardware in the loop: the recorded, resumable jobs of a run on an ``ibm:`` backend.

Apart from the trainer (which only labels each evaluation and closes the loop) because what
decides it is the configuration alone: a qpa-* run whose circuit runs on IBM Quantum gets a
:class:`~qpa_qiskit.jobs.HardwareLoop` whose job store is ``<run>/jobs``; any other run
refuses the options that recover IBM Quantum jobs, which it would never read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..backends import family_class
from ..errors import InputError
from ..jobs import HardwareLoop
from .run_config import RunConfig


def hardware_loop(
    cfg: RunConfig, run_dir: Path, options: dict[str, bool] | None, log: Callable[[str], None]
) -> HardwareLoop | None:
    """The hardware loop of the run `cfg` in `run_dir` (None where its circuit runs here or it
    has none), with the recovery `options` (``resubmit_unconfirmed``, ``retry_failed``)."""
    if cfg.reads_circuit and family_class(cfg.backend.backend).runs_remotely:
        return HardwareLoop(
            run_dir / "jobs",
            log=log,
            command=f"qpa train {run_dir} --resume",
            mode=cfg.backend.mode or "job",
            **(options or {}),
        )
    refuse_hardware_options(cfg, options)
    return None


def refuse_hardware_options(cfg: RunConfig, options: dict[str, bool] | None) -> None:
    """``--resubmit-unconfirmed`` and ``--retry-failed`` recover IBM Quantum jobs: on a run that
    submits none (a simulator, or no circuit evaluated) they would be accepted and never read."""
    given = sorted("--" + k.replace("_", "-") for k, v in (options or {}).items() if v)
    if not given:
        return
    method, backend = cfg.adapter.method, cfg.backend.backend
    why = f"{method} on backend {backend!r} runs its circuit here" if cfg.reads_circuit else (
        f"{method} evaluates no circuit" + (f" (probabilities {cfg.generator.probabilities!r})"
                                            if cfg.adapter.generator_kind == "qpa" else "")
    )  # fmt: skip
    flags = ", ".join(given)
    raise InputError(
        f"{flags} recover(s) the IBM Quantum jobs of a run whose circuit runs on an ibm:<device> backend; "
        f"{why} and submits none. Drop {flags}, or train a qpa-* method on an ibm: backend"
    )
