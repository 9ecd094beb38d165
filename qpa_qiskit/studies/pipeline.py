"""A study's pipeline, one function for every study: select on dev, then the final runs.

:func:`run_pipeline` takes a spec (:class:`~.spec.StudySpec`) down: its values checked, its
grid of trials, its QPU cost against the budget, then the runs through the runner
(:func:`~.runner.run_study`). Without a learning-rate selection the grid runs once; with one
(:mod:`.selection`), its selection runs first, the rates are chosen on the dev split
(``selection.json``, ``selection.md``), with ``--widen-edges`` one rate more for each setting
chosen at its grid's edge and the choice again, then every seed runs at the chosen rates (the
selection's runs at those rates read back, not trained again). Then the spec's own report (rows, tables,
plots), the learning curves of any study, and the failures raised last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..train.run_config import RunConfig
from .cost import check_cost
from .executors import LocalExecutor
from .report import write_curves, write_file, write_json
from .runner import RESULT, Executor, Failure, raise_if_failed, run_study, without_diverged
from .selection import Choice, Selection, rate_text, selection_markdown

if TYPE_CHECKING:
    from .spec import StudySpec


def default_out(out, pattern: str) -> Path:
    """`out`, or a time-stamped new folder."""
    return Path(out or time.strftime(pattern))


def run_pipeline(
    spec: StudySpec,
    cfg: RunConfig | None = None,
    out: str | Path | None = None,
    executor: Executor | None = None,
    log: Callable[[str], None] = print,
) -> Any:
    """Check `spec`, build its trials from `cfg` (default its configuration), run the unfinished
    ones in `out` (default a new time-stamped folder) on `executor` (default here, one after
    another), with a learning-rate selection first where the spec has one, then write and
    return the study's rows or tables. Trials that failed raise
    :class:`~qpa_qiskit.errors.TrialsFailed` after that."""
    cfg = spec.configuration() if cfg is None else cfg
    out = default_out(out, spec.OUT)
    spec = spec.checked(cfg)
    trials = spec.trials(cfg)  # every setting is checked before anything runs
    definition, executor = spec.definition(cfg), executor or LocalExecutor()
    selection = spec.selection(cfg, trials)
    check_cost(spec, cfg, log)  # over its QPU-time budget: refused here, before its folder
    if selection is None:
        results, failures = run_study(out, spec.NAME, definition, trials, executor, log=log)
        total = len(trials)
    else:
        definition = selection.definition(definition)
        choices, failures, selected = _select(spec.NAME, selection, out, definition, executor, log)
        # the final runs: every seed at the chosen rates
        final = selection.trials_at(choices)
        total = len(selected | {t.name for t in final})
        if final:
            log(f"the final runs: {len(final)} at the chosen rates")
            results, final_failures = run_study(out, spec.NAME, definition, final, executor, log=log)
            failures = {**failures, **final_failures}
        else:
            results = []
        results = selection.annotate(results, choices)
    results, failures = without_diverged(results, failures)
    summary = spec.report(cfg, out, results, failures, log)
    write_curves(out, results, log, spec.curve_label)
    raise_if_failed(out, failures, total, summary)
    return summary


def _select(
    kind: str,
    selection: Selection,
    out: Path,
    definition: dict,
    executor: Executor,
    log: Callable[[str], None],
) -> tuple[dict[str, Choice], dict[str, Failure], set[str]]:
    """Select on dev: every setting at each rate of its grid on the selection seeds, the choice,
    with ``widen_edges`` one rate more for each setting chosen at its edge and the choice again;
    ``selection.json`` and ``selection.md`` written. Returns (the choices, the failures, the
    names of the selection runs). Every step follows from the stored results: a resumed study
    adds the same runs."""
    trials = selection.trials()
    seeds = "the first seed" if selection.select_on == "first" else "every seed"
    settings = len(selection.settings)
    log(f"learning-rate selection: {len(trials)} runs ({settings} settings, each rate on {seeds})")
    results, failures = run_study(out, kind, definition, trials, executor, log=log)
    choices = selection.choose(results)
    widened = selection.widened_trials(choices)
    if widened:
        added = selection.widening(choices)
        log(f"widening the grids at their edge: {len(widened)} runs ("
            + ", ".join(f"{label} at {rate_text(rate)}" for label, rate in added.items()) + ")")  # fmt: skip
        more, more_failures = run_study(out, kind, definition, widened, executor, log=log)
        failures = {**failures, **more_failures}
        first, choices = choices, selection.rechoose(choices, results + more)
        _log_moved(selection, first, choices, {t.name for t in trials}, out, log)
        trials += widened
    record = selection.record(choices)
    write_json(out, "selection.json", record)
    text = selection_markdown(record)
    write_file(out, "selection.md", text + "\n")
    log("\n" + text + f"\n\nwritten: {out / 'selection.json'}, {out / 'selection.md'}")
    return choices, failures, {t.name for t in trials}


def _log_moved(
    selection: Selection, first: dict[str, Choice], choices: dict[str, Choice], selected: set[str], out: Path,
    log: Callable[[str], None],
) -> None:  # fmt: skip
    """Name the final runs in `out` trained at a choice that widening moved (a study resumed
    with ``--widen-edges``): they are kept in the folder, not reported."""
    for label, before in first.items():
        after = choices.get(label)
        if after is None or after.lr == before.lr:
            continue
        stale = [t.name for t in selection.trials_at({label: before})
                 if t.name not in selected and (out / t.name / RESULT).exists()]  # fmt: skip
        if stale:
            old, new = rate_text(before.lr), rate_text(after.lr)
            log(f"{label}: widening moved its lr from {old} to {new}; the final runs at {old} "
                f"({', '.join(stale)}) are kept in the folder, not reported")  # fmt: skip
