"""The studies' figures draw what their tables read: each paired difference with its t-based 95%
interval, 0 and the margin, every series apart (issue 38). Fake rows, no training."""

from pathlib import Path

import pytest

from qpa_qiskit.intervals import PairedDifference
from qpa_qiskit.studies import ablation, noise, report, shots

MARGIN = 0.1


@pytest.fixture
def drawn(monkeypatch):
    """The figures a plotting function draws, kept for the test to read."""
    figures = []

    def keep(size):
        fig = report.figure(size)
        figures.append(fig)
        return fig

    monkeypatch.setattr(noise, "figure", keep)
    monkeypatch.setattr(shots, "figure", keep)
    monkeypatch.setattr(ablation, "figure", keep)
    return figures


def intervals(ax) -> list[tuple[float, float, float]]:
    """(x, low, high) of every error bar on `ax`."""
    out = []
    for container in ax.containers:
        for segment in container.lines[2][0].get_segments():
            (x, low), (_, high) = segment
            out.append((float(x), float(low), float(high)))
    return sorted(out)


def flat(pairs) -> list[float]:
    return [v for pair in pairs for v in pair]


def horizontal_lines(ax) -> set[float]:
    """The y of every line across the axes (axhline: x from 0 to 1 of the axes)."""
    return {float(line.get_ydata()[0]) for line in ax.lines if list(line.get_xdata()) == [0, 1]}


def noisy_row(label, scale, mitigation, mean, std, pairs=5, chunk=2048) -> dict:
    return {"method": "qpa-lora", "label": label, "rotation": "ry", "noise_scale": scale, "chunk_size": chunk,
            "shots_factor": 20.0, "mitigation": mitigation, "seeds": pairs, "perplexity": 35.0 + mean,
            "perplexity_std": 3.2, "trainable": 106_264, "vs_ideal": mean, "vs_ideal_std": std,
            "vs_ideal_pairs": pairs}  # fmt: skip


def noise_rows() -> list[dict]:
    """A LoRA row, the ideal row and device x scale x mitigation rows: the differences far
    smaller than the spread over seeds (3.2), as in the paper-regime study."""
    rows = [
        {"method": "lora", "label": "classical", "seeds": 5, "perplexity": 25.1, "perplexity_std": 0.1,
         "trainable": 198_912},
        {"method": "qpa-lora", "label": "ideal", "rotation": "ry", "noise_scale": 1.0, "chunk_size": 2048,
         "shots_factor": 20.0, "mitigation": "none", "seeds": 5, "perplexity": 35.0, "perplexity_std": 3.2,
         "trainable": 106_264},
    ]  # fmt: skip
    means = iter([0.053, 0.051, 0.070, 0.067, 0.047, 0.046, 0.064, 0.058])
    for label in ("brisbane", "torino"):
        for scale in (1.0, 3.0):
            for mitigation in ("none", "m3"):
                rows.append(noisy_row(label, scale, mitigation, next(means), 0.06))
    return rows


def expected(rows: list[dict]) -> list[tuple[float, float]]:
    return sorted(PairedDifference(r["vs_ideal"], r["vs_ideal_std"], r["vs_ideal_pairs"]).interval
                  for r in rows if "vs_ideal" in r)  # fmt: skip


@pytest.mark.parametrize("plot, count", [(noise.plot_scales, 4), (noise.plot_params, 8)])
def test_noise_figures_draw_each_paired_difference_with_its_interval(plot, count, drawn, tmp_path):
    """Against the noise scale a series per device and mitigation, per chunk size one per device,
    scale and mitigation: 8 points either way."""
    rows = noise_rows()
    plot(rows, tmp_path / "f.png", MARGIN)
    assert (tmp_path / "f.png").stat().st_size > 10_000
    ax = drawn[-1].axes[0]
    bars = intervals(ax)
    # the bars are the t-based 95% intervals of the differences (mean ± t s / sqrt(n)), not ± std
    found = sorted((low, high) for _, low, high in bars)
    assert flat(found) == pytest.approx(flat(expected(rows)))
    assert all(high - low < 0.2 for _, low, high in bars)  # not the 3.2 spread over seeds
    # every point apart: no two series at the same x
    assert len({x for x, _, _ in bars}) == len(bars) == 8
    # 0 solid, the margin dashed
    assert {0.0, MARGIN, -MARGIN} <= horizontal_lines(ax)
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    series = names[:-1]
    assert len(set(series)) == len(series) == count and names[-1].startswith("margin ±0.1")
    assert "brisbane" in series[0] and "m3" in " ".join(series) and "unmitigated" in " ".join(series)
    colours_markers = {(c.lines[0].get_color(), c.lines[0].get_marker()) for c in ax.containers}
    assert len(colours_markers) == count
    # what every series shares is said once, in the title
    assert "RY" in ax.get_title() and "c=20" in ax.get_title()


def test_noise_figure_series_are_the_axes_that_differ(drawn, tmp_path):
    rows = [r for r in noise_rows() if r.get("mitigation") == "none" and r.get("noise_scale") == 1.0]
    noise.plot_scales(rows, tmp_path / "f.png")  # no margin stated: none drawn
    ax = drawn[-1].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["brisbane", "torino"]
    assert horizontal_lines(ax) == {0.0}


