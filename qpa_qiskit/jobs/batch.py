"""The ``qpa jobs submit`` workflow as an API: a batch's parameter sets, its plan and the
runtime's estimate of it, its store, and submitting it.

Why its own module: the command line only parses options and prints; what a batch is (an
ansatz on a backend, the parameter sets its PUBs evaluate, the jobs they split into) and
the order in which it is written and submitted live here, usable without the CLI.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qiskit import QuantumCircuit

from ..backends import QPABackend
from ..backends.cost import ShotTiming, shot_timing
from ..circuits import ansatz
from ..errors import InputError, JobsError
from ..qnn import shifted_parameter_sets
from ..validate import integer
from . import sync
from .plan import MAX_EXECUTIONS, PlannedJob, plan_jobs
from .service import RuntimeJobs, describe_error
from .store import JobStore, job_pubs
from .sync import Report


def load_array(path: str, what: str) -> np.ndarray:
    """A finite, non-empty array of real numbers from a .npy file or a text table."""
    hint = "give a .npy file or a text table of numbers"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loadtxt warns about an empty file: it is refused below
            array = np.load(path, allow_pickle=False) if path.endswith(".npy") else np.loadtxt(path, ndmin=1)
    except (OSError, ValueError, EOFError) as exc:  # a UnicodeDecodeError (binary garbage) is a ValueError
        raise InputError(f"cannot read {what} from {path!r} ({type(exc).__name__}: {exc}); {hint}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
        kind = getattr(array, "dtype", type(array).__name__)
        raise InputError(f"{what} in {path!r} are not real numbers ({kind}); {hint}")
    if array.size == 0:
        raise InputError(f"{what} file {path!r} is empty; {hint}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{what} in {path!r} must be finite numbers (no nan or inf)")
    return array.astype(float)


def batch_pubs(
    n_params: int, *, theta: str | None = None, parameters: str | None = None, seed: int = 0
) -> tuple[list[np.ndarray], str]:
    """The PUBs a batch evaluates and what they are: parameter-shift steps at the angles in
    file `theta`, the sets in file `parameters`, or one step at seeded random angles."""
    seed = integer(seed, "--seed", minimum=0)
    if theta and parameters:
        raise InputError("give --theta (training steps) or --parameters (parameter sets), not both")
    if parameters:
        sets = load_array(parameters, "parameter sets")
        sets = sets[None, :] if sets.ndim == 1 else sets
        if sets.ndim != 2 or sets.shape[1] != n_params:
            raise InputError(f"--parameters needs shape (B, {n_params}) for this circuit, got {sets.shape}")
        return [sets], f"{len(sets)} parameter set(s) from {parameters}"
    if theta:
        thetas = load_array(theta, "angles")
        source = theta
    else:
        thetas = np.random.default_rng(seed).uniform(0, 2 * np.pi, n_params)
        source = f"random angles (seed {seed})"
    thetas = thetas[None, :] if thetas.ndim == 1 else thetas
    if thetas.ndim != 2 or thetas.shape[1] != n_params:
        raise InputError(f"--theta needs shape ({n_params},) or (steps, {n_params}), got {thetas.shape}")
    pubs = [shifted_parameter_sets(t) for t in thetas]
    return pubs, f"{len(pubs)} training step(s) at {source}: forward + {2 * n_params} shifted sets each"


@dataclass(frozen=True)
class Batch:
    """A batch planned and not yet written: an ansatz on an IBM backend, the PUBs it
    evaluates and the jobs they split into (see :func:`plan_batch`)."""

    backend: QPABackend
    circuit: QuantumCircuit
    isa: QuantumCircuit
    qubits: int
    reps: int
    rotation: str
    pubs: list[np.ndarray]
    what: str  # the work, for people
    shots: int
    plan: list[PlannedJob]
    mode: str
    max_executions: int

    @property
    def two_qubit_gates(self) -> int:
        return sum(n for name, n in self.isa.count_ops().items() if name in ("ecr", "cz", "cx"))

    def qpu_seconds(self) -> tuple[float, ShotTiming]:
        """The cost model's QPU seconds of the plan (:mod:`qpa_qiskit.backends.cost`), and the
        timing of one shot it is made of."""
        given = self.backend.sampler_options
        options = None if given is None else given.model_dump(mode="json", exclude_unset=True)
        timing = shot_timing(self.backend.connect(), self.isa, options)
        return sum(timing.seconds(job.executions, 1) for job in self.plan), timing

    def usage_estimate(self) -> str:
        """The runtime's estimate of the plan's QPU time, as a line for people."""
        return usage_estimate(self.backend, self.circuit, self.isa, self.pubs, self.plan, self.shots)

    def create(self, root: str | Path) -> JobStore:
        """Write the batch's job store at `root` (whole or not at all), nothing submitted."""
        describe = {
            "ansatz": "ansatz",
            "qubits": self.qubits,
            "reps": self.reps,
            "rotation": self.rotation,
            "work": self.what,
        }
        return JobStore.create(
            root,
            self.backend,
            self.circuit,
            mode=self.mode,
            max_executions=self.max_executions,
            describe=describe,
            evaluations={"batch": self.pubs},
        )


