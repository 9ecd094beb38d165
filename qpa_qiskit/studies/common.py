"""What every study shares: its spec, its grid's values, its folder's files, the base model.

A study is a :class:`StudySpec`, a frozen dataclass whose fields are its grid's axes and its
own settings, each with its default and help written once (:func:`option`): Python callers
construct it, and ``qpa compare`` / ``qpa study <name>`` make one command-line option per
field from it (:mod:`qpa_qiskit.cli.runs`). The run settings a study changes from a run's
defaults (short runs, a short evaluation: :data:`STUDY_DEFAULTS`) are also the spec's, so a
study started from Python without a configuration and one started from the command line run
the same settings. :meth:`StudySpec.run` takes the spec down: its grid of trials, the runner
(:func:`~.runner.run_study`), then the study's own rows, tables and plots.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from .. import validate
from ..config import RunConfig, check_given
from ..errors import InputError, StateError
from ..files import atomic_write, json_bytes, read_json
from ..train import evaluate, run_device
from .cost import check_cost
from .curves import curves_table, draw_curves, mean_curves
from .executors import LocalExecutor
from .runner import BaseModels, Executor, Failure, Trial, raise_if_failed, run_study, without_diverged
from .selection import (
    CHOSEN_FIELDS,
    FAMILY,
    NONE,
    SELECT_ON,
    Selection,
    check_rates,
    plan,
    rate_or_word,
    rate_text,
    selection_markdown,
)

# The run settings of a study that differ from a run's defaults: short runs, short evaluations.
STUDY_DEFAULTS: Mapping[str, Any] = {"steps": 20, "eval_tokens": 4096, "dev_tokens": 4096}


def option(
    help: str,
    default: Any,
    *,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    choices: Iterable[str] | None = None,
    nargs: str | None = "+",
    group: str | None = None,
) -> Any:
    """A field of a study spec with its default and `help`; its command-line option is `flag`
    (default ``--<name>``), reads each of its values (`nargs`; None: one value) with `parse`
    (default: the text) and accepts only `choices`; `group` is its help section."""
    metadata = {"help": help, "flag": flag, "parse": parse, "nargs": nargs, "group": group,
                "choices": None if choices is None else list(choices)}  # fmt: skip
    return field(default=default, metadata=metadata)


#: the equivalence margin of the noise and shots studies, stated before their runs (issue 26)
MARGIN = 0.1


def margin_option(default: float | None) -> Any:
    """The ``--margin`` field of a study spec: the equivalence margin in perplexity, stated in
    advance (:meth:`~qpa_qiskit.intervals.PairedDifference.equivalence`)."""
    return option(
        "equivalence margin in perplexity, stated in advance: each paired difference reads inside (its "
        "95% interval within ±margin), outside (wholly beyond it) or undecided",
        default,
        parse=float,
        nargs=None,
    )


def replace_default(spec: type, name: str, default: Any) -> Any:
    """The field `name` of the study spec `spec` with another default and the same help and
    option: for a study whose default differs (``lrs``: ``family`` in ``qpa study params``)."""
    inherited = next(f for f in dataclasses.fields(spec) if f.name == name)
    return field(default=default, metadata=inherited.metadata)


def flag(f: dataclasses.Field) -> str:
    """The command-line option of a spec field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def positive_float(text: str) -> float:
    """A shot factor from the command line: a positive number."""
    return validate.positive_number(float(text), "a shot factor")


def shot_factor_or_exact(text: str) -> float | None:
    """A shot factor from the command line, or ``exact`` (None: exact probabilities)."""
    return None if text.strip().lower() == "exact" else positive_float(text)


def noise_scale(text: str) -> float:
    """A noise scale from the command line: a number of at least 0."""
    return validate.number(float(text), "a noise scale", minimum=0.0)


