"""Studies that sweep a setting over short QPA fine-tunes: ``qpa study shots``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from .backends import QPABackend
from .completion import MODES
from .data import load_wikitext
from .errors import InputError
from .models import load_model
from .train import Run, TrainConfig, new_output_dir


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
    cfg: TrainConfig,
    out: str | Path | None = None,
    shots_factors=(1, 2, 5, 20),
    modes=MODES,
    tvd_samples: int = 20,
    log=print,
) -> list[dict]:
    """QPA-LoRA on `cfg.backend` for every shot factor c and completion mode, plus exact
    probabilities: test perplexity and TVD of the completed distribution to the exact one."""
    out = new_output_dir(out, "runs/study-shots-%Y%m%d-%H%M%S")
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"completion mode must be one of {MODES}, got {mode!r}")
    for c in shots_factors:
        if not c > 0:
            raise InputError(f"shot factors must be > 0, got {c!r}")
    base = load_model(cfg.model)
    texts = load_wikitext(cfg.data)
    settings = [(None, "none")] + [(c, mode) for c in shots_factors for mode in modes]
    rows = []
    for c, mode in settings:
        name = "exact" if c is None else f"c{c:g}-{mode}"
        rcfg = TrainConfig(
            **{**dataclasses.asdict(cfg), "method": "qpa-lora", "shots_factor": c, "completion": mode}
        )
        run = Run(out / name, rcfg, loaded=base.fresh_copy(), texts=texts)
        run.train(progress=False)
        tvd = completion_tvd(run, tvd_samples)
        ppl = run.evaluate()["perplexity"]
        shots = run.model.generator.quantum.shots
        rows.append({"shots_factor": c, "shots": shots, "completion": mode, "perplexity": ppl, "tvd": tvd,
                     "trainable": run.model.counts()["trainable"]})  # fmt: skip
        log(f"{name}: shots {shots or 'exact'}, perplexity {ppl:.3f}, TVD {tvd:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "rows": rows}, indent=2))
    table = _table(rows, modes)
    (out / "results.md").write_text(table + "\n")
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
