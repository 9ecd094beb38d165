"""``qpa study hardware``: its gradient settings, its paired table against the shift rule, and
each run's QPU seconds by the cost model."""

import json

import pytest

from qpa_qiskit.errors import InputError
from qpa_qiskit.intervals import PairedDifference
from qpa_qiskit.studies.hardware import HardwareStudy, setting_changes, study_hardware
from tests.conftest import tiny_config


def test_settings_name_their_run_settings():
    assert setting_changes("shift") == {}
    assert setting_changes("spsa-4") == {"gradient": "spsa", "spsa_samples": 4}
    assert setting_changes("every-10") == {"circuit_every": 10}
    assert setting_changes("frozen-once") == {"probabilities": "frozen", "circuit_lr": None}
    for wrong in ("spsa", "spsa-0", "every-x", "adjoint", "frozen"):
        with pytest.raises(InputError, match=r"shift, spsa-K .* or frozen-once"):
            setting_changes(wrong)


def test_a_study_without_the_reference_or_with_one_shot_factor_given_is_refused(corpus):
    cfg = tiny_config(corpus, backend="aer_noisy:fake_torino", cost_as="ibm:fake_torino")
    with pytest.raises(InputError, match="settings must include shift"):
        HardwareStudy(settings=("spsa-1",)).checked(cfg)
    with pytest.raises(InputError, match="drop --shots-factor"):
        HardwareStudy().checked(cfg.replace(shots_factor=2))


@pytest.mark.slow
def test_the_study_pairs_each_setting_with_shift_and_prices_each_run(tmp_path, corpus):
    cfg = tiny_config(corpus, steps=4, eval_tokens=300, backend="aer_noisy:fake_torino",
                      cost_as="ibm:fake_torino", circuit_lr=0.05)  # fmt: skip
    settings = ("shift", "spsa-1", "every-2", "frozen-once")
    rows = study_hardware(cfg, tmp_path / "s", settings=settings, shots_factors=(1, 2),
                          generators=("default",), seeds=(0, 1), log=lambda m: None)  # fmt: skip
    assert [(r["shots_factor"], r["setting"]) for r in rows] == [
        (c, s) for c in (1, 2) for s in ("shift", "spsa-1", "every-2", "frozen-once")
    ]
    saved = json.loads((tmp_path / "s" / "results.json").read_text())
    runs = {(t["axes"]["shots_factor"], t["axes"]["setting"], t["axes"]["seed"]): t for t in saved["trials"]}
    # the parameter sets a run submits: P = N qubits x 2 layers angles (shift: 2P + 1 a
    # step, spsa: 3, every-2: 2 of the 4 steps), and the final weights' 1; frozen once: 1 in all
    by = {r["setting"]: r for r in rows if r["shots_factor"] == 2}
    p = cfg.generator.reps * runs[(2, "shift", 0)]["counts"]["qubits"]
    assert by["shift"]["sets_per_run"] == 4 * (2 * p + 1) + 1
    assert by["spsa-1"]["sets_per_run"] == 4 * 3 + 1
    assert by["every-2"]["sets_per_run"] == 2 * (2 * p + 1) + 1
    assert by["frozen-once"]["sets_per_run"] == 1
    # fewer sets and jobs, less QPU time (at this size the 2 s per job is most of it)
    seconds = {k: r["qpu_seconds"] for k, r in by.items()}
    assert seconds["shift"] > max(seconds["every-2"], seconds["spsa-1"]) > seconds["frozen-once"] > 0
    assert all(r["qpu_device"] == "ibm:fake_torino" and r["fits_open_plan"] for r in rows)
    # each setting against shift at the largest c, paired by seed
    reference = rows[4]
    assert reference["setting"] == "shift" and "vs_shift" not in reference
    spsa = next(r for r in rows if (r["shots_factor"], r["setting"]) == (1, "spsa-1"))
    diff = PairedDifference.of(runs[(1, "spsa-1", s)]["perplexity"] - runs[(2, "shift", s)]["perplexity"]
                               for s in (0, 1))  # fmt: skip
    assert spsa["vs_shift"]["mean"] == pytest.approx(diff.mean)
    assert spsa["vs_shift"]["at_margin"] == diff.equivalence(0.1)
    table = (tmp_path / "s" / "results.md").read_text()
    assert "| default | 2 | shift |" in table and "(reference)" in table and "| 1 | frozen-once |" in table