@dataclass(frozen=True)
class StudySpec:
    """A study: its axes and settings (the fields), the run settings it changes from a run's
    defaults, and the steps from a configuration to its results (:meth:`run`). Subclasses set
    the class attributes and define :meth:`checked`, :meth:`trials`, :meth:`definition` and
    :meth:`report`."""

    NAME: ClassVar[str]  # the study's kind (recorded in study.json) and its command
    HELP: ClassVar[str]  # its command's one-line help
    OUT: ClassVar[str]  # its default folder, a time.strftime pattern
    # the run settings its grid sets, offered as no command-line option
    SET_BY_GRID: ClassVar[tuple[str, ...]] = ("method",)
    # the run settings it changes from a run's defaults
    CONFIG_DEFAULTS: ClassVar[Mapping[str, Any]] = STUDY_DEFAULTS

    seeds: tuple[int, ...] = option("seeds: one run per setting and seed", (0,), parse=int, group="study")
    lrs: tuple[float, ...] | str = option(
        "learning rates chosen from per setting on the dev split: each setting trained at each, its final "
        "runs at the one of lowest dev perplexity; 'family': each method family's standard grid "
        "(docs/studies.md); 'none': every run at --lr",
        "none", parse=rate_or_word, group="selection",
    )  # fmt: skip
    circuit_lrs: tuple[float, ...] | str = option(
        "the circuit's rates (--circuit-lr) chosen from with --lrs for the qpa-* settings whose circuit (or "
        "softmax logits) is trained; 'none': the circuit at --circuit-lr (default: at the chosen lr)",
        "none", parse=rate_or_word, group="selection",
    )  # fmt: skip
    select_on: str = option(
        "the seeds the rates are chosen on: first (the first seed; its run at the chosen rate is that "
        "seed's final run) or all (the mean over every seed; seeds x rates runs per setting)",
        "first", choices=SELECT_ON, nargs=None, group="selection",
    )  # fmt: skip

    def config_defaults(self) -> dict[str, Any]:
        """The run settings this study changes from a run's defaults."""
        return dict(self.CONFIG_DEFAULTS)

    def trained_methods(self) -> list[str] | None:
        """The methods its runs train (None: the configuration's own)."""
        return None

    def configuration(
        self, base: RunConfig | None = None, given: Mapping[str, Any] | None = None
    ) -> RunConfig:
        """The study's base configuration: `base` (default: a run's defaults) with the study's
        defaults, then the settings `given` (on the command line); a given setting that none of
        its runs' methods takes, or that the configuration makes meaningless (where its grid does
        not set what decides it), is refused."""
        given = dict(given or {})
        cfg = (base or RunConfig()).replace(**{**self.config_defaults(), **given})
        check_given(given, self.trained_methods() or [cfg.adapter.method], cfg, self.SET_BY_GRID)
        self._check_rates_given(given)
        return cfg

    def _check_rates_given(self, given: Mapping[str, Any]) -> None:
        """Refuse ``--lr`` beside a ``--lrs`` grid (``--circuit-lr`` beside ``--circuit-lrs``):
        every run then trains at a rate of the grid, and the one given is never read."""
        grids = (
            ("lr", "lrs", self.lrs, (NONE, FAMILY)),
            ("circuit_lr", "circuit_lrs", self.circuit_lrs, (NONE,)),
        )
        for name, grid_name, values, words in grids:
            if name not in given:
                continue
            grid = check_rates(values, grid_name, words)
            if grid == NONE:
                continue
            rates = "family" if grid == FAMILY else " ".join(map(rate_text, grid))
            which = "each method family's standard grid" if grid == FAMILY else "each rate of the grid"
            option, grid_option = "--" + name.replace("_", "-"), "--" + grid_name.replace("_", "-")
            raise InputError(
                f"{option} {given[name]:g} is never used: {grid_option} {rates} trains every setting at "
                f"{which} and keeps the rate of lowest dev perplexity. Drop {option}, or give {grid_option} "
                f"none (every run at {option})"
            )

    def run(
        self,
        cfg: RunConfig | None = None,
        out: str | Path | None = None,
        executor: Executor | None = None,
        log: Callable[[str], None] = print,
    ) -> Any:
        """Check the spec, build its trials from `cfg` (default :meth:`configuration`), run the
        unfinished ones in `out` (default a new time-stamped folder) on `executor` (default
        here, one after another), then write and return the study's rows or tables. Trials
        that failed raise :class:`~qpa_qiskit.errors.TrialsFailed` after that."""
        cfg = self.configuration() if cfg is None else cfg
        out = default_out(out, self.OUT)
        spec = self.checked(cfg)
        trials = spec.trials(cfg)  # every setting is checked before anything runs
        definition, executor = spec.definition(cfg), executor or LocalExecutor()
        selection = spec.selection(cfg, trials)
        check_cost(spec, cfg, log)  # over its QPU-time budget: refused here, before its folder
        if selection is None:
            results, failures = run_study(out, self.NAME, definition, trials, executor, log=log)
            total = len(trials)
        else:
            results, failures, total = spec._run_selected(out, selection, definition, executor, log)
        results, failures = without_diverged(results, failures)
        summary = spec.report(cfg, out, results, failures, log)
        write_curves(out, results, log)
        raise_if_failed(out, failures, total, summary)
        return summary

    def selection(self, cfg: RunConfig, trials: list[Trial] | None = None) -> Selection | None:
        """The learning-rate selection of this (checked) spec's `trials` (default: its grid on
        `cfg`), or None without one (``lrs`` and ``circuit_lrs`` both ``none``)."""
        trials = self.trials(cfg) if trials is None else trials
        return plan(trials, self.lrs, self.circuit_lrs, self.select_on, cfg)

    def _run_selected(
        self,
        out: Path,
        selection: Selection,
        definition: dict,
        executor: Executor,
        log: Callable[[str], None],
    ) -> tuple[list[dict], dict[str, Failure], int]:
        """The selection runs, the choice (``selection.json``, ``selection.md``), then every
        seed at the chosen rates (the selection's runs at those rates read back): the final
        results with their rates, the failures of both, and how many runs there are in all."""
        definition = selection.definition(definition)
        trials = selection.trials()
        seeds = "the first seed" if selection.select_on == "first" else "every seed"
        settings = len(selection.settings)
        log(f"learning-rate selection: {len(trials)} runs ({settings} settings, each rate on {seeds})")
        results, failures = run_study(out, self.NAME, definition, trials, executor, log=log)
        choices = selection.choose(results)
        record = selection.record(choices)
        write_json(out, "selection.json", record)
        text = selection_markdown(record)
        write_file(out, "selection.md", text + "\n")
        log("\n" + text + f"\n\nwritten: {out / 'selection.json'}, {out / 'selection.md'}")
        final = selection.trials_at(choices)
        names = {t.name for t in trials} | {t.name for t in final}
        if final:
            log(f"the final runs: {len(final)} at the chosen rates")
            results, final_failures = run_study(out, self.NAME, definition, final, executor, log=log)
            failures = {**failures, **final_failures}
        else:
            results = []
        return selection.annotate(results, choices), failures, len(names)

    def checked(self, cfg: RunConfig) -> StudySpec:
        """This spec with every value checked and every axis a list (errors name the option)."""
        raise NotImplementedError

    def trials(self, cfg: RunConfig) -> list[Trial]:
        """The grid: one trial per setting and seed."""
        raise NotImplementedError

    def definition(self, cfg: RunConfig) -> dict:
        """What identifies the study (``study.json``): the same definition resumes its folder."""
        raise NotImplementedError

    def report(
        self,
        cfg: RunConfig,
        out: Path,
        results: list[dict],
        failures: dict[str, Failure],
        log: Callable[[str], None],
    ) -> Any:
        """Aggregate the finished trials, write ``results.json`` and the tables and plots."""
        raise NotImplementedError


