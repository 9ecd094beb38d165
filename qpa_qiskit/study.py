"""Studies: grids of runs with an aggregation, ``qpa compare`` and ``qpa study shots``.

Each study builds its grid of :class:`~qpa_qiskit.sweep.Trial` (every setting for every seed
in ``--seeds``) and hands it to :func:`~qpa_qiskit.sweep.run_study`, which skips finished
runs, resumes killed ones and runs the rest on the chosen executor. Perplexities are read back
with :func:`~qpa_qiskit.train.evaluate_run`, exactly what ``qpa eval`` of a run folder reports,
and aggregated over seeds (mean and standard deviation). ``results.json`` holds no timings,
so the same grid gives the same file however it was executed or interrupted; timings go to
``results.md``. Settings that differ in one value share every other initial value (the
components are seeded by name, :mod:`qpa_qiskit.seeding`).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from .backends import QPABackend
from .completion import MODES
from .config import RunConfig
from .errors import InputError
from .files import atomic_write
from .sweep import Trial, mean_std, measure, run_study


def default_out(out, pattern: str) -> Path:
    """`out`, or a time-stamped new folder."""
    return Path(out or time.strftime(pattern))


def _write(out: Path, name: str, text: str) -> None:
    atomic_write(out / name, text.encode())


def _seeds(seeds) -> list[int]:
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
    return seeds


def _write_results(out: Path, cfg: RunConfig, seeds, rows, results, failures) -> None:
    """``results.json``: the aggregated rows and every finished run, sorted by name, with no
    timing (the file must not depend on the machine or the order the runs finished in)."""
    trials = sorted(({k: v for k, v in r.items() if k != "seconds_per_step"} for r in results),
                    key=lambda r: r["name"])  # fmt: skip
    summary = {"config": cfg.to_dict(), "seeds": seeds, "rows": rows, "trials": trials}
    _write(out, "results.json", json.dumps({**summary, "failed": sorted(failures)}, indent=2))


def compare(cfg: RunConfig, out=None, methods=("lora", "qpa-lora"), seeds=(0,), executor=None, log=print):
    """The base model, then each method trained with the same data, steps and seeds: test
    perplexity (mean and standard deviation over seeds) and trainable counts, as a table."""
    from .models import load_model
    from .sweep import LocalExecutor
    from .train import evaluate, load_texts

    out = default_out(out, "runs/compare-%Y%m%d-%H%M%S")
    seeds = _seeds(seeds)

    def for_method(method: str, seed: int) -> RunConfig:
        generated = method.startswith("qpa-")
        return cfg.replace(
            method=method,
            seed=seed,
            completion=cfg.generator.completion if generated else "none",
            shots_factor=cfg.generator.shots_factor if generated else None,
        )

    trials = [
        Trial(
            f"{method}-s{seed}" if len(seeds) > 1 else method,
            for_method(method, seed),
            {"method": method, "seed": seed},
        )
        for method in methods
        for seed in seeds
    ]  # every setting is checked before anything runs
    definition = {"config": cfg.to_dict(), "methods": list(methods), "seeds": seeds}
    results, failures = run_study(out, "compare", definition, trials, executor or LocalExecutor(), log=log)
    base_file = out / "base.json"
    if base_file.exists():
        base = json.loads(base_file.read_text())
    else:
        loaded = load_model(cfg.task.model)
        result = evaluate(
            loaded.model, loaded, cfg.eval, load_texts(cfg, log), precision=cfg.training.precision
        )
        base = {"perplexity": result["perplexity"], "tokens": result["tokens"]}
        _write(out, "base.json", json.dumps(base, indent=2))
    t = cfg.training
    log(f"model {cfg.task.model}, data {cfg.task.data}, {t.steps} steps of {t.batch_size}x{t.block_size}")
    rows = [{"method": "base", "perplexity": base["perplexity"], "std": 0.0, "seeds": 1, "trainable": 0,
             "generated": 0, "qubits": None, "tokens": base["tokens"]}]  # fmt: skip
    seconds = {}
    for method in methods:
        mine = [r for r in results if r["axes"]["method"] == method]
        if not mine:
            continue
        mean, std = mean_std(r["perplexity"] for r in mine)
        counts = mine[0]["counts"]
        rows.append({"method": method, "perplexity": mean, "std": std, "seeds": len(mine),
                     "trainable": counts["trainable"], "generated": counts.get("generated", 0),
                     "qubits": counts.get("qubits"), "tokens": mine[0]["tokens"]})  # fmt: skip
        timed = [r["seconds_per_step"] for r in mine if r.get("seconds_per_step")]
        seconds[method] = statistics.median(timed) if timed else None
    spread = len(seeds) > 1
    title = "test perplexity (mean ± std over seeds)" if spread else "test perplexity"
    table = [f"| method | {title} | trainable parameters | adapter weights generated | s/step |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        gen = f"{r['generated']:,} ({r['qubits']} qubits)" if r["generated"] else "-"
        sec = f"{seconds[r['method']]:.2f}" if seconds.get(r["method"]) else "-"
        ppl = f"{r['perplexity']:.3f}" + (f" ± {r['std']:.3f}" if spread and r["method"] != "base" else "")
        table.append(f"| {r['method']} | {ppl} | {r['trainable']:,} | {gen} | {sec} |")
    text = "\n".join(table)
    log("\n" + text)
    _write_results(out, cfg, seeds, rows, results, failures)
    _write(out, "results.md", text + "\n")
    return rows


@measure("tvd")
def completion_tvd(run, samples: int = 20) -> dict[str, float]:
    """Mean total variation distance between the completed sampled distribution and the
    exact one, at the run's final circuit angles (over `samples` fresh shot samples)."""
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


