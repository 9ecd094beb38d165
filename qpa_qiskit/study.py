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

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from . import validate
from .adapters import METHODS
from .backends import QPABackend, parse_spec
from .completion import MODES
from .config import RunConfig
from .errors import InputError, StateError
from .files import atomic_write, json_bytes, read_json
from .intervals import paired_reading
from .models import load_model
from .sweep import LocalExecutor, Trial, grid_values, mean_std, measure, raise_if_failed, run_study
from .train import evaluate, load_texts


def default_out(out, pattern: str) -> Path:
    """`out`, or a time-stamped new folder."""
    return Path(out or time.strftime(pattern))


def write_file(out: Path, name: str, text: str | bytes) -> None:
    """A file of the study folder, whole or not at all; a write that fails names the file."""
    try:
        atomic_write(out / name, text if isinstance(text, bytes) else text.encode())
    except OSError as exc:
        raise StateError(
            f"cannot write {out / name} ({type(exc).__name__}: {exc}); the runs are kept. Fix the "
            "permissions or free some space, then run the same command again (nothing is trained twice)"
        ) from None


def write_json(out: Path, name: str, data) -> None:
    """Strict JSON (a NaN or infinity is refused, naming where it is) in the study folder."""
    write_file(out, name, json_bytes(data, str(out / name), indent=2))


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


def check_seeds(seeds) -> list[int]:
    return grid_values(seeds, "seeds", lambda v, n: validate.integer(v, n, minimum=0, maximum=2**63 - 1))


def write_results(out: Path, cfg: RunConfig, seeds, rows, results, failures) -> None:
    """``results.json``: the aggregated rows and every finished run, sorted by name, with no
    timing (the file must not depend on the machine or the order the runs finished in)."""
    trials = sorted(({k: v for k, v in r.items() if k != "seconds_per_step"} for r in results),
                    key=lambda r: r["name"])  # fmt: skip
    summary = {"config": cfg.to_dict(), "seeds": seeds, "rows": rows, "trials": trials}
    write_json(out, "results.json", {**summary, "failed": sorted(failures)})


def compare(cfg: RunConfig, out=None, methods=("lora", "qpa-lora"), seeds=(0,), executor=None, log=print):
    """The base model, then each method trained with the same data, steps and seeds: test
    perplexity (mean and standard deviation over seeds) and trainable counts, as a table."""
    out = default_out(out, "runs/compare-%Y%m%d-%H%M%S")
    seeds = check_seeds(seeds)
    methods = grid_values(methods, "methods", lambda m, n: validate.one_of(m, n, METHODS))

    trials = [
        Trial(
            f"{method}-s{seed}" if len(seeds) > 1 else method,
            cfg.for_method(method, seed=seed),
            {"method": method, "seed": seed},
        )
        for method in methods
        for seed in seeds
    ]  # every setting is checked before anything runs
    definition = {"config": cfg.to_dict(), "methods": list(methods), "seeds": seeds}
    results, failures = run_study(out, "compare", definition, trials, executor or LocalExecutor(), log=log)
    base_file = out / "base.json"
    if base_file.exists():
        base = read_json(base_file, "the base model's result", "delete it to evaluate the base model again")
    else:
        loaded = load_model(cfg.task.model)
        result = evaluate(
            loaded.model, loaded, cfg.eval, load_texts(cfg, log), precision=cfg.training.precision
        )
        base = {"perplexity": result["perplexity"], "tokens": result["tokens"]}
        write_json(out, "base.json", base)
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
    write_results(out, cfg, seeds, rows, results, failures)
    write_file(out, "results.md", text + "\n")
    raise_if_failed(out, failures, len(trials), rows)
    return rows


