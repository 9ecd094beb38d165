"""``qpa study shots``: QPA-LoRA for every shot factor c and completion mode, beside exact
probabilities; test perplexity and the TVD of the completed distribution to the exact one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from .. import validate
from ..backends import QPABackend
from ..completion import MODES
from ..intervals import PairedDifference
from ..train.run_config import RunConfig
from .report import (
    cell,
    chosen_rates,
    draw_differences,
    figure,
    lr_cell,
    mean_std,
    selected,
    style,
    write_file,
    write_results,
)
from .runner import Failure, Trial
from .spec import (
    MARGIN,
    StudySpec,
    check_seeds,
    check_tvd_samples,
    grid_values,
    margin_option,
    option,
    positive_float,
    with_rates,
)


def completion_tvd(run, samples: int = 20) -> dict[str, float]:
    """Mean total variation distance between the completed sampled distribution and the
    exact one, at the run's final circuit angles (over `samples` fresh shot samples)."""
    samples = check_tvd_samples(samples)
    quantum = run.model.generator.quantum
    theta = quantum.theta.detach().numpy()
    exact = QPABackend("statevector").probabilities(quantum.circuit, theta)[0]
    if quantum.shots is None:
        return {"tvd": 0.0}
    distances = []
    with torch.no_grad():
        for _ in range(samples):
            sampled = torch.from_numpy(quantum.backend.probabilities(quantum.circuit, theta)[0])
            if quantum.completion is not None:
                sampled = quantum.completion(sampled.float(), shots=quantum.shots).double()
            distances.append(0.5 * float(np.abs(sampled.numpy() - exact).sum()))
    return {"tvd": float(np.mean(distances))}


@dataclass(frozen=True)
class ShotsStudy(StudySpec):
    """QPA-LoRA on the configuration's backend for every shot factor c and completion mode,
    plus exact probabilities, for every seed: test perplexity and the TVD of the completed
    distribution to the exact one, mean and standard deviation over seeds."""

    NAME: ClassVar[str] = "shots"
    HELP: ClassVar[str] = "shot factor c x completion mode"
    OUT: ClassVar[str] = "runs/study-shots-%Y%m%d-%H%M%S"
    SET_BY_GRID: ClassVar[tuple[str, ...]] = ("method", "shots_factor", "completion")

    shots_factors: tuple[float, ...] = option(
        "shot factors c: n_shot = c 2^N", (1, 2, 5, 20), parse=positive_float
    )
    modes: tuple[str, ...] = option("completion modes of the unmeasured states", MODES, choices=MODES)
    tvd_samples: int = option("shot samples averaged for the TVD", 20, parse=int, nargs=None)
    margin: float = margin_option(MARGIN)

    def checked(self, cfg: RunConfig) -> ShotsStudy:
        modes = grid_values(self.modes, "modes", lambda m, n: validate.one_of(m, n, MODES))
        shots_factors = grid_values(self.shots_factors, "shots_factors", validate.positive_number)
        tvd_samples = check_tvd_samples(self.tvd_samples)
        seeds = check_seeds(self.seeds)
        margin = validate.positive_number(self.margin, "margin")
        return replace(self, modes=modes, shots_factors=shots_factors, tvd_samples=tvd_samples, seeds=seeds,
                       margin=margin)  # fmt: skip

    def settings(self) -> list[tuple[float | None, str]]:
        """(shot factor, completion mode): exact probabilities first."""
        return [(None, "none")] + [(c, mode) for c in self.shots_factors for mode in self.modes]

    def trials(self, cfg: RunConfig) -> list[Trial]:
        seeds, trials = self.seeds, []
        for c, mode in self.settings():
            for seed in seeds:
                name = ("exact" if c is None else f"c{c:g}-{mode}") + (f"-s{seed}" if len(seeds) > 1 else "")
                rcfg = cfg.replace(method="qpa-lora", shots_factor=c, completion=mode, seed=seed)
                axes = {"shots_factor": c, "completion": mode, "seed": seed}
                trials.append(Trial(name, rcfg, axes, {completion_tvd: {"samples": self.tvd_samples}}))
        return trials

    def curve_label(self, axes: dict) -> str:
        """As the tables name a setting: ``c=1 gi``, ``exact probabilities``."""
        c = axes["shots_factor"]
        return with_rates("exact probabilities" if c is None else f"c={c:g} {axes['completion']}", axes)

    def definition(self, cfg: RunConfig) -> dict:
        return {"config": cfg.to_dict(), "shots_factors": list(self.shots_factors), "modes": list(self.modes),
                "seeds": self.seeds, "tvd_samples": self.tvd_samples}  # fmt: skip

    def report(self, cfg: RunConfig, out: Path, results: list[dict], failures: dict[str, Failure],
               log: Callable[[str], None]) -> list[dict]:  # fmt: skip
        settings = self.settings()
        rows = []
        for c, mode in settings:
            mine = [r for r in results if r["axes"]["shots_factor"] == c and r["axes"]["completion"] == mode]
            if not mine:
                continue
            ppl, ppl_std = mean_std(r["perplexity"] for r in mine)
            tvd, tvd_std = mean_std(r["tvd"] for r in mine)
            shots = None if c is None else int(np.ceil(c * 2 ** mine[0]["counts"]["qubits"]))
            rows.append({"shots_factor": c, "shots": shots, "completion": mode, "seeds": len(mine),
                         "perplexity": ppl, "perplexity_std": ppl_std, "tvd": tvd, "tvd_std": tvd_std,
                         "trainable": mine[0]["counts"]["trainable"], **chosen_rates(mine)})  # fmt: skip
        paired = paired_rows(results, settings, self.margin)
        write_results(
            out, cfg, self.seeds, rows, results, failures, {"paired": paired, "margin": self.margin}
        )
        if any(r["shots_factor"] is None for r in rows) and len(rows) == len(settings):
            table = _table(rows, self.modes) + "\n\n" + paired_table(paired, self.margin)
            write_file(out, "results.md", table + "\n")
            plot_shots(rows, paired, self.modes, self.margin, out / "shots.png")
            log("\n" + table + f"\n\nwritten: {out / 'results.md'}, {out / 'shots.png'}")
        return rows


