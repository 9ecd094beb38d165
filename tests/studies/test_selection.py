"""Learning rates chosen per setting on the dev split: the grids, the choice (ties, edges, the
mean over seeds), the files, the trials it adds, and a tiny study end to end."""

import json
import re
from dataclasses import replace

import pytest
from conftest import tiny_cli_args, tiny_config

from qpa_qiskit import InputError, TrialsFailed
from qpa_qiskit.cli import main
from qpa_qiskit.config import RunConfig
from qpa_qiskit.errors import StateError
from qpa_qiskit.studies import selection as sel
from qpa_qiskit.studies.common import lr_cell
from qpa_qiskit.studies.compare import _table, compare
from qpa_qiskit.studies.runner import RESULT, STUDY, Trial
from qpa_qiskit.train import Run

QUIET = dict(log=lambda m: None)


def trials(methods=("lora", "qpa-lora"), seeds=(0, 1), **changes):
    """A study's trials as CompareStudy makes them: one per method and seed."""
    cfg = RunConfig().replace(**changes)
    suffix = (lambda s: f"-s{s}") if len(seeds) > 1 else (lambda s: "")
    return [Trial(m + suffix(s), cfg.for_method(m, seed=s), {"method": m, "seed": s}) for m in methods
            for s in seeds]  # fmt: skip


def plan(trials_, lrs=(1e-3, 3e-3), circuit_lrs="none", select_on="first"):
    return sel.plan(trials_, lrs, circuit_lrs, select_on, trials_[0].config)


def results(selection, dev):
    """Result dicts of the selection's trials: dev(name, lr, circuit_lr, seed) -> dev perplexity."""
    return [{"name": t.name, "axes": t.axes, "dev_perplexity": dev(t.name, t.config.training.lr,
             t.config.training.circuit_lr, t.axes["seed"])} for t in selection.trials()]  # fmt: skip


# ------------------------------------------------------------------ the grids
@pytest.mark.parametrize(
    "values, words, expected",
    [
        ("none", ("none", "family"), "none"),
        (None, ("none",), "none"),
        (["FAMILY"], ("none", "family"), "family"),
        ((1e-3, 3e-3), ("none",), [1e-3, 3e-3]),
        ([sel.rate_or_word("0.01")], ("none",), [0.01]),
    ],
)
def test_rate_grids(values, words, expected):
    assert sel.check_rates(values, "lrs", words) == expected


@pytest.mark.parametrize(
    "values, match",
    [
        ([], r"lrs \(--lrs\) must list at least one rate, got \[\]"),
        ([1e-3, 0.0], r"lrs \(--lrs\): each rate must be a finite number > 0, got 0.0"),
        ([-1e-3], r"each rate must be a finite number > 0"),
        ([float("inf")], r"each rate must be"),
        (["none", 1e-3], r"lrs \(--lrs\) mixes a word with other values"),
        (["family", "none"], r"mixes a word"),
        (
            ["fast"],
            r"lrs \(--lrs\): unknown word 'fast'; give positive numbers \(learning rates\), or one "
            r"word: none, family",
        ),
        ([1e-3, 1e-3], r"lrs \(--lrs\) lists 0.001 more than once"),
        ([True], r"must be positive numbers"),
    ],
)
def test_bad_grids_name_the_option_and_the_accepted_values(values, match):
    with pytest.raises(InputError, match=match):
        sel.check_rates(values, "lrs", ("none", "family"))


def test_family_grids_cover_every_method():
    from qpa_qiskit.choices import METHODS

    assert sel.family_lrs("lora") == [1e-3, 3e-3, 1e-2] == sel.family_lrs("ffa")
    assert sel.family_lrs("ia3") == [3e-3, 1e-2, 3e-2] == sel.family_lrs("vera")
    assert sel.family_lrs("qpa-prefix") == [3e-4, 1e-3, 3e-3] == sel.family_lrs("lowrank-lora")
    for method in METHODS:
        grid = sel.family_lrs(method)
        assert len(grid) >= 2 and grid == sorted(grid) and min(grid) > 0, method