@measure("tvd")
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
    out = default_out(out, "runs/study-shots-%Y%m%d-%H%M%S")
    modes = grid_values(modes, "modes", lambda m, n: validate.one_of(m, n, MODES))
    shots_factors = grid_values(shots_factors, "shots_factors", validate.positive_number)
    tvd_samples = check_tvd_samples(tvd_samples)
    seeds = check_seeds(seeds)
    settings = [(None, "none")] + [(c, mode) for c in shots_factors for mode in modes]
    trials = []
    for c, mode in settings:
        for seed in seeds:
            name = ("exact" if c is None else f"c{c:g}-{mode}") + (f"-s{seed}" if len(seeds) > 1 else "")
            rcfg = cfg.replace(method="qpa-lora", shots_factor=c, completion=mode, seed=seed)
            axes = {"shots_factor": c, "completion": mode, "seed": seed}
            trials.append(Trial(name, rcfg, axes, {completion_tvd: {"samples": tvd_samples}}))
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
    write_results(out, cfg, seeds, rows, results, failures)
    if any(r["shots_factor"] is None for r in rows) and len(rows) == len(settings):
        table = _table(rows, modes)
        write_file(out, "results.md", table + "\n")
        _plot(rows, modes, out / "shots.png")
        log("\n" + table + f"\n\nwritten: {out / 'results.md'}, {out / 'shots.png'}")
    raise_if_failed(out, failures, len(trials), rows)
    return rows


def cell(row: dict, key: str, digits: int) -> str:
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
        ppl = " | ".join(cell(by_mode[m], "perplexity", 3) for m in modes)
        tvd = " | ".join(cell(by_mode[m], "tvd", 4) for m in modes)
        lines.append(f"| {c:g} | {shots} | {ppl} | {tvd} |")
    # exact probabilities leave nothing unmeasured: every mode is the identity there
    ppl = " | ".join(cell(exact, "perplexity", 3) for _ in modes)
    lines.append(f"| exact | - | {ppl} | " + " | ".join("0" for _ in modes) + " |")
    return "\n".join(lines)


def _plot(rows: list[dict], modes, path: Path) -> None:
    exact = next(r for r in rows if r["shots_factor"] is None)
    fig = figure((10, 4))
    ax_ppl, ax_tvd = fig.subplots(1, 2)
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


# --------------------------------------------------------------------------- noise study
@measure("noise_tvd")
def noise_tvd(run, samples: int = 20) -> dict[str, float]:
    """At the run's final circuit angles: the total variation distance between the ideal
    and the backend's exact noisy distributions (``tvd_noise``), and between shot samples
    and that same backend's exact distribution (``tvd_shots``, mean over `samples`)."""
    samples = check_tvd_samples(samples)
    quantum = run.model.generator.quantum
    theta = quantum.theta.detach().numpy()
    ideal = QPABackend("statevector").probabilities(quantum.circuit, theta)[0]
    exact_backend = QPABackend.from_config(
        run.cfg.replace(shots_factor=None).backend, seed=run.cfg.training.seed
    )
    exact = exact_backend.probabilities(quantum.circuit, theta)[0]
    shots = 0.0
    if quantum.shots is not None:
        draws = [quantum.backend.probabilities(quantum.circuit, theta)[0] for _ in range(samples)]
        shots = float(np.mean([0.5 * np.abs(d - exact).sum() for d in draws]))
    return {"tvd_noise": 0.5 * float(np.abs(exact - ideal).sum()), "tvd_shots": shots}


def backend_label(spec: str) -> str:
    """A short, file-name-safe label of a backend spec (``aer_noisy:noise_models/x.json`` -> x)."""
    head, _, device = spec.partition(":")
    if not device:
        return "ideal" if head.strip().lower() in ("statevector", "ideal") else head.strip()
    return Path(device.strip()).stem.removeprefix("fake_") if device.endswith(".json") else device.strip()


def _noisy(spec: str) -> bool:
    return spec.strip().lower().startswith("aer_noisy:")


