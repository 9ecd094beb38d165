"""What a study writes and shows: its folder's files, its tables' cells, its curves and figures.

Every study's report (:meth:`~.spec.StudySpec.report`) aggregates its finished runs over seeds
(:func:`mean_std`), writes ``results.json`` (:func:`write_results`) and its Markdown tables and
plots through the helpers here: a file of the study folder whole or not at all
(:func:`write_file`, :func:`write_json`), a table's cells (:func:`cell`, :func:`lr_cell`), a
figure drawn without pyplot (:func:`figure`) and the paired differences a reading rests on
drawn with their intervals (:func:`draw_differences`). The pipeline (:mod:`.pipeline`) adds the learning
curves of any study (:func:`write_curves`). :func:`base_result` is the base model's perplexity,
the row a table sets the trained adapters against.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, StateError
from ..files import atomic_write, json_bytes, read_json
from ..intervals import PairedDifference
from ..train import evaluate, run_device
from ..train.run_config import RunConfig
from .curves import MARKERS, curves_table, draw_curves, mean_curves, setting_label
from .runner import BaseModels
from .selection import CHOSEN_FIELDS, rate_text


# --------------------------------------------------------------------------- the study folder's files
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


def write_results(out: Path, cfg: RunConfig, seeds, rows, results, failures,
                  extra: dict[str, Any] | None = None) -> None:  # fmt: skip
    """``results.json``: the aggregated rows (and `extra`: further tables by name) and every
    finished run, sorted by name, with no timing (the file must not depend on the machine or
    the order the runs finished in)."""
    trials = sorted(({k: v for k, v in r.items() if k != "seconds_per_step"} for r in results),
                    key=lambda r: r["name"])  # fmt: skip
    summary = {"config": cfg.to_dict(), "seeds": seeds, "rows": rows, **(extra or {}), "trials": trials}
    write_json(out, "results.json", {**summary, "failed": sorted(failures)})


def base_result(out: Path, cfg: RunConfig, log: Callable[[str], None]) -> dict:
    """The base model's test perplexity and tokens scored under `cfg`'s evaluation, kept in
    ``base.json`` of the study folder (evaluated once: a resumed study reads it back)."""
    base_file = out / "base.json"
    if base_file.exists():
        return read_json(base_file, "the base model's result", "delete it to evaluate the base model again")
    loaded, texts = BaseModels(log).get(cfg)
    try:
        device = run_device(cfg)  # where the study's runs are evaluated
    except InputError:  # their device is on a cluster's nodes, not on this driver: scored here
        device = torch.device("cpu")
    model = loaded.model if device.type == "cpu" else loaded.fresh_copy().model.to(device)
    result = evaluate(model, loaded, cfg.eval, texts, precision=cfg.training.precision)
    base = {"perplexity": result["perplexity"], "tokens": result["tokens"]}
    write_json(out, "base.json", base)
    return base


# --------------------------------------------------------------------------- rows and cells
def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def chosen_rates(runs: list[dict]) -> dict:
    """A row's chosen rates and their edge flags, from its setting's runs (they share them);
    nothing without a learning-rate selection."""
    return {k: runs[0][k] for k in CHOSEN_FIELDS if k in runs[0]} if runs else {}


def selected(rows: Iterable[dict]) -> bool:
    """The rows' rates were chosen on the dev split: their tables show them."""
    return any("lr" in r for r in rows)


def cell(row: dict, key: str, digits: int) -> str:
    """`mean` or `mean ± std` (several seeds)."""
    text = f"{row[key]:.{digits}f}"
    return text + (f" ± {row[key + '_std']:.{digits}f}" if row["seeds"] > 1 else "")


def lr_cell(row: dict) -> str:
    """The chosen rates of a row: ``3e-03``, ``1e-02 (edge)``, with a qpa-* row's circuit rate
    (``3e-03, circuit 1e-03 (edge)``); ``-`` for a row with no run (the base model)."""
    if "lr" not in row:
        return "-"
    text = rate_text(row["lr"]) + (" (edge)" if row.get("lr_edge") else "")
    if row.get("circuit_lr") is not None:
        text += f", circuit {rate_text(row['circuit_lr'])}" + (
            " (edge)" if row.get("circuit_lr_edge") else ""
        )
    return text


