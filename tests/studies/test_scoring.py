"""What a study scores, and when (issue 38): a selection run scores its dev split only, the runs a
study reports their test split and measures, a finished run is opened once for all of them; and
the figures are those each run gives opened afresh, as the runner gave them before."""

import json
from dataclasses import replace

import pytest
from conftest import tiny_config

from qpa_qiskit import train
from qpa_qiskit.data import DEV
from qpa_qiskit.studies.runner import RESULT, Trial, run_trial
from qpa_qiskit.studies.shots import completion_tvd, study_shots
from qpa_qiskit.train import Run

QUIET = dict(log=lambda m: None)
# a final run's result.json, its keys in the order they have always had (measures last)
FINAL_KEYS = ["name", "axes", "perplexity", "tokens", "dev_perplexity", "curve", "step", "counts",
              "seconds_per_step", "diagnostics", "tvd"]  # fmt: skip
SELECTION_KEYS = ["name", "axes", "dev_perplexity", "curve", "step", "counts", "seconds_per_step"]


def small(corpus, **overrides):
    """A QPA-LoRA run on 2-shot-factor samples completed by GI: its evaluation draws shots, so
    a figure scored from another random state than the run's own would differ."""
    return tiny_config(corpus, **{"steps": 2, "reps": 1, "hidden": [8], "eval_tokens": 300, "shots_factor": 2,
                                  "completion": "gi", **overrides})  # fmt: skip


def opened_afresh(run_dir, samples: int) -> dict:
    """The figures as the runner gave them before: the test split, the dev split and the
    measure, each from the run opened afresh at its checkpoint (three opens)."""
    test = train.evaluate_run(run_dir)
    dev = train.evaluate_run(run_dir, DEV)["perplexity"]
    with Run.open(run_dir, for_training=False) as run:
        tvd = completion_tvd(run, samples=samples)["tvd"]
    return {"perplexity": test["perplexity"], "tokens": test["tokens"], "dev_perplexity": dev,
            "diagnostics": test["diagnostics"], "tvd": tvd}  # fmt: skip


def test_a_study_reports_what_each_run_gives_opened_afresh(corpus, tmp_path):
    """A shots study with a selection: the final runs (the chosen selection runs, scored on test
    from their checkpoints after the choice, and the other seed's, trained as final runs) report
    the figures of the three separate opens of the old runner, bit for bit."""
    out = tmp_path / "s"
    study_shots(small(corpus), out, shots_factors=(2,), modes=("gi",), tvd_samples=2, seeds=(0, 1),
                lrs=(1e-3, 1e-2), **QUIET)  # fmt: skip
    trials = json.loads((out / "results.json").read_text())["trials"]
    assert len(trials) == 4  # c = 2 with GI, and exact probabilities, on seeds 0 and 1
    for trial in trials:
        expected = opened_afresh(out / trial["name"], samples=2)
        assert {k: trial[k] for k in expected} == expected, trial["name"]
        assert list(json.loads((out / trial["name"] / RESULT).read_text())) == FINAL_KEYS
    chosen = {t["name"] for t in trials}
    for run_dir in out.glob("c2-gi-s0-*"):  # the selection run not chosen: its dev split only
        if run_dir.name not in chosen:
            result = json.loads((run_dir / RESULT).read_text())
            assert "perplexity" not in result and "tvd" not in result and result["dev_perplexity"] > 1


def opens(monkeypatch) -> list[str]:
    """Every Run.create and Run.open from now on: 'create', 'open to train' or 'open to score'."""
    calls, create, open_ = [], Run.create.__func__, Run.open.__func__

    def counted_create(cls, *args, **kwargs):
        calls.append("create")
        return create(cls, *args, **kwargs)

    def counted_open(cls, *args, **kwargs):
        calls.append("open to train" if kwargs.get("for_training", True) else "open to score")
        return open_(cls, *args, **kwargs)

    monkeypatch.setattr(Run, "create", classmethod(counted_create))
    monkeypatch.setattr(Run, "open", classmethod(counted_open))
    return calls


def test_a_selection_run_scores_dev_only_and_its_test_split_later_as_at_the_end(corpus, tmp_path,
                                                                                monkeypatch):  # fmt: skip
    """Scored later from its checkpoint, a selection run's test split, diagnostics and measure
    are those of the same run trained as a final run and scored at the end of training; its
    result.json is replaced whole. Each finished run is opened once to be scored."""
    trial = Trial("r", small(corpus), {"seed": 0}, {completion_tvd: {"samples": 3}})
    calls = opens(monkeypatch)
    straight = run_trial(tmp_path / "a", trial)
    assert calls == ["create", "open to score"]  # dev, test, diagnostics and the measure: one open
    calls.clear()
    selection = run_trial(tmp_path / "b", replace(trial, final=False))
    assert calls == ["create", "open to score"]
    assert json.loads((tmp_path / "b" / "r" / RESULT).read_text()) == selection
    assert list(selection) == SELECTION_KEYS
    assert selection["dev_perplexity"] == straight["dev_perplexity"]
    calls.clear()
    metrics = (tmp_path / "b" / "r" / "metrics.jsonl").read_text()
    later = run_trial(tmp_path / "b", trial)  # the selection chose it: a final run now
    assert calls == ["open to score"]  # not trained again
    assert (tmp_path / "b" / "r" / "metrics.jsonl").read_text() == metrics
    assert json.loads((tmp_path / "b" / "r" / RESULT).read_text()) == later
    assert list(later) == list(straight) == FINAL_KEYS
    for key in FINAL_KEYS:
        if key != "seconds_per_step":  # the machine's, not the run's
            assert later[key] == straight[key], key
    calls.clear()
    assert run_trial(tmp_path / "b", trial) == later and calls == []  # finished: read back


def test_a_diverged_selection_run_is_ranked_on_dev_without_a_test_score(corpus, tmp_path):
    plain = dict(method="lora", shots_factor=None, completion="none")
    cfg = small(corpus, max_grad_norm=0.0, warmup=0, lr=1e12, **plain)
    result = run_trial(tmp_path, Trial("r", cfg, {"seed": 0}, final=False))
    assert result["diverged"] is True and result["diverged_lr"] == 1e12 and result["dev_perplexity"] is None
    assert "perplexity" not in result
    final = run_trial(tmp_path, Trial("r", cfg, {"seed": 0}))
    assert final["perplexity"] is None and final["diverged"] is True


@pytest.mark.parametrize("select_on", ["first", "all"])
def test_only_the_final_runs_score_the_test_split(corpus, tmp_path, monkeypatch, select_on):
    """Of the selection runs only those the selection makes final runs are scored on test."""
    from qpa_qiskit.studies.compare import compare

    scored = []
    real = Run.evaluate

    def spy(run, split="test", *args, **kwargs):
        scored.append((run.dir.name, split))
        return real(run, split, *args, **kwargs)

    monkeypatch.setattr(Run, "evaluate", spy)
    out = tmp_path / "s"
    compare(small(corpus, method="lora", shots_factor=None, completion="none"), out, methods=("lora",),
            seeds=(0, 1), lrs=(1e-3, 1e-2), select_on=select_on, **QUIET)  # fmt: skip
    final = {t["name"] for t in json.loads((out / "results.json").read_text())["trials"]}
    tested = [name for name, split in scored if split == "test"]
    assert sorted(tested) == sorted(final) and len(final) == 2  # each final run once, no other run
    runs = {p.parent.name for p in out.glob(f"*/{RESULT}")}
    assert len(runs) == (3 if select_on == "first" else 4)
    assert sorted(name for name, split in scored if split == DEV) == sorted(runs)  # every run, once
