"""The sweep runner: studies as grids of run folders, resumed after any stop, run locally or
on Ray with the same results."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_config

from qpa_qiskit import InputError, TrialsFailed
from qpa_qiskit.cli import main
from qpa_qiskit.studies.compare import compare
from qpa_qiskit.studies.executors import LocalExecutor, RayExecutor
from qpa_qiskit.studies.runner import RESULT
from qpa_qiskit.studies.shots import study_shots

QUIET = dict(log=lambda m: None)


def small(corpus, **overrides):
    return tiny_config(corpus, **{"steps": 2, "reps": 1, "hidden": [8], "eval_tokens": 300, **overrides})


def shots(corpus, out, **kwargs):
    settings = dict(shots_factors=(2,), modes=("none", "gi"), tvd_samples=2, seeds=(0, 1))
    return study_shots(small(corpus), out, **{**settings, **kwargs}, **QUIET)


def devices_used(out):
    """The devices the steps of a study's runs ran on (their metrics lines say)."""
    return {json.loads(x)["device"] for p in out.glob("*/metrics.jsonl") for x in p.read_text().splitlines()}


def stamps(out):
    """Each finished run's result file and metric lines: a run trained again changes them."""
    return {p.parent.name: (p.stat().st_mtime_ns, (p.parent / "metrics.jsonl").read_text())
            for p in out.glob(f"*/{RESULT}")}  # fmt: skip


