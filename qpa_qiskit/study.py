"""Comparisons and studies built from training runs: ``qpa compare`` and ``qpa study shots``.

Each trained setting is an ordinary run folder under the study folder, and its perplexity is
read back with :func:`~qpa_qiskit.train.evaluate_run`, exactly what ``qpa eval`` of that
folder reports. Settings that differ in one value share every other initial value (the
components are seeded by name, :mod:`qpa_qiskit.seeding`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .backends import QPABackend
from .completion import MODES
from .config import RunConfig
from .errors import InputError
from .files import atomic_write
from .models import load_model
from .train import Run, evaluate, evaluate_run, load_texts


def new_output_dir(out, default_pattern: str) -> Path:
    """`out`, or a time-stamped default; refused if it exists and holds anything."""
    out = Path(out or time.strftime(default_pattern))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not empty; choose a new folder")
    return out


def _write(out: Path, name: str, text: str) -> None:
    atomic_write(out / name, text.encode())


def compare(cfg: RunConfig, out=None, methods=("lora", "qpa-lora"), log=print) -> list[dict]:
    """Base model, then each method trained with the same data, steps and seed: test
    perplexity and trainable counts, printed as a table and saved in `out`."""
    out = new_output_dir(out, "runs/compare-%Y%m%d-%H%M%S")

    def for_method(method: str) -> RunConfig:
        generated = method.startswith("qpa-")
        return cfg.replace(
            method=method,
            completion=cfg.generator.completion if generated else "none",
            shots_factor=cfg.generator.shots_factor if generated else None,
        )

    configs = {method: for_method(method) for method in methods}  # every method checked first
    base = load_model(cfg.task.model)
    texts = load_texts(cfg, log=lambda m: log(m))
    rows = []
    t = cfg.training
    log(f"model {base.name}, data {cfg.task.data}, {t.steps} steps of {t.batch_size}x{t.block_size} tokens")
    result = evaluate(base.model, base, cfg.eval, texts, precision=t.precision)
    rows.append({"method": "base", "perplexity": result["perplexity"], "tokens": result["tokens"],
                 "trainable": 0, "generated": 0, "seconds_per_step": None})  # fmt: skip
    log(f"base: test perplexity {result['perplexity']:.3f} ({result['tokens']} tokens)")
    for method, mcfg in configs.items():
        with Run.create(out / method, mcfg, loaded=base.fresh_copy(), texts=texts) as run:
            records = run.train()
        result = evaluate_run(out / method, loaded=base.fresh_copy(), texts=texts)
        counts = result["counts"]
        seconds = sorted(r["seconds"] for r in records)[len(records) // 2] if records else None
        rows.append({"method": method, "perplexity": result["perplexity"], "tokens": result["tokens"],
                     "trainable": counts["trainable"], "generated": counts.get("generated", 0),
                     "qubits": counts.get("qubits"), "seconds_per_step": seconds,
                     "final_loss": records[-1]["loss"] if records else None})  # fmt: skip
        log(f"{method}: test perplexity {result['perplexity']:.3f}, trainable {counts['trainable']}")
    table = ["| method | test perplexity | trainable parameters | adapter weights generated | s/step |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        gen = f"{r['generated']:,} ({r['qubits']} qubits)" if r["generated"] else "-"
        sec = f"{r['seconds_per_step']:.2f}" if r["seconds_per_step"] else "-"
        table.append(f"| {r['method']} | {r['perplexity']:.3f} | {r['trainable']:,} | {gen} | {sec} |")
    text = "\n".join(table)
    log("\n" + text)
    _write(out, "results.json", json.dumps({"config": cfg.to_dict(), "rows": rows}, indent=2))
    _write(out, "results.md", text + "\n")
    return rows


def completion_tvd(run: Run, samples: int = 20) -> float:
    """Mean total variation distance between the completed sampled distribution and the
    exact one, at the run's final circuit angles (over `samples` fresh shot samples)."""
    quantum = run.model.generator.quantum
    theta = quantum.theta.detach().numpy()
    exact = QPABackend("statevector").probabilities(quantum.circuit, theta)[0]
    if quantum.shots is None:
        return 0.0
    distances = []
    with torch.no_grad():
        for _ in range(samples):
            sampled = torch.from_numpy(quantum.backend.probabilities(quantum.circuit, theta)[0])
            if quantum.completion is not None:
                sampled = quantum.completion(sampled.float(), shots=quantum.shots).double()
            distances.append(0.5 * float(np.abs(sampled.numpy() - exact).sum()))
    return float(np.mean(distances))


