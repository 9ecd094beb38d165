"""Studies as grids of runs: one resumable runner, executed here or on a Ray cluster.

A study is a list of :class:`Trial` (a run configuration, its folder name and its grid
coordinates) and an aggregation of their results. Every trial is an ordinary run folder
under the study folder, and its result is written last, as ``<run>/result.json``, so:

* re-running a study skips finished trials, resumes a killed trial from its checkpoint and
  starts the rest; nothing finished is trained twice;
* results are read back from the run folders, so a study is never lost with a process, and
  the same grid gives the same ``results.json`` however it was executed or interrupted;
* a trial that fails is reported with its error (and ``<run>/error.txt`` where its folder
  exists) and does not stop the others; the next run of the study tries it again. A study
  with failed trials still aggregates the finished ones, then raises
  :class:`~qpa_qiskit.errors.TrialsFailed` (``qpa`` exits with status 1), saying which
  failures running again may cure and which are deterministic (an error qpa-qiskit raises on
  purpose, such as a setting the run refuses: it repeats until the setting is changed).

Executors: :class:`LocalExecutor` runs the trials in this process, one after another;
:class:`RayExecutor` makes each trial a Ray task with its own CPUs and GPUs (fractions
allowed), on a local Ray or a cluster that sees the same study folder.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import validate
from .config import RunConfig
from .errors import BusyError, InputError, QPAError, StateError, TrialsFailed
from .files import atomic_write, read_json

RESULT = "result.json"
ERROR = "error.txt"
STUDY = "study.json"

# Extra measurements a trial can ask for, by name: fn(run, **options) -> dict of numbers,
# computed on the run opened read-only at its checkpoint, after its perplexity. Studies
# register theirs on import (qpa_qiskit.study).
MEASURES: dict[str, Callable[[Any], dict[str, Any]]] = {}


def measure(name: str):
    """Register an extra measurement for trials (see :data:`MEASURES`)."""

    def register(fn):
        MEASURES[name] = fn
        return fn

    return register


@dataclass(frozen=True)
class Trial:
    """One run of a study: its folder name, configuration and grid coordinates."""

    name: str
    config: RunConfig
    axes: dict[str, Any] = field(default_factory=dict)
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> options


def read_result(study_dir: Path, trial: Trial) -> dict | None:
    """The recorded result of a finished trial, or None."""
    path = Path(study_dir) / trial.name / RESULT
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # written atomically, so only a hand-edited file gets here: run it again


def _median_seconds(run_dir: Path) -> float | None:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    seconds = [json.loads(x)["seconds"] for x in lines if x.strip()]
    return statistics.median(seconds) if seconds else None


def run_trial(study_dir: str | Path, trial: Trial, *, loaded=None, texts=None, threads: int | None = None):
    """Train (or resume) one trial and evaluate it; returns its result (also written to
    ``<run>/result.json``, last). A finished trial is read back, not trained again."""
    import torch

    from .train import Run, evaluate_run

    study_dir = Path(study_dir)
    done = read_result(study_dir, trial)
    if done is not None:
        return done
    if threads:
        torch.set_num_threads(threads)
    run_dir = study_dir / trial.name
    copy = (lambda: loaded.fresh_copy()) if loaded is not None else (lambda: None)
    if (run_dir / "config.json").exists():
        stored = Run.stored_config(run_dir)
        if stored != trial.config:
            changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in stored.changes(trial.config).items())
            raise InputError(f"{run_dir} holds a run of other settings ({changed}); use another study folder")
        run = Run.open(run_dir, loaded=copy(), texts=texts)
    else:
        run = Run.create(run_dir, trial.config, loaded=copy(), texts=texts)
    with run:
        run.train(progress=False)
    evaluation = evaluate_run(run_dir, loaded=copy(), texts=texts)
    result = {
        "name": trial.name,
        "axes": trial.axes,
        "perplexity": evaluation["perplexity"],
        "tokens": evaluation["tokens"],
        "step": evaluation["step"],
        "counts": evaluation["counts"],
        "seconds_per_step": _median_seconds(run_dir),
    }
    for key in ("diagnostics", "padded_lines_perplexity"):
        if key in evaluation:
            result[key] = evaluation[key]
    if trial.measures:
        from . import study, study_ablation  # noqa: F401 - register the studies' measures (in a Ray worker too)

        with Run.open(run_dir, for_training=False, loaded=copy(), texts=texts) as opened:
            for name, options in trial.measures.items():
                result.update(MEASURES[name](opened, **options))
    (run_dir / ERROR).unlink(missing_ok=True)
    atomic_write(run_dir / RESULT, json.dumps(result, indent=2).encode())
    return result


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
            else f"no {ERROR}: its run folder was never created"
        )
        if self.retry:
            return f"{where}; running the same command again retries it"
        return f"{where}; deterministic: running again repeats it until the setting it names is changed"


def _record_failure(study_dir: Path, trial: Trial, exc: BaseException) -> Failure:
    message = str(exc) if isinstance(exc, QPAError) else "".join(traceback.format_exception(exc))
    first = message.strip().splitlines()[-1] if message.strip() else type(exc).__name__
    folder = study_dir / trial.name
    written = None
    if folder.is_dir():
        try:
            atomic_write(folder / ERROR, message.encode())
            written = folder / ERROR
        except OSError:
            pass
    return Failure(first, written, retry=not isinstance(exc, QPAError) or isinstance(exc, BusyError))


# --------------------------------------------------------------------------- executors
class Progress:
    """One line for the whole study: runs done, running, failed, and the time left."""

    def __init__(self, total: int, done: int, label: str, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.running = 0
        self.failed = 0
        self.bar = tqdm(total=total, initial=done, desc=label, unit="run", disable=not enabled,
                        file=sys.stderr)  # fmt: skip
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix(running=self.running, failed=self.failed)

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


class LocalExecutor:
    """Runs the trials in this process, one after another; the base model is loaded once.
    `threads` sets torch's CPU threads for the runs (default: torch's own choice)."""

    name = "local"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = None if threads is None else validate.positive_int(threads, "threads")

    def run(self, study_dir: Path, trials: list[Trial], progress: Progress) -> dict[str, Failure]:
        import torch

        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._run(study_dir, trials, progress)
        finally:
            torch.set_num_threads(before)

    def _run(self, study_dir: Path, trials: list[Trial], progress: Progress) -> dict[str, Failure]:
        from .models import load_model
        from .train import load_texts

        failures: dict[str, Failure] = {}
        cache: dict[tuple, Any] = {}
        for trial in trials:
            progress.started()
            try:
                key = (trial.config.task.model, trial.config.task.data)
                if key not in cache:
                    cache.clear()
                    cache[key] = (load_model(key[0]), load_texts(trial.config, lambda m: None))
                loaded, texts = cache[key]
                run_trial(study_dir, trial, loaded=loaded, texts=texts)
                progress.finished(True)
            except Exception as exc:
                failures[trial.name] = _record_failure(study_dir, trial, exc)
                progress.finished(False)
                progress.log(f"{trial.name}: failed: {failures[trial.name]}")
        return failures


def _ray_trial(study_dir: str, trial: Trial, threads: int) -> dict:
    return run_trial(study_dir, trial, threads=threads)


class RayExecutor:
    """Each trial is a Ray task with `cpus_per_run` CPUs and `gpus_per_run` GPUs (fractions
    allowed: 0.25 lets four runs share one GPU). With no `address` it starts a local Ray
    (or uses one already started in this process); ``auto`` or ``ray://host:port`` joins a
    cluster. Every node needs the same qpa-qiskit installed and the study folder at the same
    path (shared storage): the trials write their run folders there."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0):
        self.address = address
        self.cpus_per_run = validate.number(cpus_per_run, "cpus_per_run", above=0.0)
        self.gpus_per_run = validate.number(gpus_per_run, "gpus_per_run", minimum=0.0)

    def _init(self):
        try:
            import ray
        except ImportError:
            raise InputError(
                "--executor ray needs Ray: pip install 'qpa-qiskit[ray]' (or pip install ray)"
            ) from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except Exception as exc:
                where = self.address or "a local Ray"
                raise InputError(f"cannot start or join {where} ({type(exc).__name__}: {exc})") from None
        return ray

    def run(self, study_dir: Path, trials: list[Trial], progress: Progress) -> dict[str, Failure]:
        ray = self._init()
        task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run)(_ray_trial)
        threads = max(1, int(self.cpus_per_run))
        pending = {task.remote(str(study_dir.resolve()), t, threads): t for t in trials}
        progress.started(len(pending))
        failures: dict[str, Failure] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(ready[0])
            try:
                ray.get(ready[0])
                progress.finished(True)
            except Exception as exc:
                cause = getattr(exc, "cause", None) or exc
                failures[trial.name] = _record_failure(study_dir, trial, cause)
                progress.finished(False)
                progress.log(f"{trial.name}: failed: {failures[trial.name]}")
        return failures