def test_seeds_are_an_axis_with_mean_and_spread(corpus, tmp_path):
    rows = shots(corpus, tmp_path / "s")
    # the run folders, and the body features the runs share (qpa_qiskit.features)
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.is_dir()) == [
        "c2-gi-s0", "c2-gi-s1", "c2-none-s0", "c2-none-s1", "exact-s0", "exact-s1", "features"
    ]  # fmt: skip
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    by_name = {t["name"]: t for t in results["trials"]}
    gi = next(r for r in rows if r["completion"] == "gi")
    values = [by_name[f"c2-gi-s{s}"]["perplexity"] for s in (0, 1)]
    assert gi["seeds"] == 2 and gi["perplexity"] == pytest.approx(sum(values) / 2)
    assert gi["perplexity_std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert values[0] != values[1]  # the seeds differ
    assert "±" in (tmp_path / "s" / "results.md").read_text()


def test_running_a_study_again_trains_nothing_twice(corpus, tmp_path):
    shots(corpus, tmp_path / "s")
    first = (tmp_path / "s" / "results.json").read_text()
    before = stamps(tmp_path / "s")
    shots(corpus, tmp_path / "s")
    assert stamps(tmp_path / "s") == before
    assert (tmp_path / "s" / "results.json").read_text() == first


def test_another_study_in_the_same_folder_is_refused(corpus, tmp_path):
    shots(corpus, tmp_path / "s", seeds=(0,), modes=("none",))
    with pytest.raises(InputError, match=r"holds another study .*seeds"):
        shots(corpus, tmp_path / "s", seeds=(0, 1), modes=("none",))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("x")
    with pytest.raises(InputError, match="holds no study"):
        shots(corpus, tmp_path / "other")


def test_a_failing_run_is_reported_and_does_not_stop_the_others(corpus, tmp_path, monkeypatch, capsys):
    import qpa_qiskit.studies.executors as executors

    real = executors.run_trial

    def flaky(study_dir, trial, **kwargs):
        if trial.name == "c2-none-s0":
            raise RuntimeError("the device caught fire")
        return real(study_dir, trial, **kwargs)

    monkeypatch.setattr(executors, "run_trial", flaky)
    logs = []
    with pytest.raises(TrialsFailed, match=r"^1 of 6 runs failed .* retry c2-none-s0$") as failed:
        study_shots(small(corpus), tmp_path / "s", shots_factors=(2,), modes=("none", "gi"), tvd_samples=2,
                    seeds=(0, 1), log=logs.append)  # fmt: skip
    assert list(failed.value.failures) == ["c2-none-s0"] and len(failed.value.result) == 3  # rows aggregated
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert results["failed"] == ["c2-none-s0"] and len(results["trials"]) == 5
    assert any("c2-none-s0: the device caught fire" in line or "caught fire" in line for line in logs)
    monkeypatch.undo()
    shots(corpus, tmp_path / "s")  # the next run retries it
    assert json.loads((tmp_path / "s" / "results.json").read_text())["failed"] == []


@pytest.mark.slow
def test_a_study_killed_part_way_finishes_as_if_never_stopped(corpus, tmp_path):
    from conftest import tiny_cli_args

    args = ["study", "shots", *tiny_cli_args(corpus, "--steps 6 --save-every 1 --reps 1 --hidden 8"),
            "--eval-tokens", "300", "--shots-factors", "2", "--modes", "none", "gi", "--tvd-samples", "2",
            "--seeds", "0", "1"]  # fmt: skip
    env = os.environ.copy()  # offline: tests/offline.py set it for every test
    command = [sys.executable, "-m", "qpa_qiskit.cli", *args]
    subprocess.run([*command, "--out", str(tmp_path / "straight")], env=env, check=True, capture_output=True)

    out = tmp_path / "killed"
    victim = subprocess.Popen([*command, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # one run finished and the next one part-way
        if len(list(out.glob(f"*/{RESULT}"))) >= 2 and any(
            (p / "checkpoint.pt").exists() and not (p / RESULT).exists() for p in out.iterdir() if p.is_dir()
        ):
            break
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    finished = stamps(out)
    assert 2 <= len(finished) < 6
    subprocess.run([*command, "--out", str(out)], env=env, check=True, capture_output=True)
    after = stamps(out)
    assert {k: after[k] for k in finished} == finished  # no finished run trained twice
    assert (out / "results.json").read_text() == (tmp_path / "straight" / "results.json").read_text()


def test_compare_over_seeds(corpus, tmp_path):
    rows = compare(small(corpus), tmp_path / "c", methods=("lora", "qpa-lora"), seeds=(0, 1), **QUIET)
    assert [r["method"] for r in rows] == ["base", "lora", "qpa-lora"]
    assert all(r["seeds"] == 2 and r["std"] > 0 for r in rows[1:])
    assert (tmp_path / "c" / "base.json").exists() and "±" in (tmp_path / "c" / "results.md").read_text()


def test_executor_options_are_checked(capsys):
    assert main(["compare", "--executor", "local", "--gpus-per-run", "1"]) == 2
    assert "apply to --executor ray only" in capsys.readouterr().err
    with pytest.raises(InputError, match="cpus_per_run must be a finite number > 0"):
        RayExecutor(cpus_per_run=0)


@pytest.mark.slow
@pytest.mark.xdist_group("processes")  # a local Ray of 2 CPUs: one at a time (docs/testing.md)
def test_ray_gives_the_same_results_as_local(corpus, tmp_path):
    ray = pytest.importorskip("ray")
    kwargs = dict(shots_factors=(2,), modes=("gi",), seeds=(0, 1))
    # one thread per run on both: torch's CPU reductions depend on the thread count
    shots(corpus, tmp_path / "local", executor=LocalExecutor(threads=1), **kwargs)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        shots(corpus, tmp_path / "ray", executor=RayExecutor(cpus_per_run=1), **kwargs)
    finally:
        ray.shutdown()
    local = (tmp_path / "local" / "results.json").read_text()
    assert (tmp_path / "ray" / "results.json").read_text() == local
    # --gpus-per-run 0: the tasks see no GPU, so --device auto trains on the CPU even where one is
    assert devices_used(tmp_path / "ray") == {"cpu"}


@pytest.mark.slow
@pytest.mark.xdist_group("processes")  # a local Ray of 2 CPUs: one at a time (docs/testing.md)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device here")
def test_ray_runs_share_a_gpu_and_use_it(corpus, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:  # two runs on half a GPU each, at once
        shots(corpus, tmp_path / "ray", executor=RayExecutor(cpus_per_run=1, gpus_per_run=0.5),
              shots_factors=(2,), modes=("gi",), seeds=(0, 1))  # fmt: skip
    finally:
        ray.shutdown()
    assert len(list((tmp_path / "ray").glob(f"*/{RESULT}"))) == 4
    assert devices_used(tmp_path / "ray") == {"cuda:0"}  # the GPU Ray gave each task, as each sees it
