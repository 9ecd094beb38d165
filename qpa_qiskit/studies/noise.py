"""``qpa study noise``: QPA-LoRA under device noise, beside ideal and plain LoRA.

A grid of backends x rotations x noise scales x chunk sizes x shot factors (None: exact
probabilities) for every seed, with plain LoRA of one rank beside it: test perplexity,
trainable parameters, and the noise and shot TVDs at the trained angles; mean and standard
deviation over seeds, and each noisy setting's difference to the ideal one paired by seed.
``statevector`` runs once per setting (noise scales do not apply to it). Runs that differ in
one setting share every other initial value (components are seeded by name).

The study in its seams: the spec and its checks (:class:`NoiseStudy`), the grid
(:func:`quantum_settings`, :func:`quantum_trial`), the measure (:func:`noise_tvd`), the rows
(:func:`noise_rows`), the table (:func:`noise_table`) and the plots.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .. import validate
from ..backends import QPABackend, family_class
from ..backends.config import MITIGATIONS
from ..circuits import ROTATIONS
from ..errors import InputError
from ..intervals import PairedDifference, paired_reading
from ..train.run_config import RunConfig
from .report import (
    cell,
    chosen_rates,
    draw_differences,
    figure,
    lr_cell,
    mean_std,
    selected,
    write_file,
    write_results,
)
from .runner import Failure, Trial
from .spec import (
    MARGIN,
    StudySpec,
    check_seeds,
    check_tvd_samples,
    config_without,
    grid_values,
    margin_option,
    noise_scale,
    option,
    shot_factor_or_exact,
    with_rates,
)

# every noise switch on: what a statevector run records (it has no noise to switch)
ALL_NOISE = dict(gate_error=True, thermal_relaxation=True, readout_error=True)
LAYOUT_KEYWORDS = ("noise_aware", "preset")


def ideal_settings(cfg: RunConfig) -> dict[str, Any]:
    """What a statevector run of the study records beside the grid's fields: every noise switch
    on, and the layout of the noisy runs unless it names physical qubits, which a simulator
    without a device has not (``--layout Q0,Q1,...`` places the noisy runs only)."""
    layout = {} if cfg.backend.layout in LAYOUT_KEYWORDS else {"layout": "noise_aware"}
    return {**ALL_NOISE, **layout}


# the fields the grid sets are not part of the study's identity: the same grid from a base
# configuration with another backend or seed is the same study
GRID_FIELDS = ("method", "rank", "backend", "rotation", "noise_scale", "chunk_size", "shots_factor",
               "mitigation", "seed")  # fmt: skip
SETTING = ("label", "rotation", "noise_scale", "chunk_size", "shots_factor", "mitigation")


def backend_label(spec: str) -> str:
    """A short, file-name-safe label of a backend spec (``aer_noisy:noise_models/x.json`` -> x)."""
    head, _, device = spec.partition(":")
    if not device:
        return "ideal" if head.strip().lower() in ("statevector", "ideal") else head.strip()
    return Path(device.strip()).stem.removeprefix("fake_") if device.endswith(".json") else device.strip()


def _noisy(spec: str) -> bool:
    return spec.strip().lower().startswith("aer_noisy:")


@dataclass(frozen=True)
class NoiseStudy(StudySpec):
    """QPA-LoRA on every backend x rotation x noise scale x chunk size x shot factor and seed,
    plain LoRA of rank `lora_rank` beside it."""

    NAME: ClassVar[str] = "noise"
    HELP: ClassVar[str] = "ideal vs device noise: backends x rotations x noise scales, LoRA beside"
    OUT: ClassVar[str] = "runs/study-noise-%Y%m%d-%H%M%S"
    SET_BY_GRID: ClassVar[tuple[str, ...]] = ("method", "shots_factor", "backend", "rotation", "noise_scale",
                                              "chunk_size", "mitigation")  # fmt: skip

    backends: tuple[str, ...] = option(
        "statevector and aer_noisy:<fake device | snapshot> specs",
        ("statevector", "aer_noisy:brisbane", "aer_noisy:torino"),
    )
    rotations: tuple[str, ...] = option("ansatz rotations", ROTATIONS, choices=ROTATIONS)
    noise_scales: tuple[float, ...] = option(
        "noise scales s of the aer_noisy backends (errors x s, T1 and T2 / s)", (1.0,), parse=noise_scale
    )
    chunk_sizes: tuple[int, ...] | None = option(
        "chunk sizes (set the qubits and trainable parameters; default the config's 2048)", None, parse=int
    )
    shots_factors: tuple[float | None, ...] = option(
        "c: n_shot = c 2^N; 'exact' for exact probabilities (noise without shot noise)", (20.0,),
        parse=shot_factor_or_exact,
    )  # fmt: skip
    mitigations: tuple[str, ...] = option(
        "readout mitigation of the aer_noisy backends (statevector runs without)",
        ("none",),
        choices=MITIGATIONS,
    )
    lora_rank: int = option("rank of the classical LoRA reference", 4, parse=int, nargs=None)
    tvd_samples: int = option("shot samples averaged for the TVD", 20, parse=int, nargs=None)
    margin: float = margin_option(MARGIN)

    def config_defaults(self) -> dict[str, Any]:
        """The study defaults, and the first noisy backend as the configuration's: the noise
        switches are checked against it (statevector has none)."""
        noisy = [b for b in self.backends if _noisy(b)]
        return {**super().config_defaults(), "backend": noisy[0] if noisy else "statevector"}

    def trained_methods(self) -> list[str]:
        return ["qpa-lora", "lora"]

    def checked(self, cfg: RunConfig) -> NoiseStudy:
        seeds = check_seeds(self.seeds)
        backends = grid_values(self.backends, "backends", lambda b, n: validate.names([b], n)[0])
        rotations = grid_values(self.rotations, "rotations", lambda r, n: validate.one_of(r, n, ROTATIONS))
        noise_scales = grid_values(self.noise_scales, "noise_scales",
                                   lambda v, n: validate.number(v, n, minimum=0.0))  # fmt: skip
        chunk_sizes = [cfg.generator.chunk_size] if self.chunk_sizes is None else self.chunk_sizes
        chunk_sizes = grid_values(chunk_sizes, "chunk_sizes", validate.positive_int)
        positive = validate.positive_number
        shots_factors = grid_values(self.shots_factors, "shots_factors",
                                    lambda c, n: None if c is None else positive(c, n))  # fmt: skip
        mitigations = grid_values(self.mitigations, "mitigations",
                                  lambda m, n: validate.one_of(m, n, MITIGATIONS))  # fmt: skip
        lora_rank = validate.positive_int(self.lora_rank, "lora_rank")
        tvd_samples = check_tvd_samples(self.tvd_samples)
        margin = validate.positive_number(self.margin, "margin")
        for spec in backends:  # every backend is checked before anything runs (a missing snapshot, a typo)
            if family_class(spec).runs_remotely:
                raise InputError(
                    f"noise-study backends are simulators, statevector and aer_noisy:<device>; not {spec!r}"
                )
        if "m3" in mitigations and not cfg.backend.readout_error:
            raise InputError(
                "mitigations m3 corrects readout errors, and --no-readout-error simulates none: it would do "
                "nothing. Drop m3 from --mitigations, or keep the readout errors on"
            )
        labels = [backend_label(b) for b in backends]
        if len(set(labels)) != len(labels):
            raise InputError(f"backends {backends} have the same label {labels}; give each device once")
        return replace(self, seeds=seeds, backends=backends, rotations=rotations, noise_scales=noise_scales,
                       chunk_sizes=chunk_sizes, shots_factors=shots_factors, mitigations=mitigations,
                       lora_rank=lora_rank, tvd_samples=tvd_samples, margin=margin)  # fmt: skip

    def labels(self) -> list[str]:
        return [backend_label(b) for b in self.backends]

    def trials(self, cfg: RunConfig) -> list[Trial]:
        """LoRA for every seed, then QPA-LoRA for every setting and seed."""
        trials = [self.lora_trial(cfg, seed) for seed in self.seeds]
        trials += [quantum_trial(cfg, s, self) for s in quantum_settings(self)]
        return trials

    def lora_trial(self, cfg: RunConfig, seed: int) -> Trial:
        name = f"lora-r{self.lora_rank}" + (f"-s{seed}" if len(self.seeds) > 1 else "")
        rcfg = cfg.for_method("lora", rank=self.lora_rank, backend="statevector", noise_scale=1.0,
                              **ideal_settings(cfg), seed=seed)  # fmt: skip
        return Trial(name, rcfg, {"method": "lora", "seed": seed})

    def curve_label(self, axes: dict) -> str:
        """As the table names a setting: ``LoRA r=4 (classical)``, ``ideal RY c=20``, ``brisbane RY
        s=3 m3 exact``, the chunk size too where the study has several."""
        if axes["method"] == "lora":
            return with_rates(f"LoRA r={self.lora_rank} (classical)", axes)
        parts = [axes["label"], DESCRIBE["rotation"](axes["rotation"])]
        parts += [] if axes["label"] == "ideal" else [DESCRIBE["noise_scale"](axes["noise_scale"])]
        parts += [] if axes.get("mitigation", "none") == "none" else [axes["mitigation"]]
        parts += [DESCRIBE["shots_factor"](axes["shots_factor"])]
        parts += [DESCRIBE["chunk_size"](axes["chunk_size"])] if len(self.chunk_sizes or ()) > 1 else []
        return with_rates(" ".join(parts), axes)

    def definition(self, cfg: RunConfig) -> dict:
        return {
            "config": config_without(cfg, GRID_FIELDS),
            "backends": self.backends,
            "rotations": self.rotations,
            "noise_scales": self.noise_scales,
            "chunk_sizes": self.chunk_sizes,
            "shots_factors": self.shots_factors,
            **({"mitigations": self.mitigations} if self.mitigations != ("none",) else {}),
            "lora_rank": self.lora_rank,
            "seeds": self.seeds,
            "tvd_samples": self.tvd_samples,
        }

    def report(self, cfg: RunConfig, out: Path, results: list[dict], failures: dict[str, Failure],
               log: Callable[[str], None]) -> list[dict]:  # fmt: skip
        rows = noise_rows(results, self.labels(), list(self.rotations), self.margin)
        doses = dose_response(results, self.margin)
        write_results(
            out, cfg, self.seeds, rows, results, failures, {"dose_response": doses, "margin": self.margin}
        )
        if rows:
            text = noise_table(rows, cfg, self.seeds, self.margin) + dose_table(doses)
            write_file(out, "results.md", text + "\n")
            written = [out / "results.md", out / "noise-params.png"]
            plot_params(rows, out / "noise-params.png", self.margin)
            if len(self.noise_scales) > 1:
                plot_scales(rows, out / "noise-scales.png", self.margin)
                written.append(out / "noise-scales.png")
            log("\n" + text + "\n\nwritten: " + ", ".join(str(p) for p in written))
        return rows


study_noise = NoiseStudy.function("study_noise")


# --------------------------------------------------------------------------- the grid
class Setting(NamedTuple):
    """One QPA-LoRA run of the grid."""

    backend: str
    label: str
    rotation: str
    noise_scale: float
    chunk_size: int
    shots_factor: float | None
    mitigation: str
    seed: int


def quantum_settings(spec: NoiseStudy) -> Iterator[Setting]:
    """Every backend x rotation x noise scale and mitigation (noisy backends only; statevector
    at 1, unmitigated; scale 0 unmitigated) x chunk size x shot factor x seed, in that order."""
    for backend, label in zip(spec.backends, spec.labels(), strict=True):
        scales = spec.noise_scales if _noisy(backend) else [1.0]
        mitigations = spec.mitigations if _noisy(backend) else ["none"]
        grid = itertools.product(spec.rotations, scales, mitigations, spec.chunk_sizes, spec.shots_factors,
                                 spec.seeds)  # fmt: skip
        for rotation, scale, mitigation, chunk, c, seed in grid:
            if scale == 0 and mitigation != "none":  # a noiseless readout: mitigation would do nothing
                continue
            yield Setting(backend, label, rotation, scale, chunk, c, mitigation, seed)


def _trial_name(s: Setting, spec: NoiseStudy) -> str:
    """The setting's label and rotation, then each axis the grid varies."""
    parts = [s.label, s.rotation]
    parts += [f"x{s.noise_scale:g}"] if len(spec.noise_scales) > 1 and _noisy(s.backend) else []
    parts += [s.mitigation] if s.mitigation != "none" else []
    parts += [f"k{s.chunk_size}"] if len(spec.chunk_sizes) > 1 else []
    c = s.shots_factor
    parts += ["exact" if c is None else f"c{c:g}"] if len(spec.shots_factors) > 1 else []
    parts += [f"s{s.seed}"] if len(spec.seeds) > 1 else []
    return "-".join(parts)