def test_no_selection_is_none():
    assert plan(trials(), lrs="none") is None
    assert plan(trials(), lrs=None, circuit_lrs=None) is None


def test_settings_their_names_and_their_grids():
    selection = plan(trials(), lrs=(1e-3, 3e-3), circuit_lrs=(0.01, 0.05))
    lora, qpa = selection.settings
    assert (lora.label, lora.axes, [t.name for t in lora.trials]) == (
        "lora",
        {"method": "lora"},
        ["lora-s0", "lora-s1"],
    )
    assert lora.circuit_lrs == (None,) and qpa.circuit_lrs == (0.01, 0.05)  # classical: no circuit rate
    names = [t.name for t in selection.trials()]
    qpa_names = [f"qpa-lora-s0-lr{lr}-clr{c}" for lr in ("0.001", "0.003") for c in ("0.01", "0.05")]
    assert names == ["lora-s0-lr0.001", "lora-s0-lr0.003", *qpa_names]
    t = selection.trials()[3]
    assert (t.config.training.lr, t.config.training.circuit_lr, t.config.training.seed) == (1e-3, 0.05, 0)
    assert t.axes == {"method": "qpa-lora", "seed": 0, "lr": 1e-3, "circuit_lr": 0.05}
    # one seed: no seed in the names; a circuit grid alone leaves the lr (and its name) alone
    selection = plan(trials(seeds=(3,)), lrs="none", circuit_lrs=(0.01,))
    assert [t.name for t in selection.trials()] == ["lora", "qpa-lora-clr0.01"]
    assert [s.lrs for s in selection.settings] == [(1e-3,), (1e-3,)]  # the configuration's
    selection = plan(trials(["ia3", "qpa-lora"], seeds=(0,)), lrs="family")
    assert [s.lrs for s in selection.settings] == [(3e-3, 1e-2, 3e-2), (3e-4, 1e-3, 3e-3)]


def test_select_on_all_runs_every_seed():
    first = plan(trials(), select_on="first")
    every = plan(trials(), select_on="all")
    assert len(first.trials()) == 2 * 2 and len(every.trials()) == 2 * 2 * 2
    with pytest.raises(InputError, match=r"select_on .* must be one of first, all; got 'best'"):
        plan(trials(), select_on="best")


def test_a_circuit_grid_needs_a_trained_circuit():
    with pytest.raises(InputError, match=r"circuit_lrs \(--circuit-lrs\) .* no setting of this study has one "
                                         r"\(methods lora, ia3\)"):  # fmt: skip
        plan(trials(["lora", "ia3"]), circuit_lrs=(0.01,))
    frozen = trials(["qpa-lora"], probabilities="frozen")  # its circuit is not trained
    with pytest.raises(InputError, match="no setting of this study has one"):
        plan(frozen, circuit_lrs=(0.01,))
    softmax = plan(trials(["qpa-lora"], probabilities="softmax"), circuit_lrs=(0.01,))
    assert softmax.settings[0].circuit_lrs == (0.01,)


def test_a_selection_needs_a_dev_split():
    no_dev = trials(dev_share=None)
    with pytest.raises(
        InputError, match=r"chooses on the dev split, and this study.s configuration has none.*--dev-share"
    ):
        plan(no_dev)
    assert plan(no_dev, lrs="none") is None  # no selection, no dev split needed


