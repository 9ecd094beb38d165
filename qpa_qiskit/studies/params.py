"""``qpa study params``: test perplexity against trainable parameters for every adapter.

The published QPA picture for one model: the classical methods over their sizes (LoRA and
DoRA over ranks, prefix tuning over virtual tokens, FFA over bottleneck widths, VeRA over
ranks, IA3), and the QPA versions over chunk sizes (so over qubit counts and mapping sizes)
and ansatz layers L, each for several seeds; LoRA, DoRA and their QPA versions on every
target set (``lm_head``, and the attention projections ``q_proj,v_proj``, where LoRA r = 1
is the nearest classical peer of QPA-LoRA on ``lm_head``). Every QPA row is set against the
classical run nearest to it in trainable parameters (on a log scale) whatever its targets,
paired by seed, with a reading of whether the difference is larger than the spread over
seeds. The runs go through the study runner (:func:`~.runner.run_study`), so an interrupted
study resumes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from .. import validate
from ..adapters import METHODS, TUNERS
from ..adapters.config import TUNER_SETTINGS
from ..adapters.registry import MISSING_TARGET
from ..errors import InputError
from ..intervals import paired_reading
from ..train.run_config import RunConfig
from .report import base_result, chosen_rates, figure, lr_cell, mean_std, selected, write_file, write_results
from .runner import Executor, Failure, Trial
from .spec import StudySpec, check_seeds, config_without, grid_values, option, replace_default, with_rates

PARAMS_METHODS = (
    "lora",
    "dora",
    "prefix",
    "ffa",
    "vera",
    "ia3",
    "qpa-lora",
    "qpa-dora",
    "qpa-prefix",
    "qpa-ffa",
)
# the fields a grid sets, left out of the study's identity
GRID_FIELDS = ("method", "rank", "bottleneck", "prefix_tokens", "chunk_size", "reps", "seed",
               "shots_factor", "completion", "targets")  # fmt: skip
SETTING = ("method", "size", "chunk_size", "reps", "targets")
QPA_METHODS = tuple(m for m in PARAMS_METHODS if m.startswith("qpa-"))
# the methods that take targets (prefix tuning adapts every layer's attention, chosen by none)
TARGET_METHODS = tuple(m for m in PARAMS_METHODS if m.removeprefix("qpa-") in TUNER_SETTINGS["targets"])
# a module name as torch names them (dotted attribute names), so that a run folder's name is safe
MODULE_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def target_set(value: Any, name: str = "target_sets") -> list[str]:
    """One target set: module names, as a comma-separated text (``q_proj,v_proj``, what the
    command line gives) or a list; each a module name, none repeated."""
    label = f"{name} (--target-sets)"
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)):
        raise InputError(f"{label}: a target set is a comma-separated list of module names, got {value!r}")
    names = [n.strip() if isinstance(n, str) else n for n in names]
    if not names or not all(isinstance(n, str) and MODULE_NAME.fullmatch(n) for n in names):
        raise InputError(
            f"{label}: {value!r} is not a list of module names (such as lm_head or q_proj,v_proj: "
            "letters, digits, _ and -, dotted for a path such as attn.c_attn)"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{label}: {value!r} names {', '.join(repeated)} more than once; give each once")
    return names


def targets_tag(targets: list[str] | None) -> str:
    """A target set in a run's folder name: ``q_proj+v_proj`` ('' for a method's default)."""
    return "+".join(targets) if targets else ""


@dataclass(frozen=True)
class ParamsStudy(StudySpec):
    """Every adapter over its sizes, the QPA methods over chunk sizes and ansatz layers L, the
    methods of `target_methods` on each of `target_sets`, for every seed (see :meth:`trials`);
    writes ``results.json``, ``results.md`` and the plots ``params.png`` (perplexity against
    trainable parameters), ``qubits.png`` (qubits against trainable parameters) and
    ``reps.png`` (perplexity against L)."""

    NAME: ClassVar[str] = "params"
    HELP: ClassVar[str] = (
        "perplexity against trainable parameters: every adapter over its sizes, QPA over chunk sizes and L"
    )
    OUT: ClassVar[str] = "runs/study-params-%Y%m%d-%H%M%S"
    SET_BY_GRID: ClassVar[tuple[str, ...]] = ("method", "rank", "bottleneck", "prefix_tokens", "chunk_size",
                                              "reps", "shots_factor", "completion", "targets")  # fmt: skip

    methods: tuple[str, ...] = option("adapters to run", PARAMS_METHODS, choices=PARAMS_METHODS)
    ranks: tuple[int, ...] = option("LoRA and DoRA ranks", (1, 4, 16), parse=int)
    vera_ranks: tuple[int, ...] = option("VeRA ranks", (256,), parse=int)
    prefix_tokens: tuple[int, ...] = option(
        "prefix tuning virtual tokens", (8,), flag="--prefix-token-counts", parse=int
    )
    bottlenecks: tuple[int, ...] = option("FFA bottleneck widths", (16,), parse=int)
    chunk_sizes: tuple[int, ...] = option(
        "QPA chunk sizes (set the qubits and the mapping's size)", (512, 2048, 8192), parse=int
    )
    chunk_methods: tuple[str, ...] = option(
        "QPA methods swept over --chunk-sizes; the others run at the middle one", ("qpa-lora", "qpa-dora"),
        choices=QPA_METHODS,
    )  # fmt: skip
    reps: tuple[int, ...] = option(
        "ansatz layers L swept for --reps-methods at the middle chunk size", (2, 8, 16), flag="--reps-values",
        parse=int,
    )  # fmt: skip
    reps_methods: tuple[str, ...] = option(
        "QPA methods swept over --reps-values", ("qpa-lora",), choices=QPA_METHODS
    )
    target_sets: tuple[Any, ...] = option(
        "the modules --target-methods adapt, each set comma-separated (lm_head q_proj,v_proj: two sets)",
        ("lm_head", "q_proj,v_proj"),
    )
    target_methods: tuple[str, ...] = option(
        "methods run on every --target-sets (their whole grid on each); the others on their default targets",
        ("lora", "dora", "qpa-lora", "qpa-dora"), choices=TARGET_METHODS,
    )  # fmt: skip
    # methods differ in the rate they need: each family's grid by default (selection.FAMILY_LRS)
    lrs: tuple[float, ...] | str = replace_default(StudySpec, "lrs", "family")

    def trained_methods(self) -> list[str]:
        return list(self.methods)

    def checked(self, cfg: RunConfig) -> ParamsStudy:
        seeds = check_seeds(self.seeds)
        methods = grid_values(self.methods, "methods", lambda m, n: validate.one_of(m, n, PARAMS_METHODS))
        ranks = grid_values(self.ranks, "ranks", validate.positive_int)
        vera_ranks = grid_values(self.vera_ranks, "vera_ranks", validate.positive_int)
        prefix_tokens = grid_values(self.prefix_tokens, "prefix_tokens", validate.positive_int,
                                    option="--prefix-token-counts")  # fmt: skip
        bottlenecks = grid_values(self.bottlenecks, "bottlenecks", validate.positive_int)
        chunk_sizes = grid_values(self.chunk_sizes, "chunk_sizes", validate.positive_int)
        reps = grid_values(self.reps, "reps", validate.positive_int, option="--reps-values")
        generated = tuple(m for m in METHODS if m.startswith("qpa-"))

        def qpa(values, name):
            return grid_values(values, name, lambda m, n: validate.one_of(m, n, generated), allow_empty=True)

        def takes_targets(method: Any, name: str) -> str:
            if method in PARAMS_METHODS and method not in TARGET_METHODS:
                raise InputError(
                    f"{name} (--target-methods): {method} takes no targets (prefix tuning adapts every "
                    f"layer's attention); accepted: {', '.join(TARGET_METHODS)}"
                )
            return validate.one_of(method, name, TARGET_METHODS)

        target_sets = grid_values(self.target_sets, "target_sets", target_set)
        for i, one in enumerate(target_sets):  # the same modules in another order are the same set
            if any(set(one) == set(other) for other in target_sets[:i]):
                raise InputError(
                    f"target_sets (--target-sets) lists {','.join(one)} more than once (in another order); "
                    "give each set once"
                )
        target_methods = grid_values(self.target_methods, "target_methods", takes_targets, allow_empty=True)
        return replace(self, seeds=seeds, methods=methods, ranks=ranks, vera_ranks=vera_ranks,
                       prefix_tokens=prefix_tokens, bottlenecks=bottlenecks, chunk_sizes=chunk_sizes,
                       reps=reps, chunk_methods=qpa(self.chunk_methods, "chunk_methods"),
                       reps_methods=qpa(self.reps_methods, "reps_methods"), target_sets=target_sets,
                       target_methods=target_methods)  # fmt: skip

    def run(self, cfg: RunConfig | None = None, out: str | Path | None = None,
            executor: Executor | None = None, log: Callable[[str], None] = print) -> Any:  # fmt: skip
        """:meth:`StudySpec.run`, with a target module the model lacks (found by the grid check
        before anything runs) said to come from --target-sets: no other setting sets targets."""
        try:
            return super().run(cfg, out, executor, log)
        except InputError as exc:
            if MISSING_TARGET not in str(exc):
                raise
            given = " ".join(t if isinstance(t, str) else ",".join(t) for t in self.target_sets)
            raise InputError(
                f"{exc}. The study's targets are --target-sets (now {given}): give module names of this model"
            ) from None

    def trials(self, cfg: RunConfig) -> list[Trial]:
        """The grid: each classical method over its sizes; the QPA methods in `chunk_methods`
        over `chunk_sizes` at the configuration's L, the others at the middle chunk size; the
        methods in `reps_methods` also over `reps` at the middle chunk size; all of it for the
        methods of `target_methods` once per target set."""
        trials = []
        for name, changes, axes in self.settings(cfg):
            for seed in self.seeds:
                trials.append(
                    Trial(
                        name + (f"-s{seed}" if len(self.seeds) > 1 else ""),
                        # every setting is checked here, before anything runs; classical methods
                        # drop the settings only QPA takes
                        cfg.for_method(**changes, seed=seed),
                        {**axes, "seed": seed},
                    )
                )
        return trials

    def settings(self, cfg: RunConfig) -> list[tuple[str, dict, dict]]:
        """(name, changes, axes) of every setting of the grid: the methods of `target_methods`
        once per target set (named with it), the others on their default targets."""
        settings: list[tuple[str, dict, dict]] = []
        for method in self.methods:
            if method not in self.target_methods:
                settings += self._method_settings(cfg, method, None)
                continue
            for targets in self.target_sets:
                targets = target_set(targets)
                for name, changes, axes in self._method_settings(cfg, method, targets):
                    settings.append((f"{name}-{targets_tag(targets)}", changes, axes))
        return settings

    def _method_settings(
        self, cfg: RunConfig, method: str, targets: list[str] | None
    ) -> list[tuple[str, dict, dict]]:
        """(name, changes, axes) of one method's settings on `targets` (None: its default)."""
        tuner = TUNERS[method.removeprefix("qpa-")]
        common = {"method": method, "targets": targets}
        if method.startswith("qpa-"):
            middle = sorted(self.chunk_sizes)[len(self.chunk_sizes) // 2]
            chunks = self.chunk_sizes if method in self.chunk_methods else [middle]
            grid = [(k, cfg.generator.reps) for k in chunks]
            if method in self.reps_methods:
                grid += [(middle, L) for L in self.reps if (middle, L) not in grid]
            size = getattr(cfg.adapter, tuner.size) if tuner.size else None
            return [
                (f"{method}-k{chunk}-L{layers}", {**common, "chunk_size": chunk, "reps": layers},
                 {**common, "size": size, "chunk_size": chunk, "reps": layers})
                for chunk, layers in grid
            ]  # fmt: skip
        by_size = {"rank": self.vera_ranks if method == "vera" else self.ranks,
                   "prefix_tokens": self.prefix_tokens, "bottleneck": self.bottlenecks}  # fmt: skip
        settings = []
        for size in by_size.get(tuner.size, [None]):
            changes = {**common, tuner.size: size} if tuner.size else dict(common)
            tag = {"rank": "r", "prefix_tokens": "p", "bottleneck": "b"}.get(tuner.size, "")
            name = method + (f"-{tag}{size}" if tuner.size else "")
            settings.append((name, changes, {**common, "size": size, "chunk_size": None, "reps": None}))
        return settings

    def curve_label(self, axes: dict) -> str:
        """The setting as the table names it (``lora r=1 on q_proj,v_proj``), with its chosen rates."""
        size_field = TUNERS[axes["method"].removeprefix("qpa-")].size
        return with_rates(_label({**axes, "size_field": size_field}), axes)

    def definition(self, cfg: RunConfig) -> dict:
        return {
            "config": config_without(cfg, GRID_FIELDS),
            "methods": self.methods,
            "ranks": self.ranks,
            "vera_ranks": self.vera_ranks,
            "prefix_tokens": self.prefix_tokens,
            "bottlenecks": self.bottlenecks,
            "chunk_sizes": self.chunk_sizes,
            "reps": self.reps,
            "chunk_methods": self.chunk_methods,
            "reps_methods": self.reps_methods,
            "target_sets": self.target_sets,
            "target_methods": self.target_methods,
            "seeds": self.seeds,
        }

    def report(self, cfg: RunConfig, out: Path, results: list[dict], failures: dict[str, Failure],
               log: Callable[[str], None]) -> list[dict]:  # fmt: skip
        base = base_result(out, cfg, log)
        rows = params_rows(results, list(self.methods), list(self.target_sets))
        write_results(out, cfg, self.seeds, rows, results, failures)
        if rows:
            text = params_table(rows, cfg, self.seeds, base)
            write_file(out, "results.md", text + "\n")
            written = [out / "results.md", out / "params.png", out / "qubits.png"]
            plot_params(rows, base, out / "params.png")
            plot_qubits(rows, out / "qubits.png")
            if len({r["reps"] for r in rows if r["reps"] is not None}) > 1:  # a sweep over L to draw
                plot_reps(rows, out / "reps.png")
                written.append(out / "reps.png")
            log("\n" + text + "\n\nwritten: " + ", ".join(str(p) for p in written))
        return rows


study_params = ParamsStudy.function("study_params")


def _key(r: dict) -> tuple:
    """A result's setting, hashable (a target set as a tuple; None: the method's default)."""
    targets = r["axes"].get("targets")
    return (*(r["axes"][k] for k in SETTING[:-1]), None if targets is None else tuple(targets))


def params_rows(results: list[dict], methods: list[str], target_sets: list | None = None) -> list[dict]:
    """One row per setting: perplexity mean and std over seeds, counts; for QPA rows the
    nearest classical row in trainable parameters (whatever its targets) and the difference to
    it paired by seed, and the nearest of its own tuner (on the same targets where there is one).
    Rows in the order of `methods`, then of `target_sets` (default targets first)."""
    order = {m: i for i, m in enumerate(methods)}
    sets = [tuple(target_set(t)) for t in target_sets or []]

    def place(s: tuple) -> tuple:
        targets = s[-1]
        where = -1 if targets is None else sets.index(targets) if targets in sets else len(sets)
        return (order.get(s[0], len(order)), where, targets or (), *(v or 0 for v in s[1:-1]))

    settings = sorted({_key(r) for r in results}, key=place)
    rows = []
    for setting in settings:
        mine = [r for r in results if _key(r) == setting]
        ppl, std = mean_std(r["perplexity"] for r in mine)
        counts = mine[0]["counts"]
        row = dict(zip(SETTING, setting, strict=True))
        row["targets"] = None if setting[-1] is None else list(setting[-1])
        row.update(
            size_field=TUNERS[setting[0].removeprefix("qpa-")].size,
            generated=counts.get("generated", 0),
            qubits=counts.get("qubits"),
            trainable=counts["trainable"],
            seeds=len(mine),
            perplexity=ppl,
            perplexity_std=std,
            by_seed={r["axes"]["seed"]: r["perplexity"] for r in mine},
            **chosen_rates(mine),
        )
        rows.append(row)
    classical = [r for r in rows if not r["method"].startswith("qpa-")]
    for row in rows:
        if not row["method"].startswith("qpa-"):
            continue
        own = [c for c in classical if c["method"] == row["method"].removeprefix("qpa-")]
        own = [c for c in own if c["targets"] == row["targets"]] or own  # the same targets first
        for key, pool in (("peer", classical), ("own", own)):  # any method and targets; the same tuner
            if pool:
                _pair(row, min(pool, key=lambda c: abs(math.log(c["trainable"] / row["trainable"]))), key)
    for row in rows:
        row["by_seed"] = {str(k): v for k, v in sorted(row["by_seed"].items())}
    return rows


def _pair(row: dict, peer: dict, key: str) -> None:
    """Record `peer` under `key` in `row`, with the perplexity difference paired by seed."""
    row[key] = _label(peer)
    row[f"{key}_trainable"] = peer["trainable"]
    pairs = [p - peer["by_seed"][s] for s, p in row["by_seed"].items() if s in peer["by_seed"]]
    if pairs:
        diff, diff_std = mean_std(pairs)
        row.update({f"vs_{key}": diff, f"vs_{key}_std": diff_std, f"vs_{key}_pairs": len(pairs)})


def _label(row: dict) -> str:
    """A row's method, its size and its targets where the study set them: ``lora r=4``,
    ``qpa-lora k=2048 L=8``, ``lora r=1 on q_proj,v_proj``."""
    on = _on(row.get("targets"))
    if row["method"].startswith("qpa-"):
        return f"{row['method']} k={row['chunk_size']} L={row['reps']}{on}"
    tag = {"rank": "r", "prefix_tokens": "tokens", "bottleneck": "b"}.get(row["size_field"])
    return row["method"] + (f" {tag}={row['size']}" if tag else "") + on


def _on(targets: list[str] | tuple[str, ...] | None) -> str:
    """`` on q_proj,v_proj``, or '' for a method's default targets."""
    return f" on {','.join(targets)}" if targets else ""


def params_table(rows: list[dict], cfg: RunConfig, seeds, base: dict) -> str:
    note = f"mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else "one seed"
    t = cfg.training
    rates = selected(rows)
    lr = "at the lr chosen per setting on the dev split" if rates else f"at lr {t.lr:g}"
    lines = [
        f"Perplexity against trainable parameters: {cfg.task.model}, {t.steps} steps of "
        f"{t.batch_size}x{t.block_size} {lr}, {note}; test perplexity over "
        f"{base['tokens']:,} tokens (base model {base['perplexity']:.3f}).",
        "",
        "| method | trainable | qubits | weights generated | test perplexity | nearest classical peer "
        "| vs peer (paired by seed) | nearest of its own tuner | vs own tuner (paired by seed) |"
        + (" lr (chosen) |" if rates else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if rates else ""),
    ]

    def versus(r: dict, key: str) -> tuple[str, str]:
        if key not in r:
            return "-", "-"
        peer = f"{r[key]} ({r[f'{key}_trainable']:,})"
        if f"vs_{key}" not in r:
            return peer, "-"
        return peer, paired_reading(r[f"vs_{key}"], r[f"vs_{key}_std"], r[f"vs_{key}_pairs"])

    for r in rows:
        ppl = f"{r['perplexity']:.3f}" + (f" ± {r['perplexity_std']:.3f}" if r["seeds"] > 1 else "")
        qubits = "-" if r["qubits"] is None else str(r["qubits"])
        generated = f"{r['generated']:,}" if r["generated"] else "-"
        cells = [_label(r), f"{r['trainable']:,}", qubits, generated, ppl]
        cells += [*versus(r, "peer"), *versus(r, "own")] + ([lr_cell(r)] if rates else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _families(rows: list[dict], only_l: bool = True) -> dict[tuple[str, tuple | None], list[dict]]:
    """Rows per (method, target set), for lines: QPA rows at the most common L (the chunk-size
    sweep)."""
    out: dict[tuple[str, tuple | None], list[dict]] = {}
    for r in rows:
        out.setdefault((r["method"], None if r["targets"] is None else tuple(r["targets"])), []).append(r)
    if only_l:
        for family, series in out.items():
            if family[0].startswith("qpa-"):
                common = max({r["reps"] for r in series}, key=lambda L: sum(r["reps"] == L for r in series))
                out[family] = [r for r in series if r["reps"] == common]
    return out


def _markers(rows: list[dict]) -> dict[tuple | None, tuple[str, str]]:
    """A (classical, QPA) marker per target set, in the order the rows name them: the default
    targets squares and circles, the study's sets triangles, diamonds, ..."""
    sets = list(dict.fromkeys(None if r["targets"] is None else tuple(r["targets"]) for r in rows))
    shapes = iter(["^", "D", "v", "P", "X", "*", "<", ">", "h"] * len(sets))
    return {t: ("s", "o") if t is None else (shape := next(shapes), shape) for t in sets}


def plot_params(rows: list[dict], base: dict, path: Path) -> None:
    """Perplexity against trainable parameters (log axis): classical methods open markers,
    QPA methods filled, in the colour of their classical tuner; one line per method and target
    set, the set's own marker shape (:func:`_markers`), named in the legend."""
    fig = figure((8, 5))
    ax = fig.subplots()
    colours = {t: f"C{i}" for i, t in enumerate(TUNERS)}
    markers = _markers(rows)
    for (method, targets), series in _families(rows).items():
        series = sorted(series, key=lambda r: r["trainable"])
        quantum = method.startswith("qpa-")
        ax.errorbar(
            [r["trainable"] for r in series],
            [r["perplexity"] for r in series],
            yerr=[r["perplexity_std"] for r in series],
            marker=markers[targets][quantum],
            markerfacecolor=None if quantum else "white",
            color=colours[method.removeprefix("qpa-")],
            linestyle="-" if quantum else "--",
            capsize=3,
            label=method + _on(targets),
        )
    ax.axhline(base["perplexity"], color="gray", linewidth=1, linestyle=":", label="base model")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test perplexity")
    seeds = max(r["seeds"] for r in rows)
    ax.set_title(
        "Perplexity against trainable parameters" + (f" (mean ± std, {seeds} seeds)" if seeds > 1 else "")
    )
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_qubits(rows: list[dict], path: Path) -> None:
    """Qubits N against trainable parameters of each QPA setting, chunk sizes annotated; one
    line per method and target set (its marker as in params.png)."""
    fig = figure((7, 4.5))
    ax = fig.subplots()
    colours = {t: f"C{i}" for i, t in enumerate(TUNERS)}
    markers = _markers(rows)
    for (method, targets), series in _families(rows).items():
        if not method.startswith("qpa-"):
            continue
        series = sorted(series, key=lambda r: r["trainable"])
        ax.plot([r["trainable"] for r in series], [r["qubits"] for r in series],
                marker=markers[targets][1], color=colours[method.removeprefix("qpa-")],
                label=method + _on(targets))  # fmt: skip
        for r in series:
            ax.annotate(f"k={r['chunk_size']}", (r["trainable"], r["qubits"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))  # fmt: skip
    # lazy: matplotlib (seconds), only when a plot is drawn
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("qubits N")
    ax.set_title("QPA: qubits against trainable parameters (k: chunk size)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_reps(rows: list[dict], path: Path) -> None:
    """Perplexity against the ansatz layers L at a fixed chunk size."""
    fig = figure((7, 4.5))
    ax = fig.subplots()
    for (method, targets), series in _families(rows, only_l=False).items():
        if not method.startswith("qpa-"):
            continue
        by_chunk: dict[int, list[dict]] = {}
        for r in series:
            by_chunk.setdefault(r["chunk_size"], []).append(r)
        for chunk, group in sorted(by_chunk.items()):
            if len(group) < 2:
                continue
            group = sorted(group, key=lambda r: r["reps"])
            ax.errorbar([r["reps"] for r in group], [r["perplexity"] for r in group],
                        yerr=[r["perplexity_std"] for r in group], marker="o", capsize=3,
                        label=f"{method} k={chunk}{_on(targets)}")  # fmt: skip
    ax.set_xlabel("ansatz layers L")
    ax.set_ylabel("test perplexity")
    ax.set_title("QPA: perplexity against circuit depth")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