study_shots = ShotsStudy.function("study_shots")


def paired_rows(results: list[dict], settings, margin: float) -> list[dict]:
    """Per sampled setting, paired by seed: its perplexity minus that of leaving the zeros
    (``none``) at the same c (for the other modes), and minus that of exact probabilities;
    the TVD to the exact distribution minus ``none``'s too. Each with its t-based 95% interval,
    verdict and reading against the equivalence `margin`."""
    by = {(r["axes"]["shots_factor"], r["axes"]["completion"], r["axes"]["seed"]): r for r in results}
    seeds = sorted({r["axes"]["seed"] for r in results})
    out = []
    for c, mode in settings:
        if c is None:
            continue
        for against, key in (("none", (c, "none")), ("exact", (None, "none"))):
            if against == "none" and mode == "none":
                continue
            both = [s for s in seeds if (c, mode, s) in by and (*key, s) in by]
            if not both:
                continue

            ppl = _paired(by, (c, mode), key, both, "perplexity")
            row = {"shots_factor": c, "completion": mode, "against": against,
                   "perplexity": {**ppl.to_dict(), "reading": ppl.reading(margin),
                                  "equivalence": ppl.equivalence(margin)}}  # fmt: skip
            if against == "none":  # exact probabilities have TVD 0: against exact it is the TVD itself
                tvd = _paired(by, (c, mode), key, both, "tvd")
                row["tvd"] = {**tvd.to_dict(), "reading": tvd.reading(digits=4)}
            out.append(row)
    return out


def _paired(by: dict, setting: tuple, against: tuple, seeds: list[int], measure: str) -> PairedDifference:
    return PairedDifference.of(by[(*setting, s)][measure] - by[(*against, s)][measure] for s in seeds)


def paired_table(paired: list[dict], margin: float) -> str:
    """The paired differences as Markdown: each mode against ``none``, each setting against exact."""
    lines = [
        f"Paired by seed (mean ± std [t-based 95% interval] verdict); at ±{margin:g}: inside, outside or "
        "undecided against the equivalence margin stated before the runs.",
        "",
        "| c | mode | against | Δ perplexity | at ±margin | Δ TVD |",
        "|---|---|---|---|---|---|",
    ]
    for row in paired:
        tvd = row["tvd"]["reading"] if "tvd" in row else "-"
        ppl = row["perplexity"]
        setting = f"| {row['shots_factor']:g} | {row['completion']} | {row['against']} |"
        lines.append(f"{setting} {ppl['reading']} | {ppl['equivalence']} | {tvd} |")
    return "\n".join(lines)