def quantum_trial(cfg: RunConfig, s: Setting, spec: NoiseStudy) -> Trial:
    """The QPA-LoRA trial of one setting, measured with :func:`noise_tvd`."""
    rcfg = cfg.replace(method="qpa-lora", backend=s.backend, rotation=s.rotation, noise_scale=s.noise_scale,
                       chunk_size=s.chunk_size, shots_factor=s.shots_factor, mitigation=s.mitigation,
                       seed=s.seed,
                       **({} if _noisy(s.backend) else ideal_settings(cfg)))  # fmt: skip
    axes = {"method": "qpa-lora", **s._asdict()}
    return Trial(_trial_name(s, spec), rcfg, axes, {noise_tvd: {"samples": spec.tvd_samples}})


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


# --------------------------------------------------------------------------- the rows
def setting_of(result: dict) -> tuple:
    """The :data:`SETTING` of a finished run (runs recorded before the mitigation axis: none)."""
    return tuple(result["axes"].get(k, "none") if k == "mitigation" else result["axes"][k] for k in SETTING)


def noise_rows(
    results: list[dict], labels: list[str], rotations: list[str], margin: float = MARGIN
) -> list[dict]:
    """One row per setting: mean and std over seeds; for noisy settings the difference to the
    ideal setting of the same rotation, chunk size and shots, and for mitigated ones the
    difference to the same setting unmitigated, paired by seed, each read against `margin`."""
    rows = []
    lora = [r for r in results if r["axes"]["method"] == "lora"]
    if lora:
        rows.append(_classical_row(lora))
    quantum = [r for r in results if r["axes"]["method"] == "qpa-lora"]
    order = {label: i for i, label in enumerate(labels)}
    settings = sorted(
        {setting_of(r) for r in quantum},
        key=lambda s: (
            order.get(s[0], len(order)),
            rotations.index(s[1]) if s[1] in rotations else len(rotations),
            s[2],
            s[3],
            -1 if s[4] is None else s[4],
            MITIGATIONS.index(s[5]),
        ),
    )
    by_seed = {(setting_of(r), r["axes"]["seed"]): r for r in quantum}
    for setting in settings:
        mine = [r for r in quantum if setting_of(r) == setting]
        rows.append(_setting_row(setting, mine, by_seed, margin))
    return rows