# ------------------------------------------------------------------ the choice
def test_the_lowest_dev_perplexity_wins_and_the_final_runs_reuse_its_run():
    selection = plan(trials(), lrs=(1e-3, 3e-3, 1e-2))
    dev = {1e-3: 30.0, 3e-3: 25.0, 1e-2: 27.0}
    choices = selection.choose(results(selection, lambda n, lr, c, s: dev[lr]))
    assert choices["lora"].lr == 3e-3 and not choices["lora"].lr_edge
    assert [c["dev_perplexity"] for c in choices["lora"].candidates] == [30.0, 25.0, 27.0]
    final = selection.trials_at(choices)
    assert [t.name for t in final] == ["lora-s0-lr0.003", "lora-s1-lr0.003", "qpa-lora-s0-lr0.003",
                                       "qpa-lora-s1-lr0.003"]  # fmt: skip
    chosen = {t.name: t for t in selection.trials()}["lora-s0-lr0.003"]
    # the same name and configuration: its result is read back; a selection run scores dev only,
    # the final run it becomes its test split too
    assert final[0] == replace(chosen, final=True) and not chosen.final
    assert final[1].config.training.seed == 1 and final[1].config.training.lr == 3e-3


def test_ties_go_to_the_smaller_rate_and_edges_are_flagged():
    selection = plan(trials(seeds=(0,)), lrs=(1e-2, 1e-3, 3e-3), circuit_lrs=(0.05, 0.01))
    choices = selection.choose(results(selection, lambda n, lr, c, s: 20.0))
    assert (choices["lora"].lr, choices["lora"].lr_edge) == (1e-3, True)
    qpa = choices["qpa-lora"]
    assert (qpa.lr, qpa.circuit_lr, qpa.lr_edge, qpa.circuit_lr_edge) == (1e-3, 0.01, True, True)
    # the largest is an edge too; a middle one is not; a grid of one value has no edge
    selection = plan(trials(seeds=(0,)), lrs=(1e-3, 3e-3, 1e-2), circuit_lrs=(0.01, 0.02, 0.05))
    choices = selection.choose(results(selection, lambda n, lr, c, s: -lr + (0 if c in (None, 0.02) else 1)))
    assert (choices["lora"].lr, choices["lora"].lr_edge) == (1e-2, True)
    assert (choices["qpa-lora"].circuit_lr, choices["qpa-lora"].circuit_lr_edge) == (0.02, False)
    selection = plan(trials(seeds=(0,)), lrs=(3e-3,))
    assert not selection.choose(results(selection, lambda *a: 20.0))["lora"].lr_edge


def test_select_on_all_chooses_on_the_mean_over_seeds():
    # seed 0 alone prefers 1e-3; the mean over both seeds prefers 3e-3
    dev = {(1e-3, 0): 20.0, (3e-3, 0): 21.0, (1e-3, 1): 30.0, (3e-3, 1): 24.0}
    first = plan(trials(), select_on="first")
    assert first.choose(results(first, lambda n, lr, c, s: dev[(lr, s)]))["lora"].lr == 1e-3
    every = plan(trials(), select_on="all")
    choice = every.choose(results(every, lambda n, lr, c, s: dev[(lr, s)]))["lora"]
    assert choice.lr == 3e-3
    assert choice.candidates[1] == {"lr": 3e-3, "circuit_lr": None, "dev_perplexity": 22.5,
                                    "by_seed": {"0": 21.0, "1": 24.0}}  # fmt: skip
    assert {t.name for t in every.trials_at({"lora": choice})} <= {t.name for t in every.trials()}


def test_a_setting_with_an_unfinished_selection_run_is_not_chosen():
    selection = plan(trials())
    done = [r for r in results(selection, lambda *a: 20.0) if r["name"] != "qpa-lora-s0-lr0.003"]
    choices = selection.choose(done)
    assert set(choices) == {"lora"}
    assert [t.name for t in selection.trials_at(choices)] == ["lora-s0-lr0.001", "lora-s1-lr0.001"]
    record = selection.record(choices)
    assert record["settings"][1]["chosen"] is None and record["settings"][1]["candidates"] is None
    assert "| qpa-lora | - | - | - | not chosen: its selection runs did not all finish |" in (
        sel.selection_markdown(record)
    )