def grid_values(
    values: Any,
    name: str,
    check: Callable[[Any, str], Any] | None = None,
    *,
    option: str | None = None,
    allow_empty: bool = False,
) -> list:
    """The values of one grid axis of a study: a list (not a string, which would be read
    character by character), each value checked with `check`, none repeated. Errors name the
    keyword `name` and its command-line `option` (default ``--<name>``)."""
    label = f"{name} ({option or '--' + name.replace('_', '-')})"
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InputError(
            f"{label} must be a list of values, got {values!r}"
            + (f" (for one value: [{values!r}])" if isinstance(values, str) else "")
        )
    values = list(values)
    if check is not None:
        values = [check(v, name) for v in values]
    if not values and not allow_empty:
        raise InputError(f"{label} must list at least one value, got []")
    seen: list = []
    for v in values:
        if v in seen:
            raise InputError(f"{label} lists {v!r} more than once ({values!r}); give each value once")
        seen.append(v)
    return values


def parameter_list(value: Any, name: str, item: Callable[[Any], Any] = str) -> list:
    """A list parameter as a notebook or script may receive it (papermill's ``-p devices
    aer_noisy:brisbane`` gives a string, ``-p seeds 0`` an integer): a string is split at commas
    and spaces (never read character by character), one value becomes a list of one, and each
    item is converted with `item` (``int`` for seeds)."""
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    try:
        return [item(v) for v in value]
    except (TypeError, ValueError):
        kind = getattr(item, "__name__", "value")
        raise InputError(f"{name} must be a list of {kind} values (or one), got {value!r}") from None


