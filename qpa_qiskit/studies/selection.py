"""Learning rates chosen per setting on the dev split, for every study.

One learning rate for every method favours the methods it happens to suit: a study with a
selection (``--lrs``, ``--circuit-lrs``) trains each of its settings at each rate of a grid,
chooses per setting the rate with the lowest dev perplexity, and runs its final runs (every
seed) at that rate. The test split plays no part in the choice.

* The grid: the rates given, or ``family``: a small standard grid per method family
  (:data:`FAMILY_LRS`); the qpa-* settings whose circuit (or softmax logits) is trained also
  over the circuit's own rates (``circuit_lr``), as pairs with the rest's rate.
* The selection seeds: the first seed only (``first``, the default: a setting costs
  rates + seeds - 1 runs, the chosen rate's run is that seed's final run), or every seed
  (``all``: rates x seeds runs, the choice made on the mean over seeds, independent of one
  seed's luck).
* The choice: the lowest mean dev perplexity over the selection seeds; a tie goes to the
  smaller rate (then the smaller circuit rate). A choice at the smallest or largest rate of a
  grid of two or more is flagged: the best rate may lie outside the grid.
* Widening (``--widen-edges``): a setting whose lr is chosen at its grid's edge is trained at
  one more rate beyond it (:func:`next_rate`, on the selection seeds and at its chosen circuit
  rate) and chosen again over the widened grid, once: a choice at the new edge stays flagged.
  Only the lr widens; a circuit rate at its edge stays flagged. The rate added follows from the
  stored results alone, so a resumed study adds the same runs.

This module is the selection's logic on trials and result dicts only (no files, no runs):
:func:`~.pipeline.run_pipeline` runs its trials and writes what :meth:`Selection.record` and
:func:`selection_markdown` give (``selection.json``, ``selection.md``).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .. import validate
from ..choices import TRAINED_SOURCES, split_method
from ..errors import InputError, StateError
from ..train.run_config import RunConfig
from .runner import Trial

NONE = "none"  # no selection: every run at --lr (the circuit at --circuit-lr)
FAMILY = "family"  # the grid of each setting's method family, FAMILY_LRS
SELECT_ON = ("first", "all")

# The standard learning-rate grid of each method family (--lrs family, the default of
# `qpa study params`): three rates a factor ~3 apart around the rate each family is usually
# trained at. VeRA and IA3 train few parameters (scaling vectors) and need larger steps; the
# generated methods (qpa-*, lowrank-*) train a mapping network whose outputs are every weight
# of the adapter, so smaller ones. These grids are a starting point, not measured optima.
FAMILY_LRS: Mapping[str, tuple[float, ...]] = {
    "lora": (1e-3, 3e-3, 1e-2),
    "dora": (1e-3, 3e-3, 1e-2),
    "prefix": (1e-3, 3e-3, 1e-2),
    "ffa": (1e-3, 3e-3, 1e-2),
    "vera": (3e-3, 1e-2, 3e-2),
    "ia3": (3e-3, 1e-2, 3e-2),
    "qpa": (3e-4, 1e-3, 3e-3),  # every qpa-* method
    "lowrank": (3e-4, 1e-3, 3e-3),  # every lowrank-* method, like the qpa-* ones
}

# what each trial's result carries once the rates are chosen (the rows of the tables too)
CHOSEN_FIELDS = ("lr", "circuit_lr", "lr_edge", "circuit_lr_edge")


def family(method: str) -> str:
    """The family of `method` in :data:`FAMILY_LRS`: its generator kind, else its tuner."""
    kind, tuner = split_method(method)
    return kind or tuner


def family_lrs(method: str) -> list[float]:
    """The standard grid of `method`'s family."""
    return list(FAMILY_LRS[family(method)])


def rate_or_word(text: str) -> float | str:
    """One value of ``--lrs`` / ``--circuit-lrs`` on the command line: a number, or a word
    (checked with the rest by :func:`check_rates`)."""
    try:
        return float(text)
    except ValueError:
        return text.strip().lower()