def _table(rows: list[dict], modes) -> str:
    seeds = max(r["seeds"] for r in rows)
    note = f" (mean ± std over {seeds} seeds)" if seeds > 1 else ""
    lines = [
        "| c | shots | "
        + " | ".join(f"ppl {m}{note if i == 0 else ''}" for i, m in enumerate(modes))
        + " | "
        + " | ".join(f"TVD {m}" for m in modes)
        + " |"
    ]
    rates = selected(rows)  # the rates chosen on the dev split, per mode
    if rates:
        lines[0] += " " + " | ".join(f"lr (chosen) {m}" for m in modes) + " |"
    lines.append("|" + "---|" * ((3 if rates else 2) * len(modes) + 2))
    exact = next(r for r in rows if r["shots_factor"] is None)
    for c in sorted({r["shots_factor"] for r in rows if r["shots_factor"] is not None}):
        by_mode = {r["completion"]: r for r in rows if r["shots_factor"] == c}
        shots = next(iter(by_mode.values()))["shots"]
        ppl = " | ".join(cell(by_mode[m], "perplexity", 3) for m in modes)
        tvd = " | ".join(cell(by_mode[m], "tvd", 4) for m in modes)
        lr = (" " + " | ".join(lr_cell(by_mode[m]) for m in modes) + " |") if rates else ""
        lines.append(f"| {c:g} | {shots} | {ppl} | {tvd} |{lr}")
    # exact probabilities leave nothing unmeasured: every mode is the identity there
    ppl = " | ".join(cell(exact, "perplexity", 3) for _ in modes)
    lr = (" " + " | ".join(lr_cell(exact) for _ in modes) + " |") if rates else ""
    lines.append(f"| exact | - | {ppl} | " + " | ".join("0" for _ in modes) + " |" + lr)
    return "\n".join(lines)


def plot_shots(rows: list[dict], paired: list[dict], modes, margin: float | None, path: Path) -> None:
    """What the tables read, paired by seed with t-based 95% intervals: each mode's perplexity
    minus exact probabilities' and minus leaving the zeros' (``none``) at the same c, its TVD to
    the exact distribution minus ``none``'s; beside them that TVD itself (mean over seeds). A
    mode keeps its colour and marker in every panel."""
    # lazy: matplotlib (seconds), only when a plot is drawn
    from matplotlib.lines import Line2D

    fig = figure((12, 8))
    (vs_exact, vs_none), (tvd, tvd_vs_none) = fig.subplots(2, 2)
    styles = {m: i for i, m in enumerate(modes)}
    cs = sorted({r["shots_factor"] for r in rows if r["shots_factor"] is not None})
    panels = ((vs_exact, "exact", "perplexity", margin, "test perplexity minus exact probabilities'"),
              (vs_none, "none", "perplexity", margin, "test perplexity minus none's (the zeros left)"),
              (tvd_vs_none, "none", "tvd", None, "TVD to exact minus none's"))  # fmt: skip
    for ax, against, measure, bound, label in panels:
        series: dict[str, list] = {}
        for p in sorted(paired, key=lambda p: p["shots_factor"]):
            if p["against"] == against and measure in p:
                d = p[measure]
                series.setdefault(p["completion"], []).append(
                    (p["shots_factor"], PairedDifference(d["mean"], d["std"], d["n"]))
                )
        if not series:
            ax.text(0.5, 0.5, "no mode to set against none", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        draw_differences(ax, series, bound, log_x=True, styles=styles, legend=False)
        ax.set_title(f"{label}, at the same c", fontsize=10)
        ax.set_ylabel("difference, paired by seed", fontsize=9)
    for mode in modes:
        points = sorted((r["shots_factor"], r["tvd"]) for r in rows
                        if r["completion"] == mode and r["shots_factor"] is not None)  # fmt: skip
        tvd.plot([c for c, _ in points], [t for _, t in points], label=mode, **style(styles[mode]))
    tvd.set_xscale("log")
    tvd.set_title("TVD to the exact distribution (mean over seeds)", fontsize=10)
    tvd.set_ylabel("TVD", fontsize=9)
    for ax in (vs_exact, vs_none, tvd, tvd_vs_none):
        if ax.axison:
            ax.set_xticks(cs, [f"{c:g}" for c in cs])
            ax.minorticks_off()
            ax.set_xlabel("shots factor c (n_shot = c 2^N)")
    seeds = max(r["seeds"] for r in rows)
    bars = (f"{seeds} seeds; bars: t-based 95% interval of the difference paired by seed" if seeds > 1
            else "one seed: no interval (open markers)")  # fmt: skip
    fig.suptitle(f"QPA-LoRA, completion of finite-shot distributions: {bars}")
    handles, labels = tvd.get_legend_handles_labels()
    if margin:
        handles.append(Line2D([], [], color="gray", linestyle="--"))
        labels.append(f"margin ±{margin:g} (stated before the runs)")
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels), fontsize=9)
    fig.savefig(path, dpi=120, bbox_inches="tight")
