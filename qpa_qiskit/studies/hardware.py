"""``qpa study hardware``: what a QPA run would cost on a QPU, and what the cheaper gradients
cost in perplexity.

QPA-LoRA with its circuit on a shot-based stand-in for the device (``aer_noisy``, the
noise-aware layout) for each gradient setting: the parameter-shift rule (2P + 1 parameter sets
a step), SPSA with K directions (1 + 2K sets), the shift rule every K steps (the mapping trains
between them on the last probabilities), and the circuit frozen at its initial angles and
measured once per run; at each shot factor and generator (ours, and the published preset),
for every seed. Per setting: test perplexity, its paired difference from the shift rule at the
largest shot factor with its t-based 95% interval and the reading against a margin stated in
advance, and the run's QPU seconds on the device by the cost model (:mod:`qpa_qiskit.train.cost`)
beside the IBM Open Plan's 10 minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from .. import validate
from ..backends.cost import OPEN_PLAN_SECONDS
from ..errors import InputError
from ..intervals import LEGEND, PairedDifference
from ..train.cost import project
from ..train.run_config import RunConfig
from .report import cell, mean_std, write_file, write_results
from .runner import Failure, Trial
from .spec import (
    MARGIN,
    STUDY_DEFAULTS,
    StudySpec,
    check_seeds,
    grid_values,
    margin_option,
    option,
    positive_float,
    with_rates,
)

GENERATORS: dict[str, dict[str, Any]] = {"default": {}, "paper": {"preset": "paper"}}
SETTING_FORMS = "shift, spsa-K (K directions), every-K (the circuit every K steps) or frozen-once"


def setting_changes(name: str) -> dict[str, Any]:
    """The run settings of a gradient setting named on the command line (:data:`SETTING_FORMS`)."""
    text = str(name).strip().lower()
    if text == "shift":
        return {}
    if text == "frozen-once":
        # the frozen circuit is not trained: it has no rate of its own
        return {"probabilities": "frozen", "circuit_lr": None}
    kind, _, count = text.partition("-")
    if kind in ("spsa", "every") and count.isdigit() and int(count) >= 1:
        return (
            {"gradient": "spsa", "spsa_samples": int(count)}
            if kind == "spsa"
            else {"circuit_every": int(count)}
        )
    raise InputError(f"gradient setting {name!r} is not one of {SETTING_FORMS}")


def _setting(value: Any, name: str) -> str:
    setting_changes(value)
    return str(value).strip().lower()


def qpu_cost(run) -> dict[str, Any]:
    """The run's projected QPU seconds on its ``cost_as`` device (else its own), by the cost
    model (:func:`~qpa_qiskit.train.cost.project`), with the parameter sets it submits."""
    cost = project(run.cfg, run.model.generator.circuit)
    if not cost.costs_qpu_time:
        raise InputError(
            f"the hardware study projects each run's QPU cost, and this run has none: {cost.reason}"
        )
    sets = sum(submission.sets * times for submission, times, _ in cost.counts())
    return {"qpu_seconds": cost.total_seconds(), "qpu_device": cost.device, "sets_per_run": sets}


@dataclass(frozen=True)
class HardwareStudy(StudySpec):
    """QPA-LoRA on a shot-based stand-in for an IBM device for every gradient setting, shot
    factor, generator and seed: test perplexity against the shift rule at the largest shot
    factor, paired by seed, and each run's QPU seconds on the device by the cost model."""

    NAME: ClassVar[str] = "hardware"
    HELP: ClassVar[str] = "gradient settings x shot factor x generator: perplexity and QPU cost"
    OUT: ClassVar[str] = "runs/study-hardware-%Y%m%d-%H%M%S"
    SET_BY_GRID: ClassVar[tuple[str, ...]] = (
        "method", "shots_factor", "gradient", "spsa_samples", "circuit_every", "probabilities", "preset",
    )  # fmt: skip
    CONFIG_DEFAULTS: ClassVar[dict[str, Any]] = {
        **STUDY_DEFAULTS,
        "steps": 30,
        "backend": "aer_noisy:fake_torino",
        "cost_as": "ibm:fake_torino",
        "circuit_lr": 0.05,
    }

    settings: tuple[str, ...] = option(
        f"gradient settings: {SETTING_FORMS}", ("shift", "spsa-1", "spsa-4", "every-10", "frozen-once")
    )
    shots_factors: tuple[float, ...] = option(
        "shot factors c: n_shot = c 2^N (the paired reference is shift at the largest)", (1, 20),
        parse=positive_float,
    )  # fmt: skip
    generators: tuple[str, ...] = option(
        "generators: default (ours) and paper (the published preset)", tuple(GENERATORS), choices=GENERATORS
    )
    seeds: tuple[int, ...] = option("seeds: one run per setting and seed", (0, 1, 2, 3, 4), parse=int,
                                    group="study")  # fmt: skip
    margin: float = margin_option(MARGIN)

    def checked(self, cfg: RunConfig) -> HardwareStudy:
        if cfg.backend.shots_factor is not None:
            raise InputError("the study sets the shot factor per run (--shots-factors); drop --shots-factor")
        settings = grid_values(self.settings, "settings", _setting)
        if "shift" not in settings:
            raise InputError("settings must include shift: every other setting is compared with it")
        shots = grid_values(self.shots_factors, "shots_factors", validate.positive_number)
        generators = grid_values(
            self.generators, "generators", lambda g, n: validate.one_of(g, n, GENERATORS)
        )
        margin = validate.positive_number(self.margin, "margin")
        return replace(self, settings=settings, shots_factors=shots, generators=generators,
                       seeds=check_seeds(self.seeds), margin=margin)  # fmt: skip

    def cells(self) -> list[tuple[str, float, str]]:
        """(generator, shot factor, setting) in table order."""
        return [(g, c, s) for g in self.generators for c in self.shots_factors for s in self.settings]

    def trials(self, cfg: RunConfig) -> list[Trial]:
        out = []
        for generator, c, setting in self.cells():
            for seed in self.seeds:
                rcfg = cfg.replace(method="qpa-lora", shots_factor=c, seed=seed, **GENERATORS[generator],
                                   **setting_changes(setting))  # fmt: skip
                axes = {"generator": generator, "shots_factor": c, "setting": setting, "seed": seed}
                out.append(Trial(f"{generator}-c{c:g}-{setting}-s{seed}", rcfg, axes, {qpu_cost: {}}))
        return out

    def curve_label(self, axes: dict) -> str:
        """As the table names a setting: generator, shot factor and gradient (``paper c=20 spsa-4``)."""
        return with_rates(f"{axes['generator']} c={axes['shots_factor']:g} {axes['setting']}", axes)

    def definition(self, cfg: RunConfig) -> dict:
        names = ("settings", "shots_factors", "generators", "seeds")
        axes = {name: list(getattr(self, name)) for name in names}
        return {"config": cfg.to_dict(), **axes, "margin": self.margin}

    def report(self, cfg: RunConfig, out: Path, results: list[dict], failures: dict[str, Failure],
               log: Callable[[str], None]) -> list[dict]:  # fmt: skip
        by = {
            tuple(r["axes"][k] for k in ("generator", "shots_factor", "setting", "seed")): r for r in results
        }
        reference_c = max(self.shots_factors)
        rows = []
        for generator, c, setting in self.cells():
            mine = [by[(generator, c, setting, s)] for s in self.seeds if (generator, c, setting, s) in by]
            if not mine:
                continue
            ppl, ppl_std = mean_std(r["perplexity"] for r in mine)
            row = {"generator": generator, "shots_factor": c, "setting": setting, "seeds": len(mine),
                   "perplexity": ppl, "perplexity_std": ppl_std, "qpu_seconds": mine[0]["qpu_seconds"],
                   "qpu_device": mine[0]["qpu_device"], "sets_per_run": mine[0]["sets_per_run"]}  # fmt: skip
            row["fits_open_plan"] = row["qpu_seconds"] <= OPEN_PLAN_SECONDS
            seeds = [s for s in self.seeds if (generator, c, setting, s) in by
                     and (generator, reference_c, "shift", s) in by]  # fmt: skip
            if (c, setting) != (reference_c, "shift") and len(seeds) > 1:
                mine_ppl = [by[(generator, c, setting, s)]["perplexity"] for s in seeds]
                shift_ppl = [by[(generator, reference_c, "shift", s)]["perplexity"] for s in seeds]
                diff = PairedDifference.of(a - b for a, b in zip(mine_ppl, shift_ppl, strict=True))
                row["vs_shift"] = {**diff.to_dict(), "at_margin": diff.equivalence(self.margin),
                                   "reading": diff.reading(self.margin)}  # fmt: skip
            rows.append(row)
        reference = {"setting": "shift", "shots_factor": reference_c}
        write_results(out, cfg, list(self.seeds), rows, results, failures,
                      {"margin": self.margin, "reference": reference})  # fmt: skip
        if rows:
            table = results_table(rows, self.margin, reference_c)
            write_file(out, "results.md", table + "\n")
            log("\n" + table + f"\n\nwritten: {out / 'results.md'}")
        return rows


