"""A run's QPU cost before a shot is spent: its circuit evaluations counted from its
configuration, priced by the device model of :mod:`qpa_qiskit.backends.cost`.

Why from the configuration: ``qpa train --dry-run``, ``qpa study --dry-run``, the budget's
refusal before anything is written and its check before every step must all agree, and none
of them may submit or write anything. What a run evaluates on a shot-based backend (the
circuit and its gradient as :mod:`qpa_qiskit.qnn` and the trainer submit them):

* a circuit step (0-based steps s with s % circuit_every == 0): the forward set and the
  gradient's sets in one submission: 2P with the parameter-shift rule, 2K with SPSA;
* ``probabilities="frozen"``: one set, once per run, and nothing else;
* otherwise the final weights (``qpa eval``, ``qpa export``, a study's scoring): one set,
  once; a dev evaluation (``eval_every``): one set after every step that is a multiple of it,
  and after the last;
* readout mitigation ``m3``: one calibration submission before the first step, of mthree's
  balanced calibration strings at the run's shots per string;
* each submission is one job, or more above the runtime's 10M executions
  (:func:`~qpa_qiskit.jobs.plan_jobs`).

Runs that evaluate no circuit, or evaluate it exactly on a simulator, cost no QPU time
(:attr:`RunCost.reason` says why); ``cost_as`` projects a simulator run on a device.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from ..adapters import AdaptedModel
from ..backends import QPABackend, family_class, parse_spec
from ..backends.cost import (
    JOB_OVERHEAD_SECONDS,
    OPEN_PLAN_SECONDS,
    USAGE_GUIDE,
    ShotTiming,
    calibration_isa,
    open_plan_share,
    shot_timing,
)
from ..backends.mitigation import calibration_strings
from ..errors import InputError, QPAError
from ..jobs import plan_jobs
from ..jobs.batch import usage_estimate
from ..models import LoadedModel, load_model
from .run_config import RunConfig

TWO_QUBIT_GATES = ("ecr", "cz", "cx")


@dataclass(frozen=True)
class Submission:
    """One call that evaluates parameter sets on the device: its parts (what, sets), shots
    per set, the jobs it becomes, and the timing of one of its shots."""

    kind: str
    parts: tuple[tuple[str, int], ...]
    shots: int
    timing: ShotTiming

    @property
    def sets(self) -> int:
        return sum(n for _, n in self.parts)

    @property
    def executions(self) -> int:
        return self.sets * self.shots

    @property
    def jobs(self) -> int:
        return len(plan_jobs([self.sets], self.shots))

    @property
    def seconds(self) -> float:
        return self.timing.seconds(self.executions, self.jobs)


@dataclass(frozen=True)
class RunCost:
    """The projected QPU time of a run (see the module docstring). `reason`: why it is zero
    (no submissions then). `device`: the spec the cost is projected on; `what_if`: a
    simulator run projected there (``cost_as``)."""

    steps: int
    device: str | None = None
    what_if: bool = False
    reason: str | None = None
    circuit: str = ""
    qubits: int = 0
    shots: int = 0  # per set
    circuit_every: int = 1
    eval_every: int = 0
    before: tuple[Submission, ...] = ()  # before the first step (calibration, frozen probabilities)
    step: Submission | None = None  # each circuit step's
    dev: Submission | None = None  # each dev evaluation's
    final: Submission | None = None  # the final weights', once
    assumed: tuple[str, ...] = field(default=())

    # ------------------------------------------------------------------ schedule
    def circuit_steps(self, steps: int | None = None) -> list[int]:
        """The 0-based steps that evaluate the circuit (none without one)."""
        n = self.steps if steps is None else steps
        return [] if self.step is None else [s for s in range(n) if s % self.circuit_every == 0]

    def dev_steps(self, steps: int | None = None) -> list[int]:
        """The 0-based steps followed by a dev evaluation (every eval_every-th and the last)."""
        n = self.steps if steps is None else steps
        if self.dev is None or not self.eval_every:
            return []
        return [s for s in range(n) if (s + 1) % self.eval_every == 0 or s + 1 == n]

    def step_seconds(self, step: int) -> float:
        """QPU seconds of what the 0-based step `step` submits: before the first step, its
        circuit evaluation (if it is a circuit step) and the dev evaluation after it."""
        seconds = sum(s.seconds for s in self.before) if step == 0 else 0.0
        if self.step is not None and step % self.circuit_every == 0:
            seconds += self.step.seconds
        if self.dev is not None and step in self.dev_steps():
            seconds += self.dev.seconds
        return seconds

    def counts(self, steps: int | None = None) -> list[tuple[Submission, int, str]]:
        """Each submission with how many times the run makes it and when, for people."""
        n = self.steps if steps is None else steps
        out = [(s, 1, "once, before the first step") for s in self.before]
        if self.step is not None:
            k = len(self.circuit_steps(n))
            every = "every step" if self.circuit_every == 1 else f"every {self.circuit_every} steps"
            out.append((self.step, k, f"{k} circuit steps ({every})"))
        if self.dev is not None and self.eval_every:
            k = len(self.dev_steps(n))
            out.append((self.dev, k, f"{k} dev evaluations (every {self.eval_every} steps and the last)"))
        if self.final is not None:
            out.append((self.final, 1, "once, by qpa eval / export"))
        return out

    def total_seconds(self, steps: int | None = None) -> float:
        return sum(s.seconds * k for s, k, _ in self.counts(steps))

    def total_shots(self, steps: int | None = None) -> int:
        return sum(s.executions * k for s, k, _ in self.counts(steps))

    def total_jobs(self, steps: int | None = None) -> int:
        return sum(s.jobs * k for s, k, _ in self.counts(steps))

    @property
    def costs_qpu_time(self) -> bool:
        return self.reason is None

    def steps_within(self, seconds: float) -> int:
        """The most steps whose projection (final weights included) stays within `seconds`."""
        if self.total_seconds() <= seconds:
            return self.steps
        return max((n for n in range(self.steps + 1) if self.total_seconds(n) <= seconds), default=0)

    def shots_factor_within(self, seconds: float, shots_factor: float) -> float | None:
        """The largest shot factor (to 0.01) whose projection stays within `seconds`: the
        shots per set, ceil(c 2^N), scale the executions; the jobs' overhead stays. None if
        none does."""
        counted = self.counts()
        overhead = self.total_jobs() * JOB_OVERHEAD_SECONDS
        per_shot_set = sum(s.sets * s.timing.per_shot * k for s, k, _ in counted)  # seconds per shot a set
        if per_shot_set <= 0 or seconds <= overhead or not shots_factor:
            return None
        factor = math.floor(shots_factor * (seconds - overhead) / (self.shots * per_shot_set) * 100) / 100
        while factor > 0 and overhead + math.ceil(factor * 2**self.qubits) * per_shot_set > seconds:
            factor = round(factor - 0.01, 2)
        return factor if factor > 0 else None

    # ------------------------------------------------------------------ text
    def table(self) -> list[str]:
        """The projection for people: one row per kind of evaluation, then per step, per run
        and the share of the Open Plan; what was assumed."""
        if not self.costs_qpu_time:
            return [f"QPU time: none ({self.reason})"]
        where = (
            f"as if on {self.device} (what-if; the run itself uses no QPU)" if self.what_if else self.device
        )
        lines = [f"QPU cost projection on {where}", f"circuit: {self.circuit}"]
        timing = (self.step or self.before[-1]).timing  # the run's circuit (not the calibration's)
        lines.append(f"per shot: {timing.describe()}")
        rows = []
        for sub, k, when in self.counts():
            for what, sets in sub.parts:
                seconds = k * sets * sub.shots * sub.timing.per_shot
                rows.append([what, when, k * sets, k * sets * sub.shots, seconds])
        jobs = self.total_jobs()
        rows.append(["job overhead", f"{jobs} jobs x {JOB_OVERHEAD_SECONDS:g} s", None, None,
                     jobs * JOB_OVERHEAD_SECONDS])  # fmt: skip
        rows.append(["total", "", sum(r[2] for r in rows if r[2]), self.total_shots(), self.total_seconds()])
        lines += format_table(
            ["evaluation", "when", "sets", "shots", "QPU s"], ["<", "<", ">,", ">,", ">,.1f"], rows
        )
        if self.step is not None:
            parts = " + ".join(f"{n} {what.split(':')[0]}" for what, n in self.step.parts)
            jobs_each = f"{self.step.jobs} job" + ("s" if self.step.jobs > 1 else "")
            lines.append(
                f"per circuit step: {self.step.sets} sets ({parts}), {self.step.executions:,} shots, "
                f"{self.step.seconds:,.1f} QPU s in {jobs_each}"
            )
        total = self.total_seconds()
        lines.append(
            f"per run: {self.total_shots():,} shots, {total:,.1f} QPU s ({total / 60:,.1f} min): "
            f"{open_plan_share(total):.0%} of the Open Plan's {OPEN_PLAN_SECONDS / 60:g} minutes per 28 days"
            + (
                ""
                if total <= OPEN_PLAN_SECONDS
                else f"; {self.steps_within(OPEN_PLAN_SECONDS)} steps fit in them"
            )
        )
        lines += [f"assumed: {a}" for a in self.assumed]
        lines.append(
            f"model: shots x (rep_delay + init + circuit) + {JOB_OVERHEAD_SECONDS:g} s per job "
            f"({USAGE_GUIDE}); not checked against a live job"
        )
        return lines


def format_table(titles: list[str], specs: list[str], rows: list[list[Any]]) -> list[str]:
    """Columns aligned to their cells: spec '<' or '>' then a format spec; None is '-'."""
    cells = [
        ["-" if v is None else format(v, s[1:]) for v, s in zip(row, specs, strict=True)] for row in rows
    ]
    widths = [max([len(t), *(len(r[i]) for r in cells)]) for i, t in enumerate(titles)]
    return [
        "  ".join(f"{c:{s[0]}{w}}" for c, s, w in zip(line, specs, widths, strict=True)).rstrip()
        for line in [titles, *cells]
    ]


# ---------------------------------------------------------------------- the projection
def run_circuit(cfg: RunConfig, loaded: LoadedModel) -> QuantumCircuit:
    """The ansatz a qpa-* run evaluates: its qubits from the adapter's generated weights on
    the model (built on `loaded`'s model, which the adapter changes in place: give a copy)."""
    model = AdaptedModel(loaded.model, cfg.adapter, cfg.generator, QPABackend("statevector"), seed=0)
    return model.generator.circuit


def zero_cost_reason(cfg: RunConfig) -> str | None:
    """Why the run costs no QPU time at all (None: it may)."""
    method, gen = cfg.adapter.method, cfg.generator
    if cfg.adapter.generator_kind != "qpa":
        return f"{method} evaluates no circuit"
    if not cfg.reads_circuit:
        return f"probabilities {gen.probabilities!r} evaluate no circuit"
    spec = cfg.backend.backend
    on_ibm = family_class(spec).runs_remotely
    if not on_ibm and cfg.backend.cost_as is None:
        return f"backend {spec} runs here, on no QPU (--cost-as ibm:<device> projects it on a device)"
    if cfg.backend.shots_factor is None and not on_ibm:  # an ibm: backend refuses it, saying why
        return (
            f"backend {spec} computes exact probabilities, which a device cannot: give --shots-factor c "
            f"to project the run on {cfg.backend.cost_as}"
        )
    return None


def cost_backend(cfg: RunConfig, backend: QPABackend | None = None) -> QPABackend:
    """The ibm: backend the cost is projected on: `backend` (the run's own) when it is that
    device, else one built like the run's (same layout and transpilation)."""
    spec = cfg.backend.cost_as or cfg.backend.backend
    if backend is not None and parse_spec(backend.spec) == parse_spec(spec):
        return backend
    what_if = cfg.backend.cost_as is not None
    options = None if what_if else cfg.backend.runtime_options()
    try:
        return QPABackend(spec, shots_factor=cfg.backend.shots_factor, layout=cfg.backend.layout,
                          sampler_options=options)  # fmt: skip
    except QPAError as exc:
        if not what_if:
            raise
        raise InputError(f"cost_as {spec!r} (--cost-as): {exc}") from None


def describe_circuit(circuit: QuantumCircuit, isa: QuantumCircuit, reps: int) -> str:
    two = sum(n for name, n in isa.count_ops().items() if name in TWO_QUBIT_GATES)
    return (
        f"{circuit.num_qubits} qubits x {reps} layer{'s' if reps != 1 else ''}, "
        f"P = {circuit.num_parameters} angles; ISA depth {isa.depth()}, {two} two-qubit gates"
    )


def project(cfg: RunConfig, circuit: QuantumCircuit | None, backend: QPABackend | None = None) -> RunCost:
    """The :class:`RunCost` of the run `cfg` whose ansatz is `circuit` (None where it evaluates
    none), on its ibm: backend (`backend`: the run's own, connected) or its ``cost_as`` device."""
    steps, gen = cfg.training.steps, cfg.generator
    reason = zero_cost_reason(cfg)
    if reason is not None or circuit is None:
        return RunCost(steps, reason=reason or "no circuit")
    device_backend = cost_backend(cfg, backend)
    device = device_backend.connect()
    isa = device_backend.isa_circuit(circuit)
    options = None if cfg.backend.cost_as else cfg.backend.runtime_options()
    timing = shot_timing(device, isa, options)
    shots = device_backend.num_shots(circuit.num_qubits)
    assumed = list(timing.assumed)
    before: list[Submission] = []
    if cfg.backend.mitigation == "m3":
        calibration = shot_timing(device, calibration_isa(device, isa), options)
        assumed += [a for a in calibration.assumed if a not in assumed]
        strings = len(calibration_strings(circuit.num_qubits))
        before.append(Submission("m3 calibration", ((f"m3 calibration ({strings} strings)", strings),), shots,
                                 calibration))  # fmt: skip
    common = dict(steps=steps, device=device_backend.name, what_if=cfg.backend.cost_as is not None,
                  circuit=describe_circuit(circuit, isa, gen.reps), qubits=circuit.num_qubits, shots=shots,
                  assumed=tuple(assumed))  # fmt: skip
    if gen.probabilities == "frozen":
        before.append(Submission("frozen probabilities", (("frozen probabilities", 1),), shots, timing))
        return RunCost(before=tuple(before), **common)
    p = circuit.num_parameters
    gradient = (
        ("gradient: parameter shift (2P)", 2 * p)
        if gen.gradient == "shift"
        else (f"gradient: SPSA (2K, K = {gen.spsa_samples})", 2 * gen.spsa_samples)
    )
    one = Submission("final weights", (("final weights", 1),), shots, timing)
    eval_every = cfg.training.eval_every
    return RunCost(
        before=tuple(before), step=Submission("circuit step", (("forward", 1), gradient), shots, timing),
        dev=Submission("dev evaluation", (("dev evaluation", 1),), shots, timing) if eval_every else None,
        final=one, circuit_every=gen.circuit_every, eval_every=eval_every, **common,
    )  # fmt: skip


def service_estimate(cfg: RunConfig, circuit: QuantumCircuit, cost: RunCost) -> str | None:
    """The service's own estimate of one circuit step (a runtime dry run, run on no QPU), as a
    line beside ours; None where the run has no circuit step on an ibm: device."""
    if not cost.costs_qpu_time or cost.step is None:
        return None
    backend = cost_backend(cfg)
    isa = backend.isa_circuit(circuit)
    values = np.random.default_rng(0).uniform(0, 2 * np.pi, (cost.step.sets, circuit.num_parameters))
    plan = plan_jobs([cost.step.sets], cost.step.shots)
    line = usage_estimate(backend, circuit, isa, [values], plan, cost.step.shots)
    return f"one circuit step: ours {cost.step.seconds:,.1f} QPU s; {line}"


class Projector:
    """Projects many runs (a study's grid) at the cost of one: each model is loaded once, each
    adapter's circuit built once, each device's projection made once per setting it depends on."""

    def __init__(self, load: Callable[[str], LoadedModel] = load_model) -> None:
        self._load = load
        self._models: dict[str, LoadedModel] = {}
        self._circuits: dict[str, QuantumCircuit] = {}
        self._costs: dict[str, RunCost] = {}

    def circuit(self, cfg: RunConfig) -> QuantumCircuit:
        """The run's ansatz (:func:`run_circuit`), built once per model, adapter and generator."""
        key = _key(cfg.task.model, cfg.adapter, cfg.generator)
        if key not in self._circuits:
            name = cfg.task.model
            if name not in self._models:
                self._models[name] = self._load(name)
            self._circuits[key] = run_circuit(cfg, self._models[name].fresh_copy())
        return self._circuits[key]

    def cost(self, cfg: RunConfig) -> RunCost:
        """The :class:`RunCost` of `cfg` (:func:`project`), on no device for a run that costs none."""
        if zero_cost_reason(cfg) is not None:
            return project(cfg, None)
        key = _key(cfg.task.model, cfg.adapter, cfg.generator, cfg.backend, cfg.training.steps,
                   cfg.training.eval_every)  # fmt: skip
        if key not in self._costs:
            self._costs[key] = project(cfg, self.circuit(cfg))
        return self._costs[key]


def _key(*parts: Any) -> str:
    return json.dumps([dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts],
                      sort_keys=True, default=str)  # fmt: skip


def what_if_verdict(what_if: RunCost | None, budget: float) -> str:
    """' (the what-if ... is within it)', or '' without a what-if that costs QPU time."""
    if what_if is None or not what_if.costs_qpu_time:
        return ""
    seconds = what_if.total_seconds()
    within = "within" if seconds <= budget else "over"
    return f" (the what-if on {what_if.device}, {seconds:,.1f} s, is {within} it)"


def dry_run(cfg: RunConfig, projector: Projector | None = None) -> list[str]:
    """What ``qpa train ... --dry-run`` prints: the run's projection on its ibm: device, the
    what-if on its ``cost_as`` device, the service's own estimate where it offers one, and
    the budget's verdict. Nothing is submitted or written."""
    projector = projector or Projector()
    on_ibm = family_class(cfg.backend.backend).runs_remotely
    lines = [f"dry run: {cfg.adapter.method} on {cfg.task.model}, {cfg.training.steps} steps, backend "
             f"{cfg.backend.backend}"]  # fmt: skip
    own = projector.cost(cfg.replace(cost_as=None)) if on_ibm or cfg.backend.cost_as is None else None
    what_if = projector.cost(cfg) if cfg.backend.cost_as is not None else None
    for cost, config in ((own, cfg.replace(cost_as=None)), (what_if, cfg)):
        if cost is None:
            continue
        lines += cost.table()
        if cost.costs_qpu_time:
            estimate = service_estimate(config, projector.circuit(config), cost)
            lines += [estimate] if estimate else []
    budget = cfg.backend.max_qpu_seconds
    if budget is not None:
        if own is None or not own.costs_qpu_time:
            reason = zero_cost_reason(cfg.replace(cost_as=None))
            note = f"budget: --max-qpu-seconds {budget:g} is not enforced: {reason}"
            lines.append(note + what_if_verdict(what_if, budget))
        elif own.total_seconds() > budget:
            lines.append("budget: the run would be refused: " + over_budget_message(cfg, own, budget))
        else:
            lines.append(f"budget: --max-qpu-seconds {budget:g}: within it ({own.total_seconds():,.1f} s)")
    lines.append("dry run: nothing submitted, nothing written")
    return lines


def over_budget_message(cfg: RunConfig, cost: RunCost, budget: float, command: str = "qpa train") -> str:
    """Why `cost` is refused under `budget`, with the settings that would fit and the cheaper
    ways to train the circuit."""
    fits = []
    steps = cost.steps_within(budget)
    if steps >= 1:
        fits.append(f"--steps {steps} ({cost.total_seconds(steps):,.1f} s)")
    factor = cost.shots_factor_within(budget, cfg.backend.shots_factor or 0.0)
    if factor is not None:
        fits.append(f"--shots-factor {factor:g}")
    overhead = cost.total_jobs() * JOB_OVERHEAD_SECONDS
    fit = (
        f"Settings that would fit: {' or '.join(fits)}"
        if fits
        else f"Neither fewer steps nor fewer shots alone fit ({overhead:,.1f} s of it is the jobs' overhead)"
    )
    if cost.step is not None:
        fit += (
            "; cheaper circuit steps: --gradient spsa (1 + 2K sets instead of 2P + 1), --circuit-every K "
            "(the circuit every K-th step)"
        )
    total = cost.total_seconds()
    return (
        f"the projected QPU time of this run, {total:,.1f} s on {cost.device} ({open_plan_share(total):.0%} "
        f"of the Open Plan's 10 minutes), exceeds --max-qpu-seconds {budget:g}; nothing was written. {fit}. "
        f"'{command} ... --dry-run' shows the projection (docs/ibm.md#what-a-run-costs)"
    )
