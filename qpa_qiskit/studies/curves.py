"""Learning curves of a study: the dev perplexity its runs logged with ``--eval-every``.

Every study whose runs have curves gets them, whatever its grid (:func:`.report.write_curves`):
one curve per setting (the trial's axes less its seed), the mean over its seeds at each scored
step, in ``curves.md`` (a table with the last stretch's relative change: has the curve
flattened?) and ``curves.png``. Imports nothing of the studies, so every study module may use it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

# A curve whose dev perplexity fell by less than this share over its last scored stretch is
# read as flat (stated before any study ran: 1% of perplexity over the last K steps).
FLAT = 0.01
# a figure's series apart by marker as well as colour (ten of each)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def setting_label(axes: dict) -> str:
    """A trial's setting as text: its axes less the seed (``method=lora size=4``)."""
    return " ".join(f"{k}={v}" for k, v in axes.items() if k != "seed" and v is not None) or "run"


def mean_curves(results: list[dict], label: Callable[[dict], str] = setting_label) -> dict[str, list]:
    """Setting label -> [(step, mean dev perplexity, seeds)] over the steps every seed scored."""
    by_setting: dict[str, list[dict[int, float]]] = {}
    for r in results:
        curve = r.get("curve") or []
        if curve:
            by_setting.setdefault(label(r["axes"]), []).append({int(s): float(p) for s, p in curve})
    out = {}
    for name, curves in by_setting.items():
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        out[name] = [(s, statistics.fmean(c[s] for c in curves), len(curves)) for s in steps]
    return out


def flattening(points: list) -> float | None:
    """The relative fall of the dev perplexity over the last scored stretch (None: one point)."""
    if len(points) < 2:
        return None
    before, last = points[-2][1], points[-1][1]
    return (before - last) / before


def stretch_reading(points: list) -> str:
    """The last stretch of a curve read: ``+1.4% (still moving)``, ``+0.3% (flat)``; ``-`` for one point."""
    fall = flattening(points)
    return "-" if fall is None else f"{fall:+.1%} ({'flat' if abs(fall) < FLAT else 'still moving'})"


def curves_table(curves: dict[str, list]) -> str:
    steps = sorted({s for points in curves.values() for s, _, _ in points})
    lines = [
        f"Dev perplexity during training (mean over seeds); 'last stretch': its relative fall over the "
        f"last scored steps, flat below {FLAT:.0%}.",
        "",
        "| setting | seeds | " + " | ".join(f"step {s}" for s in steps) + " | last stretch |",
        "|---|---|" + "---|" * len(steps) + "---|",
    ]
    for name, points in curves.items():
        at = {s: p for s, p, _ in points}
        cells = [name, str(points[0][2]), *(f"{at[s]:.3f}" if s in at else "-" for s in steps),
                 stretch_reading(points)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw_curves(ax, curves: dict[str, list]) -> None:
    """The curves on a matplotlib axes, each its own colour and marker (the study writes the
    figure: ``report.write_curves``)."""
    for i, (name, points) in enumerate(curves.items()):
        ax.plot([s for s, _, _ in points], [p for _, p, _ in points], marker=MARKERS[i % len(MARKERS)],
                markersize=4, color=f"C{i % 10}", label=name)  # fmt: skip
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("dev perplexity (mean over seeds)")
    ax.set_title("Learning curves on the dev split")
    ax.legend(fontsize=7)
