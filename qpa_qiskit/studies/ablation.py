"""``qpa study ablation``: does the circuit's output matter to QPA, and in which regime?

A grid of QPA-LoRA runs on ``lm_head``: generator regimes x probability sources x seeds, with
LoRA of a few ranks beside them. A regime is a label scheme and a mapping (``fixed:mlp``,
``random:linear``, ..., every other setting from the base configuration) or ``paper``, the
published generator (``preset="paper"``). Within a regime every run shares its initial
values but the probability source (components are seeded by name), so each control is set
against the trained circuit seed by seed:

* ``frozen``: the circuit at its initial angles, never trained;
* ``uniform``, ``fixed-random`` (one Porter-Thomas draw): fixed classical distributions;
* ``softmax``: a free classical distribution, 2^N trained logits, starting where the circuit
  starts (the strongest classical stand-in for the circuit);
* ``none``: the mapping sees the label bits only;
* ``lowrank``: no mapping and no probabilities, the adapter as H @ C with the trainable count
  of that regime's QPA generator.

Each trained-circuit run is also evaluated with its probabilities replaced at test time
(uniform, permuted, fixed-random): how much the trained adapter depends on them. Tables give
each paired difference with a t-based 95% interval over seeds (:mod:`qpa_qiskit.intervals`)
and, with a margin stated in advance, whether it is inside that margin; beside each result the
angles' drift and the TVD between the initial and the final distribution. It resumes like
every study.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from .. import validate
from ..errors import InputError
from ..generator import CIRCUIT_SOURCES, COUNTERFACTUALS, LABELS, MAPPINGS, PROBABILITIES, TRAINED_SOURCES
from ..intervals import LEGEND, PairedDifference
from ..train.run_config import RunConfig
from .report import chosen_rates, figure, lr_cell, mean_std, selected, write_file, write_results
from .runner import Failure, Trial
from .spec import StudySpec, check_seeds, config_without, grid_values, option, with_rates

PAPER = "paper"
LOWRANK = "lowrank"
CONTROLS = (*PROBABILITIES, LOWRANK)
DEFAULT_REGIMES = ("fixed:mlp", PAPER)
# the fields a grid sets, left out of the study's identity
GRID_FIELDS = (
    "method",
    "rank",
    "seed",
    "preset",
    "labels",
    "mapping",
    "probabilities",
    "circuit_lr",
    "shots_factor",
    "completion",
    "lowrank_k",
)


def counterfactual_perplexities(run, kinds=COUNTERFACTUALS) -> dict[str, dict[str, float]]:
    """Test perplexity of the run's adapter generated from other probabilities (see
    :meth:`~qpa_qiskit.generator.QPAGenerator.counterfactual`), by kind."""
    return {"counterfactual": {kind: run.evaluate("test", kind)["perplexity"] for kind in kinds}}


def regime_changes(regime: str) -> dict:
    """The settings of a regime: ``paper`` (the preset) or ``<labels>:<mapping>``."""
    if regime == PAPER:
        return {"preset": PAPER}
    labels, sep, mapping = regime.partition(":")
    if not sep or labels not in LABELS or mapping not in MAPPINGS:
        accepted = ", ".join([f"{lab}:{m}" for lab in LABELS for m in MAPPINGS] + [PAPER])
        raise InputError(f"regime must be one of {accepted}; got {regime!r}")
    return {"preset": None, "labels": labels, "mapping": mapping}


def ablation_trials(cfg: RunConfig, regimes, controls, lora_ranks, counterfactuals, seeds) -> list[Trial]:
    """Every regime x control x seed (QPA-LoRA, or its low-rank peer), then LoRA of each rank
    x seed. The circuit's rate (``circuit_lr``) applies where the source is trained; shots and
    completion where it is a circuit."""
    trials = []
    suffix = (lambda seed: f"-s{seed}") if len(seeds) > 1 else (lambda seed: "")
    for regime in regimes:
        tag = regime.replace(":", "-")
        for control in controls:
            for seed in seeds:
                source = "circuit" if control == LOWRANK else control
                changes = {**regime_changes(regime), "probabilities": source, "seed": seed}
                if source not in TRAINED_SOURCES:
                    changes["circuit_lr"] = None
                if source not in CIRCUIT_SOURCES:
                    changes.update(shots_factor=None, completion="none")
                rcfg = cfg.for_method("qpa-lora", **changes)  # checked here, before anything runs
                if control == LOWRANK:  # matched to this regime's QPA generator
                    rcfg = rcfg.for_method("lowrank-lora")
                measures = {}
                if control == "circuit" and counterfactuals:
                    measures = {counterfactual_perplexities: {"kinds": list(counterfactuals)}}
                axes = {"regime": regime, "control": control, "seed": seed}
                trials.append(Trial(f"{tag}-{control}{suffix(seed)}", rcfg, axes, measures))
    for rank in lora_ranks:
        for seed in seeds:
            rcfg = cfg.for_method("lora", rank=rank, seed=seed)
            trials.append(
                Trial(
                    f"lora-r{rank}{suffix(seed)}",
                    rcfg,
                    {"regime": None, "control": f"lora-r{rank}", "seed": seed},
                )
            )
    return trials


@dataclass(frozen=True)
class AblationStudy(StudySpec):
    """Every regime x control x seed, LoRA of each rank beside (see :func:`ablation_trials`);
    writes ``results.json``, ``results.md`` and ``ablation.png`` and returns the aggregated
    tables. `margin` (perplexity) is the equivalence margin stated in advance: a difference
    whose interval lies inside ±margin reads "equivalent"."""

    NAME: ClassVar[str] = "ablation"
    HELP: ClassVar[str] = (
        "does the circuit's output matter: generator regimes x probability sources (the circuit and its "
        "classical controls), LoRA beside"
    )
    OUT: ClassVar[str] = "runs/study-ablation-%Y%m%d-%H%M%S"
    SET_BY_GRID: ClassVar[tuple[str, ...]] = ("method", "preset", "labels", "mapping", "probabilities",
                                              "lowrank_k")  # fmt: skip

    regimes: tuple[str, ...] = option(
        "generator regimes: <labels>:<mapping> (fixed|random : mlp|linear; every other setting from the "
        "configuration) or paper (the published generator, --preset paper)",
        DEFAULT_REGIMES,
    )
    controls: tuple[str, ...] = option(
        "probability sources set against the trained circuit, and lowrank (the classical H @ C peer of "
        "equal trainable count)",
        CONTROLS,
        choices=CONTROLS,
    )
    lora_ranks: tuple[int, ...] = option("ranks of the classical LoRA beside", (1, 4), parse=int, nargs="*")
    counterfactuals: tuple[str, ...] = option(
        "test-time probabilities scored for every trained-circuit run", COUNTERFACTUALS,
        choices=COUNTERFACTUALS, nargs="*",
    )  # fmt: skip
    margin: float | None = option(
        "equivalence margin in perplexity, stated in advance: a difference whose 95% interval lies inside "
        "±margin reads 'equivalent'",
        0.1,
        parse=float,
        nargs=None,
    )

    def trained_methods(self) -> list[str]:
        return ["qpa-lora", "lowrank-lora", "lora"]

    def checked(self, cfg: RunConfig) -> AblationStudy:
        seeds = check_seeds(self.seeds)
        regimes = grid_values(self.regimes, "regimes", lambda r, n: (regime_changes(r), r)[1])
        controls = grid_values(self.controls, "controls", lambda c, n: validate.one_of(c, n, CONTROLS))
        if "circuit" not in controls:
            raise InputError(
                f"controls must include 'circuit', the run every control is set against; got {controls}"
            )
        lora_ranks = grid_values(self.lora_ranks or [], "lora_ranks", validate.positive_int, allow_empty=True)
        counterfactuals = grid_values(
            self.counterfactuals or [], "counterfactuals",
            lambda k, n: validate.one_of(k, n, COUNTERFACTUALS), allow_empty=True,
        )  # fmt: skip
        margin = self.margin if self.margin is None else validate.positive_number(self.margin, "margin")
        return replace(self, seeds=seeds, regimes=regimes, controls=controls, lora_ranks=lora_ranks,
                       counterfactuals=counterfactuals, margin=margin)  # fmt: skip

    def trials(self, cfg: RunConfig) -> list[Trial]:
        return ablation_trials(cfg, self.regimes, self.controls, self.lora_ranks, self.counterfactuals,
                               self.seeds)  # fmt: skip

    def curve_label(self, axes: dict) -> str:
        """The regime and control as the tables name them (``paper: softmax``; LoRA ``lora-r4``)."""
        control = axes["control"]
        return with_rates(control if axes.get("regime") is None else f"{axes['regime']}: {control}", axes)

    def definition(self, cfg: RunConfig) -> dict:
        return {
            "config": config_without(cfg, GRID_FIELDS),
            "regimes": self.regimes,
            "controls": self.controls,
            "lora_ranks": self.lora_ranks,
            "counterfactuals": self.counterfactuals,
            "circuit_lr": cfg.training.circuit_lr,
            "seeds": self.seeds,
        }

    def report(self, cfg: RunConfig, out: Path, results: list[dict], failures: dict[str, Failure],
               log: Callable[[str], None]) -> dict:  # fmt: skip
        margin = self.margin
        tables = ablation_tables(results, self.regimes, self.controls, self.lora_ranks, self.counterfactuals,
                                 margin)  # fmt: skip
        write_results(out, cfg, self.seeds, tables, results, failures)
        if tables["rows"]:
            text = ablation_markdown(tables, cfg, self.seeds, margin)
            write_file(out, "results.md", text + "\n")
            plot_ablation(tables, margin, out / "ablation.png")
            log("\n" + text + f"\n\nwritten: {out / 'results.md'}, {out / 'ablation.png'}")
        return tables


study_ablation = AblationStudy.function("study_ablation")


def _paired(mine: dict[int, float], reference: dict[int, float]) -> PairedDifference | None:
    pairs = [mine[s] - reference[s] for s in mine if s in reference]
    return PairedDifference.of(pairs) if pairs else None


def _mean(results: list[dict], key: str) -> float | None:
    values = [r["diagnostics"][key] for r in results if key in r.get("diagnostics", {})]
    return mean_std(values)[0] if values else None


def _by_seed(runs: list[dict]) -> dict[int, float]:
    return {r["axes"]["seed"]: r["perplexity"] for r in runs}


def ablation_tables(results, regimes, controls, lora_ranks, counterfactuals, margin) -> dict:
    """Rows per regime and control (mean and std over seeds, counts, diagnostics, the paired
    difference to the trained circuit), LoRA rows (each against every regime's circuit), the
    counterfactual rows, and per regime the best classical control against the circuit."""
    by = {}
    for r in results:
        by.setdefault((r["axes"]["regime"], r["axes"]["control"]), []).append(r)
    rows, lora_rows, counterfactual_rows, best = [], [], [], {}
    for regime in regimes:
        trained = by.get((regime, "circuit"), [])
        circuit = _by_seed(trained)
        mine = [
            _control_row(regime, c, by[(regime, c)], circuit, margin) for c in controls if by.get((regime, c))
        ]
        rows += mine
        classical = [r for r in mine if r["control"] != "circuit" and "vs_circuit" in r]
        if classical:
            strongest = min(classical, key=lambda r: r["perplexity"])
            best[regime] = {
                "control": strongest["control"],
                "vs_circuit": strongest["vs_circuit"],
                "reading": strongest["vs_circuit_reading"],
            }
        counterfactual_rows += _counterfactual_rows(regime, trained, counterfactuals, circuit, margin)
    for rank in lora_ranks:
        mine = by.get((None, f"lora-r{rank}"), [])
        if mine:
            circuits = {regime: _by_seed(by.get((regime, "circuit"), [])) for regime in regimes}
            lora_rows.append(_lora_row(rank, mine, circuits, margin))
    return {"rows": rows, "lora": lora_rows, "counterfactual": counterfactual_rows, "best_control": best}


def _control_row(regime: str, control: str, mine: list[dict], circuit: dict[int, float], margin) -> dict:
    """One control of one regime over its seeds, against the trained circuit (not itself)."""
    ppl, std = mean_std(r["perplexity"] for r in mine)
    row = {
        "regime": regime,
        "control": control,
        "seeds": len(mine),
        "perplexity": ppl,
        "perplexity_std": std,
        "trainable": mine[0]["counts"]["trainable"],
        "lowrank_k": mine[0]["counts"].get("lowrank_k"),
        "angle_drift_max": _mean(mine, "angle_drift_max"),
        "tvd_start": _mean(mine, "tvd_start"),
        "label_spread": _mean(mine, "label_spread"),
        "chunk_spread": _mean(mine, "chunk_spread"),
        "by_seed": {str(k): v for k, v in sorted(_by_seed(mine).items())},
        **chosen_rates(mine),
    }
    diff = _paired(_by_seed(mine), circuit) if control != "circuit" else None
    if diff is not None:
        row["vs_circuit"] = diff.to_dict()
        row["vs_circuit_reading"] = diff.reading(margin)
    return row


def _counterfactual_rows(regime: str, trained: list[dict], counterfactuals, circuit, margin) -> list[dict]:
    """The trained-circuit runs of one regime scored with each kind of test-time probabilities."""
    rows = []
    for kind in counterfactuals:
        scored = [r for r in trained if kind in r.get("counterfactual", {})]
        if not scored:
            continue
        values = {r["axes"]["seed"]: r["counterfactual"][kind] for r in scored}
        ppl, std = mean_std(values.values())
        diff = _paired(values, circuit)
        rows.append(
            {
                "regime": regime,
                "probabilities": kind,
                "seeds": len(scored),
                "perplexity": ppl,
                "perplexity_std": std,
                "vs_trained": diff.to_dict(),
                "vs_trained_reading": diff.reading(margin),
            }
        )
    return rows


def _lora_row(rank: int, mine: list[dict], circuits: dict[str, dict[int, float]], margin) -> dict:
    """LoRA of one rank over its seeds, against each regime's trained circuit."""
    ppl, std = mean_std(r["perplexity"] for r in mine)
    row = {
        "control": f"lora-r{rank}",
        "seeds": len(mine),
        "perplexity": ppl,
        "perplexity_std": std,
        "trainable": mine[0]["counts"]["trainable"],
        "vs_circuit": {},
        **chosen_rates(mine),
    }
    for regime, circuit in circuits.items():
        diff = _paired(_by_seed(mine), circuit)
        if diff is not None:
            row["vs_circuit"][regime] = {**diff.to_dict(), "reading": diff.reading(margin)}
    return row


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ablation_markdown(tables: dict, cfg: RunConfig, seeds, margin: float | None) -> str:
    t = cfg.training
    note = f"mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else "one seed"
    rates = selected(tables["rows"] + tables["lora"])  # chosen per setting on the dev split
    rate = f", circuit (and softmax) rate {t.circuit_lr:g}" if t.circuit_lr else ""
    lr = "at the rates chosen per setting on the dev split" if rates else f"at lr {t.lr:g}{rate}"
    column, rule = (" lr (chosen) |", "---|") if rates else ("", "")
    lines = [
        f"Does the circuit's output matter? QPA-LoRA on {cfg.task.model}, {t.steps} steps of "
        f"{t.batch_size}x{t.block_size} {lr}, {note}; test perplexity over "
        f"{cfg.eval.eval_tokens or 'all'} tokens. {LEGEND}"
        + (
            f"; equivalent: the interval lies inside ±{margin:g}, the margin stated in advance."
            if margin
            else "."
        ),
        "",
        "| regime | control | trainable | test perplexity | vs trained circuit (paired by seed) "
        "| angle drift max (rad) | TVD initial-final | label spread | chunk spread |" + column,
        "|---|---|---|---|---|---|---|---|---|" + rule,
    ]
    for r in tables["rows"]:
        control = r["control"] + (f" (k={r['lowrank_k']})" if r.get("lowrank_k") else "")
        ppl = f"{r['perplexity']:.3f}" + (f" ± {r['perplexity_std']:.3f}" if r["seeds"] > 1 else "")
        versus = r.get("vs_circuit_reading", "-")
        lines.append(
            f"| {r['regime']} | {control} | {r['trainable']:,} | {ppl} | {versus} | "
            f"{_num(r['angle_drift_max'], 3)} | {_num(r['tvd_start'], 4)} | {_num(r['label_spread'], 3)} | "
            f"{_num(r['chunk_spread'], 3)} |" + (f" {lr_cell(r)} |" if rates else "")
        )
    if tables["counterfactual"]:
        lines += _counterfactual_markdown(tables["counterfactual"])
    if tables["lora"]:
        lines += _lora_markdown(tables["lora"], rates)
    if tables["best_control"]:
        lines += [""]
        for regime, b in tables["best_control"].items():
            lines.append(
                f"- {regime}: the best control by mean is {b['control']}; it minus the trained circuit: "
                f"{b['reading']}."
            )
    return "\n".join(lines)


def _counterfactual_markdown(rows: list[dict]) -> list[str]:
    """The lines of the counterfactual table, after a blank line."""
    lines = [
        "",
        "Counterfactual evaluation of the trained-circuit runs: the same adapter generated from other "
        "probabilities at test time.",
        "",
        "| regime | probabilities at test time | test perplexity | vs the trained probabilities |",
        "|---|---|---|---|",
    ]
    for r in rows:
        ppl = f"{r['perplexity']:.3f}" + (f" ± {r['perplexity_std']:.3f}" if r["seeds"] > 1 else "")
        lines.append(f"| {r['regime']} | {r['probabilities']} | {ppl} | {r['vs_trained_reading']} |")
    return lines


def _lora_markdown(rows: list[dict], rates: bool) -> list[str]:
    """The lines of the LoRA table (with the chosen rates where `rates`), after a blank line."""
    column, rule = (" lr (chosen) |", "---|") if rates else ("", "")
    regimes = sorted({k for r in rows for k in r["vs_circuit"]}, key=str)
    lines = [
        "",
        "Classical LoRA beside them (difference: LoRA minus the regime's trained circuit).",
        "",
        "| method | trainable | test perplexity | "
        + " | ".join(f"vs {g} circuit" for g in regimes)
        + " |"
        + column,
        "|---|---|---|" + "---|" * len(regimes) + rule,
    ]
    for r in rows:
        ppl = f"{r['perplexity']:.3f}" + (f" ± {r['perplexity_std']:.3f}" if r["seeds"] > 1 else "")
        cells = [r["vs_circuit"].get(g, {}).get("reading", "-") for g in regimes]
        lr = f" {lr_cell(r)} |" if rates else ""
        lines.append(f"| {r['control']} | {r['trainable']:,} | {ppl} | " + " | ".join(cells) + " |" + lr)
    return lines


def plot_ablation(tables: dict, margin: float | None, path: Path) -> None:
    """One panel per regime: each control's and each counterfactual's paired difference from the
    trained circuit with its 95% interval; the margin shaded."""
    regimes = list(dict.fromkeys(r["regime"] for r in tables["rows"]))
    fig = figure((6.5 * len(regimes), 4.5))
    axes = fig.subplots(1, len(regimes), squeeze=False)[0]
    for ax, regime in zip(axes, regimes, strict=True):
        items = [
            (r["control"], r["vs_circuit"], "C0")
            for r in tables["rows"]
            if r["regime"] == regime and "vs_circuit" in r
        ]
        items += [
            (f"test-time p: {r['probabilities']}", r["vs_trained"], "C3")
            for r in tables["counterfactual"]
            if r["regime"] == regime
        ]
        items += [
            (r["control"], r["vs_circuit"][regime], "C2") for r in tables["lora"] if regime in r["vs_circuit"]
        ]
        for y, (_, diff, colour) in enumerate(items):
            low, high = diff["low"], diff["high"]
            err = None if low is None else [[diff["mean"] - low], [high - diff["mean"]]]
            ax.errorbar([diff["mean"]], [y], xerr=err, fmt="o", color=colour, capsize=3)
        ax.set_yticks(range(len(items)), [label for label, _, _ in items])
        ax.axvline(0, color="black", linewidth=1)
        if margin:
            ax.axvspan(-margin, margin, color="gray", alpha=0.2, label=f"margin ±{margin:g}")
            ax.legend(fontsize=8, loc="best")
        ax.set_xscale("symlog", linthresh=max(margin or 0.1, 0.1))
        ax.set_xlabel("test perplexity minus the trained circuit's (95% interval)")
        ax.set_title(f"regime {regime}")
        ax.invert_yaxis()
    drawn = (("controls (blue)", tables["rows"]), ("test-time probabilities (red)", tables["counterfactual"]),
             ("LoRA (green)", tables["lora"]))  # fmt: skip
    title = "What the circuit's output adds: " + ", ".join(name for name, found in drawn if found)
    # one panel is narrower than the title: on two lines it is read whole, not cut at both ends
    fig.suptitle(title if len(regimes) > 1 else title.replace(": ", ":\n", 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
