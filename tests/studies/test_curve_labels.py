"""Each study names its learning curves as its own table names its settings (issue 38): the
labels ``curves.md`` and ``curves.png`` show, from fake results (no training)."""

import json
from pathlib import Path

from qpa_qiskit.studies.ablation import AblationStudy
from qpa_qiskit.studies.curves import mean_curves
from qpa_qiskit.studies.hardware import HardwareStudy
from qpa_qiskit.studies.noise import NoiseStudy
from qpa_qiskit.studies.params import ParamsStudy
from qpa_qiskit.studies.report import write_curves
from qpa_qiskit.studies.shots import ShotsStudy

ROOT = Path(__file__).resolve().parents[2]


def results(*settings: dict, seeds=(0, 1)) -> list[dict]:
    """A finished run per setting and seed, each with a learning curve."""
    return [{"axes": {**axes, "seed": seed}, "curve": [[10, 30.0 + seed], [20, 29.0 + seed]]}
            for axes in settings for seed in seeds]  # fmt: skip


def labels(spec, runs: list[dict]) -> list[str]:
    return list(mean_curves(runs, spec.curve_label))


def test_params_curves_are_named_as_its_table_with_the_chosen_rates():
    lora = {"method": "lora", "targets": ["q_proj", "v_proj"], "size": 1, "chunk_size": None, "reps": None}
    qpa = {"method": "qpa-lora", "targets": None, "size": 4, "chunk_size": 2048, "reps": 8}
    assert labels(ParamsStudy(), results(lora, qpa)) == ["lora r=1 on q_proj,v_proj", "qpa-lora k=2048 L=8"]
    chosen = results({**lora, "lr": 0.01}, {**qpa, "lr": 0.003, "circuit_lr": 0.05})
    assert labels(ParamsStudy(), chosen) == [
        "lora r=1 on q_proj,v_proj (lr 1e-02)",
        "qpa-lora k=2048 L=8 (lr 3e-03, circuit 5e-02)",
    ]


def test_the_committed_pilot_s_curves_read_as_its_table():
    """docs/study-params-pilot30-curves.png is drawn from these runs' curves with these labels."""
    trials = json.loads((ROOT / "docs" / "study-params-pilot30.json").read_text())["trials"]
    curves = mean_curves(trials, ParamsStudy().curve_label)
    assert list(curves) == [
        "lora r=1 on lm_head (lr 1e-02)",
        "lora r=1 on q_proj,v_proj (lr 1e-02)",
        "qpa-lora k=2048 L=8 (lr 3e-03)",
    ]
    assert all(points[0][2] == 3 for points in curves.values())  # every seed's curve in each mean


def test_ablation_curves_name_regime_and_control():
    runs = results({"regime": "paper", "control": "circuit"}, {"regime": "fixed:mlp", "control": "softmax"},
                   {"regime": None, "control": "lora-r4"})  # fmt: skip
    assert labels(AblationStudy(), runs) == ["paper: circuit", "fixed:mlp: softmax", "lora-r4"]


def noise_axes(label, scale=1.0, mitigation="none", c=20.0, chunk=2048, rotation="ry") -> dict:
    backend = "statevector" if label == "ideal" else f"aer_noisy:{label}"
    grid = {"rotation": rotation, "noise_scale": scale, "chunk_size": chunk, "shots_factor": c}
    return {"method": "qpa-lora", "backend": backend, "label": label, **grid, "mitigation": mitigation}


def test_noise_curves_name_backend_rotation_scale_and_shots(tmp_path):
    runs = results({"method": "lora"}, noise_axes("ideal"), noise_axes("brisbane", 3.0, "m3"),
                   noise_axes("torino", c=None, rotation="rx"))  # fmt: skip
    assert labels(NoiseStudy(lora_rank=4), runs) == [
        "LoRA r=4 (classical)", "ideal RY c=20", "brisbane RY s=3 m3 c=20", "torino RX s=1 exact",
    ]  # fmt: skip
    # the chunk size where the study has several, so no two settings share a curve
    runs = results(noise_axes("ideal", chunk=64), noise_axes("ideal", chunk=32))
    assert labels(NoiseStudy(chunk_sizes=(64, 32)), runs) == ["ideal RY c=20 k=64", "ideal RY c=20 k=32"]
    # what the study writes: curves.md names them so
    assert write_curves(tmp_path, runs, lambda m: None, NoiseStudy(chunk_sizes=(64, 32)).curve_label)
    assert "| ideal RY c=20 k=64 | 2 |" in (tmp_path / "curves.md").read_text()
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_shots_curves_name_shots_and_completion():
    runs = results({"shots_factor": None, "completion": "none"}, {"shots_factor": 1.0, "completion": "gi"})
    assert labels(ShotsStudy(), runs) == ["exact probabilities", "c=1 gi"]


def test_hardware_curves_name_generator_shots_and_gradient():
    runs = results({"generator": "paper", "shots_factor": 20.0, "setting": "spsa-4"},
                   {"generator": "default", "shots_factor": 1.0, "setting": "shift"})  # fmt: skip
    assert labels(HardwareStudy(), runs) == ["paper c=20 spsa-4", "default c=1 shift"]


def test_compare_curves_name_each_method_or_setting_as_its_row_with_the_chosen_rate():
    from qpa_qiskit.studies.compare import CompareStudy

    study = CompareStudy(methods=("lora", "qpa-lora", "lora:rank=1:targets=q_proj,v_proj"))
    assert study.curve_label({"method": "lora", "seed": 0}) == "lora"
    assert study.curve_label({"method": "qpa-lora", "seed": 1, "lr": 0.003, "circuit_lr": 0.05}) == (
        "qpa-lora (lr 3e-03, circuit 5e-02)"
    )
    axes = {"method": "lora", "setting": "lora:rank=1:targets=q_proj,v_proj", "seed": 0, "lr": 0.01}
    assert study.curve_label(axes) == "lora rank=1 on q_proj,v_proj (lr 1e-02)"