def parameter_mapping(value: Any, name: str) -> dict:
    """A mapping parameter (settings by name): a dict, or its JSON/YAML text."""
    if isinstance(value, str):
        # lazy: PyYAML, only for a YAML file
        import yaml

        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError as exc:
            raise InputError(f"{name} must be a mapping of settings (JSON or YAML text): {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"{name} must be a mapping of settings, e.g. {{'chunk_size': 512}}; got {value!r}")
    return value


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def default_out(out, pattern: str) -> Path:
    """`out`, or a time-stamped new folder."""
    return Path(out or time.strftime(pattern))


def write_file(out: Path, name: str, text: str | bytes) -> None:
    """A file of the study folder, whole or not at all; a write that fails names the file."""
    try:
        atomic_write(out / name, text if isinstance(text, bytes) else text.encode())
    except OSError as exc:
        raise StateError(
            f"cannot write {out / name} ({type(exc).__name__}: {exc}); the runs are kept. Fix the "
            "permissions or free some space, then run the same command again (nothing is trained twice)"
        ) from None


def write_json(out: Path, name: str, data) -> None:
    """Strict JSON (a NaN or infinity is refused, naming where it is) in the study folder."""
    write_file(out, name, json_bytes(data, str(out / name), indent=2))


def check_tvd_samples(samples) -> int:
    """The shot samples averaged for a TVD measure: a positive integer (0 would average nothing)."""
    return validate.positive_int(samples, "tvd_samples (--tvd-samples)")


def config_without(cfg: RunConfig, fields) -> dict:
    """The configuration by section, less the fields a study's grid sets: its identity, so the
    same grid from a base configuration that differs only in those fields is the same study."""
    return {
        section: {k: v for k, v in values.items() if k not in fields}
        for section, values in cfg.to_dict().items()
    }


def check_seeds(seeds) -> list[int]:
    return grid_values(seeds, "seeds", lambda v, n: validate.integer(v, n, minimum=0, maximum=2**63 - 1))


def write_results(out: Path, cfg: RunConfig, seeds, rows, results, failures,
                  extra: dict[str, Any] | None = None) -> None:  # fmt: skip
    """``results.json``: the aggregated rows (and `extra`: further tables by name) and every
    finished run, sorted by name, with no timing (the file must not depend on the machine or
    the order the runs finished in)."""
    trials = sorted(({k: v for k, v in r.items() if k != "seconds_per_step"} for r in results),
                    key=lambda r: r["name"])  # fmt: skip
    summary = {"config": cfg.to_dict(), "seeds": seeds, "rows": rows, **(extra or {}), "trials": trials}
    write_json(out, "results.json", {**summary, "failed": sorted(failures)})


def base_result(out: Path, cfg: RunConfig, log: Callable[[str], None]) -> dict:
    """The base model's test perplexity and tokens scored under `cfg`'s evaluation, kept in
    ``base.json`` of the study folder (evaluated once: a resumed study reads it back)."""
    base_file = out / "base.json"
    if base_file.exists():
        return read_json(base_file, "the base model's result", "delete it to evaluate the base model again")
    loaded, texts = BaseModels(log).get(cfg)
    try:
        device = run_device(cfg)  # where the study's runs are evaluated
    except InputError:  # their device is on a cluster's nodes, not on this driver: scored here
        device = torch.device("cpu")
    model = loaded.model if device.type == "cpu" else loaded.fresh_copy().model.to(device)
    result = evaluate(model, loaded, cfg.eval, texts, precision=cfg.training.precision)
    base = {"perplexity": result["perplexity"], "tokens": result["tokens"]}
    write_json(out, "base.json", base)
    return base


def write_curves(out: Path, results: list[dict], log: Callable[[str], None]) -> bool:
    """``curves.md`` and ``curves.png`` in the study folder where its runs logged learning
    curves (``--eval-every``); False where none did."""
    curves = mean_curves(results)
    if not curves:
        return False
    write_file(out, "curves.md", curves_table(curves) + "\n")
    fig = figure((8, 5))
    draw_curves(fig.subplots(), curves)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    log(f"learning curves: {out / 'curves.md'}, {out / 'curves.png'}")
    return True


def cell(row: dict, key: str, digits: int) -> str:
    """`mean` or `mean ± std` (several seeds)."""
    text = f"{row[key]:.{digits}f}"
    return text + (f" ± {row[key + '_std']:.{digits}f}" if row["seeds"] > 1 else "")


def chosen_rates(runs: list[dict]) -> dict:
    """A row's chosen rates and their edge flags, from its setting's runs (they share them);
    nothing without a learning-rate selection."""
    return {k: runs[0][k] for k in CHOSEN_FIELDS if k in runs[0]} if runs else {}


def selected(rows: Iterable[dict]) -> bool:
    """The rows' rates were chosen on the dev split: their tables show them."""
    return any("lr" in r for r in rows)


def lr_cell(row: dict) -> str:
    """The chosen rates of a row: ``3e-03``, ``1e-02 (edge)``, with a qpa-* row's circuit rate
    (``3e-03, circuit 1e-03 (edge)``); ``-`` for a row with no run (the base model)."""
    if "lr" not in row:
        return "-"
    text = rate_text(row["lr"]) + (" (edge)" if row.get("lr_edge") else "")
    if row.get("circuit_lr") is not None:
        text += f", circuit {rate_text(row['circuit_lr'])}" + (
            " (edge)" if row.get("circuit_lr_edge") else ""
        )
    return text


def figure(size: tuple[float, float]):
    """A matplotlib Figure drawn without pyplot: saving it never touches the caller's
    backend or open figures (a notebook that runs a study keeps its inline plots)."""
    # lazy: matplotlib (seconds), only when a plot is drawn
    from matplotlib.figure import Figure

    return Figure(figsize=size)