def results_table(rows: list[dict], margin: float, reference_c: float) -> str:
    """The study's one table as Markdown."""
    lines = [
        f"Test perplexity (mean ± std over seeds); Δ: paired by seed against shift at c = {reference_c:g} "
        f"of the same generator. {LEGEND}; at ±{margin:g}: inside, outside or undecided against the margin "
        f"stated before the runs. QPU s: the run on {rows[0]['qpu_device']} by the cost model (not checked "
        f"against a live job); Open Plan: {OPEN_PLAN_SECONDS / 60:g} QPU minutes.",
        "",
        "| generator | c | setting | perplexity | Δ vs shift | at ±margin | sets per run | QPU s per run "
        "| fits the Open Plan |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        paired = row.get("vs_shift")
        delta = paired["reading"] if paired else "(reference)" if row["setting"] == "shift" and row[
            "shots_factor"] == reference_c else "-"  # fmt: skip
        lines.append(
            f"| {row['generator']} | {row['shots_factor']:g} | {row['setting']} | "
            f"{cell(row, 'perplexity', 3)} | "
            f"{delta} | {paired['at_margin'] if paired else '-'} | {row['sets_per_run']:,} | "
            f"{row['qpu_seconds']:,.0f} | {'yes' if row['fits_open_plan'] else 'no'} |"
        )
    return "\n".join(lines)


study_hardware = HardwareStudy.function("study_hardware")
