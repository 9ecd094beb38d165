"""``qpa study noise``: the grid, its measures, its tables and plots, and its bad input."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_cli_args, tiny_config

from qpa_qiskit import InputError, QPABackend
from qpa_qiskit.cli import main
from qpa_qiskit.studies.noise import backend_label, study_noise
from qpa_qiskit.studies.runner import RESULT
from qpa_qiskit.train import Run, evaluate_run

QUIET = dict(log=lambda m: None)
GRID = dict(
    backends=("statevector", "aer_noisy:fake_manila"),
    rotations=("ry",),
    noise_scales=(0.5, 1.0),
    chunk_sizes=(64, 32),
    shots_factors=(20, None),
    seeds=(0, 1),
    tvd_samples=3,
)


def small(corpus, **overrides):
    return tiny_config(corpus, **{"steps": 2, "reps": 1, "hidden": [8], "eval_tokens": 300, **overrides})


@pytest.mark.slow
def test_noise_study_grid_tables_and_measures(corpus, tmp_path):
    out = tmp_path / "s"
    rows = study_noise(small(corpus), out, **GRID, **QUIET)
    names = sorted(p.parent.name for p in out.glob(f"*/{RESULT}"))
    # LoRA x 2 seeds + (ideal: 2 chunks x 2 shots + manila: 2 scales x 2 chunks x 2 shots) x 2 seeds
    assert len(names) == 2 + (4 + 8) * 2
    assert "fake_manila-ry-x0.5-k32-exact-s1" in names and "ideal-ry-k64-c20-s0" in names
    results = json.loads((out / "results.json").read_text())
    by_name = {t["name"]: t for t in results["trials"]}
    # perplexities are what `qpa eval` reports for the run folder
    assert (
        by_name["fake_manila-ry-x1-k64-c20-s0"]["perplexity"]
        == evaluate_run(out / "fake_manila-ry-x1-k64-c20-s0")["perplexity"]
    )
    for name, trial in by_name.items():
        if name.startswith("ideal"):
            assert trial["tvd_noise"] < 1e-12
        elif name.startswith("fake_manila"):
            assert trial["tvd_noise"] > 1e-3
        if "exact" in name:
            assert trial["tvd_shots"] == 0.0
        elif not name.startswith("lora"):
            assert 0 < trial["tvd_shots"] < 1
    # the noise TVD is the ideal-vs-noisy distance at the trained angles, recomputed here
    with Run.open(out / "fake_manila-ry-x0.5-k64-exact-s0", for_training=False) as run:
        quantum = run.model.generator.quantum
        theta = quantum.theta.detach().numpy()
        noisy = QPABackend("aer_noisy:fake_manila", noise_scale=0.5).probabilities(quantum.circuit, theta)
        ideal = QPABackend("statevector").probabilities(quantum.circuit, theta)
    assert by_name["fake_manila-ry-x0.5-k64-exact-s0"]["tvd_noise"] == pytest.approx(
        0.5 * np.abs(noisy - ideal).sum()
    )
    # aggregated rows: means over seeds, paired differences to ideal, trainable counts per chunk
    row = next(
        r
        for r in rows
        if r["label"] == "fake_manila"
        and r["noise_scale"] == 0.5
        and r["chunk_size"] == 32
        and r["shots_factor"] is None
    )
    pair = [
        by_name[f"fake_manila-ry-x0.5-k32-exact-s{s}"]["perplexity"]
        - by_name[f"ideal-ry-k32-exact-s{s}"]["perplexity"]
        for s in (0, 1)
    ]
    assert row["vs_ideal"] == pytest.approx(np.mean(pair)) and row["vs_ideal_pairs"] == 2
    assert row["seeds"] == 2 and row["qubits"] == 5
    trainable = {r["chunk_size"]: r["trainable"] for r in rows if r["method"] == "qpa-lora"}
    assert trainable[32] != trainable[64]
    table = (out / "results.md").read_text()
    assert (
        "| LoRA (classical) |" in table
        and "mean ± std over 2 seeds" in table
        and "| fake_manila | RY | 0.5 | none | 32 | exact |" in table
    )
    assert (out / "noise-params.png").stat().st_size > 0 and (out / "noise-scales.png").stat().st_size > 0
    # running it again trains nothing and gives the same results file
    before = (out / "results.json").read_text()
    study_noise(small(corpus), out, **GRID, **QUIET)
    assert (out / "results.json").read_text() == before
    # the same grid from a base configuration with another backend and seed is the same study
    assert study_noise(small(corpus, backend="aer_noisy:fake_manila", seed=4), out, **GRID, **QUIET) == rows


@pytest.mark.slow
def test_noise_study_mitigation_axis_and_dose_response(corpus, tmp_path):
    out = tmp_path / "m"
    grid = dict(GRID, chunk_sizes=(64,), shots_factors=(None,), mitigations=("none", "m3"), tvd_samples=1)
    rows = study_noise(small(corpus), out, **grid, **QUIET)
    results = json.loads((out / "results.json").read_text())
    by_name = {t["name"]: t for t in results["trials"]}
    # LoRA, ideal (unmitigated only), manila: 2 scales x 2 mitigations; 2 seeds each
    assert len(by_name) == 2 * (1 + 1 + 4) and "fake_manila-ry-x0.5-m3-s1" in by_name
    assert Run.stored_config(out / "fake_manila-ry-x1-m3-s0").backend.mitigation == "m3"
    assert Run.stored_config(out / "fake_manila-ry-x1-s0").backend.mitigation == "none"
    row = next(
        r for r in rows if r["label"] == "fake_manila" and r["noise_scale"] == 1.0 and r["mitigation"] == "m3"
    )
    pair = [by_name[f"fake_manila-ry-x1-m3-s{s}"]["perplexity"]
            - by_name[f"fake_manila-ry-x1-s{s}"]["perplexity"] for s in (0, 1)]  # fmt: skip
    assert row["vs_unmitigated"] == pytest.approx(np.mean(pair)) and row["vs_unmitigated_pairs"] == 2
    assert row["vs_ideal_equivalence"] in ("inside", "outside", "undecided")
    assert all("vs_unmitigated" not in r for r in rows if r.get("mitigation") == "none")
    # the dose-response slope: each seed's least-squares line through ideal (s = 0), 0.5 and 1
    assert results["margin"] == 0.1
    dose = next(d for d in results["dose_response"] if d["mitigation"] == "m3")
    slopes = []
    for s in (0, 1):
        ys = [by_name[f"ideal-ry-s{s}"]["perplexity"], by_name[f"fake_manila-ry-x0.5-m3-s{s}"]["perplexity"],
              by_name[f"fake_manila-ry-x1-m3-s{s}"]["perplexity"]]  # fmt: skip
        slopes.append(np.polyfit([0, 0.5, 1], ys, 1)[0])
    assert dose["scales"] == [0.0, 0.5, 1.0] and dose["slope"]["mean"] == pytest.approx(np.mean(slopes))
    table = (out / "results.md").read_text()
    assert "| fake_manila | RY | 1 | m3 | 64 | exact |" in table and "Dose-response" in table
    assert "| fake_manila | RY | m3 | 64 | exact | 0, 0.5, 1 |" in table


def test_runs_differing_in_backend_rotation_or_noise_share_initial_values(corpus, tmp_path):
    settings = {
        "ideal": dict(backend="statevector"),
        "noisy": dict(backend="aer_noisy:fake_manila"),
        "scaled": dict(backend="aer_noisy:fake_manila", noise_scale=0.3, readout_error=False),
        "rx": dict(backend="statevector", rotation="rx"),
    }
    start = {}
    for name, options in settings.items():
        with Run.create(tmp_path / name, small(corpus, shots_factor=20, **options)) as run:
            start[name] = run.params
    for name in ("noisy", "scaled", "rx"):
        for key, value in start["ideal"].items():
            assert torch.equal(value, start[name][key]), (name, key)


def test_cli_study_noise_and_its_bad_input(corpus, tmp_path, capsys):
    base = [
        "study",
        "noise",
        *tiny_cli_args(corpus, "--reps 1 --hidden 8 --steps 1 --eval-tokens 200 --train-tokens 0"),
    ]
    out = tmp_path / "cli"
    assert (
        main(
            [
                *base,
                "--backends",
                "statevector",
                "aer_noisy:fake_manila",
                "--rotations",
                "rx",
                "--shots-factors",
                "exact",
                "--no-readout-error",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    trials = json.loads((out / "results.json").read_text())["trials"]
    assert {t["name"] for t in trials} == {"lora-r4", "ideal-rx", "fake_manila-rx"}
    noisy = Run.stored_config(out / "fake_manila-rx")
    assert noisy.backend.readout_error is False and noisy.backend.shots_factor is None
    assert noisy.generator.rotation == "rx"
    assert Run.stored_config(out / "ideal-rx").backend.readout_error is True
    capsys.readouterr()
    bad = [
        ["--noise-scales", "-1"],
        ["--noise-scales", "nan"],
        ["--shots-factors", "0"],
        ["--rotations", "rz"],
        ["--mitigations", "zne"],
    ]
    for options in bad:
        with pytest.raises(SystemExit):
            main([*base, *options, "--out", str(tmp_path / "bad")])
    assert main([*base, "--backends", "statevector", "--no-gate-error", "--out", str(tmp_path / "bad")]) == 2
    assert main([*base, "--backends", "aer_noisy:nowhere.json", "--out", str(tmp_path / "bad")]) == 2
    assert main([*base, "--backends", "statevector", "statevector", "--out", str(tmp_path / "bad")]) == 2
    assert main([*base, "--margin", "-0.1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "applies to aer_noisy" in err and "nowhere.json" in err
    assert "margin must be" in err
    assert not (tmp_path / "bad").exists()


def test_backend_labels():
    assert backend_label("statevector") == "ideal"
    assert backend_label("aer_noisy:brisbane") == "brisbane"
    assert backend_label("aer_noisy:noise_models/fez.json") == "fez"
    with pytest.raises(InputError, match="same label"):
        same = ("aer_noisy:torino", "aer_noisy:qpa_qiskit/noise/models/torino.json")
        study_noise(tiny_config("/tmp"), backends=same)


def test_a_layout_of_physical_qubits_places_the_noisy_runs_and_leaves_the_ideal_one_alone(corpus, tmp_path):
    """The statevector baseline has no device: a physical --layout used to be refused for it, so
    a noise study could not be placed on chosen qubits at all."""
    out = tmp_path / "s"
    cfg = small(corpus, backend="aer_noisy:brisbane", layout="2,3,4,5")  # what the command line builds
    study_noise(cfg, out, backends=["statevector", "aer_noisy:brisbane"], rotations=["ry"],
                shots_factors=[None], tvd_samples=1, **QUIET)  # fmt: skip
    layouts = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/layout.json")}
    assert [v["layout"] for v in layouts.values()] == [[2, 3, 4, 5]]  # the noisy run only
    ideal = Run.stored_config(out / "ideal-ry")
    assert ideal.backend.layout == "noise_aware"