def study_shots(
    cfg: RunConfig,
    out: str | Path | None = None,
    shots_factors=(1, 2, 5, 20),
    modes=MODES,
    tvd_samples: int = 20,
    seeds=(0,),
    executor=None,
    log=print,
) -> list[dict]:
    """QPA-LoRA on `cfg`'s backend for every shot factor c and completion mode, plus exact
    probabilities, for every seed: test perplexity and the TVD of the completed distribution
    to the exact one, mean and standard deviation over seeds."""
    from .sweep import LocalExecutor

    out = default_out(out, "runs/study-shots-%Y%m%d-%H%M%S")
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"completion mode must be one of {', '.join(MODES)}, got {mode!r}")
    seeds = _seeds(seeds)
    settings = [(None, "none")] + [(c, mode) for c in shots_factors for mode in modes]
    trials = []
    for c, mode in settings:
        for seed in seeds:
            name = ("exact" if c is None else f"c{c:g}-{mode}") + (f"-s{seed}" if len(seeds) > 1 else "")
            rcfg = cfg.replace(method="qpa-lora", shots_factor=c, completion=mode, seed=seed)
            axes = {"shots_factor": c, "completion": mode, "seed": seed}
            trials.append(Trial(name, rcfg, axes, {"tvd": {"samples": tvd_samples}}))
    definition = {"config": cfg.to_dict(), "shots_factors": list(shots_factors), "modes": list(modes),
                  "seeds": seeds, "tvd_samples": tvd_samples}  # fmt: skip
    results, failures = run_study(out, "shots", definition, trials, executor or LocalExecutor(), log=log)
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
                     "trainable": mine[0]["counts"]["trainable"]})  # fmt: skip
    _write_results(out, cfg, seeds, rows, results, failures)
    if any(r["shots_factor"] is None for r in rows) and len(rows) == len(settings):
        table = _table(rows, modes)
        _write(out, "results.md", table + "\n")
        _plot(rows, modes, out / "shots.png")
        log("\n" + table + f"\n\nwritten: {out / 'results.md'}, {out / 'shots.png'}")
    return rows


def _cell(row: dict, key: str, digits: int) -> str:
    """`mean` or `mean ± std` (several seeds)."""
    text = f"{row[key]:.{digits}f}"
    return text + (f" ± {row[key + '_std']:.{digits}f}" if row["seeds"] > 1 else "")


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
    lines.append("|" + "---|" * (2 + 2 * len(modes)))
    exact = next(r for r in rows if r["shots_factor"] is None)
    for c in sorted({r["shots_factor"] for r in rows if r["shots_factor"] is not None}):
        by_mode = {r["completion"]: r for r in rows if r["shots_factor"] == c}
        shots = next(iter(by_mode.values()))["shots"]
        ppl = " | ".join(_cell(by_mode[m], "perplexity", 3) for m in modes)
        tvd = " | ".join(_cell(by_mode[m], "tvd", 4) for m in modes)
        lines.append(f"| {c:g} | {shots} | {ppl} | {tvd} |")
    # exact probabilities leave nothing unmeasured: every mode is the identity there
    ppl = " | ".join(_cell(exact, "perplexity", 3) for _ in modes)
    lines.append(f"| exact | - | {ppl} | " + " | ".join("0" for _ in modes) + " |")
    return "\n".join(lines)


def _plot(rows: list[dict], modes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exact = next(r for r in rows if r["shots_factor"] is None)
    fig, (ax_ppl, ax_tvd) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in modes:
        keys = ("shots_factor", "perplexity", "perplexity_std", "tvd", "tvd_std")
        points = sorted(tuple(r[k] for k in keys) for r in rows
                        if r["completion"] == mode and r["shots_factor"] is not None)  # fmt: skip
        cs = [p[0] for p in points]
        ax_ppl.errorbar(cs, [p[1] for p in points], yerr=[p[2] for p in points], marker="o", capsize=3,
                        label=mode)  # fmt: skip
        ax_tvd.errorbar(cs, [p[3] for p in points], yerr=[p[4] for p in points], marker="o", capsize=3,
                        label=mode)  # fmt: skip
    ax_ppl.axhline(exact["perplexity"], color="black", linestyle="--", label="exact probabilities")
    for ax, label in ((ax_ppl, "test perplexity"), (ax_tvd, "TVD to the exact distribution")):
        ax.set_xscale("log")
        ax.set_xlabel("shots factor c (n_shot = c 2^N)")
        ax.set_ylabel(label)
        ax.legend()
    seeds = max(r["seeds"] for r in rows)
    spread = f", mean ± std over {seeds} seeds" if seeds > 1 else ""
    fig.suptitle(f"QPA-LoRA, completion of finite-shot distributions{spread}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