def test_a_run_without_a_dev_perplexity_is_a_clear_error():
    selection = plan(trials(seeds=(0,)))
    with pytest.raises(StateError, match=r"the run lora-lr0.001 records no dev perplexity .*None"):
        selection.choose(results(selection, lambda *a: None))


# ------------------------------------------------------------------ what it records
def test_the_record_the_markdown_and_the_annotated_results():
    selection = plan(trials(), lrs=(1e-3, 3e-3), circuit_lrs=(0.01, 0.05))
    choices = selection.choose(results(selection, lambda n, lr, c, s: 20 + lr * 100 + (c or 0)))
    record = selection.record(choices)
    json.dumps(record, allow_nan=False)
    assert record["select_on"] == "first" and record["lrs"] == [1e-3, 3e-3]
    lora, qpa = record["settings"]
    assert lora["circuit_lrs"] is None and qpa["circuit_lrs"] == [0.01, 0.05]
    assert qpa["selection_seeds"] == [0] and len(qpa["candidates"]) == 4
    assert qpa["chosen"] == {"lr": 1e-3, "circuit_lr": 0.01, "lr_edge": True, "circuit_lr_edge": True}
    text = sel.selection_markdown(record)
    assert "| lora | 1e-03 | - | 20.100 | **chosen** (lr at the grid's edge) |" in text
    assert "| qpa-lora | 1e-03 | 1e-02 | 20.110 | **chosen** (lr and circuit lr at the grid's edge) |" in text
    assert "| qpa-lora | 3e-03 | 5e-02 | 20.350 |  |" in text
    assert "At the edge of the grid (widen it): lora, qpa-lora." in text
    final = [{"name": t.name, "perplexity": 1.0} for t in selection.trials_at(choices)]
    annotated = selection.annotate(final, choices)
    assert annotated[2] == {"name": "qpa-lora-s0-lr0.001-clr0.01", "perplexity": 1.0, "lr": 1e-3,
                            "circuit_lr": 0.01, "lr_edge": True, "circuit_lr_edge": True}  # fmt: skip
    assert annotated[0]["circuit_lr"] is None
    assert lr_cell(annotated[2]) == "1e-03 (edge), circuit 1e-02 (edge)"
    assert lr_cell({**annotated[0], "lr": 1.5e-3, "lr_edge": False}) == "1.5e-03" and lr_cell({}) == "-"


def test_a_qpa_row_without_a_circuit_grid_shows_its_configured_circuit_rate():
    selection = plan(trials(seeds=(0,), circuit_lr=0.05), lrs=(1e-3, 3e-3))
    assert selection.trials()[2].config.training.circuit_lr == 0.05  # kept from the configuration
    choices = selection.choose(results(selection, lambda n, lr, c, s: lr))
    final = [{"name": t.name} for t in selection.trials_at(choices)]
    assert [r["circuit_lr"] for r in selection.annotate(final, choices)] == [None, 0.05]


def test_the_definition_records_the_selection_and_leaves_the_chosen_rates_out():
    definition = {"config": RunConfig().to_dict(), "methods": ["lora"]}
    out = plan(trials(), lrs="family").definition(definition)
    assert "lr" not in out["config"]["training"] and "circuit_lr" in out["config"]["training"]
    assert out["selection"] == {"lrs": "family", "circuit_lrs": "none", "select_on": "first",
                                "family_lrs": {k: list(v) for k, v in sel.FAMILY_LRS.items()}}  # fmt: skip
    out = plan(trials(), lrs="none", circuit_lrs=[0.1]).definition(definition)
    assert "lr" in out["config"]["training"] and "circuit_lr" not in out["config"]["training"]
    assert definition["config"]["training"]["lr"] == 1e-3  # the study's own definition is left alone