def check_rates(values: Any, name: str, words: Iterable[str]) -> str | list[float]:
    """A rate grid: one of `words` (alone; None is ``none``), or positive numbers, each once.
    Errors name the keyword `name`, its option and the values it accepts."""
    words = tuple(words)
    label = f"{name} (--{name.replace('_', '-')})"
    accepted = f"positive numbers (learning rates), or one word: {', '.join(words)}"
    if values is None:
        values = [NONE]
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, Iterable):
        values = [values]
    values = list(values)
    if not values:
        raise InputError(f"{label} must list at least one rate, got []; give {accepted}")
    texts = [v.strip().lower() for v in values if isinstance(v, str)]
    if texts:
        if len(values) > 1:
            raise InputError(f"{label} mixes a word with other values ({values!r}); give {accepted}")
        if texts[0] not in words:
            raise InputError(f"{label}: unknown word {values[0]!r}; give {accepted}")
        return texts[0]
    rates = []
    for v in values:
        if isinstance(v, bool):
            raise InputError(f"{label} must be {accepted}; got {v!r}")
        rate = validate.positive_number(v, f"{label}: each rate")
        if rate in rates:
            raise InputError(f"{label} lists {v!r} more than once ({values!r}); give each rate once")
        rates.append(rate)
    return rates


def takes_circuit_lr(cfg: RunConfig) -> bool:
    """A run with a circuit rate of its own: a qpa-* method whose probabilities are trained."""
    return cfg.adapter.generator_kind == "qpa" and cfg.generator.probabilities in TRAINED_SOURCES


def _ladder_step(rate: float, up: bool) -> float | None:
    """The next rate of the 1-3-10 ladder beyond `rate` (None: `rate` is not on it), written
    as a literal would be (``float("1e-2")``), so its name and text match a grid's."""
    exponent = math.floor(math.log10(rate))
    for e in (exponent - 1, exponent, exponent + 1):
        for m in (1, 3):
            if math.isclose(rate, float(f"{m}e{e}"), rel_tol=1e-9):
                if up:
                    m, e = (3, e) if m == 1 else (1, e + 1)
                else:
                    m, e = (1, e) if m == 3 else (3, e - 1)
                return float(f"{m}e{e}")
    return None


def next_rate(grid: Iterable[float], rate: float) -> float:
    """The rate one step beyond `rate`, the smallest or largest of `grid` (two or more rates):
    the next rate of the 1-3-10 ladder where `rate` is on it, else `rate` times (or divided by)
    the ratio of the grid's two rates at that edge, rounded to 12 significant digits (so a
    rate prints and names its run as a literal would)."""
    values = sorted(grid)
    up = rate == values[-1]
    step = _ladder_step(rate, up)
    if step is not None:
        return step
    value = rate * values[-1] / values[-2] if up else rate * values[0] / values[1]
    return float(f"{value:.12g}")


def rate_text(rate: float) -> str:
    """A rate in the tables: ``3e-03``, as many digits as it needs (``1.5e-03``)."""
    for digits in range(7):
        text = f"{rate:.{digits}e}"
        if float(text) == rate:
            return text
    return f"{rate:e}"


@dataclass(frozen=True)
class Setting:
    """One setting of a study (its trials differ only in the seed) and its rate grids."""

    label: str  # the first seed's trial name, less its seed
    axes: dict[str, Any]  # the trials' axes, less the seed
    trials: tuple[Trial, ...]  # one per seed, in the study's order
    lrs: tuple[float, ...]
    circuit_lrs: tuple[float | None, ...]  # (None,): no circuit rate chosen (the config's)
    name_lr: bool  # its trial names carry the rate (a grid of rates was given)

    def candidates(self) -> list[tuple[float, float | None]]:
        return [(lr, clr) for lr in self.lrs for clr in self.circuit_lrs]

    def trial(self, trial: Trial, lr: float, circuit_lr: float | None) -> Trial:
        """`trial` at these rates: its name carries them, its axes and configuration set them."""
        name = trial.name + (f"-lr{lr:g}" if self.name_lr else "")
        changes: dict[str, Any] = {"lr": lr}
        axes = {**trial.axes, "lr": lr}
        if circuit_lr is not None:
            name += f"-clr{circuit_lr:g}"
            changes["circuit_lr"] = circuit_lr
            axes["circuit_lr"] = circuit_lr
        return replace(trial, name=name, config=trial.config.replace(**changes), axes=axes)


