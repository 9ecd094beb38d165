"""--widen-edges (issue 38): a setting whose lr is chosen at its grid's edge is trained at one
more rate beyond it and chosen again, once; the rate on the 1-3-10 ladder; only the lr; the
records; a resume that trains nothing twice; turning it on in a study under way."""

import json

import pytest
from conftest import tiny_config

from qpa_qiskit import InputError, TrialsFailed
from qpa_qiskit.config import RunConfig
from qpa_qiskit.studies import selection as sel
from qpa_qiskit.studies.compare import compare
from qpa_qiskit.studies.runner import RESULT, STUDY, Trial
from qpa_qiskit.train import Run

QUIET = dict(log=lambda m: None)


def trials(methods=("lora", "qpa-lora"), seeds=(0, 1)):
    cfg = RunConfig()
    return [Trial(f"{m}-s{s}", cfg.for_method(m, seed=s), {"method": m, "seed": s}) for m in methods
            for s in seeds]  # fmt: skip


def plan(trials_, lrs=(1e-3, 3e-3, 1e-2), circuit_lrs="none", select_on="first", widen_edges=True):
    return sel.plan(trials_, lrs, circuit_lrs, select_on, trials_[0].config, widen_edges)


def results(list_of_trials, dev):
    return [{"name": t.name, "axes": t.axes, "dev_perplexity": dev(t.config.training.lr,
             t.config.training.circuit_lr, t.axes["seed"])} for t in list_of_trials]  # fmt: skip


# ------------------------------------------------------------------ the rate added
@pytest.mark.parametrize(
    "grid, edge, expected, name",
    [
        ((1e-3, 3e-3), 3e-3, 1e-2, "0.01"),
        ((1e-3, 3e-3, 1e-2), 1e-2, 3e-2, "0.03"),
        ((3e-4, 1e-3, 3e-3), 3e-4, 1e-4, "0.0001"),
        ((1e-3, 3e-3, 1e-2), 1e-3, 3e-4, "0.0003"),
        ((2e-3, 4e-3), 4e-3, 8e-3, "0.008"),  # off the ladder: the grid's ratio at that edge
        ((2e-3, 4e-3), 2e-3, 1e-3, "0.001"),
        ((0.0030000000001, 0.01), 0.01, 3e-2, "0.03"),  # on the ladder within float tolerance
    ],
)
def test_the_rate_beyond_the_edge_is_the_next_of_1_3_10_else_the_grids_ratio(grid, edge, expected, name):
    rate = sel.next_rate(grid, edge)
    assert rate == expected  # exactly the literal: 3e-3 * 10 / 3 would be 0.010000000000000002
    assert f"{rate:g}" == name and sel.rate_text(rate) == sel.rate_text(expected)
    assert sel.rate_text(sel.next_rate((1e-3, 3e-3), 3e-3)) == "1e-02"


# ------------------------------------------------------------------ the choice again
def test_only_a_choice_at_the_lr_edge_widens_at_its_circuit_rate_on_the_selection_seeds():
    selection = plan(trials(), circuit_lrs=(0.01, 0.05))
    # lora: best at 1e-2, the top edge; qpa-lora: lr 3e-3 inside its grid, circuit 0.05 at its edge
    dev = {1e-3: 30.0, 3e-3: 25.0, 1e-2: 20.0}
    def score(lr, c, s):
        return dev[lr] if c is None else abs(lr - 3e-3) - c

    choices = selection.choose(results(selection.trials(), score))
    assert (choices["qpa-lora"].lr, choices["qpa-lora"].circuit_lr_edge) == (3e-3, True)
    assert selection.widening(choices) == {"lora": 3e-2}  # the circuit's edge is not widened
    (added,) = selection.widened_trials(choices)
    assert (added.name, added.config.training.lr, added.final) == ("lora-s0-lr0.03", 3e-2, False)
    assert selection.rechoose(choices, [])["qpa-lora"] == choices["qpa-lora"]
    assert "lora" not in selection.rechoose(choices, [])  # its widened run has not finished: no choice yet
    # without the flag, nothing is added and the choice stands (the behaviour before it)
    plain = plan(trials(), circuit_lrs=(0.01, 0.05), widen_edges=False)
    assert plain.widening(choices) == {} and plain.widened_trials(choices) == []
    assert plain.rechoose(choices, []) == choices


def test_a_qpa_setting_widens_at_its_chosen_circuit_rate():
    selection = plan(trials(), lrs=(1e-3, 3e-3), circuit_lrs=(0.01, 0.05))
    choices = selection.choose(results(selection.trials(), lambda lr, c, s: -lr + (c or 0)))
    assert (choices["qpa-lora"].lr, choices["qpa-lora"].circuit_lr) == (3e-3, 0.01)
    names = [t.name for t in selection.widened_trials(choices)]
    assert names == ["lora-s0-lr0.01", "qpa-lora-s0-lr0.01-clr0.01"]


