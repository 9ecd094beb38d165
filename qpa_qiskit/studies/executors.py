"""Where a study's trials run: here, one after another, or as Ray tasks on a cluster.

Both executors run the same :func:`~.runner.run_trial` on the same run folders, so a study
gives the same results however it is executed; runs use the same numbers of torch threads
for that (torch's CPU reductions depend on it).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from .. import validate
from ..errors import InputError
from .runner import BaseModels, Failure, Progress, Trial, record_failure, run_trial, steps_done

# how long joining a Ray cluster at host:port may take before it is reported unreachable
RAY_CONNECT_TIMEOUT_S = 10.0
# how often the study's line reads the steps of the runs on Ray from their folders
RAY_POLL_S = 2.0
# Ray's own switch (ray._private.accelerators): a task that reserves no GPU sees none
# (CUDA_VISIBLE_DEVICES=""), so --device auto runs it on the CPU instead of an unreserved GPU
RAY_NO_GPU_ENV = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}


class LocalExecutor:
    """Runs the trials in this process, one after another; the base model is loaded once.
    `threads` sets torch's CPU threads for the runs (default: torch's own choice)."""

    name = "local"
    runs_here = True

    def __init__(self, threads: int | None = None) -> None:
        self.threads = None if threads is None else validate.positive_int(threads, "threads")
        self.bases: BaseModels | None = None  # the models the study's grid check loaded

    def prepare(self, bases: BaseModels) -> None:
        """Nothing to start for runs in this process; the grid check's models are reused."""
        self.bases = bases

    def release(self) -> None:
        self.bases = None

    def run(self, study_dir: Path, trials: list[Trial], progress: Progress) -> dict[str, Failure]:

        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._run(study_dir, trials, progress)
        finally:
            torch.set_num_threads(before)

    def _run(self, study_dir: Path, trials: list[Trial], progress: Progress) -> dict[str, Failure]:
        failures: dict[str, Failure] = {}
        bases = self.bases or BaseModels()
        for trial in trials:
            progress.started()
            try:
                loaded, texts = bases.get(trial.config)
                run_trial(study_dir, trial, loaded=loaded, texts=texts, progress=progress.enabled,
                          log=progress.log)  # fmt: skip
                progress.finished(True)
            except Exception as exc:
                failures[trial.name] = record_failure(study_dir, trial, exc)
                progress.finished(False)
                progress.log(f"{trial.name}: failed: {failures[trial.name]}")
        return failures


def _ray_trial(study_dir: str, trial: Trial, threads: int, gpus: float = 0.0) -> dict:
    if not gpus and trial.config.training.device.startswith("cuda"):
        raise InputError(
            f"--device {trial.config.training.device} on Ray needs --gpus-per-run above 0: a Ray task sees a "
            "GPU only when it reserves one (0.25: four runs share a GPU)"
        )
    return run_trial(study_dir, trial, threads=threads)


class InFlight:
    """The runs of a study on Ray as its driver sees them in their folders (shared storage):
    a run is in flight from when its step count first moves (a resumed run's earlier steps,
    or one still queued, do not count) until its task ends."""

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = study_dir
        self.first: dict[str, int] = {}  # steps when first looked at
        self.since: dict[str, float] = {}  # when its steps were first seen moving

    def poll(self, trials: Iterable[Trial]) -> dict[str, tuple[int, int, float]]:
        """name -> (steps done, steps, seconds in flight) of the runs moving among `trials`."""
        now = time.monotonic()
        out = {}
        for trial in trials:
            done = steps_done(self.study_dir / trial.name)
            if self.first.setdefault(trial.name, done) != done:
                start = self.since.setdefault(trial.name, now)
                out[trial.name] = (done, trial.config.training.steps, now - start)
        return out