def _classical_row(lora: list[dict]) -> dict:
    """The row of the classical LoRA runs: mean and std over seeds, no quantum axes."""
    ppl, std = mean_std(r["perplexity"] for r in lora)
    return {
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
        **chosen_rates(lora),
    }


def _setting_row(setting: tuple, mine: list[dict], by_seed: dict, margin: float) -> dict:
    """The row of one QPA-LoRA `setting` from its runs `mine`: means and stds over seeds,
    and the differences paired by seed (`by_seed`) that :func:`noise_rows` names."""
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
            **chosen_rates(mine),
        }
    )
    label, rotation, scale, chunk, c, mitigation = setting
    if label != "ideal":
        row.update(_paired(by_seed, mine, ("ideal", rotation, 1.0, chunk, c, "none"), "vs_ideal", margin))
    if mitigation != "none":
        unmitigated = (label, rotation, scale, chunk, c, "none")
        row.update(_paired(by_seed, mine, unmitigated, "vs_unmitigated", margin))
    return row


def _paired(by_seed: dict, mine: list[dict], against: tuple, name: str, margin: float) -> dict:
    """``name``, ``name_std``, ``name_pairs`` and ``name_equivalence`` (against `margin`): the
    perplexity of the runs `mine` minus that of setting `against`, paired by seed; {} if none pair."""
    pairs = [r["perplexity"] - by_seed[(against, r["axes"]["seed"])]["perplexity"]
             for r in mine if (against, r["axes"]["seed"]) in by_seed]  # fmt: skip
    if not pairs:
        return {}
    diff = PairedDifference.of(pairs)
    return {name: diff.mean, f"{name}_std": diff.std, f"{name}_pairs": diff.n,
            f"{name}_equivalence": diff.equivalence(margin)}  # fmt: skip