@pytest.mark.parametrize("widened_dev, lr, edge", [(10.0, 3e-2, True), (22.0, 1e-2, False)])
def test_the_choice_again_over_the_widened_grid_flags_the_new_edge(widened_dev, lr, edge):
    selection = plan(trials(["lora"]))
    dev = {1e-3: 30.0, 3e-3: 25.0, 1e-2: 20.0, 3e-2: widened_dev}
    choices = selection.choose(results(selection.trials(), lambda lr, c, s: dev[lr]))
    assert choices["lora"].lr_edge and choices["lora"].lr == 1e-2
    done = results(selection.trials() + selection.widened_trials(choices), lambda lr, c, s: dev[lr])
    again = selection.rechoose(choices, done)["lora"]
    assert (again.lr, again.lr_edge, again.added_lr) == (lr, edge, 3e-2)
    assert again.candidates[-1] == {"lr": 3e-2, "circuit_lr": None, "dev_perplexity": widened_dev,
                                    "by_seed": {"0": widened_dev}, "widened": True}  # fmt: skip
    final = [t.name for t in selection.trials_at({"lora": again})]
    assert final == [f"lora-s0-lr{lr:g}", f"lora-s1-lr{lr:g}"]
    # once only: the choice after widening adds nothing more
    record = selection.record({"lora": again})
    assert record["widen_edges"] is True
    (setting,) = record["settings"]
    assert setting["lrs"] == [1e-3, 3e-3, 1e-2] and setting["lrs_widened"] == [1e-3, 3e-3, 1e-2, 3e-2]
    assert setting["added_lr"] == 3e-2 and setting["chosen"]["lr_edge"] is edge
    text = sel.selection_markdown(record)
    assert "| lora | 3e-02 | - |" in text and "added by widening" in text and "Widened once" in text
    if edge:
        assert "added by widening; **chosen** (lr at the edge after widening)" in text
        assert "At the edge of the grid (widen it): lora (after widening once)." in text
    else:
        assert "| lora | 1e-02 | - | 20.000 | **chosen** |" in text and "At the edge" not in text


def test_select_on_all_widens_on_every_seed_and_chooses_on_the_mean():
    selection = plan(trials(["lora"], seeds=(0, 1, 2)), lrs=(1e-3, 3e-3), select_on="all")
    choices = selection.choose(results(selection.trials(), lambda lr, c, s: 20.0 - lr))
    widened = selection.widened_trials(choices)
    assert [t.name for t in widened] == ["lora-s0-lr0.01", "lora-s1-lr0.01", "lora-s2-lr0.01"]
    dev = {0: 10.0, 1: 30.0, 2: 30.0}  # seed 0 alone prefers 1e-2; the mean does not
    done = results(selection.trials(), lambda lr, c, s: 20.0 - lr) + results(widened, lambda lr, c, s: dev[s])
    again = selection.rechoose(choices, done)["lora"]
    assert (again.lr, again.lr_edge) == (3e-3, False) and again.candidates[-1]["dev_perplexity"] == 70 / 3
    assert "lora" not in selection.rechoose(choices, done[:-1])  # one seed's widened run unfinished


def test_no_widening_records_what_it_did_before():
    selection = plan(trials(["lora"]), widen_edges=False)
    choices = selection.choose(results(selection.trials(), lambda lr, c, s: lr))
    record = selection.record(choices)
    assert "widen_edges" not in record and "lrs_widened" not in record["settings"][0]
    assert "widen_edges" not in selection.definition({})["selection"]
    assert plan(trials(["lora"])).definition({})["selection"]["widen_edges"] is True


def test_widening_needs_an_lr_grid():
    with pytest.raises(InputError, match=r"widen_edges \(--widen-edges\) widens the learning-rate grid .*"
                                         r"--lrs none.*give --lrs"):  # fmt: skip
        plan(trials(), lrs="none", circuit_lrs=(0.01,))
    with pytest.raises(InputError, match=r"widens the learning-rate grid"):
        plan(trials(), lrs="none")
    with pytest.raises(InputError, match=r"widen_edges \(--widen-edges\) must be True or False, got 'yes'"):
        plan(trials(), widen_edges="yes")


# ------------------------------------------------------------------ a tiny study end to end
def small(corpus, **overrides):
    return tiny_config(corpus, **{"steps": 2, "reps": 1, "hidden": [8], "eval_tokens": 200, "dev_tokens": 200,
                                  "save_every": 1, **overrides})  # fmt: skip


def stamps(out):
    return {p.parent.name: (p.stat().st_mtime_ns, (p.parent / "metrics.jsonl").read_text())
            for p in out.glob(f"*/{RESULT}")}  # fmt: skip


def spy_steps(monkeypatch, stop: str | None = None):
    """(run, step) of every training step from now on; Ctrl-C in the run `stop` after a step."""
    steps, real = [], Run.train_step

    def spy(run):
        if run.dir.name == stop and run.step == 1:
            raise KeyboardInterrupt
        steps.append((run.dir.name, run.step))
        return real(run)

    monkeypatch.setattr(Run, "train_step", spy)
    return steps