@dataclass(frozen=True)
class Choice:
    """The rates chosen for one setting, and every candidate's dev perplexity."""

    lr: float
    circuit_lr: float | None
    lr_edge: bool
    circuit_lr_edge: bool
    candidates: tuple[dict[str, Any], ...]
    added_lr: float | None = None  # the rate widening added to the grid (None: not widened)


def _edge(value: float | None, grid: tuple) -> bool:
    """The value is the smallest or largest of a grid of two or more: the best may lie outside."""
    values = [v for v in grid if v is not None]
    return value is not None and len(values) >= 2 and value in (min(values), max(values))


def _finite(value: float) -> float | None:
    """A dev perplexity as recorded: None for a diverged run (strict JSON has no infinity)."""
    return value if math.isfinite(value) else None


def _rank(value: float | None) -> float:
    return math.inf if value is None else value


def _order(row: dict) -> tuple:
    """The choice's rule: the lowest mean dev perplexity, then the smaller lr, circuit lr."""
    return _rank(row["dev_perplexity"]), row["lr"], row["circuit_lr"] or 0.0


def _row(lr: float, clr: float | None, dev: Mapping[int, float]) -> dict[str, Any]:
    """A candidate as recorded: its mean dev perplexity over the selection seeds and by seed."""
    by_seed = dict(sorted(dev.items()))
    mean = statistics.fmean(by_seed.values())  # infinite where a run diverged: ranked last
    return {"lr": lr, "circuit_lr": clr, "dev_perplexity": _finite(mean),
            "by_seed": {str(s): _finite(v) for s, v in by_seed.items()}}  # fmt: skip


def choose(setting: Setting, dev: Mapping[tuple[float, float | None], Mapping[int, float]]) -> Choice:
    """The candidate of `setting` with the lowest mean dev perplexity over its selection
    seeds (`dev`: (lr, circuit lr) -> seed -> dev perplexity); a tie goes to the smaller lr,
    then the smaller circuit lr."""
    rows = [_row(lr, clr, dev[(lr, clr)]) for lr, clr in setting.candidates()]
    best = min(rows, key=_order)
    return Choice(best["lr"], best["circuit_lr"], _edge(best["lr"], setting.lrs),
                  _edge(best["circuit_lr"], setting.circuit_lrs), tuple(rows))  # fmt: skip


def rechoose(setting: Setting, choice: Choice, lr: float, dev: Mapping[int, float]) -> Choice:
    """The choice of `setting` again, over its grid widened by `lr` (trained at `choice`'s
    circuit rate; `dev`: seed -> dev perplexity), by the same rule; its lr edge flag is the
    one on the widened grid (at the new edge: still at the edge, not widened again)."""
    added = {**_row(lr, choice.circuit_lr, dev), "widened": True}
    rows = (*choice.candidates, added)
    best = min(rows, key=_order)
    grid = (*setting.lrs, lr)
    return Choice(best["lr"], best["circuit_lr"], _edge(best["lr"], grid), choice.circuit_lr_edge, rows,
                  added_lr=lr)  # fmt: skip


