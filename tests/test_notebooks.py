"""The notebooks run headless, start to end, on a tiny model (papermill)."""

from pathlib import Path

import pytest
from conftest import make_corpus

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize(
    "devices, seeds",
    [
        (["aer_noisy:brisbane", "aer_noisy:fake_torino"], [0, 1]),
        # as papermill's -p gives them: strings, read as lists, never character by character
        ("aer_noisy:brisbane aer_noisy:fake_torino", "0 1"),
    ],
    ids=["lists", "strings"],
)
def test_ideal_vs_noisy_notebook_runs_headless(tmp_path, devices, seeds):
    import json

    import papermill

    corpus = make_corpus(tmp_path / "wikitext")
    out = tmp_path / "out.ipynb"
    study = tmp_path / "study"
    papermill.execute_notebook(
        str(NOTEBOOKS / "ideal_vs_noisy.ipynb"),
        str(out),
        parameters={
            "model": "tiny-gpt2",
            "data": str(corpus),
            "devices": devices,
            "seeds": seeds,
            "steps": 2,
            "eval_tokens": 400,
            "study_dir": str(study),
            "qubits": 5,
            "settings": {
                "block_size": 32,
                "chunk_size": 64,
                "reps": 2,
                "hidden": [16],
                "train_tokens": 0,
                "eval_window": 64,
                "eval_stride": 48,
            },
        },
        cwd=str(NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
    )
    results = json.loads((study / "results.json").read_text())
    assert len(results["trials"]) == 2 * (1 + 3 * 2)  # LoRA + 3 backends x 2 rotations, 2 seeds
    cells = json.loads(out.read_text())["cells"]
    text = json.dumps([c.get("outputs", []) for c in cells])
    assert "image/png" in text and "whole device" in text and "vs ideal over 2 seeds" in text


@pytest.mark.slow
def test_the_notebook_refuses_an_ibm_device_as_the_noise_study_does(tmp_path):
    """An ``ibm:`` device used to fail in the noise report with "Pass shots_factor=c", though the
    notebook has a shots_factor parameter: the noise study takes simulators only, and says so."""
    import papermill

    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(
            str(NOTEBOOKS / "ideal_vs_noisy.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={
                "model": "tiny-gpt2",
                "data": str(make_corpus(tmp_path / "wikitext")),
                "devices": ["ibm:ibm_torino"],
                "study_dir": str(tmp_path / "study"),
            },
            cwd=str(NOTEBOOKS),
            kernel_name="python3",
            progress_bar=False,
        )
    assert error.value.ename == "InputError"
    refused = "noise-study backends are simulators, statevector and aer_noisy:<device>; not 'ibm:ibm_torino'"
    assert refused in error.value.evalue
    assert "shots_factor" not in error.value.evalue and not (tmp_path / "study").exists()