class RayExecutor:
    """Each trial is a Ray task with `cpus_per_run` CPUs and `gpus_per_run` GPUs (fractions
    allowed: 0.25 lets four runs share one GPU). With no `address` it starts a local Ray
    (or uses one already started in this process); ``auto`` or ``ray://host:port`` joins a
    cluster. Every node needs the same qpa-qiskit installed and the study folder at the same
    path (shared storage): the trials write their run folders there."""

    name = "ray"
    runs_here = False  # on a cluster's nodes: the driver may have no GPU

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0):
        self.address = address
        self.cpus_per_run = validate.number(cpus_per_run, "cpus_per_run", above=0.0)
        self.gpus_per_run = validate.number(gpus_per_run, "gpus_per_run", minimum=0.0)

    def _reachable(self) -> None:
        """A ``host:port`` or ``ray://host:port`` address answers within
        :data:`RAY_CONNECT_TIMEOUT_S` (Ray itself retries an unreachable one for minutes)."""
        address = self.address
        if address is None or address == "auto":
            return
        client = address.startswith("ray://")
        host, sep, port = address.removeprefix("ray://").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(
                f"--address must be 'auto', host:port (a cluster's GCS, port 6379 by default) or "
                f"ray://host:port (Ray Client, port 10001 by default); got {address!r}"
            )
        if client:
            try:
                import grpc  # noqa: F401 - Ray Client's transport, in ray[client]
            except ImportError:
                raise InputError(
                    f"--address {address} uses Ray Client, which needs ray[client]: "
                    "pip install 'qpa-qiskit[ray]' (or pip install 'ray[client]')"
                ) from None
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
                pass
        except OSError as exc:
            raise InputError(
                f"cannot reach the Ray cluster at {address} ({type(exc).__name__}: {exc}) within "
                f"{RAY_CONNECT_TIMEOUT_S:g} s; start it ('ray start --head' on its head node) or fix "
                "--address ('auto' joins the cluster started on this machine)"
            ) from None

    def _init(self):
        try:
            # lazy: optional dependency (the ray extra)
            import ray
        except ImportError:
            raise InputError(
                "--executor ray needs Ray: pip install 'qpa-qiskit[ray]' (or pip install ray)"
            ) from None
        if not ray.is_initialized():
            self._reachable()
            if self.address not in (None, "auto"):
                # Ray's own wait for a cluster's GCS that accepts but does not answer, bounded
                os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", str(int(RAY_CONNECT_TIMEOUT_S)))
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except Exception as exc:
                where = self.address or "a local Ray"
                raise InputError(f"cannot start or join {where} ({type(exc).__name__}: {exc})") from None
        return ray

    def prepare(self, bases: BaseModels | None = None) -> None:
        """Start or join Ray now: a study that cannot reach its cluster writes nothing (each
        task loads its own base model)."""
        self._init()

    def release(self) -> None:
        """Ray stays up for the process (a notebook's next study joins it)."""

    def run(self, study_dir: Path, trials: list[Trial], progress: Progress) -> dict[str, Failure]:
        """Every trial a Ray task with its CPUs and GPUs; with GPUs (fractions too) Ray sets the
        task's ``CUDA_VISIBLE_DEVICES`` and ``--device auto`` runs on that GPU, without, the task
        sees no GPU and runs on the CPU. The study's line names the runs whose steps move."""
        ray = self._init()
        options = {} if self.gpus_per_run else {"runtime_env": {"env_vars": RAY_NO_GPU_ENV}}
        task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, **options)(_ray_trial)
        threads = max(1, int(self.cpus_per_run))
        folder = str(study_dir.resolve())
        pending = {task.remote(folder, t, threads, self.gpus_per_run): t for t in trials}
        progress.started(len(pending))
        failures: dict[str, Failure] = {}
        flight = InFlight(study_dir)
        while pending:
            wait = RAY_POLL_S if progress.enabled else None
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait)
            if progress.enabled:
                progress.in_flight(flight.poll(t for r, t in pending.items() if r not in ready))
            if not ready:
                continue
            trial = pending.pop(ready[0])
            try:
                ray.get(ready[0])
                progress.finished(True)
            except Exception as exc:
                cause = getattr(exc, "cause", None) or exc
                failures[trial.name] = record_failure(study_dir, trial, cause)
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