@dataclass(frozen=True)
class Selection:
    """The selection of a study: its settings with their grids, the selection seeds, the
    selection trials, the choice from their results and the final trials."""

    lrs: str | list[float]
    circuit_lrs: str | list[float]
    select_on: str
    settings: tuple[Setting, ...]
    widen_edges: bool = False  # a choice at its lr grid's edge: one rate more, chosen again

    def seeds_of(self, setting: Setting) -> tuple[Trial, ...]:
        """The setting's trials whose seeds the selection runs on."""
        return setting.trials[:1] if self.select_on == "first" else setting.trials

    def trials(self) -> list[Trial]:
        """Every setting at every candidate, at the selection seeds: selection runs, which score
        their dev split only (the final runs among them are scored on test once chosen)."""
        return [
            replace(s.trial(t, lr, clr), final=False)
            for s in self.settings
            for lr, clr in s.candidates()
            for t in self.seeds_of(s)
        ]

    def choose(self, results: Iterable[dict]) -> dict[str, Choice]:
        """The choice of every setting whose selection runs all finished, by setting label."""
        by_name = {r["name"]: r for r in results}
        choices = {}
        for setting in self.settings:
            dev = self._dev(setting, by_name)
            if dev is not None:
                choices[setting.label] = choose(setting, dev)
        return choices

    def widening(self, choices: Mapping[str, Choice]) -> dict[str, float]:
        """The rate added to each setting whose lr is chosen at its grid's edge (by label):
        none without ``widen_edges``. `choices`: those on the grids (:meth:`choose`)."""
        if not self.widen_edges:
            return {}
        return {
            s.label: next_rate(s.lrs, c.lr)
            for s in self.settings
            if (c := choices.get(s.label)) is not None and c.lr_edge
        }

    def widened_trials(self, choices: Mapping[str, Choice]) -> list[Trial]:
        """The selection runs widening adds: each setting at its edge, at the rate beyond it and
        its chosen circuit rate, on the selection seeds."""
        added = self.widening(choices)
        return [
            replace(s.trial(t, added[s.label], choices[s.label].circuit_lr), final=False)
            for s in self.settings
            if s.label in added
            for t in self.seeds_of(s)
        ]

    def rechoose(self, choices: Mapping[str, Choice], results: Iterable[dict]) -> dict[str, Choice]:
        """The choices after widening (`choices`: those on the grids): chosen again over the
        widened grid where a rate was added and its runs all finished, left out while one has
        not, the same elsewhere."""
        added, by_name = self.widening(choices), {r["name"]: r for r in results}
        out = {}
        for s in self.settings:
            if (c := choices.get(s.label)) is None:
                continue
            if s.label not in added:
                out[s.label] = c
                continue
            candidate = (added[s.label], c.circuit_lr)
            dev = self._dev(s, by_name, [candidate])
            if dev is not None:
                out[s.label] = rechoose(s, c, added[s.label], dev[candidate])
        return out

    def _dev(
        self, setting: Setting, by_name: Mapping[str, dict], candidates: list | None = None
    ) -> dict | None:
        """(lr, circuit lr) -> seed -> dev perplexity of the setting's selection runs (of
        `candidates`, default its grid's); None while one of them has not finished."""
        dev: dict[tuple[float, float | None], dict[int, float]] = {}
        for lr, clr in setting.candidates() if candidates is None else candidates:
            for trial in self.seeds_of(setting):
                result = by_name.get(setting.trial(trial, lr, clr).name)
                if result is None:
                    return None
                value = math.inf if result.get("diverged") else result.get("dev_perplexity")
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise StateError(
                        f"the run {result['name']} records no dev perplexity (its result says {value!r}); "
                        "a selection needs a dev split: delete its folder to train it again"
                    )
                dev.setdefault((lr, clr), {})[trial.axes["seed"]] = float(value)
        return dev

    def trials_at(self, choices: Mapping[str, Choice]) -> list[Trial]:
        """Every seed of every chosen setting at its chosen rates (the selection runs of those
        rates are these trials, so they are read back, not trained again)."""
        return [
            s.trial(t, choices[s.label].lr, choices[s.label].circuit_lr)
            for s in self.settings
            if s.label in choices
            for t in s.trials
        ]

    def annotate(self, results: list[dict], choices: Mapping[str, Choice]) -> list[dict]:
        """The final results, each with its setting's rates (a qpa-* run's circuit rate: the one
        chosen, else its configuration's; None: at lr) and their edge flags."""
        final = {
            s.trial(t, c.lr, c.circuit_lr).name: (c, t.config)
            for s in self.settings
            if (c := choices.get(s.label)) is not None
            for t in s.trials
        }
        out = []
        for r in results:
            c, config = final[r["name"]]
            circuit_lr = c.circuit_lr if c.circuit_lr is not None else config.training.circuit_lr
            out.append({**r, "lr": c.lr, "circuit_lr": circuit_lr, "lr_edge": c.lr_edge,
                        "circuit_lr_edge": c.circuit_lr_edge})  # fmt: skip
        return out

    def definition(self, definition: dict) -> dict:
        """The study's definition with its selection: the rates chosen are left out of the
        configuration (``--lr`` with a grid, ``--circuit-lr`` with a circuit grid), the grids,
        the family grids (when used) and the selection seeds are in."""
        dropped = ({"lr"} if self.lrs != NONE else set()) | (
            {"circuit_lr"} if self.circuit_lrs != NONE else set()
        )
        out = dict(definition)
        config = out.get("config")
        if isinstance(config, dict) and isinstance(config.get("training"), dict):
            training = {k: v for k, v in config["training"].items() if k not in dropped}
            out["config"] = {**config, "training": training}
        selection: dict[str, Any] = {
            "lrs": self.lrs,
            "circuit_lrs": self.circuit_lrs,
            "select_on": self.select_on,
        }
        if self.lrs == FAMILY:
            selection["family_lrs"] = {k: list(v) for k, v in FAMILY_LRS.items()}
        if self.widen_edges:  # written only when on: every folder made without it keeps its identity
            selection["widen_edges"] = True
        out["selection"] = selection
        return out

    def record(self, choices: Mapping[str, Choice]) -> dict:
        """``selection.json``: the grids, and per setting every candidate's dev perplexity (mean
        over the selection seeds, and by seed), the rates chosen and their edge flags (None for a
        setting whose selection runs did not all finish). With ``widen_edges``: per setting
        the rate widening added (``added_lr``) and the grid as widened (``lrs_widened``), the
        candidates it added marked ``widened``, and the choice and flags after widening."""
        settings = []
        for s in self.settings:
            c = choices.get(s.label)
            widened = {}
            if self.widen_edges:
                added = None if c is None else c.added_lr
                grid = sorted((*s.lrs, added)) if added is not None else list(s.lrs)
                widened = {"added_lr": added, "lrs_widened": grid}
            settings.append({
                "setting": s.label,
                "axes": s.axes,
                "lrs": list(s.lrs),
                "circuit_lrs": None if s.circuit_lrs == (None,) else list(s.circuit_lrs),
                "selection_seeds": [t.axes["seed"] for t in self.seeds_of(s)],
                "candidates": None if c is None else list(c.candidates),
                "chosen": None if c is None else {k: getattr(c, k) for k in CHOSEN_FIELDS},
                **widened,
            })  # fmt: skip
        return {"lrs": self.lrs, "circuit_lrs": self.circuit_lrs, "select_on": self.select_on,
                **({"widen_edges": True} if self.widen_edges else {}),
                "split": "dev", "measure": "dev_perplexity", "settings": settings}  # fmt: skip


