"""``qpa compare``: the base model, then each method trained with the same data, steps and seeds.

A ``--methods`` entry is a method (``lora``) or a method with settings of its own
(``lora:rank=1:targets=q_proj,v_proj``, :mod:`.settings`), so one study holds every setting a
question needs, each with the same seeds, data order and initial values. Test perplexity (mean
and standard deviation over seeds) and trainable counts, as a table; every row set against a
reference entry (``--reference``, by default the first qpa-* entry), row minus reference paired
by seed with a t-based 95% interval (:mod:`qpa_qiskit.intervals`), read against ``--margin``
where one is stated in advance; ``differences.png`` draws them. The reference and the margin
change the report only, never the runs, so they are not the study's identity. Timings go to
``results.md`` only, so ``results.json`` is the same however the study ran.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from .. import validate
from ..errors import InputError
from ..intervals import PairedDifference
from ..train.resume import PLACEMENT
from ..train.run_config import FIELD_SECTION, RunConfig
from .curves import mean_curves, stretch_reading
from .report import base_result, chosen_rates, figure, lr_cell, mean_std, selected, write_file, write_results
from .runner import Failure, Trial
from .selection import FAMILY, NONE, check_rates
from .settings import MethodSetting, parse_setting
from .spec import StudySpec, check_seeds, grid_values, margin_option, option, with_rates

NO_REFERENCE = "none"  # --reference none: no differences


@dataclass(frozen=True)
class CompareStudy(StudySpec):
    """Each of `methods` (a method, or a method with settings) trained for every seed, beside
    the base model; each row set against `reference` where there is one."""

    NAME: ClassVar[str] = "compare"
    HELP: ClassVar[str] = "base vs LoRA vs QPA-LoRA: perplexity and trainable counts"
    OUT: ClassVar[str] = "runs/compare-%Y%m%d-%H%M%S"
    CONFIG_DEFAULTS: ClassVar[dict[str, Any]] = {}  # the runs of a comparison take a run's defaults

    methods: tuple[str, ...] = option(
        "methods to train: a method (lora), or a method with settings of its own, METHOD:FIELD=VALUE[:FIELD="
        "VALUE...], FIELD a qpa train option without its dashes, a list comma-separated "
        "(lora:rank=1:targets=q_proj,v_proj, qpa-lora:probabilities=frozen)",
        ("lora", "qpa-lora"),
    )
    reference: str | None = option(
        "the --methods entry every other row is set against: row minus it, paired by seed, with a t-based "
        "95% interval (default: the first qpa-* entry; none: no differences); the report only, never the "
        "runs",
        None, nargs=None,
    )  # fmt: skip
    margin: float | None = margin_option(None)

    def trained_methods(self) -> list[str]:
        return [str(m).partition(":")[0].strip() for m in self.methods]

    def settings(self) -> list[MethodSetting]:
        """The entries of a checked spec, parsed."""
        return [parse_setting(text) for text in self.methods]

    def checked(self, cfg: RunConfig) -> CompareStudy:
        """Every entry parsed and its runs' configurations checked; two entries of the same runs,
        or of the same folder name, refused; the reference found among the entries."""
        seeds = check_seeds(self.seeds)
        reserved = self._reserved()
        methods = grid_values(self.methods, "methods", lambda m, n: parse_setting(m, reserved).text)
        settings = [parse_setting(text) for text in methods]
        by_identity: dict[str, str] = {}
        for s in settings:
            key = _identity(s.config(cfg, seeds[0]))  # every refusal of RunConfig here, naming the entry
            if key in by_identity:
                raise InputError(
                    f"methods (--methods): {by_identity[key]!r} and {s.text!r} are the same setting (they "
                    "give the same runs); give each setting once"
                )
            by_identity[key] = s.text
        names = [s.name for s in settings]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise InputError(
                f"methods (--methods): two entries make the run folder {clash[0]}; give each setting once"
            )
        reference = self._reference(settings, by_identity, cfg, seeds[0], reserved)
        margin = self.margin if self.margin is None else validate.positive_number(self.margin, "margin")
        return replace(self, seeds=seeds, methods=methods, reference=reference, margin=margin)

    def _reserved(self) -> dict[str, str]:
        """The run settings an entry may not give, each with why: the study sets them."""
        reasons = {"method": "it is the entry's first part (METHOD:FIELD=VALUE)",
                   "seed": "the study runs every setting once per seed of --seeds"}  # fmt: skip
        for name, section in FIELD_SECTION.items():
            if section in ("task", "eval"):
                reasons[name] = (
                    "the runs of a comparison share their model, data and scoring (the base model's row and "
                    "the paired differences compare them on the same tokens); give "
                    f"--{name.replace('_', '-')} to qpa compare"
                )
        reasons["precision"] = (
            "every run of a comparison computes in the same precision (bf16 rounds otherwise than fp32, "
            "so a difference would be partly the precision's); give --precision to qpa compare"
        )
        for name in PLACEMENT:
            reasons[name] = (
                f"where the runs train is the study's, and may change when it resumes; give "
                f"--{name.replace('_', '-')} to qpa compare"
            )
        grids = (("lr", self.lrs, (NONE, FAMILY)), ("circuit_lr", self.circuit_lrs, (NONE,)))
        for name, grid, words in grids:
            option_name = name.replace("_", "-")
            if check_rates(grid, f"{name}s", words) != NONE:
                reasons[name] = (
                    f"--{option_name}s chooses it per setting on the dev split; drop it, or give "
                    f"--{option_name}s none"
                )
        return reasons

    def _reference(self, settings: list[MethodSetting], by_identity: dict[str, str], cfg: RunConfig,
                   seed: int, reserved: dict[str, str]) -> str | None:  # fmt: skip
        """The reference entry's text: the one given (any text of the same setting), the first
        qpa-* entry by default, None for ``none`` or a study without a qpa-* entry."""
        if self.reference is None:
            return next((s.text for s in settings if s.method.startswith("qpa-")), None)
        if isinstance(self.reference, str) and self.reference.strip().lower() == NO_REFERENCE:
            return None
        given = parse_setting(self.reference, reserved, "reference (--reference)")
        found = by_identity.get(_identity(given.config(cfg, seed)))
        if found is None:
            raise InputError(
                f"reference (--reference) {self.reference!r} is none of the study's --methods entries "
                f"({', '.join(s.text for s in settings)}); give one of them, or none"
            )
        return found

    def trials(self, cfg: RunConfig) -> list[Trial]:
        """One trial per entry and seed: ``lora-s0`` for a method alone (``lora`` with one seed),
        ``lora-rank1-targets_q_proj+v_proj-s0`` for an entry with settings."""
        seeds = self.seeds
        return [
            Trial(
                s.name + (f"-s{seed}" if len(seeds) > 1 else ""),
                s.config(cfg, seed),
                {"method": s.method, "seed": seed} if s.plain else {"method": s.method, "setting": s.text,
                                                                     "seed": seed},
            )
            for s in self.settings()
            for seed in seeds
        ]  # fmt: skip

    def definition(self, cfg: RunConfig) -> dict:
        return {"config": cfg.to_dict(), "methods": list(self.methods), "seeds": self.seeds}

    def curve_label(self, axes: dict) -> str:
        """A setting as its row names it (``lora rank=1 on q_proj,v_proj``; a method alone by its
        name), with the rates chosen for it on the dev split."""
        return with_rates(parse_setting(axes.get("setting", axes["method"])).label, axes)

    def report(self, cfg: RunConfig, out: Path, results: list[dict], failures: dict[str, Failure],
               log: Callable[[str], None]) -> list[dict]:  # fmt: skip
        base = base_result(out, cfg, log)
        t = cfg.training
        log(f"model {cfg.task.model}, data {cfg.task.data}, {t.steps} steps of {t.batch_size}x{t.block_size}")
        rows = [{"method": "base", "perplexity": base["perplexity"], "std": 0.0, "seeds": 1, "trainable": 0,
                 "generated": 0, "qubits": None, "tokens": base["tokens"], "setting": "base", "label": "base",
                 "targets": None}]  # fmt: skip
        seconds, curves = {}, mean_curves(results, self.curve_label)
        stretches = {}
        for s in self.settings():
            mine = [r for r in results if r["axes"].get("setting", r["axes"]["method"]) == s.text]
            if not mine:
                continue
            rows.append(_row(s, mine, s.config(cfg, self.seeds[0]).adapter.targets))
            timed = [r["seconds_per_step"] for r in mine if r.get("seconds_per_step")]
            seconds[s.text] = statistics.median(timed) if timed else None
            curve = curves.get(self.curve_label(mine[0]["axes"]))
            if curve is not None:
                stretches[s.text] = stretch_reading(curve)
        reference = next((r for r in rows if r["setting"] == self.reference), None)
        if reference is not None:
            _differences(rows, reference, self.margin)
        text = _table(rows, seconds, len(self.seeds) > 1, reference, self.margin, stretches)
        log("\n" + text)
        write_results(out, cfg, self.seeds, rows, results, failures,
                      {"reference": self.reference, "margin": self.margin})  # fmt: skip
        write_file(out, "results.md", text + "\n")
        if reference is not None and any(r.get("vs_reference", {}).get("n", 0) > 1 for r in rows):
            plot_differences(rows, reference["label"], self.margin, out / "differences.png")
            log(f"written: {out / 'differences.png'}")
        return rows


compare = CompareStudy.function("compare")


def _identity(cfg: RunConfig) -> str:
    """What makes two entries the same setting: their runs' configuration (targets in any order)."""
    data = cfg.to_dict()
    targets = data["adapter"]["targets"]
    data["adapter"]["targets"] = None if targets is None else sorted(targets)
    return repr(data)