def dose_response(results: list[dict], margin: float = MARGIN) -> list[dict]:
    """Perplexity against noise scale: per device, rotation, chunk size, shots and mitigation,
    each seed's least-squares slope over its scales (the ideal run of the seed as s = 0, where
    there is one), then their mean and t-based 95% interval over seeds, read against `margin`
    (a change of `margin` perplexity per unit of noise scale). Settings with one scale and no
    ideal have no slope."""
    quantum = [r for r in results if r["axes"]["method"] == "qpa-lora"]
    ideal = {(r["axes"]["rotation"], r["axes"]["chunk_size"], r["axes"]["shots_factor"], r["axes"]["seed"]): r
             for r in quantum if r["axes"]["label"] == "ideal"}  # fmt: skip
    groups: dict[tuple, dict[int, list[tuple[float, float]]]] = {}
    for r in quantum:
        a = r["axes"]
        if a["label"] != "ideal":
            key = (a["label"], a["rotation"], a["chunk_size"], a["shots_factor"], a.get("mitigation", "none"))
            groups.setdefault(key, {}).setdefault(a["seed"], []).append((a["noise_scale"], r["perplexity"]))
    out = []
    for (label, rotation, chunk, c, mitigation), seeds in groups.items():
        slopes = []
        for seed, points in sorted(seeds.items()):
            zero = ideal.get((rotation, chunk, c, seed))
            points = points + ([(0.0, zero["perplexity"])] if zero is not None else [])
            if len({x for x, _ in points}) >= 2:
                slopes.append(float(np.polyfit([x for x, _ in points], [y for _, y in points], 1)[0]))
        if slopes:
            slope = PairedDifference.of(slopes)
            scales = sorted({x for points in seeds.values() for x, _ in points})
            out.append({"label": label, "rotation": rotation, "chunk_size": chunk, "shots_factor": c,
                        "mitigation": mitigation, "scales": [0.0, *scales], "slope": slope.to_dict(),
                        "reading": slope.reading(margin),
                        "equivalence": slope.equivalence(margin)})  # fmt: skip
    return out


