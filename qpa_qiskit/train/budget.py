"""A run's QPU-time budget (``max_qpu_seconds``), kept, and its what-if cost (``cost_as``).

Why apart from the trainer: what a budget needs (the projection of :mod:`.cost`, the QPU
time the run's job ledgers record, :mod:`qpa_qiskit.jobs.usage`) is not training. The
trainer calls two things:

* :func:`check_cost` when a run is created, before any file is written: on IBM Quantum a
  projection over the budget is refused (with the settings that would fit); on a backend
  that spends no QPU time a budget is a note on stderr, not enforced, and ``cost_as`` prints
  what the run would cost on that device;
* :meth:`RunBudget.before_step`, before every step of a run on an ``ibm:`` backend with a
  budget: the QPU time its job stores (``jobs/``, ``jobs-m3-calibration/``) record (the
  service's reported usage where it is final, the projection otherwise: on the runtime's
  local testing mode always), plus the step's projection and the final weights' (kept for
  ``qpa eval`` and ``qpa export``), must stay within the budget; else the run stops before
  that step with :class:`~qpa_qiskit.errors.BudgetReached`, its checkpoint and every job it
  paid for kept, and a larger budget resumes it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.cost import open_plan_share
from ..errors import BudgetReached, InputError
from ..jobs import JobStore
from ..jobs.loop import CALIBRATION_SUFFIX
from ..jobs.usage import StoreUsage, store_timing, store_usage
from .cost import RunCost, over_budget_message, project, what_if_verdict, zero_cost_reason

if TYPE_CHECKING:
    from .trainer import Run


def _circuit(run: Run) -> Any:
    return run.model.generator.circuit if run.cfg.reads_circuit else None


def _backend(run: Run) -> Any:
    return run.model.generator.quantum.backend if run.cfg.reads_circuit else None


def check_cost(run: Run) -> None:
    """What a new run's QPU cost says before anything is written (module docstring)."""
    cfg = run.cfg
    budget, cost_as = cfg.backend.max_qpu_seconds, cfg.backend.cost_as
    if budget is None and cost_as is None:
        return
    what_if = None if cost_as is None else project(cfg, _circuit(run))
    if what_if is not None:
        seconds = what_if.total_seconds()
        run.log(
            f"what-if (--cost-as {cost_as}): this run would take {seconds:,.1f} QPU s on {what_if.device} "
            f"({open_plan_share(seconds):.0%} of the Open Plan's 10 minutes)"
            if what_if.costs_qpu_time
            else f"what-if (--cost-as {cost_as}): no QPU time ({what_if.reason})"
        )
    if budget is None:
        return
    if run.hardware is None:
        reason = zero_cost_reason(cfg.replace(cost_as=None))
        run.log(
            f"note: --max-qpu-seconds {budget:g} is not enforced: {reason}" + what_if_verdict(what_if, budget)
        )
        return
    cost = run_cost(run)
    if cost.total_seconds() > budget:
        raise InputError(over_budget_message(cfg, cost, budget))
    run.log(
        f"QPU time: {cost.total_seconds():,.1f} s projected on {cost.device}, within --max-qpu-seconds "
        f"{budget:g}; checked before every step against the job ledgers"
    )


def run_cost(run: Run) -> RunCost:
    """The projection of a run on its own ibm: device (``cost_as`` aside)."""
    cfg = run.cfg if run.cfg.backend.cost_as is None else run.cfg.replace(cost_as=None)
    return project(cfg, _circuit(run), _backend(run))


class RunBudget:
    """The budget of a run on an ``ibm:`` backend, checked before every step (module docstring)."""

    def __init__(self, run: Run, limit: float, cost: RunCost) -> None:
        self.run_dir = Path(run.dir)
        self.limit = limit
        self.cost = cost
        self.backend = _backend(run)
        root = Path(run.hardware.root)
        self.stores = [root, root.with_name(root.name + CALIBRATION_SUFFIX)]
        self._timings: dict[Path, Any] = {}

    @classmethod
    def start(cls, run: Run) -> RunBudget | None:
        """The budget of `run`; None where there is none to keep (no budget, or no ibm: backend)."""
        limit = run.cfg.backend.max_qpu_seconds
        if limit is None or run.hardware is None:
            return None
        return cls(run, limit, run_cost(run))

    def used(self) -> StoreUsage:
        """The QPU time the run's job stores record (module docstring)."""
        total = StoreUsage()
        reported = not self.backend.is_local_testing
        for root in self.stores:
            if not (root / "store.json").exists():
                continue
            store = JobStore(root)
            if root not in self._timings:
                self._timings[root] = store_timing(store, self.backend.connect())
            total += store_usage(store, self._timings[root], reported=reported)
        return total

    def before_step(self, step: int) -> None:
        """BudgetReached if the 0-based `step` would take the run past its budget."""
        need = self.cost.step_seconds(step)
        if need <= 0:
            return  # a step that evaluates no circuit costs nothing
        used = self.used()
        keep = self.cost.final.seconds if self.cost.final is not None else 0.0
        if used.recorded + need + keep <= self.limit:
            return
        steps = self.cost.steps
        rest = sum(self.cost.step_seconds(s) for s in range(step, steps)) + keep
        larger = math.ceil(used.recorded + rest)
        source = (
            f"{used.reported_jobs} job(s) as the service reported them, {used.projected_jobs} as projected"
            if used.reported_jobs
            else f"{used.projected_jobs} job(s) as projected, the service reporting no usage"
        )
        raise BudgetReached(
            f"stopped before step {step + 1} of {steps}: the run has used {used.recorded:,.1f} QPU s "
            f"({source}; its ledgers are in {self.stores[0]}), and step {step + 1} would add {need:,.1f} s, "
            f"with {keep:,.1f} s kept for the final weights, past --max-qpu-seconds {self.limit:g}. The "
            f"checkpoint is at step {step} and every job is recorded: nothing paid for is lost or submitted "
            "again. "
            f"'qpa train {self.run_dir} --resume --max-qpu-seconds {larger}' continues it (the rest is "
            f"projected at {rest:,.1f} s)"
        )