def _row(s: MethodSetting, mine: list[dict], targets: list[str] | None) -> dict:
    """A setting's row: its perplexity over seeds, counts, the chosen rates, its setting."""
    mean, std = mean_std(r["perplexity"] for r in mine)
    counts = mine[0]["counts"]
    return {"method": s.method, "perplexity": mean, "std": std, "seeds": len(mine),
            "trainable": counts["trainable"], "generated": counts.get("generated", 0),
            "qubits": counts.get("qubits"), "tokens": mine[0]["tokens"], **chosen_rates(mine),
            "setting": s.text, "label": s.label, "targets": targets,
            "by_seed": {str(_seed(r)): r["perplexity"] for r in sorted(mine, key=_seed)}}  # fmt: skip


def _seed(result: dict) -> int:
    return result["axes"]["seed"]


def _differences(rows: list[dict], reference: dict, margin: float | None) -> None:
    """Each trained row but the reference gets its difference from it, paired by seed: row minus
    reference, its t-based 95% interval and verdict, and its reading against `margin`."""
    for row in rows:
        if row is reference or "by_seed" not in row:
            continue
        pairs = [p - reference["by_seed"][s] for s, p in row["by_seed"].items() if s in reference["by_seed"]]
        if not pairs:
            continue
        diff = PairedDifference.of(pairs)
        row["vs_reference"] = diff.to_dict()
        row["vs_reference_reading"] = diff.reading()
        if margin is not None:
            row["vs_reference_equivalence"] = diff.equivalence(margin)


