"""``qpa compare``: the base model, then each method trained with the same data, steps and seeds.

Test perplexity (mean and standard deviation over seeds) and trainable counts, as a table;
timings go to ``results.md`` only, so ``results.json`` is the same however the study ran.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from .. import validate
from ..adapters import METHODS
from ..train.run_config import RunConfig
from .report import base_result, chosen_rates, lr_cell, mean_std, selected, write_file, write_results
from .runner import Failure, Trial
from .spec import StudySpec, check_seeds, grid_values, option


@dataclass(frozen=True)
class CompareStudy(StudySpec):
    """Each of `methods` trained for every seed, beside the base model."""

    NAME: ClassVar[str] = "compare"
    HELP: ClassVar[str] = "base vs LoRA vs QPA-LoRA: perplexity and trainable counts"
    OUT: ClassVar[str] = "runs/compare-%Y%m%d-%H%M%S"
    CONFIG_DEFAULTS: ClassVar[dict[str, Any]] = {}  # the runs of a comparison take a run's defaults

    methods: tuple[str, ...] = option("methods to train", ("lora", "qpa-lora"))

    def trained_methods(self) -> list[str]:
        return list(self.methods)

    def checked(self, cfg: RunConfig) -> CompareStudy:
        seeds = check_seeds(self.seeds)
        methods = grid_values(self.methods, "methods", lambda m, n: validate.one_of(m, n, METHODS))
        return replace(self, seeds=seeds, methods=methods)

    def trials(self, cfg: RunConfig) -> list[Trial]:
        seeds = self.seeds
        return [
            Trial(
                f"{method}-s{seed}" if len(seeds) > 1 else method,
                cfg.for_method(method, seed=seed),
                {"method": method, "seed": seed},
            )
            for method in self.methods
            for seed in seeds
        ]

    def definition(self, cfg: RunConfig) -> dict:
        return {"config": cfg.to_dict(), "methods": list(self.methods), "seeds": self.seeds}

    def report(self, cfg: RunConfig, out: Path, results: list[dict], failures: dict[str, Failure],
               log: Callable[[str], None]) -> list[dict]:  # fmt: skip
        base = base_result(out, cfg, log)
        t = cfg.training
        log(f"model {cfg.task.model}, data {cfg.task.data}, {t.steps} steps of {t.batch_size}x{t.block_size}")
        rows = [{"method": "base", "perplexity": base["perplexity"], "std": 0.0, "seeds": 1, "trainable": 0,
                 "generated": 0, "qubits": None, "tokens": base["tokens"]}]  # fmt: skip
        seconds = {}
        for method in self.methods:
            mine = [r for r in results if r["axes"]["method"] == method]
            if not mine:
                continue
            mean, std = mean_std(r["perplexity"] for r in mine)
            counts = mine[0]["counts"]
            rows.append({"method": method, "perplexity": mean, "std": std, "seeds": len(mine),
                         "trainable": counts["trainable"], "generated": counts.get("generated", 0),
                         "qubits": counts.get("qubits"), "tokens": mine[0]["tokens"],
                         **chosen_rates(mine)})  # fmt: skip
            timed = [r["seconds_per_step"] for r in mine if r.get("seconds_per_step")]
            seconds[method] = statistics.median(timed) if timed else None
        text = _table(rows, seconds, spread=len(self.seeds) > 1)
        log("\n" + text)
        write_results(out, cfg, self.seeds, rows, results, failures)
        write_file(out, "results.md", text + "\n")
        return rows


def _table(rows: list[dict], seconds: dict, spread: bool) -> str:
    title = "test perplexity (mean ± std over seeds)" if spread else "test perplexity"
    rates = selected(rows)  # a column of the rates chosen on the dev split
    table = [f"| method | {title} | trainable parameters | adapter weights generated | s/step |"
             + (" lr (chosen) |" if rates else ""),
             "|---|---|---|---|---|" + ("---|" if rates else "")]  # fmt: skip
    for r in rows:
        gen = f"{r['generated']:,} ({r['qubits']} qubits)" if r["generated"] else "-"
        sec = f"{seconds[r['method']]:.2f}" if seconds.get(r["method"]) else "-"
        ppl = f"{r['perplexity']:.3f}" + (f" ± {r['std']:.3f}" if spread and r["method"] != "base" else "")
        table.append(f"| {r['method']} | {ppl} | {r['trainable']:,} | {gen} | {sec} |"
                     + (f" {lr_cell(r)} |" if rates else ""))  # fmt: skip
    return "\n".join(table)


compare = CompareStudy.function("compare")
