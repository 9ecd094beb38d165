"""Progress a person can see: a study's line, the running run's step bar below it, and on
Ray the runs whose steps are moving, read from their folders."""

import io
import sys

import pytest
from conftest import tiny_config

from qpa_qiskit.studies.executors import InFlight, LocalExecutor
from qpa_qiskit.studies.runner import Progress, Trial, run_trial, steps_done
from qpa_qiskit.studies.shots import study_shots


class TTY(io.StringIO):
    """A stderr that says it is a terminal: tqdm shows the bars a terminal would see."""

    def isatty(self):
        return True


def small(corpus, **overrides):
    return tiny_config(corpus, **{"steps": 3, "reps": 1, "hidden": [8], "eval_tokens": 300, **overrides})


def test_a_local_study_shows_each_run_s_step_bar_below_its_own(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stderr", TTY())
    study_shots(small(corpus), tmp_path / "s", shots_factors=(2,), modes=("none",), seeds=(0,), tvd_samples=2,
                executor=LocalExecutor(), log=lambda m: None)  # fmt: skip
    shown = sys.stderr.getvalue()
    assert "shots (local)" in shown  # the study's line
    for run in ("exact", "c2-none"):  # each run's own bar: its name, steps, loss, s/step
        bars = [line for line in shown.split("\r") if line.startswith(f"{run}:") and "loss=" in line]
        # tqdm shows the rate as step/s, or as s/step once a step takes over a second (a busy machine)
        assert bars and "/3 [" in bars[-1] and ("step/s" in bars[-1] or "s/step" in bars[-1])


def test_no_step_bar_off_a_terminal_or_when_quiet(corpus, tmp_path, capsys):
    trial = Trial("r", small(corpus, steps=2))
    run_trial(tmp_path, trial, progress=True)  # stderr is no terminal here (a CI log)
    assert capsys.readouterr().err == ""
    run_trial(tmp_path / "quiet", Trial("r", small(corpus, steps=2)), progress=False)
    assert capsys.readouterr().err == ""


def test_runs_elsewhere_are_named_with_their_steps_once_they_move(tmp_path, monkeypatch):
    trials = [Trial(name, tiny_config(tmp_path, steps=30)) for name in ("queued", "resumed", "fresh")]
    (tmp_path / "resumed").mkdir()
    (tmp_path / "resumed" / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    clock = iter([100.0, 105.0, 170.0])
    monkeypatch.setattr("qpa_qiskit.studies.executors.time.monotonic", lambda: next(clock))
    flight = InFlight(tmp_path)
    assert flight.poll(trials) == {}  # a resumed run's old steps, and queued ones, are not moving
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "metrics.jsonl").write_text('{"step": 1}\n')
    assert flight.poll(trials) == {"fresh": (1, 30, 0.0)}
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:
        f.write('{"step": 3}\n')
    assert flight.poll(trials) == {"fresh": (1, 30, 65.0), "resumed": (3, 30, 0.0)}
    assert steps_done(tmp_path / "queued") == 0


def test_the_study_line_names_the_runs_in_flight(monkeypatch):
    monkeypatch.setattr(sys, "stderr", TTY())
    bar = Progress(total=6, done=1, label="compare (ray)")
    bar.started(5)
    bar.in_flight({f"r{i}": (i, 30, 65.0 * i) for i in range(1, 6)})
    bar.close()
    line = sys.stderr.getvalue().split("\r")[-2]
    assert "running=5" in line and "r1 1/30 1m05s, r2 2/30 2m10s, r3 3/30 3m15s, +2 more" in line


@pytest.mark.parametrize("enabled", [True, False])
def test_progress_knows_whether_it_is_shown(enabled, capsys):
    bar = Progress(total=1, done=0, label="s", enabled=enabled)
    bar.close()
    assert bar.enabled is enabled and bool(capsys.readouterr().err) is enabled