def study_noise(
    cfg: RunConfig,
    out: str | Path | None = None,
    backends=("statevector", "aer_noisy:brisbane", "aer_noisy:torino"),
    rotations=("ry", "rx"),
    noise_scales=(1.0,),
    chunk_sizes=None,
    shots_factors=(20.0,),
    lora_rank: int = 4,
    tvd_samples: int = 20,
    seeds=(0,),
    executor=None,
    log=print,
) -> list[dict]:
    """QPA-LoRA on a grid of backends x rotations x noise scales x chunk sizes x shot
    factors (None: exact probabilities) for every seed, with plain LoRA of rank `lora_rank`
    beside it: test perplexity, trainable parameters, and the noise and shot TVDs at the
    trained angles; mean and standard deviation over seeds, and each noisy setting's
    difference to the ideal one paired by seed.

    ``statevector`` runs once per setting (noise scales do not apply to it). Runs that
    differ in one setting share every other initial value (components are seeded by name).
    """
    out = default_out(out, "runs/study-noise-%Y%m%d-%H%M%S")
    seeds = check_seeds(seeds)
    backends = grid_values(backends, "backends", lambda b, n: validate.names([b], n)[0])
    rotations = grid_values(rotations, "rotations", lambda r, n: validate.one_of(r, n, ("ry", "rx")))
    noise_scales = grid_values(noise_scales, "noise_scales", lambda v, n: validate.number(v, n, minimum=0.0))
    chunk_sizes = [cfg.generator.chunk_size] if chunk_sizes is None else chunk_sizes
    chunk_sizes = grid_values(chunk_sizes, "chunk_sizes", validate.positive_int)
    shots_factors = grid_values(
        shots_factors, "shots_factors", lambda c, n: None if c is None else validate.positive_number(c, n)
    )
    lora_rank = validate.positive_int(lora_rank, "lora_rank")
    tvd_samples = check_tvd_samples(tvd_samples)
    for spec in backends:  # every backend is checked before anything runs (a missing snapshot, a typo)
        family, _ = parse_spec(spec)
        if family not in ("statevector", "aer_noisy"):
            raise InputError(
                f"noise-study backends are simulators, statevector and aer_noisy:<device>; not {spec!r}"
            )
    labels = [backend_label(b) for b in backends]
    if len(set(labels)) != len(labels):
        raise InputError(f"backends {backends} have the same label {labels}; give each device once")

    trials = []
    for seed in seeds:
        name = f"lora-r{lora_rank}" + (f"-s{seed}" if len(seeds) > 1 else "")
        rcfg = cfg.for_method(
            "lora",
            rank=lora_rank,
            backend="statevector",
            noise_scale=1.0,
            gate_error=True,
            thermal_relaxation=True,
            readout_error=True,
            seed=seed,
        )
        trials.append(Trial(name, rcfg, {"method": "lora", "seed": seed}))
    for spec, label in zip(backends, labels, strict=True):
        for rotation in rotations:
            for scale in noise_scales if _noisy(spec) else [1.0]:
                for chunk in chunk_sizes:
                    for c in shots_factors:
                        for seed in seeds:
                            parts = [label, rotation]
                            parts += [f"x{scale:g}"] if len(noise_scales) > 1 and _noisy(spec) else []
                            parts += [f"k{chunk}"] if len(chunk_sizes) > 1 else []
                            parts += ["exact" if c is None else f"c{c:g}"] if len(shots_factors) > 1 else []
                            parts += [f"s{seed}"] if len(seeds) > 1 else []
                            noise = (
                                {}
                                if _noisy(spec)
                                else dict(gate_error=True, thermal_relaxation=True, readout_error=True)
                            )
                            rcfg = cfg.replace(
                                method="qpa-lora",
                                backend=spec,
                                rotation=rotation,
                                noise_scale=scale,
                                chunk_size=chunk,
                                shots_factor=c,
                                seed=seed,
                                **noise,
                            )
                            axes = {
                                "method": "qpa-lora",
                                "backend": spec,
                                "label": label,
                                "rotation": rotation,
                                "noise_scale": scale,
                                "chunk_size": chunk,
                                "shots_factor": c,
                                "seed": seed,
                            }
                            trials.append(
                                Trial("-".join(parts), rcfg, axes, {noise_tvd: {"samples": tvd_samples}})
                            )
    # the fields the grid sets are not part of the study's identity: the same grid from a base
    # configuration with another backend or seed is the same study
    axes = ("method", "rank", "backend", "rotation", "noise_scale", "chunk_size", "shots_factor", "seed")
    definition = {
        "config": config_without(cfg, axes),
        "backends": backends,
        "rotations": rotations,
        "noise_scales": noise_scales,
        "chunk_sizes": chunk_sizes,
        "shots_factors": shots_factors,
        "lora_rank": lora_rank,
        "seeds": seeds,
        "tvd_samples": tvd_samples,
    }
    results, failures = run_study(out, "noise", definition, trials, executor or LocalExecutor(), log=log)
    rows = _noise_rows(results, labels, rotations)
    write_results(out, cfg, seeds, rows, results, failures)
    if rows:
        text = _noise_table(rows, cfg, seeds)
        write_file(out, "results.md", text + "\n")
        written = [out / "results.md", out / "noise-params.png"]
        _noise_plot_params(rows, out / "noise-params.png")
        if len(noise_scales) > 1:
            _noise_plot_scales(rows, out / "noise-scales.png")
            written.append(out / "noise-scales.png")
        log("\n" + text + "\n\nwritten: " + ", ".join(str(p) for p in written))
    raise_if_failed(out, failures, len(trials), rows)
    return rows


