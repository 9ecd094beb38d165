"""The study contract: a study is a :class:`StudySpec`, its options and its grid's values.

A study is a frozen dataclass whose fields are its grid's axes and its own settings, each with
its default and help written once (:func:`option`): Python callers construct it, and
``qpa compare`` / ``qpa study <name>`` make one command-line option per field from it
(:mod:`qpa_qiskit.cli.runs`). The run settings a study changes from a run's defaults (short
runs, a short evaluation: :data:`STUDY_DEFAULTS`) are also the spec's, so a study started from
Python without a configuration and one started from the command line run the same settings.

A subclass says what is its own: its checks (:meth:`StudySpec.checked`), its grid
(:meth:`~StudySpec.trials`), its identity (:meth:`~StudySpec.definition`) and its report
(:meth:`~StudySpec.report`). :meth:`StudySpec.run` takes it down the one pipeline every study
shares (:func:`.pipeline.run_pipeline`), and :meth:`StudySpec.function` makes its Python entry
point (``study_shots = ShotsStudy.function("study_shots")``).

The grid's values are checked here too (:func:`grid_values`, :func:`check_seeds`, ...), with
errors that name the keyword and its command-line option.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .. import validate
from ..errors import InputError
from ..train.run_config import RunConfig, check_given
from .curves import setting_label
from .pipeline import run_pipeline
from .runner import Executor, Failure, Trial
from .selection import FAMILY, NONE, SELECT_ON, Selection, check_rates, plan, rate_or_word, rate_text

# The run settings of a study that differ from a run's defaults: short runs, short evaluations.
STUDY_DEFAULTS: Mapping[str, Any] = {"steps": 20, "eval_tokens": 4096, "dev_tokens": 4096}


# --------------------------------------------------------------------------- options
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


# --------------------------------------------------------------------------- the contract
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
    widen_edges: bool = option(
        "widen the --lrs grid once where a setting's chosen lr sits at its edge: one more rate beyond it "
        "(the next of 1-3-10, else the grid's ratio there) on the selection seeds, then chosen again; a "
        "choice at the new edge stays flagged (docs/studies.md)",
        False, nargs=None, group="selection",
    )  # fmt: skip

    @classmethod
    def function(cls, name: str) -> Callable[..., Any]:
        """The study's Python entry point, `name`\\ (cfg=None, out=None, \\*, executor=None,
        log=print, \\*\\*axes): the spec of `axes` (its fields) run on `cfg` (:meth:`run`),
        returning what its :meth:`report` returns."""

        def run_study(cfg: RunConfig | None = None, out: str | Path | None = None, *,
                      executor: Executor | None = None, log: Callable[[str], None] = print,
                      **axes: Any) -> Any:  # fmt: skip
            return cls(**axes).run(cfg, out, executor, log)

        run_study.__name__ = run_study.__qualname__ = name
        run_study.__module__ = cls.__module__
        run_study.__doc__ = f":class:`{cls.__name__}` of `axes` (its fields) run on `cfg`: what it reports."
        return run_study

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
        here, one after another), then write and return the study's rows or tables
        (:func:`.pipeline.run_pipeline`). Trials that failed raise
        :class:`~qpa_qiskit.errors.TrialsFailed` after that."""
        return run_pipeline(self, cfg, out, executor, log)

    def selection(self, cfg: RunConfig, trials: list[Trial] | None = None) -> Selection | None:
        """The learning-rate selection of this (checked) spec's `trials` (default: its grid on
        `cfg`), or None without one (``lrs`` and ``circuit_lrs`` both ``none``)."""
        trials = self.trials(cfg) if trials is None else trials
        return plan(trials, self.lrs, self.circuit_lrs, self.select_on, cfg, self.widen_edges)

    def checked(self, cfg: RunConfig) -> StudySpec:
        """This spec with every value checked and every axis a list (errors name the option)."""
        raise NotImplementedError

    def trials(self, cfg: RunConfig) -> list[Trial]:
        """The grid: one trial per setting and seed."""
        raise NotImplementedError

    def definition(self, cfg: RunConfig) -> dict:
        """What identifies the study (``study.json``): the same definition resumes its folder."""
        raise NotImplementedError

    def curve_label(self, axes: dict) -> str:
        """A setting's name in ``curves.md`` and ``curves.png``, from its trials' `axes`: a study
        names it as its own table does (:func:`with_rates`), the raw axes here."""
        return setting_label(axes)

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


def with_rates(label: str, axes: dict) -> str:
    """A setting's curve `label` with the rates chosen for it on the dev split, which its final
    runs' `axes` carry (``lora r=1 on q_proj,v_proj (lr 1e-02)``); `label` as it is without a
    selection."""
    rates = [f"{name} {rate_text(axes[key])}" for key, name in (("lr", "lr"), ("circuit_lr", "circuit"))
             if axes.get(key) is not None]  # fmt: skip
    return label + (f" ({', '.join(rates)})" if rates else "")


# --------------------------------------------------------------------------- the grid's values
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


def check_seeds(seeds) -> list[int]:
    return grid_values(seeds, "seeds", lambda v, n: validate.integer(v, n, minimum=0, maximum=2**63 - 1))


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
