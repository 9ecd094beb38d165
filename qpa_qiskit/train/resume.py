"""What a resumed run may change: one rule for ``qpa train --resume``, ``qpa eval``, ``qpa
export`` and a study's runs.

A run folder's ``config.json`` says what its run is. Whoever opens the run again gives the
settings it wants changed, and :func:`resume_config` compares them with the stored ones: every
change outside what that purpose may change (:data:`MAY_CHANGE`) is refused, naming each
setting with both values.

* ``"train"`` (:meth:`~qpa_qiskit.train.Run.open` for training, ``qpa train --resume``): the
  :data:`RESUMABLE` settings, how long and where it runs and how it is scored;
* ``"evaluate"`` (``qpa eval``, ``qpa export``, a study scoring its runs): those and ``data``
  (a moved data folder);
* ``"trial"`` (the study runner, before it resumes a run of its grid): only
  :data:`PLACEMENT`, where it trains; the trial's whole configuration is its point of the grid,
  so a study (and each of its runs) resumes on another device, and nothing else changes.

:func:`persisted` says which changes the folder's ``config.json`` then records. Import-light,
as the configuration it reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from .run_config import FIELD_SECTION, RunConfig, check_given

# Settings a resumed run may change: how long it trains, how often it saves, how it is scored
# and how often it scores the dev split (its random states are put back after each), where it
# runs (a run trained on a GPU resumes or is evaluated on a CPU), how IBM Quantum runs its next
# jobs (execution mode, QPU-time cap per job), and whether the frozen body's features are
# cached (the figures agree to float rounding either way).
RESUMABLE = frozenset(
    {"steps", "save_every", "eval_tokens", "eval_window", "eval_stride", "eval_batch", "eval_protocol",
     "padded_block", "dev_tokens", "eval_every", "device", "torch_device", "mode", "max_execution_time",
     "feature_cache", "max_qpu_seconds", "cost_as"}
)  # fmt: skip

# where a study's runs train, not what they are: a study (and each of its runs) resumes on
# another device, as a run does (both are resumable settings)
PLACEMENT = ("device", "torch_device")

# who opens a run again -> the settings it may change (the module docstring)
MAY_CHANGE: dict[str, frozenset[str]] = {
    "train": RESUMABLE,
    "evaluate": RESUMABLE | {"data"},
    "trial": frozenset(PLACEMENT),
}

# settings a resumed run may change (RESUMABLE) that its config.json then records: how long
# it trains (its QPU-time budget too) and where; the others (scoring) apply to the command that gives them
PERSISTED = ("steps", "device", "torch_device", "max_qpu_seconds")


def resume_config(
    stored: RunConfig, given: Mapping[str, Any] | RunConfig, run_dir: Path, purpose: str = "train"
) -> RunConfig:
    """The configuration of the run stored in `run_dir` (`stored`) as `purpose` (a key of
    :data:`MAY_CHANGE`) opens it with `given`, which is either settings by name (only those
    named are compared: the same value as stored is accepted for any field, and an evaluation
    setting the run would not read is refused, :func:`~.run_config.check_given`) or a whole
    configuration (a study's trial: every field is compared). A change of a setting outside
    ``MAY_CHANGE[purpose]`` is refused (:class:`~qpa_qiskit.errors.InputError`) with both
    values; nothing given is the stored configuration itself."""
    may_change = MAY_CHANGE[purpose]
    if isinstance(given, RunConfig):
        candidate, named = given, None
    elif not given:
        return stored
    else:
        candidate = stored.replace(**given)  # also normalises the values (paths, 0 = all)
        named = set(given)
    refused = {
        k: v
        for k, v in stored.changes(candidate).items()
        if k not in may_change and (named is None or k in named)
    }
    if refused:
        raise InputError(_refusal(run_dir, refused, purpose))
    if named is not None:
        # an evaluation setting given that this run would not read (--padded-block of a windows
        # run) is refused; the other settings may be where it runs (device, torch_device: set
        # by studies and export whatever the method), which every run reads
        scoring = {k: v for k, v in given.items() if FIELD_SECTION.get(k) == "eval"}
        check_given(scoring, [candidate.adapter.method], candidate)
    return candidate


def _refusal(run_dir: Path, refused: dict[str, tuple[Any, Any]], purpose: str) -> str:
    """What :func:`resume_config` says of the settings it refuses, with the way out."""
    if purpose == "trial":
        changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        return f"{run_dir} holds a run of other settings ({changed}); use another study folder"
    detail = "; ".join(f"{k}: stored {a!r}, given {b!r}" for k, (a, b) in refused.items())
    return (
        f"{run_dir} was created with other settings ({detail}). A resumed run may change "
        f"only {', '.join(sorted(MAY_CHANGE[purpose]))}; start a new run for other settings"
    )


def persisted(stored: RunConfig, resumed: RunConfig, step: int) -> dict[str, Any]:
    """The settings of a run resumed for training (`resumed`, at `step`) that its
    ``config.json`` (`stored`) records from now on, by name: a new length (never fewer steps than
    it has done) or another device, so a later plain ``--resume`` continues so (a GPU run
    resumed on a CPU stays there)."""
    kept = {k: resumed.get(k) for k in PERSISTED if resumed.get(k) != stored.get(k)}
    if kept.get("steps", step) < step:
        kept.pop("steps")
    return kept