def test_tables_show_the_chosen_rates_only_with_a_selection():
    row = {"method": "lora", "perplexity": 20.0, "std": 0.0, "seeds": 1, "trainable": 10, "generated": 0,
           "qubits": None}  # fmt: skip
    plain = _table([row], {}, spread=False)
    assert "lr (chosen)" not in plain
    chosen = _table([row, {**row, "method": "ia3", "lr": 3e-2, "lr_edge": True}], {}, spread=False)
    lines = chosen.splitlines()
    assert lines[0].endswith("| lr (chosen) |") and lines[1].count("---") == 6
    assert lines[2].endswith("| - |") and lines[3].endswith("| 3e-02 (edge) |")


# ------------------------------------------------------------------ a tiny study end to end
def small(corpus, **overrides):
    return tiny_config(corpus, **{"steps": 2, "reps": 1, "hidden": [8], "eval_tokens": 200, "dev_tokens": 200,
                                  **overrides})  # fmt: skip


def stamps(out):
    """Each finished run's result file and metric lines: a run trained again changes them."""
    return {p.parent.name: (p.stat().st_mtime_ns, (p.parent / "metrics.jsonl").read_text())
            for p in out.glob(f"*/{RESULT}")}  # fmt: skip


def test_a_study_chooses_each_settings_rate_and_its_final_runs_use_it(corpus, tmp_path, monkeypatch):
    import qpa_qiskit.studies.executors as executors

    out, real = tmp_path / "s", executors.run_trial

    def flaky(study_dir, trial, **kwargs):  # a final run (seed 1) lost: the study is interrupted
        if trial.name.startswith("qpa-lora-s1"):
            raise RuntimeError("the node went away")
        return real(study_dir, trial, **kwargs)

    monkeypatch.setattr(executors, "run_trial", flaky)
    axes = dict(methods=("lora", "qpa-lora"), seeds=(0, 1), lrs=(1e-3, 1e-2))
    with pytest.raises(TrialsFailed, match=r"^1 of 6 runs failed"):
        compare(small(corpus), out, **axes, **QUIET)
    record = json.loads((out / "selection.json").read_text())
    chosen = {}
    for s in record["settings"]:  # the lowest dev perplexity of the selection runs (seed 0) won
        dev = {lr: json.loads((out / f"{s['setting']}-s0-lr{lr:g}" / RESULT).read_text())["dev_perplexity"]
               for lr in (1e-3, 1e-2)}  # fmt: skip
        assert [c["dev_perplexity"] for c in s["candidates"]] == list(dev.values())
        chosen[s["setting"]] = min(dev, key=dev.get)
        assert s["chosen"] == {"lr": chosen[s["setting"]], "circuit_lr": None, "lr_edge": True,
                               "circuit_lr_edge": False}  # fmt: skip
    assert "**chosen** (lr at the grid's edge)" in (out / "selection.md").read_text()
    before = stamps(out)
    assert len(before) == 5  # 2 settings x 2 rates on seed 0, and lora's seed 1 at its rate: 5 runs, not 8
    monkeypatch.undo()
    rows = compare(small(corpus), out, **axes, **QUIET)  # resumed: only the lost run trains
    after = stamps(out)
    assert {k: after[k] for k in before} == before and len(after) == 6
    final = {m: [f"{m}-s{s}-lr{chosen[m]:g}" for s in (0, 1)] for m in chosen}
    results = json.loads((out / "results.json").read_text())
    assert sorted(t["name"] for t in results["trials"]) == sorted(final["lora"] + final["qpa-lora"])
    for method, names in final.items():
        for name in names:  # the chosen rate is the one they trained at
            assert Run.stored_config(out / name).training.lr == chosen[method]
    assert [(r["method"], r.get("lr"), r.get("lr_edge")) for r in rows] == [
        ("base", None, None), ("lora", chosen["lora"], True), ("qpa-lora", chosen["qpa-lora"], True)
    ]  # fmt: skip
    assert all(t["lr"] == chosen[t["axes"]["method"]] for t in results["trials"])
    table = (out / "results.md").read_text()
    assert "| lr (chosen) |" in table and f"| {sel.rate_text(chosen['lora'])} (edge) |" in table
    study = json.loads((out / STUDY).read_text())
    assert study["selection"]["lrs"] == [1e-3, 1e-2] and "lr" not in study["config"]["training"]
    # the same study from another --lr: the selection sets the rates, so nothing trains
    compare(small(corpus, lr=0.5), out, **axes, **QUIET)
    assert stamps(out) == after
    with pytest.raises(InputError, match=r"holds another study \(different selection\)"):
        compare(small(corpus), out, **{**axes, "lrs": (1e-3, 3e-3)}, **QUIET)