def test_noise_figure_with_one_seed_draws_no_interval(drawn, tmp_path):
    rows = [noisy_row(label, 1.0, "none", 0.03, 0.0, pairs=1) for label in ("brisbane", "torino")]
    noise.plot_params(rows, tmp_path / "f.png")
    ax = drawn[-1].axes[0]
    assert intervals(ax) == []
    assert "open: one seed, no interval" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_noise_figure_with_nothing_paired_says_so(drawn, tmp_path):
    rows = [r for r in noise_rows() if "vs_ideal" not in r]
    noise.plot_params(rows, tmp_path / "f.png")
    assert (tmp_path / "f.png").exists()
    assert "no noisy setting" in drawn[-1].axes[0].texts[0].get_text()


def shots_rows_and_pairs() -> tuple[list[dict], list[dict]]:
    rows = [{"shots_factor": None, "completion": "none", "seeds": 5, "perplexity": 35.86, "tvd": 0.0}]
    paired = []
    vs_exact = PairedDifference.of([0.1, -0.05, 0.02, 0.0, -0.1]).to_dict()
    vs_none = PairedDifference.of([0.2, 0.1, 0.15, 0.3, 0.05]).to_dict()
    tvd_vs_none = PairedDifference.of([0.01, 0.02, 0.015, 0.012, 0.018]).to_dict()
    for c, tvd in ((1.0, 0.29), (2.0, 0.2), (20.0, 0.07)):
        for mode in ("none", "gi"):
            rows.append({"shots_factor": c, "completion": mode, "seeds": 5, "perplexity": 35.8, "tvd": tvd})
            setting = {"shots_factor": c, "completion": mode}
            paired.append({**setting, "against": "exact", "perplexity": vs_exact})
            if mode != "none":
                paired.append({**setting, "against": "none", "perplexity": vs_none, "tvd": tvd_vs_none})
    return rows, paired


def test_shots_figure_draws_the_paired_differences_of_its_tables(drawn, tmp_path):
    rows, paired = shots_rows_and_pairs()
    shots.plot_shots(rows, paired, ["none", "gi"], MARGIN, tmp_path / "shots.png")
    fig = drawn[-1]
    vs_exact, vs_none, tvd, tvd_vs_none = fig.axes[:4]
    exact = PairedDifference.of([0.1, -0.05, 0.02, 0.0, -0.1]).interval
    assert flat((low, high) for _, low, high in intervals(vs_exact)) == pytest.approx(flat([exact] * 6))
    assert len({x for x, _, _ in intervals(vs_exact)}) == 6  # none and gi apart at each c
    gi_tvd = PairedDifference.of([0.01, 0.02, 0.015, 0.012, 0.018]).interval
    assert flat((low, high) for _, low, high in intervals(tvd_vs_none)) == pytest.approx(flat([gi_tvd] * 3))
    assert {0.0, MARGIN, -MARGIN} <= horizontal_lines(vs_none)
    assert MARGIN not in horizontal_lines(tvd_vs_none)  # the margin is in perplexity
    assert intervals(tvd) == []  # the TVD itself: means, no spread drawn as if it were a reading
    # one legend for the figure, a mode alike in every panel
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["none", "gi", "margin ±0.1 (stated before the runs)"]
    panels = (vs_exact, vs_none, tvd_vs_none)
    gi = [c.lines[0] for ax in panels for c in ax.containers if c.get_label() == "gi"]
    assert len(gi) == 3  # its first point in each panel names it
    assert len({(line.get_color(), line.get_marker()) for line in gi}) == 1


def test_draw_differences_keeps_series_apart_on_a_log_axis(tmp_path):
    fig = report.figure((6, 4))
    ax = fig.subplots()
    d = PairedDifference.of([0.1, 0.2, 0.3])
    report.draw_differences(ax, {"a": [(1.0, d), (2.0, d)], "b": [(1.0, d), (2.0, d)]}, None, log_x=True)
    xs = sorted(x for x, _, _ in intervals(ax))
    assert len(set(xs)) == 4 and xs[0] < 1.0 < xs[1] < xs[2] < 2.0 < xs[3] and ax.get_xscale() == "log"
    fig.savefig(Path(tmp_path) / "f.png")


@pytest.mark.parametrize("regimes", [["paper"], ["fixed:mlp", "random:linear"]])
def test_the_ablation_figure_s_title_fits_its_width(regimes, drawn, tmp_path):
    """With one regime the panel is narrower than the title: it was cut at both ends."""
    diff = PairedDifference.of([0.01, 0.02, -0.01]).to_dict()
    tables = {"rows": [{"regime": r, "control": "frozen", "vs_circuit": diff} for r in regimes],
              "counterfactual": [], "lora": []}  # fmt: skip
    ablation.plot_ablation(tables, MARGIN, tmp_path / "ablation.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = drawn[-1]
    title = fig._suptitle.get_window_extent(FigureCanvasAgg(fig).get_renderer())
    assert 0 <= title.x0 and title.x1 <= fig.bbox.width
    assert "LoRA" not in fig._suptitle.get_text()  # the title names only what is drawn
