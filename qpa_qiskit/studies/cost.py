"""A study's QPU cost before it starts: the sum of its runs' projections
(:mod:`qpa_qiskit.train.cost`), for ``qpa study ... --dry-run`` and the budget.

Why a module: a study's runs are its grid, or with a learning-rate selection its selection
runs and then every seed at the chosen rates, which are not known before the selection runs.
The rate changes nothing a run's cost depends on, so the final runs are projected at the
first rate of each setting's grid; the runs ``--widen-edges`` may add are counted, not listed
(the selection decides them). ``max_qpu_seconds`` on a study bounds the sum: a study
whose runs use QPU time is refused before anything is written when the sum exceeds it (each
run, which stores the setting, also stops before its own QPU time would pass it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backends.cost import OPEN_PLAN_SECONDS, open_plan_share
from ..errors import InputError
from ..train.cost import Projector, RunCost, format_table, zero_cost_reason
from ..train.run_config import RunConfig
from .runner import Trial
from .selection import Choice


def planned_trials(spec: Any, cfg: RunConfig) -> list[Trial]:
    """Every run the study `spec` trains on `cfg` (the module docstring), before any of them."""
    spec = spec.checked(cfg)
    trials = spec.trials(cfg)
    selection = spec.selection(cfg, trials)
    if selection is None:
        return trials
    runs = selection.trials()
    first = {s.label: Choice(*s.candidates()[0], False, False, ()) for s in selection.settings}
    named = {t.name for t in runs}
    return runs + [t for t in selection.trials_at(first) if t.name not in named]


def widening_note(spec: Any, cfg: RunConfig) -> str | None:
    """With ``--widen-edges``: the runs widening may add, which the selection decides (not listed
    above, nor in the budget's sum); None without it."""
    spec = spec.checked(cfg)
    selection = spec.selection(cfg)
    if selection is None or not selection.widen_edges:
        return None
    most = sum(len(selection.seeds_of(s)) for s in selection.settings if len(s.lrs) >= 2)
    return (
        f"--widen-edges: up to {most} more runs may be added (one rate beyond the edge, on the selection "
        "seeds, for each setting whose lr is chosen at its grid's edge): how many is known only after the "
        "selection, so they are not in the total above"
    )


def _own(cfg: RunConfig) -> RunConfig:
    """The run as it runs (its ``cost_as`` what-if aside)."""
    return cfg if cfg.backend.cost_as is None else cfg.replace(cost_as=None)


Costs = list[tuple[str, RunCost, RunCost]]  # (run name, its own cost, the cost shown)


def study_costs(trials: list[Trial], projector: Projector | None = None) -> Costs:
    """(name, cost as it runs, cost shown) of every trial: shown is the ``cost_as`` what-if
    where one is given, else the run's own."""
    projector = projector or Projector()
    out = []
    for trial in trials:
        own = projector.cost(_own(trial.config))
        shown = projector.cost(trial.config) if trial.config.backend.cost_as is not None else own
        out.append((trial.name, own, shown))
    return out


def table(costs: Costs) -> list[str]:
    """One row per run (its device or why it costs nothing), the total and the Open Plan's share."""
    rows = []
    for name, _, cost in costs:
        if cost.costs_qpu_time:
            where = cost.device + (" (what-if)" if cost.what_if else "")
            rows.append([name, where, len(cost.circuit_steps()), cost.total_shots(), cost.total_seconds()])
        else:
            rows.append([name, f"none: {cost.reason}", None, None, 0.0])
    total = sum(c.total_seconds() for _, _, c in costs if c.costs_qpu_time)
    rows.append(["total", "", None, sum(r[3] or 0 for r in rows), total])
    specs = ["<", "<", ">", ">,", ">,.1f"]
    lines = format_table(["run", "QPU", "circuit steps", "shots", "QPU s"], specs, rows)
    lines.append(
        f"study: {len(costs)} runs, {total:,.1f} QPU s ({total / 60:,.1f} min), {open_plan_share(total):.0%} "
        f"of the Open Plan's {OPEN_PLAN_SECONDS / 60:g} minutes per 28 days"
    )
    return lines


def verdict(costs: Costs, cfg: RunConfig) -> tuple[str | None, str | None]:
    """(a note, a refusal) of the study's budget `cfg.backend.max_qpu_seconds` on its runs'
    own costs: a note where they use no QPU time (with the what-if against it), a refusal
    where their sum exceeds it; (None, None) within it or without a budget."""
    budget = cfg.backend.max_qpu_seconds
    if budget is None:
        return None, None
    own = sum(c.total_seconds() for _, c, _ in costs if c.costs_qpu_time)
    if not any(c.costs_qpu_time for _, c, _ in costs):
        reason = zero_cost_reason(_own(cfg)) or "its runs use no QPU time"
        what_if = sum(c.total_seconds() for _, _, c in costs if c.costs_qpu_time and c.what_if)
        note = f"note: --max-qpu-seconds {budget:g} is not enforced: {reason}"
        if what_if:
            within = "within" if what_if <= budget else "over"
            note += f" (the what-if, {what_if:,.1f} s in all, is {within} it)"
        return note, None
    if own <= budget:
        return None, None
    return None, (
        f"the study's runs are projected at {own:,.1f} QPU s in all ({open_plan_share(own):.0%} of the "
        f"Open Plan's 10 minutes), over --max-qpu-seconds {budget:g}; nothing was written. Fewer runs "
        "(seeds, grid values), fewer --steps, a smaller --shots-factor or --gradient spsa fit; the same "
        "command with --dry-run shows each run's cost (docs/ibm.md#what-a-run-costs)"
    )


def dry_run(spec: Any, cfg: RunConfig, projector: Projector | None = None) -> list[str]:
    """What ``qpa study <name> ... --dry-run`` prints; nothing is trained or written."""
    costs = study_costs(planned_trials(spec, cfg), projector)
    lines = [f"dry run: study {spec.NAME}, backend {cfg.backend.backend}", *table(costs)]
    note, refusal = verdict(costs, cfg)
    widening = widening_note(spec, cfg)
    if widening:
        lines.append(widening)
    if note:
        lines.append(note)
    if refusal:
        lines.append(f"budget: the study would be refused: {refusal}")
    elif cfg.backend.max_qpu_seconds is not None and note is None:
        lines.append(f"budget: --max-qpu-seconds {cfg.backend.max_qpu_seconds:g}: within it")
    lines.append("dry run: nothing trained, nothing written")
    return lines


def check_cost(spec: Any, cfg: RunConfig, log: Callable[[str], None]) -> None:
    """Before the study `spec` runs on `cfg`: its what-if total (``cost_as``) and its budget's
    note, or the refusal of a budget its runs' projections exceed (InputError, nothing written)."""
    if cfg.backend.max_qpu_seconds is None and cfg.backend.cost_as is None:
        return
    costs = study_costs(planned_trials(spec, cfg))
    if cfg.backend.cost_as is not None:
        log(table(costs)[-1].replace("study:", f"what-if (--cost-as {cfg.backend.cost_as}):", 1))
    note, refusal = verdict(costs, cfg)
    if refusal:
        raise InputError(refusal)
    if note:
        log(note)