# --------------------------------------------------------------------------- the table
def _reading(row: dict, name: str = "vs_ideal") -> str:
    """A paired difference with its t-based 95% interval and verdict."""
    if name not in row:
        return "-"
    return paired_reading(row[name], row[f"{name}_std"], row[f"{name}_pairs"])


def noise_table(rows: list[dict], cfg: RunConfig, seeds, margin: float = MARGIN) -> str:
    note = f"mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else "one seed"
    t = cfg.training
    lines = [
        f"QPA-LoRA under device noise: {cfg.task.model}, {t.steps} steps of {t.batch_size}x{t.block_size}, "
        f"{note}; perplexity on the test split ({cfg.eval.eval_tokens or 'all'} tokens). Paired by seed: "
        "mean ± std [t-based 95% interval] verdict; at ±margin: inside, outside or undecided against the "
        f"equivalence margin {margin:g} stated before the runs.",
        "",
        "| backend | rotation | noise scale | mitigation | chunk | shots | test perplexity "
        "| vs ideal (paired by seed) | at ±margin | m3 vs none | TVD ideal-noisy | TVD shots-exact "
        "| trainable | qubits |",
        "|" + "---|" * 14,
    ]
    rates = selected(rows)  # the rates chosen on the dev split
    if rates:
        lines[-2] += " lr (chosen) |"
        lines[-1] += "---|"
    for r in rows:
        lr = f" {lr_cell(r)} |" if rates else ""
        if r["method"] == "lora":
            ppl = f"{r['perplexity']:.3f}" + (f" ± {r['perplexity_std']:.3f}" if r["seeds"] > 1 else "")
            lines.append(
                f"| LoRA (classical) | - | - | - | - | - | {ppl} | - | - | - | - | - "
                f"| {r['trainable']:,} | - |{lr}"
            )
            continue
        shots = "exact" if r["shots_factor"] is None else f"c={r['shots_factor']:g}"
        scale = "-" if r["label"] == "ideal" else f"{r['noise_scale']:g}"
        mitigation = "-" if r["label"] == "ideal" else r["mitigation"]
        lines.append(
            f"| {r['label']} | {r['rotation'].upper()} | {scale} | {mitigation} | {r['chunk_size']} "
            f"| {shots} | "
            f"{cell(r, 'perplexity', 3)} | {_reading(r)} | {r.get('vs_ideal_equivalence', '-')} | "
            f"{_reading(r, 'vs_unmitigated')} | {cell(r, 'tvd_noise', 4)} | "
            f"{cell(r, 'tvd_shots', 4)} | {r['trainable']:,} | {r['qubits']} |{lr}"
        )
    return "\n".join(lines)