SETTING = ("label", "rotation", "noise_scale", "chunk_size", "shots_factor")


def _noise_rows(results: list[dict], labels: list[str], rotations: list[str]) -> list[dict]:
    """One row per setting: mean and std over seeds, and (noisy settings) the difference to
    the ideal setting of the same rotation, chunk size and shots, paired by seed."""
    rows = []
    lora = [r for r in results if r["axes"]["method"] == "lora"]
    if lora:
        ppl, std = mean_std(r["perplexity"] for r in lora)
        rows.append(
            {
                "method": "lora",
                "label": "classical",
                "rotation": None,
                "noise_scale": None,
                "chunk_size": None,
                "shots_factor": None,
                "seeds": len(lora),
                "perplexity": ppl,
                "perplexity_std": std,
                "trainable": lora[0]["counts"]["trainable"],
                "qubits": None,
            }
        )
    quantum = [r for r in results if r["axes"]["method"] == "qpa-lora"]
    order = {label: i for i, label in enumerate(labels)}
    settings = sorted(
        {tuple(r["axes"][k] for k in SETTING) for r in quantum},
        key=lambda s: (
            order.get(s[0], len(order)),
            rotations.index(s[1]) if s[1] in rotations else len(rotations),
            s[2],
            s[3],
            -1 if s[4] is None else s[4],
        ),
    )
    by_seed = {(tuple(r["axes"][k] for k in SETTING), r["axes"]["seed"]): r for r in quantum}
    for setting in settings:
        mine = [r for r in quantum if tuple(r["axes"][k] for k in SETTING) == setting]
        ppl, std = mean_std(r["perplexity"] for r in mine)
        tvd_noise, tvd_noise_std = mean_std(r["tvd_noise"] for r in mine)
        tvd_shots, tvd_shots_std = mean_std(r["tvd_shots"] for r in mine)
        row = dict(zip(SETTING, setting, strict=True))
        row.update(
            {
                "method": "qpa-lora",
                "backend": mine[0]["axes"]["backend"],
                "seeds": len(mine),
                "perplexity": ppl,
                "perplexity_std": std,
                "tvd_noise": tvd_noise,
                "tvd_noise_std": tvd_noise_std,
                "tvd_shots": tvd_shots,
                "tvd_shots_std": tvd_shots_std,
                "trainable": mine[0]["counts"]["trainable"],
                "qubits": mine[0]["counts"].get("qubits"),
            }
        )
        ideal = ("ideal", setting[1], 1.0, setting[3], setting[4])
        pairs = [
            r["perplexity"] - by_seed[(ideal, r["axes"]["seed"])]["perplexity"]
            for r in mine
            if (ideal, r["axes"]["seed"]) in by_seed
        ]
        if setting[0] != "ideal" and pairs:
            diff, diff_std = mean_std(pairs)
            row.update({"vs_ideal": diff, "vs_ideal_std": diff_std, "vs_ideal_pairs": len(pairs)})
        rows.append(row)
    return rows


def _reading(row: dict) -> str:
    """The paired difference to ideal with its t-based 95% interval and verdict."""
    if "vs_ideal" not in row:
        return "-"
    return paired_reading(row["vs_ideal"], row["vs_ideal_std"], row["vs_ideal_pairs"])