EXECUTORS = ("local", "ray")


def make_executor(
    name: str, address: str | None = None, cpus_per_run: float | None = None, gpus_per_run: float = 0
) -> LocalExecutor | RayExecutor:
    """The executor of ``--executor``. `cpus_per_run` is the torch threads of each run (and,
    on Ray, the CPUs reserved for it; default 1 there, torch's own choice locally). Runs give
    the same numbers on either executor when they use the same number of threads: torch's
    CPU reductions depend on it."""
    validate.one_of(name, "executor", EXECUTORS)
    if name == "local":
        if address is not None or gpus_per_run:
            raise InputError("--address and --gpus-per-run apply to --executor ray only")
        if cpus_per_run is not None and float(cpus_per_run) != int(cpus_per_run):
            raise InputError(f"--cpus-per-run of a local study is a number of threads, got {cpus_per_run}")
        return LocalExecutor(None if cpus_per_run is None else int(cpus_per_run))
    return RayExecutor(address, 1.0 if cpus_per_run is None else cpus_per_run, gpus_per_run)


# --------------------------------------------------------------------------- the runner
def prepare_folder(out: Path, kind: str, definition: dict) -> None:
    """A new study folder, or the folder of the same study (resumed). Anything else is refused."""
    marker = out / STUDY
    wanted = {"study": kind, **definition}
    if marker.exists():
        hint = "restore it (it records the study's settings) or choose a new --out folder"
        stored = read_json(marker, "the study record", hint)
        if not isinstance(stored, dict):
            raise StateError(f"the study record {marker} is not a mapping of settings; {hint}")
        if stored != wanted:
            differ = sorted(k for k in {*stored, *wanted} if stored.get(k) != wanted.get(k))
            raise InputError(
                f"{out} holds another study (different {', '.join(differ)}); give the same settings "
                "to resume it, or choose a new --out folder"
            )
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and holds no study; choose a new --out folder")
    atomic_write(marker, json.dumps(wanted, indent=2, sort_keys=True).encode())


def run_study(
    out: Path,
    kind: str,
    definition: dict,
    trials: list[Trial],
    executor,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[list[dict], dict[str, Failure]]:
    """Run every unfinished trial of a study in `out`; returns (results of the finished
    trials in grid order, failures by trial name)."""
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise InputError("two trials of a study share a folder name")
    prepare_folder(out, kind, definition)
    todo = [t for t in trials if read_result(out, t) is None]
    if len(todo) < len(trials):
        log(f"{out}: {len(trials) - len(todo)} of {len(trials)} runs already finished; running the rest")
    bar = Progress(len(trials), len(trials) - len(todo), f"{kind} ({executor.name})", enabled=progress)
    start = time.monotonic()
    try:
        failures = executor.run(out, todo, bar) if todo else {}
    finally:
        bar.close()
    results = [r for t in trials if (r := read_result(out, t)) is not None]
    log(f"{len(results)} of {len(trials)} runs finished ({time.monotonic() - start:.0f} s this time)")
    for name, why in failures.items():
        log(f"failed: {name}: {why} ({why.hint()})")
    return results, failures


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


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