def _table(rows: list[dict], seconds: dict, spread: bool, reference: dict | None = None,
           margin: float | None = None, stretches: dict | None = None) -> str:  # fmt: skip
    """The results table: a row per setting; the chosen rates with a selection, the difference
    from the `reference` (and its reading at ±`margin`) with one, the curves' last stretch
    where the runs logged curves."""
    title = "test perplexity (mean ± std over seeds)" if spread else "test perplexity"
    rates, stretches = selected(rows), stretches or {}  # a column of the rates chosen on the dev split
    named = any(r.get("label", r["method"]) != r["method"] for r in rows)
    against = reference and reference["label"]
    extra = [(rates, "lr (chosen)"), (reference, f"vs {against} (paired by seed)"),
             (reference and margin, f"at ±{margin or 0:g}"), (stretches, "last stretch")]  # fmt: skip
    extra = [header for on, header in extra if on]
    first = "setting" if named else "method"
    table = [f"| {first} | {title} | trainable parameters | adapter weights generated | s/step |"
             + "".join(f" {h} |" for h in extra),
             "|---|---|---|---|---|" + "---|" * len(extra)]  # fmt: skip
    for r in rows:
        key = r.get("setting", r["method"])
        gen = f"{r['generated']:,} ({r['qubits']} qubits)" if r["generated"] else "-"
        sec = f"{seconds[key]:.2f}" if seconds.get(key) else "-"
        ppl = f"{r['perplexity']:.3f}" + (f" ± {r['std']:.3f}" if spread and r["method"] != "base" else "")
        cells = [lr_cell(r)] if rates else []
        if reference:
            cells.append("reference" if r is reference else r.get("vs_reference_reading", "-"))
            if margin:
                cells.append(r.get("vs_reference_equivalence", "-"))
        if stretches:
            cells.append(stretches.get(key, "-"))
        table.append(f"| {r.get('label', r['method'])} | {ppl} | {r['trainable']:,} | {gen} | {sec} |"
                     + "".join(f" {c} |" for c in cells))  # fmt: skip
    if reference:
        table += ["", _legend(against, margin)]
    return "\n".join(table)


def _legend(reference: str, margin: float | None) -> str:
    """What the difference column says."""
    text = (
        f"vs {reference}: each row's test perplexity minus {reference}'s, paired by seed: mean ± std "
        "[t-based 95% interval] verdict; better: lower perplexity than the reference (the interval below 0), "
        "worse: higher (the interval above 0), inconclusive: the interval holds 0"
    )
    if margin:
        text += (
            f"; at ±{margin:g}: inside (the interval within ±{margin:g}), outside (wholly beyond it) or "
            "undecided (it straddles a bound), against the margin stated before the runs"
        )
    return text + "."


def plot_differences(rows: list[dict], reference: str, margin: float | None, path: Path) -> None:
    """Each setting's paired difference from the reference with its 95% interval, one line per
    setting; 0 drawn solid, ±margin dashed."""
    items = [(r["label"], r["vs_reference"]) for r in rows if "vs_reference" in r]
    fig = figure((7.5, 1.2 + 0.45 * len(items)))
    ax = fig.subplots()
    for y, (_, diff) in enumerate(items):
        err = None if diff["low"] is None else [[diff["mean"] - diff["low"]], [diff["high"] - diff["mean"]]]
        ax.errorbar([diff["mean"]], [y], xerr=err, fmt="o", color="C0", capsize=3)
    ax.set_yticks(range(len(items)), [label for label, _ in items])
    ax.axvline(0, color="black", linewidth=1)
    if margin:
        for bound in (-margin, margin):
            ax.axvline(bound, color="gray", linestyle="--", linewidth=1)
        ax.plot([], [], color="gray", linestyle="--", label=f"margin ±{margin:g}")
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel(f"test perplexity minus {reference}'s, paired by seed (95% interval); < 0: better")
    ax.set_title(f"Difference from {reference}")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