# --------------------------------------------------------------------------- figures and curves
def figure(size: tuple[float, float]):
    """A matplotlib Figure drawn without pyplot: saving it never touches the caller's
    backend or open figures (a notebook that runs a study keeps its inline plots)."""
    # lazy: matplotlib (seconds), only when a plot is drawn
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _offsets(xs: list[float], count: int, log: bool) -> float:
    """The sideways step between series, so points at one x stay apart: 40% of the smallest gap
    between distinct x values (in decades on a log axis) spread over the series."""
    values = sorted({math.log10(x) if log else x for x in xs})
    gap = min((b - a for a, b in pairwise(values)), default=1.0)
    return 0.4 * gap / max(count, 1)


def style(index: int) -> dict[str, str]:
    """The colour and marker of a figure's `index`-th series: ten kept apart by both."""
    return {"color": f"C{index % 10}", "marker": MARKERS[index % len(MARKERS)]}


def draw_differences(ax, series: dict[str, list[tuple[float, PairedDifference]]], margin: float | None,
                     log_x: bool = False, styles: dict[str, int] | None = None,
                     legend: bool = True) -> None:  # fmt: skip
    """Each series' paired differences against x, the error bar its t-based 95% interval (an
    open marker: one pair, no interval); every series its own colour and marker (:func:`style`
    of its place, or of `styles`' index for it: one series alike, and at the same offset, across
    panels), shifted a little sideways so that points at one x stay apart. 0 drawn solid,
    ±`margin` dashed: the figure shows what the reading rests on, not the spread between seeds
    that hides it. The legend outside on the right (`legend`; else the caller's)."""
    xs = [x for points in series.values() for x, _ in points]
    places = styles or {name: i for i, name in enumerate(series)}
    count = max(places.values()) + 1
    step = _offsets(xs, count, log_x)
    lone = False
    for name, points in series.items():
        i = places[name]
        shift = (i - (count - 1) / 2) * step
        at = [x * 10**shift if log_x else x + shift for x, _ in points]
        look = {**style(i), "linestyle": "none"}
        if len(points) > 1:
            ax.plot(at, [d.mean for _, d in points], color=look["color"], linewidth=1, alpha=0.5)
        for j, (x, (_, d)) in enumerate(zip(at, points, strict=True)):
            label = name if j == 0 else None
            if d.n < 2:
                lone = True
                ax.plot([x], [d.mean], markerfacecolor="white", label=label, **look)
                continue
            low, high = d.interval
            ax.errorbar([x], [d.mean], yerr=[[d.mean - low], [high - d.mean]], capsize=3, label=label,
                        **look)  # fmt: skip
    ax.axhline(0, color="black", linewidth=1)
    if margin:
        for bound in (-margin, margin):
            ax.axhline(bound, color="gray", linestyle="--", linewidth=1)
        ax.plot([], [], color="gray", linestyle="--", label=f"margin ±{margin:g} (stated before the runs)")
    if lone:
        ax.plot([], [], color="gray", marker="o", markerfacecolor="white", linestyle="none",
                label="open: one seed, no interval")  # fmt: skip
    if log_x:
        ax.set_xscale("log")
    if not legend:
        return
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index(name) for name in series] + [i for i, t in enumerate(labels) if t not in series]
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))  # fmt: skip


def write_curves(out: Path, results: list[dict], log: Callable[[str], None],
                 label: Callable[[dict], str] = setting_label) -> bool:  # fmt: skip
    """``curves.md`` and ``curves.png`` in the study folder where its runs logged learning
    curves (``--eval-every``), each setting named by `label` (of its axes); False where none did."""
    curves = mean_curves(results, label)
    if not curves:
        return False
    write_file(out, "curves.md", curves_table(curves) + "\n")
    fig = figure((8, 5))
    draw_curves(fig.subplots(), curves)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    log(f"learning curves: {out / 'curves.md'}, {out / 'curves.png'}")
    return True