def study_shots(
    cfg: RunConfig,
    out: str | Path | None = None,
    shots_factors=(1, 2, 5, 20),
    modes=MODES,
    tvd_samples: int = 20,
    log=print,
) -> list[dict]:
    """QPA-LoRA on `cfg`'s backend for every shot factor c and completion mode, plus exact
    probabilities: test perplexity and TVD of the completed distribution to the exact one."""
    out = new_output_dir(out, "runs/study-shots-%Y%m%d-%H%M%S")
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"completion mode must be one of {', '.join(MODES)}, got {mode!r}")
    settings = [(None, "none")] + [(c, mode) for c in shots_factors for mode in modes]
    configs = {
        ("exact" if c is None else f"c{c:g}-{mode}"): (
            c,
            mode,
            cfg.replace(method="qpa-lora", shots_factor=c, completion=mode),
        )
        for c, mode in settings
    }  # every setting is checked before anything runs
    base = load_model(cfg.task.model)
    texts = load_texts(cfg, log=lambda m: log(m))
    rows = []
    for name, (c, mode, rcfg) in configs.items():
        with Run.create(out / name, rcfg, loaded=base.fresh_copy(), texts=texts) as run:
            run.train(progress=False)
        ppl = evaluate_run(out / name, loaded=base.fresh_copy(), texts=texts)["perplexity"]
        with Run.open(out / name, for_training=False, loaded=base.fresh_copy(), texts=texts) as run:
            tvd = completion_tvd(run, tvd_samples)
            shots = run.model.generator.quantum.shots
            trainable = run.model.counts()["trainable"]
        rows.append({"shots_factor": c, "shots": shots, "completion": mode, "perplexity": ppl, "tvd": tvd,
                     "trainable": trainable})  # fmt: skip
        log(f"{name}: shots {shots or 'exact'}, perplexity {ppl:.3f}, TVD {tvd:.4f}")
    _write(out, "results.json", json.dumps({"config": cfg.to_dict(), "rows": rows}, indent=2))
    table = _table(rows, modes)
    _write(out, "results.md", table + "\n")
    _plot(rows, modes, out / "shots.png")
    log("\n" + table + f"\n\nwritten: {out / 'results.md'}, {out / 'shots.png'}")
    return rows


def _table(rows: list[dict], modes) -> str:
    lines = [
        "| c | shots | "
        + " | ".join(f"ppl {m}" for m in modes)
        + " | "
        + " | ".join(f"TVD {m}" for m in modes)
        + " |"
    ]
    lines.append("|" + "---|" * (2 + 2 * len(modes)))
    exact = next(r for r in rows if r["shots_factor"] is None)
    for c in sorted({r["shots_factor"] for r in rows if r["shots_factor"] is not None}):
        by_mode = {r["completion"]: r for r in rows if r["shots_factor"] == c}
        shots = next(iter(by_mode.values()))["shots"]
        ppl = " | ".join(f"{by_mode[m]['perplexity']:.3f}" for m in modes)
        tvd = " | ".join(f"{by_mode[m]['tvd']:.4f}" for m in modes)
        lines.append(f"| {c:g} | {shots} | {ppl} | {tvd} |")
    # exact probabilities leave nothing unmeasured: every mode is the identity there
    ppl = " | ".join(f"{exact['perplexity']:.3f}" for _ in modes)
    lines.append(f"| exact | - | {ppl} | " + " | ".join("0" for _ in modes) + " |")
    return "\n".join(lines)


def _plot(rows: list[dict], modes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exact = next(r for r in rows if r["shots_factor"] is None)
    fig, (ax_ppl, ax_tvd) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in modes:
        points = sorted((r["shots_factor"], r["perplexity"], r["tvd"]) for r in rows
                        if r["completion"] == mode and r["shots_factor"] is not None)  # fmt: skip
        cs = [p[0] for p in points]
        ax_ppl.plot(cs, [p[1] for p in points], marker="o", label=mode)
        ax_tvd.plot(cs, [p[2] for p in points], marker="o", label=mode)
    ax_ppl.axhline(exact["perplexity"], color="black", linestyle="--", label="exact probabilities")
    for ax, label in ((ax_ppl, "test perplexity"), (ax_tvd, "TVD to the exact distribution")):
        ax.set_xscale("log")
        ax.set_xlabel("shots factor c (n_shot = c 2^N)")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle("QPA-LoRA, completion of finite-shot distributions")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