def plan(
    trials: list[Trial], lrs: Any, circuit_lrs: Any, select_on: str, cfg: RunConfig, widen_edges: Any = False
) -> Selection | None:
    """The selection of a study of `trials` (one per setting and seed), or None without one
    (``lrs`` and ``circuit_lrs`` both ``none``). Refuses bad grids, a circuit grid in a study
    without a trained circuit, widening without an lr grid, and a selection without a dev split."""
    lrs = check_rates(lrs, "lrs", (NONE, FAMILY))
    circuit_lrs = check_rates(circuit_lrs, "circuit_lrs", (NONE,))
    select_on = validate.one_of(select_on, "select_on (--select-on)", SELECT_ON)
    if not isinstance(widen_edges, bool):
        raise InputError(f"widen_edges (--widen-edges) must be True or False, got {widen_edges!r}")
    if widen_edges and lrs == NONE:
        raise InputError(
            "widen_edges (--widen-edges) widens the learning-rate grid (--lrs) where a setting's choice sits "
            "at its edge, and this study has none (--lrs none); give --lrs (rates, or family), or drop "
            "--widen-edges"
        )
    if lrs == NONE and circuit_lrs == NONE:
        return None
    if circuit_lrs != NONE and not any(takes_circuit_lr(t.config) for t in trials):
        methods = ", ".join(dict.fromkeys(t.config.adapter.method for t in trials))
        raise InputError(
            f"circuit_lrs (--circuit-lrs) are the rates of a qpa-* method's trained circuit (or softmax "
            f"logits); no setting of this study has one (methods {methods}). Drop --circuit-lrs, or add a "
            "qpa-* method"
        )
    if cfg.task.dev_share is None or any(t.config.task.dev_share is None for t in trials):
        raise InputError(
            "a learning-rate selection (--lrs, --circuit-lrs) chooses on the dev split, and this study's "
            "configuration has none (dev_share None: a configuration from before the dev split); give "
            "--dev-share (the share of the training text held out, in (0, 0.5], default 0.1), or drop the "
            "selection (--lrs none, --circuit-lrs none)"
        )
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        axes = {k: v for k, v in trial.axes.items() if k != "seed"}
        groups.setdefault(json.dumps(axes, sort_keys=True, default=str), []).append(trial)
    settings = []
    for group in groups.values():
        first = group[0]
        seed = first.axes.get("seed")
        label = first.name.removesuffix(f"-s{seed}") if len(group) > 1 else first.name
        if lrs == NONE:
            grid: tuple[float, ...] = (first.config.training.lr,)
        elif lrs == FAMILY:
            grid = tuple(family_lrs(first.config.adapter.method))
        else:
            grid = tuple(lrs)
        circuit: tuple[float | None, ...] = (None,)
        if circuit_lrs != NONE and takes_circuit_lr(first.config):
            circuit = tuple(circuit_lrs)
        axes = {k: v for k, v in first.axes.items() if k != "seed"}
        settings.append(Setting(label, axes, tuple(group), grid, circuit, name_lr=lrs != NONE))
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels):
        raise InputError(f"two settings of the study share a name ({labels}); give each grid value once")
    return Selection(lrs, circuit_lrs, select_on, tuple(settings), widen_edges)