def test_a_study_without_a_selection_keeps_its_names_and_results(corpus, tmp_path):
    compare(small(corpus), tmp_path / "s", methods=("lora",), **QUIET)
    assert [p.parent.name for p in (tmp_path / "s").glob(f"*/{RESULT}")] == ["lora"]  # today's name
    assert not (tmp_path / "s" / "selection.json").exists()
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert "lr" not in results["trials"][0] and "lr" not in results["rows"][1]
    assert "selection" not in json.loads((tmp_path / "s" / STUDY).read_text())
    assert "lr (chosen)" not in (tmp_path / "s" / "results.md").read_text()


def test_the_circuit_rate_is_chosen_on_the_command_line(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    options = "--steps 1 --reps 1 --hidden 8 --eval-tokens 200 --dev-tokens 200 --methods lora qpa-lora"
    args = tiny_cli_args(corpus, f"{options} --lrs 1e-3 --circuit-lrs 0.01 0.05 --out {out}")
    assert main(["compare", *args]) == 0
    printed = capsys.readouterr().out
    assert "| lr (chosen) |" in printed and ", circuit " in printed and "(edge)" in printed
    names = sorted(p.parent.name for p in out.glob(f"*/{RESULT}"))
    assert names == ["lora-lr0.001", "qpa-lora-lr0.001-clr0.01", "qpa-lora-lr0.001-clr0.05"]
    record = json.loads((out / "selection.json").read_text())
    assert record["circuit_lrs"] == [0.01, 0.05] and record["settings"][0]["circuit_lrs"] is None


@pytest.mark.parametrize(
    "options, match",
    [
        (
            "--methods lora --circuit-lr 0.01",
            "--circuit-lr is the rate of a qpa-\\* method's circuit; lora have none",
        ),
        ("--methods lora ia3 --circuit-lrs 0.01", "no setting of this study has one \\(methods lora, ia3\\)"),
        ("--lrs 0", "lrs \\(--lrs\\): each rate must be a finite number > 0, got 0.0"),
        ("--lrs -0.001", "each rate must be a finite number > 0"),
        ("--lrs none 1e-3", "lrs \\(--lrs\\) mixes a word with other values"),
        (
            "--lrs fast",
            "unknown word 'fast'; give positive numbers \\(learning rates\\), or one word: none, family",
        ),
        ("--circuit-lrs family", "circuit_lrs \\(--circuit-lrs\\): unknown word 'family'.*one word: none"),
        ("--select-on best", "invalid choice: 'best'"),
        ("--lrs", "expected at least one argument"),
    ],
)
def test_bad_selection_input_is_refused_before_any_run(corpus, tmp_path, capsys, options, match):
    out = tmp_path / "s"
    args = [
        "--model",
        "tiny-gpt2",
        "--data",
        str(corpus),
        "--steps",
        "1",
        "--out",
        str(out),
        *options.split(),
    ]
    try:
        status = main(["compare", *args])
    except SystemExit as exc:  # argparse's own errors (a choice, a missing value)
        status = exc.code
    assert status == 2
    assert re.search(match, capsys.readouterr().err)
    assert not out.exists()


def test_params_chooses_on_family_grids_by_default():
    from qpa_qiskit.studies.params import ParamsStudy

    spec = ParamsStudy(methods=("lora", "ia3", "qpa-lora"), ranks=(4,), chunk_sizes=(2048,), reps=(8,),
                       target_sets=("lm_head",))  # fmt: skip
    cfg = spec.configuration()
    selection = spec.checked(cfg).selection(cfg)
    assert [s.lrs for s in selection.settings] == [(1e-3, 3e-3, 1e-2), (3e-3, 1e-2, 3e-2), (3e-4, 1e-3, 3e-3)]
    assert ParamsStudy(lrs="none").selection(cfg) is None


@pytest.mark.slow
@pytest.mark.xdist_group("processes")  # a local Ray of 2 CPUs: one at a time (docs/testing.md)
def test_a_selection_on_ray_gives_the_same_choice_and_results_as_local(corpus, tmp_path):
    ray = pytest.importorskip("ray")
    from qpa_qiskit.studies.executors import LocalExecutor, RayExecutor

    axes = dict(methods=("lora", "qpa-lora"), seeds=(0, 1), lrs=(1e-3, 1e-2), circuit_lrs=(0.01,), **QUIET)
    # one thread per run on both: torch's CPU reductions depend on the thread count
    compare(small(corpus), tmp_path / "local", executor=LocalExecutor(threads=1), **axes)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:  # the runner twice on one Ray: the selection runs, then the final runs
        compare(small(corpus), tmp_path / "ray", executor=RayExecutor(cpus_per_run=1), **axes)
    finally:
        ray.shutdown()
    for name in ("selection.json", "results.json"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "local" / name).read_text()
    assert len(list((tmp_path / "ray").glob(f"*/{RESULT}"))) == 6  # 2 x 2 rates on seed 0, 2 on seed 1


@pytest.mark.parametrize(
    "study, axes",
    [
        ("shots", dict(shots_factors=(2,), modes=("none",), tvd_samples=1)),
        ("noise", dict(backends=("statevector",), rotations=("ry",), shots_factors=(None,), tvd_samples=1)),
        (
            "params",
            dict(
                methods=("lora", "qpa-lora"),
                ranks=(1,),
                chunk_sizes=(64,),
                reps=(1,),
                target_sets=("lm_head",),
            ),
        ),
        (
            "ablation",
            dict(regimes=("fixed:mlp",), controls=("circuit",), lora_ranks=(1,), counterfactuals=()),
        ),
    ],
)
def test_every_study_shows_the_chosen_rates(corpus, tmp_path, study, axes):
    from qpa_qiskit.studies.ablation import study_ablation
    from qpa_qiskit.studies.noise import study_noise
    from qpa_qiskit.studies.params import study_params
    from qpa_qiskit.studies.shots import study_shots

    run = {"shots": study_shots, "noise": study_noise, "params": study_params, "ablation": study_ablation}[
        study
    ]
    out = tmp_path / study
    run(small(corpus, steps=1), out, lrs=(3e-3,), circuit_lrs=(0.02,), **axes, **QUIET)
    table = (out / "results.md").read_text()
    assert "lr (chosen)" in table and "| 3e-03, circuit 2e-02 |" in table  # a grid of one: no edge
    assert "(edge)" not in table
    for block in re.split(r"\n(?!\|)", table):  # every table's rows have its header's columns
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({line.count(" | ") for line in rows if "---" not in line}) <= 1, block
        assert len({line.count("|") for line in rows}) <= 1, block
    results = json.loads((out / "results.json").read_text())
    assert {(t["lr"], t["circuit_lr"]) for t in results["trials"]} <= {(3e-3, 0.02), (3e-3, None)}
    record = json.loads((out / "selection.json").read_text())
    assert all(s["chosen"]["lr"] == 3e-3 for s in record["settings"])


def test_a_diverged_selection_run_is_ranked_last_not_a_blocked_study(corpus, tmp_path):
    # max_grad_norm 0 and a huge rate: the LoRA's weights overflow, its perplexity is not finite
    out = tmp_path / "s"
    cfg = small(corpus, max_grad_norm=0.0, warmup=0)
    rows = compare(cfg, out, methods=("lora",), lrs=(1e-3, 1e12), **QUIET)
    diverged = json.loads((out / "lora-lr1e+12" / RESULT).read_text())
    assert diverged["diverged"] is True and diverged["dev_perplexity"] is None
    record = json.loads((out / "selection.json").read_text())
    (setting,) = record["settings"]
    assert setting["chosen"]["lr"] == 1e-3
    assert [c["dev_perplexity"] is None for c in setting["candidates"]] == [False, True]
    assert "| lora | 1e+12 | - | diverged |" in (out / "selection.md").read_text()
    assert [r.get("lr") for r in rows if r["method"] == "lora"] == [1e-3]


def test_a_diverged_final_run_is_a_failure_that_names_its_rate(corpus, tmp_path):
    out = tmp_path / "s"
    cfg = small(corpus, max_grad_norm=0.0, warmup=0, lr=1e12)
    with pytest.raises(TrialsFailed, match="1 of 1 runs failed") as failed:
        compare(cfg, out, methods=("lora",), **QUIET)
    reason = str(failed.value.failures["lora"])
    assert reason.startswith("diverged: its perplexity is not finite") and "at lr 1e+12;" in reason
    assert json.loads((out / "lora" / RESULT).read_text())["perplexity"] is None


def test_ctrl_c_in_a_study_with_a_selection_says_what_is_kept_and_its_command_resumes(
    corpus, tmp_path, capsys, monkeypatch
):
    """Ctrl-C midway through the second selection run ended in a KeyboardInterrupt traceback;
    now one line, exit status 130, and the command it prints (with the time-stamped --out the
    study chose) finishes the study: the finished run is not trained again, and the results
    are those of a study never stopped."""
    monkeypatch.chdir(tmp_path)  # the default --out, runs/compare-<time>, lands here
    options = "--steps 2 --save-every 1 --eval-tokens 200 --dev-tokens 200 --methods lora --lrs 1e-3 3e-3"
    args = ["--model", "tiny-gpt2", "--data", str(corpus), "--block-size", "32", *options.split()]
    real, fired = Run.train_step, []

    def interrupted(run):  # Ctrl-C during the second step of the second run, after a checkpoint
        if run.dir.name == "lora-lr0.003" and run.step == 1 and not fired:
            fired.append(run.step)
            raise KeyboardInterrupt
        return real(run)

    monkeypatch.setattr(Run, "train_step", interrupted)
    capsys.readouterr()
    try:
        status = main(["compare", *args])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped qpa compare as a traceback")
    err = capsys.readouterr().err
    assert status == 130 and fired and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    match = re.fullmatch(
        r"stopped with 1 finished run\(s\) kept in (\S+) \(a run stopped midway resumes at its "
        r"checkpoint\); '(qpa [^']+)' continues",
        line,
    )
    assert match, line
    out = tmp_path / match.group(1)
    command = match.group(2).split()[1:]
    assert command == ["compare", *args, "--out", match.group(1)] and out.parent.name == "runs"
    before = stamps(out)
    assert list(before) == ["lora-lr0.001"]
    assert main(command) == 0
    after = stamps(out)
    assert after["lora-lr0.001"] == before["lora-lr0.001"] and len(after) == 2
    assert main(["compare", *args, "--out", str(tmp_path / "straight")]) == 0
    final = {t["name"] for t in json.loads((out / "results.json").read_text())["trials"]}
    for name in after:
        resumed = json.loads((out / name / RESULT).read_text())
        straight = json.loads((tmp_path / "straight" / name / RESULT).read_text())
        assert resumed["dev_perplexity"] == straight["dev_perplexity"]
        # every figure (the chosen run's test split too; the other one, a selection run, has none)
        resumed.pop("seconds_per_step"), straight.pop("seconds_per_step")  # the machine's, not the run's
        assert resumed == straight
        assert ("perplexity" in resumed) == (name in final) and len(final) == 1