def _noise_table(rows: list[dict], cfg: RunConfig, seeds) -> str:
    note = f"mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else "one seed"
    t = cfg.training
    lines = [
        f"QPA-LoRA under device noise: {cfg.task.model}, {t.steps} steps of {t.batch_size}x{t.block_size}, "
        f"{note}; perplexity on the test split ({cfg.eval.eval_tokens or 'all'} tokens).",
        "",
        "| backend | rotation | noise scale | chunk | shots | test perplexity | vs ideal (paired by seed) "
        "| TVD ideal-noisy | TVD shots-exact | trainable | qubits |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        if r["method"] == "lora":
            ppl = f"{r['perplexity']:.3f}" + (f" ± {r['perplexity_std']:.3f}" if r["seeds"] > 1 else "")
            lines.append(f"| LoRA (classical) | - | - | - | - | {ppl} | - | - | - | {r['trainable']:,} | - |")
            continue
        shots = "exact" if r["shots_factor"] is None else f"c={r['shots_factor']:g}"
        scale = "-" if r["label"] == "ideal" else f"{r['noise_scale']:g}"
        lines.append(
            f"| {r['label']} | {r['rotation'].upper()} | {scale} | {r['chunk_size']} | {shots} | "
            f"{cell(r, 'perplexity', 3)} | {_reading(r)} | {cell(r, 'tvd_noise', 4)} | "
            f"{cell(r, 'tvd_shots', 4)} | {r['trainable']:,} | {r['qubits']} |"
        )
    return "\n".join(lines)


def _series(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] == "qpa-lora":
            out.setdefault((r["label"], r["rotation"], r["noise_scale"], r["shots_factor"]), []).append(r)
    return out


def figure(size: tuple[float, float]):
    """A matplotlib Figure drawn without pyplot: saving it never touches the caller's
    backend or open figures (a notebook that runs a study keeps its inline plots)."""
    # lazy: matplotlib (seconds), only when a plot is drawn
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _noise_plot_params(rows: list[dict], path: Path) -> None:
    """Perplexity against trainable parameters, one series per noise setting (as in the
    published figure), LoRA as the classical reference."""
    fig = figure((7, 4.5))
    ax = fig.subplots()
    for (label, rotation, scale, c), series in sorted(_series(rows).items(), key=lambda kv: str(kv[0])):
        series = sorted(series, key=lambda r: r["trainable"])
        name = f"{label} {rotation.upper()}" + (f" x{scale:g}" if label != "ideal" and scale != 1 else "")
        name += "" if c is None else f" c={c:g}"
        ax.errorbar(
            [r["trainable"] for r in series],
            [r["perplexity"] for r in series],
            yerr=[r["perplexity_std"] for r in series],
            marker="o",
            capsize=3,
            label=name,
            linestyle="--" if label == "ideal" else "-",
        )
    for r in rows:
        if r["method"] == "lora":
            ax.errorbar(
                [r["trainable"]],
                [r["perplexity"]],
                yerr=[r["perplexity_std"]],
                marker="s",
                color="black",
                capsize=3,
                linestyle="none",
                label="LoRA (classical)",
            )
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test perplexity")
    seeds = max(r["seeds"] for r in rows)
    ax.set_title("QPA-LoRA: ideal vs device noise" + (f" (mean ± std, {seeds} seeds)" if seeds > 1 else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _noise_plot_scales(rows: list[dict], path: Path) -> None:
    """Perplexity against the noise scale per device and rotation; ideal as a dashed line."""
    fig = figure((7, 4.5))
    ax = fig.subplots()
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] == "qpa-lora" and r["label"] != "ideal":
            groups.setdefault((r["label"], r["rotation"], r["chunk_size"], r["shots_factor"]), []).append(r)
    for (label, rotation, chunk, c), series in sorted(groups.items(), key=lambda kv: str(kv[0])):
        series = sorted(series, key=lambda r: r["noise_scale"])
        ax.errorbar(
            [r["noise_scale"] for r in series],
            [r["perplexity"] for r in series],
            yerr=[r["perplexity_std"] for r in series],
            marker="o",
            capsize=3,
            label=f"{label} {rotation.upper()} k={chunk}" + ("" if c is None else f" c={c:g}"),
        )
    for r in rows:
        if r["method"] == "qpa-lora" and r["label"] == "ideal":
            ax.axhline(r["perplexity"], linestyle="--", linewidth=1, color="gray")
    ax.set_xlabel("noise scale s (errors x s, T1 and T2 / s)")
    ax.set_ylabel("test perplexity")
    ax.set_title("QPA-LoRA against noise strength (dashed: ideal)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