# the tiny GPT-2 after 2 steps: the larger the rate the lower its dev perplexity, so a choice at
# the top of the grid that widening moves up one rung
AXES = dict(methods=("lora",), seeds=(0, 1), lrs=(1e-4, 3e-4))


def test_a_study_killed_in_its_widened_run_resumes_training_nothing_twice(corpus, tmp_path, monkeypatch):
    out = tmp_path / "s"
    with monkeypatch.context() as patch:
        spy_steps(patch, stop="lora-s0-lr0.001")
        with pytest.raises(KeyboardInterrupt):
            compare(small(corpus), out, **AXES, widen_edges=True, **QUIET)
    before = stamps(out)
    assert sorted(before) == ["lora-s0-lr0.0001", "lora-s0-lr0.0003"]  # the widened run in flight
    steps = spy_steps(monkeypatch)
    rows = compare(small(corpus), out, **AXES, widen_edges=True, **QUIET)
    assert {k: stamps(out)[k] for k in before} == before
    assert steps == [("lora-s0-lr0.001", 1), ("lora-s1-lr0.001", 0), ("lora-s1-lr0.001", 1)]
    record = json.loads((out / "selection.json").read_text())
    (setting,) = record["settings"]
    assert setting["added_lr"] == 1e-3
    assert setting["chosen"] == {"lr": 1e-3, "circuit_lr": None, "lr_edge": True, "circuit_lr_edge": False}
    assert [c.get("widened", False) for c in setting["candidates"]] == [False, False, True]
    assert [(r.get("lr"), r.get("lr_edge")) for r in rows if r["method"] == "lora"] == [(1e-3, True)]
    results = json.loads((out / "results.json").read_text())
    assert sorted(t["name"] for t in results["trials"]) == ["lora-s0-lr0.001", "lora-s1-lr0.001"]
    assert "(after widening once)" in (out / "selection.md").read_text()
    steps.clear()
    compare(small(corpus), out, **AXES, widen_edges=True, **QUIET)  # done: nothing trains
    assert steps == []


def test_widening_turned_on_in_a_study_under_way_adds_runs_and_not_off_again(corpus, tmp_path, monkeypatch):
    out = tmp_path / "s"
    compare(small(corpus), out, **AXES, **QUIET)  # without widening: chosen 3e-4, at the edge
    assert "widen_edges" not in json.loads((out / STUDY).read_text())["selection"]
    before = stamps(out)
    assert sorted(before) == ["lora-s0-lr0.0001", "lora-s0-lr0.0003", "lora-s1-lr0.0003"]
    steps, logs = spy_steps(monkeypatch), []
    compare(small(corpus), out, **AXES, widen_edges=True, log=logs.append)
    assert {k: stamps(out)[k] for k in before} == before  # every finished run kept
    assert {name for name, _ in steps} == {"lora-s0-lr0.001", "lora-s1-lr0.001"}
    assert json.loads((out / STUDY).read_text())["selection"]["widen_edges"] is True
    text = "\n".join(logs)
    assert "selection.widen_edges turned on in the study under way" in text
    assert ("lora: widening moved its lr from 3e-04 to 1e-03; the final runs at 3e-04 (lora-s1-lr0.0003) are "
            "kept in the folder, not reported") in text  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert sorted(t["name"] for t in results["trials"]) == ["lora-s0-lr0.001", "lora-s1-lr0.001"]
    # the folder now widens: a run without the flag is another study
    refused = r"another study \(different selection\): selection.widen_edges: true in the folder, absent"
    with pytest.raises(InputError, match=refused + " in the settings given"):
        compare(small(corpus), out, **AXES, **QUIET)


def test_a_failed_widened_run_leaves_its_setting_unchosen_and_is_retried(corpus, tmp_path, monkeypatch):
    import qpa_qiskit.studies.executors as executors

    out, real = tmp_path / "s", executors.run_trial

    def flaky(study_dir, trial, **kwargs):
        if trial.name == "lora-s0-lr0.001":
            raise RuntimeError("the node went away")
        return real(study_dir, trial, **kwargs)

    monkeypatch.setattr(executors, "run_trial", flaky)
    with pytest.raises(TrialsFailed, match=r"^1 of 3 runs failed"):
        compare(small(corpus), out, **AXES, widen_edges=True, **QUIET)
    assert json.loads((out / "selection.json").read_text())["settings"][0]["chosen"] is None
    assert not (out / "lora-s1-lr0.0003").exists()  # no final run at the choice before widening
    monkeypatch.undo()
    compare(small(corpus), out, **AXES, widen_edges=True, **QUIET)
    assert json.loads((out / "selection.json").read_text())["settings"][0]["chosen"]["lr"] == 1e-3