def selection_markdown(record: dict) -> str:
    """``selection.md``: per setting every candidate's dev perplexity (those widening added
    marked), the one chosen, and a warning where it is at the edge of its grid."""
    seeds = "the first seed" if record["select_on"] == "first" else "every seed (mean over seeds)"
    lines = [
        f"Learning rates chosen per setting on the dev split: the lowest dev perplexity on {seeds}; "
        "a tie goes to the smaller rate. An edge choice (the smallest or largest rate of its grid) "
        "means the grid was too narrow: the best rate may lie outside it.",
        "",
        "| setting | lr | circuit lr | dev perplexity | chosen |",
        "|---|---|---|---|---|",
    ]
    if record.get("widen_edges"):
        lines[1:1] = [
            "",
            "Widened once (--widen-edges): a setting whose lr was chosen at its grid's edge was trained at "
            "one more rate beyond it (the next of 1-3-10, else the grid's ratio at that edge) and chosen "
            "again; a choice at the new edge is flagged, not widened again. Only the lr widens.",
        ]
    edges: list[str] = []
    for s in record["settings"]:
        if s["candidates"] is None:
            lines.append(
                f"| {s['setting']} | - | - | - | not chosen: its selection runs did not all finish |"
            )
            continue
        lines += [_candidate_line(s, c, edges) for c in s["candidates"]]
    if edges:
        lines += ["", f"At the edge of the grid (widen it): {', '.join(edges)}."]
    return "\n".join(lines)


def _candidate_line(setting: dict, c: dict, edges: list[str]) -> str:
    """One candidate's row of ``selection.md``; the setting's label joins `edges` where its
    choice is at an edge."""
    chosen, marks = setting["chosen"], []
    if c.get("widened"):
        marks.append("added by widening")
    if chosen and (c["lr"], c["circuit_lr"]) == (chosen["lr"], chosen["circuit_lr"]):
        widened = setting.get("added_lr") is not None
        flags = [
            k for k, on in (("lr", chosen["lr_edge"]), ("circuit lr", chosen["circuit_lr_edge"])) if on
        ]
        text = f"{' and '.join(flags)} at the grid's edge"
        if widened and chosen["lr_edge"]:  # the circuit rate's grid is never widened
            circuit = ", circuit lr at the grid's edge" if len(flags) > 1 else ""
            text = "lr at the edge after widening" + circuit
        marks.append("**chosen**" + (f" ({text})" if flags else ""))
        if flags:
            once = " (after widening once)" if widened and chosen["lr_edge"] else ""
            edges.append(setting["setting"] + once)
    clr = "-" if c["circuit_lr"] is None else rate_text(c["circuit_lr"])
    dev = "diverged" if c["dev_perplexity"] is None else f"{c['dev_perplexity']:.3f}"
    return f"| {setting['setting']} | {rate_text(c['lr'])} | {clr} | {dev} | {'; '.join(marks)} |"