def dose_table(doses: list[dict]) -> str:
    """The dose-response slopes as Markdown ('' when no setting has two scales)."""
    if not doses:
        return ""
    lines = [
        "",
        "",
        "Dose-response: each seed's least-squares slope of test perplexity against the noise scale "
        "(ideal as s = 0), mean ± std over seeds [t-based 95% interval] verdict; at ±margin: the margin "
        "per unit of noise scale.",
        "",
        "| backend | rotation | mitigation | chunk | shots | scales | slope (perplexity per unit s) "
        "| at ±margin |",
        "|" + "---|" * 8,
    ]
    for d in doses:
        shots = "exact" if d["shots_factor"] is None else f"c={d['shots_factor']:g}"
        scales = ", ".join(f"{x:g}" for x in d["scales"])
        lines.append(f"| {d['label']} | {d['rotation'].upper()} | {d['mitigation']} | {d['chunk_size']} | "
                     f"{shots} | {scales} | {d['reading']} | {d['equivalence']} |")  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------- the plots
# how a grid field reads in a figure's legend or title
DESCRIBE: dict[str, Callable[[Any], str]] = {
    "label": str,
    "rotation": lambda r: str(r).upper(),
    "noise_scale": lambda s: f"s={s:g}",
    "mitigation": lambda m: "unmitigated" if m == "none" else str(m),
    "shots_factor": lambda c: "exact" if c is None else f"c={c:g}",
    "chunk_size": lambda k: f"k={k}",
}


def _vs_ideal(row: dict) -> PairedDifference:
    return PairedDifference(row["vs_ideal"], row["vs_ideal_std"], row["vs_ideal_pairs"])


def _key(row: dict, fields: tuple[str, ...]) -> tuple:
    """A row's series (rows recorded before the mitigation axis: none)."""
    return tuple(row.get(f, "none") if f == "mitigation" else row[f] for f in fields)