def plan_batch(
    backend: QPABackend,
    qubits: int,
    *,
    reps: int = 8,
    rotation: str = "ry",
    theta: str | None = None,
    parameters: str | None = None,
    seed: int = 0,
    max_executions: int = MAX_EXECUTIONS,
    mode: str = "batch",
) -> Batch:
    """The batch of `qubits` x `reps` ansatz layers on `backend` and its jobs, before anything
    is written (:func:`batch_pubs` says which parameter sets)."""
    circuit = ansatz(qubits, reps, rotation=rotation)
    pubs, what = batch_pubs(circuit.num_parameters, theta=theta, parameters=parameters, seed=seed)
    isa = backend.isa_circuit(circuit)
    shots = backend.num_shots(qubits)
    plan = plan_jobs([len(p) for p in pubs], shots, max_executions)
    return Batch(backend, circuit, isa, qubits, reps, rotation, pubs, what, shots, plan, mode, max_executions)


def usage_estimate(backend, circuit, isa, pubs, plan, shots: int) -> str:
    """The runtime's own estimate of the QPU time of the plan, where it offers one, as a line
    for people: a dry run on the service of one job of each size (run on no QPU, in job mode)."""
    if backend.is_local_testing:
        return "usage estimate: none (ibm:fake_<device> runs in the runtime's local testing mode, on no QPU)"
    service = RuntimeJobs(backend, "job")
    names = [p.name for p in circuit.parameters]
    estimates: dict[int, float | None] = {}
    try:
        for job in plan:
            if job.sets not in estimates:
                estimates[job.sets] = service.usage_estimate(job_pubs(isa, names, job, pubs), shots)
    except Exception as exc:  # e.g. dry runs are not open to this instance
        return f"usage estimate: not available ({describe_error(exc)})"
    finally:
        service.close()
    if any(v is None for v in estimates.values()):
        return "usage estimate: the installed qiskit-ibm-runtime offers none"
    total = sum(estimates[job.sets] or 0.0 for job in plan)
    return f"usage estimate (the runtime's, from a dry run on the service): {total:,.1f} QPU seconds in all"


def submit_batch(
    store: JobStore,
    backend: QPABackend | None,
    *,
    mode: str | None = None,
    resubmit_unconfirmed: bool = False,
    retry_failed: bool = False,
    command: str,
) -> Report:
    """Submit the store's batch through `backend` (None: the store's own) in `mode` (None:
    the store's), closing the service after; JobsError for intents the service never saw,
    saying to run `command` with --resubmit-unconfirmed."""
    service = store.service(backend, mode=mode)
    try:
        report = sync.submit(
            store, "batch", service, resubmit_unconfirmed=resubmit_unconfirmed, retry_failed=retry_failed
        )
    finally:
        service.close()
    if report.unconfirmed:
        raise JobsError(sync.unconfirmed_message(store, report.unconfirmed, command))
    return report
