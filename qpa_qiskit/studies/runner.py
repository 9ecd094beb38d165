"""Studies as grids of runs: one resumable runner, executed here or on a Ray cluster.

A study is a list of :class:`Trial` (a run configuration, its folder name and its grid
coordinates) and an aggregation of their results. Every trial is an ordinary run folder
under the study folder, and its result is written last, as ``<run>/result.json``, so:

* re-running a study skips finished trials, resumes a killed trial from its checkpoint and
  starts the rest; nothing finished is trained twice. A run whose checkpoint is missing or
  unreadable is named, what cannot be used is set aside (renamed), and only that run trains
  again, from its start;
* a selection run (``Trial.final`` False) scores its dev split only; the selection run that
  becomes a final run (the same folder) is scored on the test split then, from its
  checkpoint, and its ``result.json`` replaced whole;
* results are read back from the run folders, so a study is never lost with a process, and
  the same grid gives the same ``results.json`` however it was executed or interrupted;
* a trial that fails is reported with its error (and ``<run>/error.txt`` where its folder
  exists) and does not stop the others; the next run of the study tries it again. A study
  with failed trials still aggregates the finished ones, then raises
  :class:`~qpa_qiskit.errors.TrialsFailed` (``qpa`` exits with status 1), saying which
  failures running again may cure and which are deterministic (an error qpa-qiskit raises on
  purpose, such as a setting the run refuses: it repeats until the setting is changed).

Executors (:mod:`.executors`): ``LocalExecutor`` runs the trials in this process, one after
another; ``RayExecutor`` makes each trial a Ray task with its own CPUs and GPUs (fractions
allowed), on a local Ray or a cluster that sees the same study folder.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from .. import train  # train.X, looked up when called: the tests replace train.check_config
from ..data import DEV
from ..errors import BusyError, InputError, QPAError, StateError, TrialsFailed
from ..files import atomic_write, exclusive, json_bytes, set_aside
from ..models import load_model
from ..train.folder import CHECKPOINT, CONFIG, RunFolder
from ..train.resume import PLACEMENT, resume_config
from ..train.run_config import RunConfig
from .folder import (
    BROKEN,
    FEATURES,
    STALE,
    STUDY,  # noqa: F401  (its old home: `from .runner import STUDY` keeps working)
    STUDY_LOCK,
    prepare_folder,
)

RESULT = "result.json"
ERROR = "error.txt"
# the order of a result's keys, as result.json has always had them (measures follow)
RESULT_KEYS = ("name", "axes", "perplexity", "tokens", "dev_perplexity", "curve", "step", "counts",
               "seconds_per_step", "diverged", "diverged_lr", "diagnostics",
               "padded_lines_perplexity")  # fmt: skip


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class Trial:
    """One run of a study: its folder name, configuration and grid coordinates."""

    name: str
    config: RunConfig
    axes: dict[str, Any] = field(default_factory=dict)
    # extra measurements, computed on the run opened read-only at its checkpoint after its
    # perplexity: fn(run, **options) -> dict of numbers, each with its options
    measures: dict[Callable[..., dict[str, Any]], dict[str, Any]] = field(default_factory=dict)
    # its figures are reported: its test split is scored and its measures taken. False: a
    # selection run, which scores its dev split only (what the selection chooses on) until the
    # selection makes it a final run (the same folder), scored then from its checkpoint
    final: bool = True


def stored_result(run_dir: Path) -> dict | None:
    """The result a run folder records (a selection run's: without its test split), or None."""
    path = Path(run_dir) / RESULT
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # written atomically, so only a hand-edited file gets here: run it again
    return result if isinstance(result, dict) else None


def scored(result: dict, trial: Trial) -> bool:
    """`result` holds what `trial` reports: its dev split, and for a final trial its test split
    (``perplexity``, None where it diverged)."""
    return not trial.final or "perplexity" in result


def read_result(study_dir: Path, trial: Trial) -> dict | None:
    """The recorded result of a finished trial (a final trial's with its test split), or None."""
    result = stored_result(Path(study_dir) / trial.name)
    return result if result is not None and scored(result, trial) else None


def _median_seconds(run_dir: Path) -> float | None:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    seconds = [json.loads(x)["seconds"] for x in lines if x.strip()]
    return statistics.median(seconds) if seconds else None


def learning_curve(run_dir: Path) -> list[list[float]]:
    """[step, dev perplexity] of every step the run scored the dev split at (``--eval-every``)."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(x) for x in lines if x.strip()]
    return [[r["step"], r["dev_perplexity"]] for r in records if "dev_perplexity" in r]


def steps_done(run_dir: Path) -> int:
    """The steps a run folder's ``metrics.jsonl`` records so far (0 before its first step): what
    a study shows of a run that trains elsewhere (a Ray task on shared storage)."""
    try:
        with open(run_dir / "metrics.jsonl", "rb") as lines:
            return sum(1 for line in lines if line.strip())
    except OSError:
        return 0


def run_trial(
    study_dir: str | Path,
    trial: Trial,
    *,
    loaded=None,
    texts=None,
    threads: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = _stderr,
):
    """Train (or resume) one trial and score it; returns its result (also written to
    ``<run>/result.json``, last). A finished trial is read back, not trained again; a selection
    run that has become a final run is scored on the test split from its checkpoint, not trained
    again, and a run whose checkpoint is missing or unreadable trains again from its start
    (:func:`_checked`). `progress`: the run's step bar and its evaluation's bar, below the
    study's bar. `log` hears what is set aside and why."""
    study_dir = Path(study_dir)
    run_dir = study_dir / trial.name
    stored = stored_result(run_dir)
    if stored is not None and scored(stored, trial):
        return stored
    if threads:
        torch.set_num_threads(threads)
    if trial.config.training.feature_cache:
        if loaded is None:  # a trial of its own (a Ray task): loaded once, its copies share the features
            loaded = load_model(trial.config.task.model)
        loaded.features.use_folder(study_dir / FEATURES, log=log)
    copy = (lambda: loaded.fresh_copy()) if loaded is not None else (lambda: None)
    placement = {name: trial.config.get(name) for name in PLACEMENT}
    stored = _checked(run_dir, stored, log)
    if stored is None:  # trained here, or continued from its checkpoint
        with _start_or_resume(run_dir, trial.config, placement, copy, texts) as run:
            run.train(progress=progress, desc=trial.name, nested=True)
    with train.Run.open(run_dir, overrides=placement, for_training=False, loaded=copy(), texts=texts) as run:
        result = _scored(run, trial, stored, progress)
    data = json_bytes(result, f"the result of {trial.name}", indent=2)
    try:
        (run_dir / ERROR).unlink(missing_ok=True)
        atomic_write(run_dir / RESULT, data)
    except OSError as exc:
        raise StateError(
            f"cannot write {run_dir / RESULT} ({type(exc).__name__}: {exc}); the run is trained and its "
            "checkpoint intact. Fix the permissions or free some space, then run the study again: it "
            "evaluates the run without training it again"
        ) from None
    return result


def _checked(run_dir: Path, stored: dict | None, log: Callable[[str], None]) -> dict | None:
    """`stored` (a selection run's result) where the run's checkpoint holds the step it was
    scored at, so its test split can be scored from it; else None: the run trains, continued
    from its checkpoint, or from its start where the checkpoint is missing or unreadable (a
    killed write, a clone that lost it). Then `log` names it, and what cannot be used is set
    aside (renamed, never deleted): the checkpoint, and the result it was to be scored with."""
    if not (run_dir / CONFIG).exists():
        return None  # a new run
    step, why = RunFolder.checkpoint_step(run_dir)
    if stored is not None and step is not None:
        if step == stored.get("step"):
            return stored
        why = f"holds step {step}, not the step {stored.get('step')} its result was scored at"
    steps, present = steps_done(run_dir), (run_dir / CHECKPOINT).exists()
    if stored is None and (step is not None or not (present or steps)):
        return None  # continued from its checkpoint, or started: it recorded no step yet
    if stored is None:
        problem = f"it has trained {steps} steps, and its checkpoint {why}"
    else:
        problem = f"its test split is to be scored from its checkpoint, which {why}"
    kept = [set_aside(run_dir / RESULT, STALE)] if stored is not None else []
    if present:
        kept.append(set_aside(run_dir / CHECKPOINT, BROKEN))
    aside = f"; kept aside as {', '.join(p.name for p in kept)}" if kept else ""
    log(f"{run_dir}: {problem}{aside}; only this run trains again, from its start")
    return None


def _scored(run, trial: Trial, stored: dict | None, progress: bool) -> dict:
    """The trial's result from its run, opened once at its checkpoint: what its training left
    and its dev split (what a selection chooses on), unless `stored` holds them; for a final
    trial its test split, diagnostics and measures too. Each is scored from the random state
    the run was opened in: what opening the run afresh for each would give."""
    run.require_checkpoint()
    opened = run.random_state()
    result = dict(stored) if stored is not None else _trained(run, trial)
    if trial.final:
        run.set_random_state(opened)
        evaluation = train.evaluate_opened(run, progress=progress)
        test = evaluation["perplexity"]
        # a run whose loss went to infinity or NaN: recorded (strict JSON has no such numbers),
        # never averaged; a selection ranks it last
        result.update(perplexity=test if math.isfinite(test) else None, tokens=evaluation["tokens"])
        result.update(
            {k: v for k, v in evaluation.items() if k in ("diagnostics", "padded_lines_perplexity")}
        )
        if not math.isfinite(test):
            result.update(diverged=True, diverged_lr=trial.config.training.lr)
        run.set_random_state(opened)
        for fn, options in trial.measures.items():
            result.update(fn(run, **options))
    return {**{k: result[k] for k in RESULT_KEYS if k in result}, **result}


def _trained(run, trial: Trial) -> dict:
    """What a trained run records before its test split: its dev split's perplexity (where it
    has one: what a study selects on, never the test split), curve, step, counts, step time."""
    dev = run.evaluate(DEV)["perplexity"] if trial.config.task.dev_share is not None else None
    result = {
        "name": trial.name,
        "axes": trial.axes,
        "dev_perplexity": None if dev is None or not math.isfinite(dev) else dev,
        "curve": learning_curve(run.dir),
        "step": run.step,
        "counts": run.model.counts(),
        "seconds_per_step": _median_seconds(run.dir),
    }
    if dev is not None and not math.isfinite(dev):
        result.update(diverged=True, diverged_lr=trial.config.training.lr)
    return result


def _start_or_resume(run_dir: Path, config: RunConfig, placement: dict, copy: Callable[[], Any], texts):
    """The trial's run on a copy of the base model (`copy`): created, or its folder's run
    resumed where only its `placement` (where it trains) may differ from `config`; a run of
    other settings is refused (the one rule of what a resumed run may change,
    :func:`~qpa_qiskit.train.resume.resume_config`, for a study's trial)."""
    if not (run_dir / "config.json").exists():
        return train.Run.create(run_dir, config, loaded=copy(), texts=texts)
    resume_config(train.Run.stored_config(run_dir), config, run_dir, "trial")
    return train.Run.open(run_dir, overrides=placement, loaded=copy(), texts=texts)


@dataclass(frozen=True)
class Failure:
    """Why a trial failed: its error in one line (``str()``), the file with the whole error
    (None where the run folder was never created, or cannot be written), and whether running
    the study again can cure it: not for an error qpa-qiskit raises on purpose about the
    trial's settings or files (deterministic), except another process holding the folder."""

    reason: str
    error_file: Path | None
    retry: bool

    def __str__(self) -> str:
        return self.reason

    def hint(self) -> str:
        where = (
            f"the whole error is in {self.error_file}"
            if self.error_file is not None
            else f"no {ERROR}: its run folder was never created or cannot be written"
        )
        if self.retry:
            return f"{where}; running the same command again retries it"
        return f"{where}; deterministic: running again repeats it until the setting it names is changed"


def record_failure(study_dir: Path, trial: Trial, exc: BaseException) -> Failure:
    message = str(exc) if isinstance(exc, QPAError) else "".join(traceback.format_exception(exc))
    first = message.strip().splitlines()[-1] if message.strip() else type(exc).__name__
    folder = study_dir / trial.name
    written = None
    if folder.is_dir():
        try:
            atomic_write(folder / ERROR, message.encode())
            written = folder / ERROR
        except OSError:  # a read-only or full study folder: the failure is still reported
            pass
    return Failure(first, written, retry=not isinstance(exc, QPAError) or isinstance(exc, BusyError))


class BaseModels:
    """The base model and texts of the runs, loaded once per (model, data, dev share) and shared by the
    grid check, the local executor and the base model's own evaluation (only the last pair
    is kept). `log` hears what loading the data says (default: nothing)."""

    def __init__(self, log: Callable[[str], None] = lambda m: None) -> None:
        self._key: tuple | None = None
        self._value: tuple | None = None
        self._log = log

    def get(self, cfg: RunConfig) -> tuple[Any, dict[str, str]]:
        key = (cfg.task.model, cfg.task.data, cfg.task.dev_share)
        if key != self._key:
            same_model = self._key is not None and self._key[0] == key[0]
            loaded = self._value[0] if same_model and self._value is not None else load_model(key[0])
            self._key, self._value = None, None
            self._value = (loaded, train.load_texts(cfg, self._log))
            self._key = key
        assert self._value is not None
        return self._value


def check_trials(trials: list[Trial], bases: BaseModels | None = None, *, device: bool = True) -> None:
    """Every trial's configuration checked as :meth:`~qpa_qiskit.train.Run.create` checks it
    (backend and noise scale, device, model fit, adapter, chunk size, data), before any run
    trains or any file is written; settings that differ only in the seed are checked once. All
    problems are reported together, each with the trials it concerns. `device` False: the runs
    train elsewhere (Ray), where their device is checked when each starts."""
    bases = bases or BaseModels()
    problems: dict[str, list[str]] = {}
    seen: dict[str, str | None] = {}
    data_checked: set[tuple] = set()  # tokenising the data once per data setting is enough
    for trial in trials:
        config = trial.config.to_dict()
        config["training"] = {k: v for k, v in config["training"].items() if k != "seed"}
        key = json.dumps(config, sort_keys=True, default=str)
        if key not in seen:
            try:
                cfg = trial.config
                data = (cfg.task.model, cfg.task.data, cfg.task.train_tokens, cfg.training.block_size,
                        cfg.eval.eval_protocol)  # fmt: skip
                loaded, texts = bases.get(cfg)
                train.check_config(cfg, loaded, texts, data=data not in data_checked, device=device)
                data_checked.add(data)
                seen[key] = None
            except QPAError as exc:
                seen[key] = str(exc)
        if seen[key] is not None:
            problems.setdefault(seen[key], []).append(trial.name)
    if problems:
        count = sum(len(v) for v in problems.values())
        parts = [f"{', '.join(names)}: {why}" for why, names in problems.items()]
        raise InputError(
            f"{count} of the study's {len(trials)} runs cannot run, found before any run started (nothing "
            f"was trained or written); fix the grid: " + " | ".join(parts)
        )


class Progress:
    """One line for the whole study: runs done, running, failed, and the time left. A run in
    this process shows its own step bar below it (:func:`run_trial` with `progress`); runs
    elsewhere (Ray) are named on the line with their steps and how long they have run
    (:meth:`in_flight`)."""

    SHOWN_RUNS = 3  # runs named on the line; the rest counted

    def __init__(self, total: int, done: int, label: str, enabled: bool = True) -> None:
        # lazy: tqdm, only when progress is shown
        from tqdm import tqdm

        self.enabled = enabled
        self.running = 0
        self.failed = 0
        self.now = ""
        self.bar = tqdm(total=total, initial=done, desc=label, unit="run", disable=not enabled,
                        file=sys.stderr)  # fmt: skip
        self._show()

    def _show(self) -> None:
        now = {"now": self.now} if self.now else {}
        self.bar.set_postfix(running=self.running, failed=self.failed, **now)

    def in_flight(self, runs: dict[str, tuple[int, int, float]]) -> None:
        """The runs training elsewhere: name -> (steps done, steps, seconds since its steps
        were first seen going by), shown as ``name 12/30 1m05s``."""
        parts = [f"{name} {done}/{steps} {_clock(seconds)}"
                 for name, (done, steps, seconds) in list(runs.items())[: self.SHOWN_RUNS]]  # fmt: skip
        if len(runs) > self.SHOWN_RUNS:
            parts.append(f"+{len(runs) - self.SHOWN_RUNS} more")
        self.now = ", ".join(parts)
        self._show()

    def started(self, n: int = 1) -> None:
        self.running += n
        self._show()

    def finished(self, ok: bool) -> None:
        self.running -= 1
        if ok:
            self.bar.update(1)
        else:
            self.failed += 1
        self._show()

    def log(self, message: str) -> None:
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _clock(seconds: float) -> str:
    """12s, 1m05s, 2h03m."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# --------------------------------------------------------------------------- the runner
class Executor(Protocol):
    """Where a study's trials run (:mod:`.executors`): `prepare` before the folder is made
    (given the base models the grid check loaded, which it may reuse), `run` the unfinished
    trials, `release` what `prepare` kept."""

    name: str
    runs_here: bool  # the runs train in this process (their device is checked here first)

    def prepare(self, bases: BaseModels) -> None: ...

    def run(self, study_dir: Path, trials: list[Trial], progress: Progress) -> dict[str, Failure]: ...

    def release(self) -> None: ...


def run_study(
    out: Path,
    kind: str,
    definition: dict,
    trials: list[Trial],
    executor: Executor,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[list[dict], dict[str, Failure]]:
    """Run every unfinished trial of a study in `out`; returns (results of the finished
    trials in grid order, failures by trial name)."""
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"two trials of a study share the folder name(s) {twice}; give each grid value once")
    out = Path(out)
    prepare_folder(out, kind, definition, write=False)  # another study's folder: refused first
    todo = [t for t in trials if read_result(out, t) is None]
    bases = BaseModels()
    if todo:
        # the whole grid, before anything is written; the device where the runs train here
        check_trials(todo, bases, device=getattr(executor, "runs_here", True))
    executor.prepare(bases)  # a cluster that cannot be reached: refused before the folder is made
    out.mkdir(parents=True, exist_ok=True)
    try:
        # one study process per folder: a second one would find the first one's runs locked
        # and report them as failed
        with exclusive(
            out / STUDY_LOCK,
            f"another process is running the study in {out} right now; wait for it to finish (or stop "
            "it), then run the same command again: finished runs are kept",
        ):
            prepare_folder(out, kind, definition, log=log)
            return _run_locked(out, kind, trials, executor, log, progress)
    finally:
        executor.release()


def _run_locked(out: Path, kind: str, trials: list[Trial], executor: Executor, log, progress: bool):
    todo = [t for t in trials if read_result(out, t) is None]
    if len(todo) < len(trials):
        log(f"{out}: {len(trials) - len(todo)} of {len(trials)} runs already finished; running the rest")
    if to_score := sum(stored_result(out / t.name) is not None for t in todo):
        log(f"{out}: {to_score} trained selection run(s) become final runs: their test split is scored from "
            "their checkpoints, without training them again")  # fmt: skip
    bar = Progress(len(trials), len(trials) - len(todo), f"{kind} ({executor.name})", enabled=progress)
    start = time.monotonic()
    try:
        failures = executor.run(out, todo, bar) if todo else {}
    finally:
        bar.close()
    results = [r for t in trials if (r := read_result(out, t)) is not None]
    finished = {r["name"] for r in results}
    failures = {name: why for name, why in failures.items() if name not in finished}
    log(f"{len(results)} of {len(trials)} runs finished ({time.monotonic() - start:.0f} s this time)")
    for name, why in failures.items():
        log(f"failed: {name}: {why} ({why.hint()})")
    return results, failures


def without_diverged(
    results: list[dict], failures: dict[str, Failure]
) -> tuple[list[dict], dict[str, Failure]]:
    """The finished results less those of diverged runs (a non-finite perplexity), which become
    failures that name their learning rate: running again repeats them."""
    kept, failures = [], dict(failures)
    for r in results:
        if r.get("diverged"):
            failures[r["name"]] = Failure(
                f"diverged: its perplexity is not finite (its loss went to infinity or NaN) at lr "
                f"{r['diverged_lr']:g}; a smaller --lr (or --lrs grid) trains it",
                None, retry=False,
            )  # fmt: skip
        else:
            kept.append(r)
    return kept, failures


def raise_if_failed(out: Path, failures: dict[str, Failure], total: int, result: Any = None) -> None:
    """At the end of a study, after its finished trials are written: :class:`TrialsFailed`
    if any of its `total` trials failed, saying how many, which, and what would cure them."""
    if not failures:
        return
    retry = sorted(name for name, f in failures.items() if f.retry)
    fix = sorted(name for name, f in failures.items() if not f.retry)
    cures = []
    if fix:
        cures.append(f"change the settings that {', '.join(fix)} refused (running again repeats the error)")
    if retry:
        cures.append(f"run the same command again to retry {', '.join(retry)}")
    raise TrialsFailed(
        f"{len(failures)} of {total} runs failed (see above); the {total - len(failures)} finished are "
        f"in {out / 'results.json'}; {'; '.join(cures)}",
        failures,
        result,
    )