def _paired_series(rows: list[dict], fields: tuple[str, ...]) -> tuple[dict[tuple, list[dict]], dict, str]:
    """The noisy rows paired with ideal, by series (`fields`, in the table's order); each series'
    name from the fields that differ between them (the device always); the others as text."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "vs_ideal" in r:
            groups.setdefault(_key(r, fields), []).append(r)
    keys = list(groups)
    varying = [i for i, f in enumerate(fields) if f == "label" or len({k[i] for k in keys}) > 1]
    names = {k: " ".join(DESCRIBE[fields[i]](k[i]) for i in varying) for k in keys}
    shared = ", ".join(DESCRIBE[f](keys[0][i]) for i, f in enumerate(fields) if keys and i not in varying)
    return groups, names, shared


def _draw_vs_ideal(rows: list[dict], path: Path, what: str, fields: tuple[str, ...],
                   x: Callable[[dict], float], margin: float | None) -> tuple | None:  # fmt: skip
    """The figure of each noisy setting's paired difference from ideal against `x`, one series
    per value of `fields`; returns its axes for the caller's x axis (None: nothing paired)."""
    fig = figure((9, 4.5))
    ax = fig.subplots()
    groups, names, shared = _paired_series(rows, fields)
    series = {names[k]: [(x(r), _vs_ideal(r)) for r in sorted(g, key=x)] for k, g in groups.items()}
    if not series:
        ax.text(0.5, 0.5, "no noisy setting has an ideal run to pair with", ha="center",
                transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
        fig.savefig(path, dpi=120)
        return None
    draw_differences(ax, series, margin)
    seeds = max(r["vs_ideal_pairs"] for g in groups.values() for r in g)
    ax.set_ylabel("test perplexity minus ideal's\n(same rotation, chunk and shots; paired by seed)")
    ax.set_title(f"{what}: noisy minus ideal, {seeds} seeds, bars: t-based 95% interval"
                 + (f"\n{shared}" if shared else ""), fontsize=10)  # fmt: skip
    return fig, ax


def plot_params(rows: list[dict], path: Path, margin: float | None = None) -> None:
    """Each noisy setting's paired difference from ideal per chunk size (its trainable
    parameters), with its 95% interval; one series per device, rotation, scale, shots and
    mitigation. The perplexities themselves, LoRA's among them, are in the table: their spread
    over seeds is far larger than these differences and hides them."""
    chunks = sorted({r["chunk_size"] for r in rows if "vs_ideal" in r})
    drawn = _draw_vs_ideal(rows, path, "QPA-LoRA under device noise",
                           ("label", "rotation", "noise_scale", "shots_factor", "mitigation"),
                           lambda r: chunks.index(r["chunk_size"]), margin)  # fmt: skip
    if drawn is None:
        return
    fig, ax = drawn
    trainable = {r["chunk_size"]: r["trainable"] for r in rows if r["method"] == "qpa-lora"}
    ax.set_xticks(range(len(chunks)), [f"k={k}\n{trainable[k]:,} trainable" for k in chunks])
    ax.set_xlim(-0.5, len(chunks) - 0.5)
    ax.set_xlabel("chunk size and trainable parameters")
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_scales(rows: list[dict], path: Path, margin: float | None = None) -> None:
    """Each noisy setting's paired difference from ideal against the noise scale, with its 95%
    interval; one series per device, rotation, chunk size, shots and mitigation."""
    drawn = _draw_vs_ideal(rows, path, "QPA-LoRA against noise strength",
                           ("label", "rotation", "chunk_size", "shots_factor", "mitigation"),
                           lambda r: r["noise_scale"], margin)  # fmt: skip
    if drawn is None:
        return
    fig, ax = drawn
    ax.set_xticks(sorted({r["noise_scale"] for r in rows if "vs_ideal" in r}))
    ax.set_xlabel("noise scale s (errors x s, T1 and T2 / s)")
    fig.savefig(path, dpi=120, bbox_inches="tight")
