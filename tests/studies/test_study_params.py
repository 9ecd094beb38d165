"""``qpa study params``: the grid over methods and sizes, the peer reading, plots, resume,
and its bad input."""

import json
import math

import pytest
from conftest import tiny_cli_args, tiny_config

from qpa_qiskit import InputError
from qpa_qiskit.cli import main
from qpa_qiskit.config import RunConfig
from qpa_qiskit.studies.params import ParamsStudy, params_rows, study_params
from qpa_qiskit.studies.runner import RESULT
from qpa_qiskit.train import Run, evaluate_run

QUIET = dict(log=lambda m: None)
GRID = dict(
    ranks=(1, 2),
    vera_ranks=(4,),
    prefix_tokens=(2,),
    bottlenecks=(4,),
    chunk_sizes=(32, 64, 128),
    reps=(1, 2),
    seeds=(0, 1),
    lrs="none",  # every run at the configuration's lr (test_selection.py tests the default, family)
    target_sets=("lm_head",),  # tiny-gpt2 has no q_proj, v_proj (its attention is c_attn)
)


def small(corpus, **overrides):
    return tiny_config(corpus, **{"steps": 2, "reps": 2, "hidden": [8], "eval_tokens": 300, **overrides})


@pytest.mark.slow
def test_params_study_grid_rows_and_plots(corpus, tmp_path):
    out = tmp_path / "s"
    rows = study_params(small(corpus), out, **GRID, **QUIET)
    names = sorted(p.parent.name for p in out.glob(f"*/{RESULT}"))
    # classical: lora x2, dora x2, prefix, ffa, vera, ia3 = 8 settings; QPA: lora 3 chunks + L=1
    # (L=2 is the config's and already there), dora 3 chunks, prefix and ffa at the middle one
    assert len(names) == (8 + 4 + 3 + 1 + 1) * 2
    assert {"lora-r2-lm_head-s1", "ia3-s0", "prefix-p2-s0", "ffa-b4-s1", "vera-r4-s0",
            "qpa-lora-k64-L1-lm_head-s0", "qpa-dora-k128-L2-lm_head-s1", "qpa-prefix-k64-L2-s0",
            "qpa-ffa-k64-L2-s1"} <= set(names)  # fmt: skip
    assert "qpa-prefix-k32-L2-s0" not in names  # only --chunk-methods sweep the chunk sizes
    results = json.loads((out / "results.json").read_text())
    by_name = {t["name"]: t for t in results["trials"]}
    assert by_name["qpa-ffa-k64-L2-s0"]["perplexity"] == evaluate_run(out / "qpa-ffa-k64-L2-s0")["perplexity"]
    # QPA runs that differ in the chunk size share their data order and the seed's streams
    with Run.open(out / "qpa-lora-k32-L2-lm_head-s0", for_training=False) as a:
        with Run.open(out / "qpa-lora-k64-L2-lm_head-s0", for_training=False) as b:
            assert a.cfg.changes(b.cfg) == {"chunk_size": (32, 64)}
    assert len(rows) == 17
    qpa = {(r["method"], r["chunk_size"], r["reps"]): r for r in rows if r["method"].startswith("qpa-")}
    # more chunks, more qubits, fewer mapping outputs: fewer trainable parameters
    lora = [qpa[("qpa-lora", k, 2)] for k in (32, 64, 128)]
    assert [r["qubits"] for r in lora] == [5, 4, 3]  # 578 weights: 19, 10 and 5 chunks
    assert lora[0]["trainable"] < lora[1]["trainable"] < lora[2]["trainable"]
    classical = [r for r in rows if not r["method"].startswith("qpa-")]
    for r in qpa.values():  # the peer is the classical row nearest in trainable parameters (log scale)
        nearest = min(abs(math.log(c["trainable"] / r["trainable"])) for c in classical)
        assert abs(math.log(r["peer_trainable"] / r["trainable"])) == nearest
        assert r["vs_peer_pairs"] == 2
    text = (out / "results.md").read_text()
    assert (
        "| qpa-lora k=32 L=2 on lm_head |" in text and "| ia3 |" in text and "nearest classical peer" in text
    )
    for plot in ("params.png", "qubits.png", "reps.png"):
        assert (out / plot).stat().st_size > 10_000
    # run again: every run is read back, nothing trains, the same results
    again = study_params(small(corpus), out, **GRID, **QUIET)
    assert again == rows
    assert json.loads((out / "results.json").read_text()) == results


def test_the_peer_difference_is_paired_by_seed():
    def result(method, seed, ppl, trainable, size=None, chunk=None, reps=None):
        return {"axes": {"method": method, "size": size, "chunk_size": chunk, "reps": reps, "seed": seed},
                "perplexity": ppl, "counts": {"trainable": trainable}}  # fmt: skip

    results = [
        result("lora", 0, 20.0, 1000, size=1), result("lora", 1, 22.0, 1000, size=1),
        result("lora", 0, 19.0, 100_000, size=16), result("lora", 1, 21.0, 100_000, size=16),
        result("qpa-lora", 0, 19.5, 1500, size=4, chunk=64, reps=8),
        result("qpa-lora", 1, 21.5, 1500, size=4, chunk=64, reps=8),
    ]  # fmt: skip
    rows = params_rows(results, ["lora", "qpa-lora"])
    quantum = rows[-1]
    assert quantum["peer"] == "lora r=1" and quantum["peer_trainable"] == 1000
    assert quantum["vs_peer"] == pytest.approx(-0.5) and quantum["vs_peer_std"] == pytest.approx(0.0)
    assert quantum["own"] == "lora r=1" and quantum["vs_own_pairs"] == 2
    results += [result("dora", 0, 18.0, 1400, size=1), result("dora", 1, 22.0, 1400, size=1)]
    quantum = params_rows(results, ["lora", "dora", "qpa-lora"])[-1]
    assert quantum["peer"] == "dora r=1" and quantum["vs_peer"] == pytest.approx(0.5)
    assert quantum["vs_peer_std"] == pytest.approx(2**0.5)  # the sample std of +1.5 and -0.5
    assert quantum["own"] == "lora r=1" and quantum["vs_own"] == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(methods=["lora", "lora"]), r"methods \(--methods\) lists 'lora' more than once"),
        (dict(methods=["lora", "qlora"]), "methods must be one of"),
        (dict(ranks=[0]), "ranks must be a positive integer"),
        (dict(chunk_sizes=[]), r"chunk_sizes \(--chunk-sizes\) must list at least one value"),
        (dict(reps_methods=["lora"]), "reps_methods must be one of qpa-dora, qpa-ffa"),
        (dict(ranks=[64]), r"rank 64 is out of range for lm_head"),
        (dict(seeds=[1, 1]), r"seeds \(--seeds\) lists 1 more than once"),
        (dict(target_sets=[]), r"target_sets \(--target-sets\) must list at least one value"),
        (dict(target_sets="lm_head"), r"target_sets \(--target-sets\) must be a list of values"),
        (dict(target_sets=["lm_head", "lm_head"]), r"target_sets \(--target-sets\) lists \['lm_head'\] more"),
        (
            dict(target_sets=["c_attn,lm_head", "lm_head,c_attn"]),
            r"lists lm_head,c_attn more than once \(in an",
        ),
        (
            dict(target_sets=["c_attn,c_attn"]),
            r"\(--target-sets\): 'c_attn,c_attn' names c_attn more than once",
        ),
        (dict(target_sets=["lm_head,"]), r"\(--target-sets\): 'lm_head,' is not a list of module names"),
        (dict(target_sets=["../x"]), r"\(--target-sets\): '../x' is not a list of module names"),
        (dict(target_sets=[[]]), r"\(--target-sets\): \[\] is not a list of module names"),
        (
            dict(target_methods=["prefix"]),
            r"\(--target-methods\): prefix takes no targets.*accepted: lora, dora",
        ),
        (dict(target_methods=["qpa-prefix"]), r"\(--target-methods\): qpa-prefix takes no targets"),
        (
            dict(target_methods=["qlora"]),
            r"target_methods must be one of lora, dora, ffa, vera, ia3, qpa-lora",
        ),
        (dict(target_sets=["lm_head", "wte"], ranks=[64]), r"rank 64 is out of range for lm_head"),
    ],
)
def test_bad_input_is_refused_before_any_run(corpus, tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        study_params(small(corpus), tmp_path / "s", **{**GRID, **kwargs}, **QUIET)
    assert not (tmp_path / "s").exists() or not any(p.is_dir() for p in (tmp_path / "s").iterdir())


def test_cli(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    args = tiny_cli_args(corpus, f"--steps 1 --reps-values 1 --eval-tokens 200 --seeds 0 --out {out} "
                                 "--methods lora qpa-lora qpa-dora ia3 --ranks 1 --chunk-sizes 32 64 "
                                 "--chunk-methods qpa-dora --target-sets lm_head --lrs none")  # fmt: skip
    at = args.index("--chunk-size")  # the grid sets it: here it would abbreviate --chunk-sizes
    del args[at : at + 2]
    assert main(["study", "params", *args]) == 0
    printed = capsys.readouterr().out
    assert "| qpa-lora k=64 L=8 on lm_head |" in printed and "| qpa-lora k=64 L=1 on lm_head |" in printed
    assert "| ia3 |" in printed  # a method outside --target-methods: its default targets, not named
    assert "| qpa-dora k=32 L=8 on lm_head |" in printed
    assert "| qpa-lora k=32 L=8 on lm_head |" not in printed  # --chunk-methods
    assert (out / "results.md").exists() and (out / "reps.png").exists()


def test_the_grid_runs_target_methods_on_every_target_set():
    cfg = RunConfig()
    methods = ("lora", "ia3", "prefix", "qpa-lora", "qpa-ffa")
    spec = ParamsStudy(methods=methods, ranks=(1,), chunk_sizes=(2048,), reps_methods=(),
                       target_methods=("lora", "qpa-lora", "qpa-ffa")).checked(cfg)  # fmt: skip
    trials = {t.name: t for t in spec.trials(cfg)}
    assert list(trials) == [
        "lora-r1-lm_head", "lora-r1-q_proj+v_proj", "ia3", "prefix-p8", "qpa-lora-k2048-L8-lm_head",
        "qpa-lora-k2048-L8-q_proj+v_proj", "qpa-ffa-k2048-L8-lm_head", "qpa-ffa-k2048-L8-q_proj+v_proj",
    ]  # fmt: skip
    assert trials["lora-r1-q_proj+v_proj"].config.adapter.targets == ["q_proj", "v_proj"]
    axes = {"method": "lora", "targets": ["q_proj", "v_proj"], "size": 1, "chunk_size": None, "reps": None}
    assert trials["lora-r1-q_proj+v_proj"].axes == {**axes, "seed": 0}
    assert trials["qpa-lora-k2048-L8-lm_head"].config.adapter.targets == ["lm_head"]
    assert trials["qpa-lora-k2048-L8-lm_head"].axes["targets"] == ["lm_head"]
    # the others on their default targets, whatever the base configuration names
    spec_cfg = cfg.replace(targets=["c_attn"])
    defaults = {t.name: t for t in spec.trials(spec_cfg)}
    assert defaults["ia3"].config.adapter.targets is None and defaults["ia3"].axes["targets"] is None
    assert defaults["prefix-p8"].config.adapter.targets is None
    definition = spec.definition(cfg)
    assert definition["target_sets"] == [["lm_head"], ["q_proj", "v_proj"]]
    assert definition["target_methods"] == ["lora", "qpa-lora", "qpa-ffa"]
    assert "targets" not in definition["config"]["adapter"]  # set by the grid, not the study's identity
    lists = ParamsStudy(target_sets=(["attn.c_attn", "lm_head"],), methods=("dora",), ranks=(2,)).checked(cfg)
    assert [t.name for t in lists.trials(cfg)] == ["dora-r2-attn.c_attn+lm_head"]


def test_the_study_command_has_target_options_not_targets(capsys):
    for args, said in (
        (["--target-methods", "prefix"], "--target-methods: invalid choice: 'prefix'"),
        (["--targets", "c_attn"], "unrecognized arguments: --targets"),  # the grid sets the targets
    ):
        with pytest.raises(SystemExit) as info:
            main(["study", "params", *args])
        assert info.value.code == 2 and said in capsys.readouterr().err


def _result(method, seed, ppl, trainable, size=None, chunk=None, reps=None, targets=None):
    axes = {
        "method": method,
        "size": size,
        "chunk_size": chunk,
        "reps": reps,
        "targets": targets,
        "seed": seed,
    }
    return {"axes": axes, "perplexity": ppl, "counts": {"trainable": trainable}}


def test_the_nearest_peer_may_adapt_the_attention():
    """LoRA r=1 on q_proj,v_proj (57,600 on SmolLM2) is QPA-LoRA's nearest peer (68,984), not
    LoRA r=1 on lm_head (49,728); its own tuner's nearest on the same targets comes first."""
    results = []
    for seed, shift in ((0, 0.0), (1, 1.0)):
        results += [
            _result("lora", seed, 28.0 + shift, 49_728, size=1, targets=["lm_head"]),
            _result("lora", seed, 27.0 + shift, 198_912, size=4, targets=["lm_head"]),
            _result("lora", seed, 26.0 + shift, 57_600, size=1, targets=["q_proj", "v_proj"]),
            _result("ia3", seed, 27.5 + shift, 49_152),
            _result("qpa-lora", seed, 25.0 + shift, 68_984, size=4, chunk=2048, reps=8, targets=["lm_head"]),
            _result("qpa-lora", seed, 24.5 + 2 * shift, 230_000, size=4, chunk=2048, reps=8,
                    targets=["q_proj", "v_proj"]),
        ]  # fmt: skip
    rows = params_rows(results, ["lora", "ia3", "qpa-lora"], ["lm_head", "q_proj,v_proj"])
    assert [r["method"] for r in rows] == ["lora", "lora", "lora", "ia3", "qpa-lora", "qpa-lora"]
    assert [r["targets"] for r in rows][:3] == [["lm_head"], ["lm_head"], ["q_proj", "v_proj"]]
    on_head, on_attention = rows[4], rows[5]
    assert on_head["peer"] == "lora r=1 on q_proj,v_proj" and on_head["peer_trainable"] == 57_600
    assert on_head["vs_peer"] == pytest.approx(-1.0) and on_head["vs_peer_pairs"] == 2
    # its own tuner on its own targets, though the attention's LoRA is nearer
    assert on_head["own"] == "lora r=1 on lm_head" and on_head["vs_own"] == pytest.approx(-3.0)
    # the attention's QPA row: nearest of all is the lm_head's r=4; its own tuner's, on the attention
    assert on_attention["peer"] == "lora r=4 on lm_head" and on_attention["vs_peer"] == pytest.approx(-2.0)
    assert on_attention["vs_peer_std"] == pytest.approx(0.5**0.5)  # the sample std of -2.5 and -1.5
    assert on_attention["own"] == "lora r=1 on q_proj,v_proj"
    assert on_attention["vs_own"] == pytest.approx(-1.0)
    # without a LoRA on its targets, the nearest LoRA on any
    kept = [r for r in results if r["axes"]["targets"] != ["lm_head"] or r["axes"]["method"] != "lora"]
    alone = params_rows(kept, ["lora", "ia3", "qpa-lora"])
    head = next(r for r in alone if r["method"] == "qpa-lora" and r["targets"] == ["lm_head"])
    assert head["own"] == "lora r=1 on q_proj,v_proj"


def test_two_target_sets_end_to_end(corpus, tmp_path):
    """A small study on tiny-gpt2's lm_head and its attention's c_attn: every method of
    --target-methods on both, rows and plots apart, resumed as it was."""
    out = tmp_path / "s"
    grid = dict(
        methods=("lora", "ia3", "qpa-lora"),
        ranks=(2,),
        chunk_sizes=(64,),
        reps_methods=(),
        seeds=(0,),
        target_sets=("lm_head", "c_attn"),
        target_methods=("lora", "qpa-lora"),
        lrs="none",
    )
    rows = study_params(small(corpus, steps=1, eval_tokens=200), out, **grid, **QUIET)
    names = sorted(p.parent.name for p in out.glob(f"*/{RESULT}"))
    assert names == [
        "ia3",
        "lora-r2-c_attn",
        "lora-r2-lm_head",
        "qpa-lora-k64-L2-c_attn",
        "qpa-lora-k64-L2-lm_head",
    ]
    with Run.open(out / "lora-r2-c_attn", for_training=False) as run:
        assert run.cfg.adapter.targets == ["c_attn"]
        adapted = [n for n, _ in run.model.peft_model.named_parameters() if "lora_A" in n]
        assert adapted and all(".attn.c_attn." in n for n in adapted)
    by_label = {r["method"] + str(r["targets"]): r for r in rows}
    attention, head = by_label["lora['c_attn']"], by_label["lora['lm_head']"]
    assert attention["trainable"] != head["trainable"]  # the layers differ in size
    qpa = by_label["qpa-lora['c_attn']"]
    assert qpa["generated"] == attention["trainable"]  # QPA-LoRA (rank 2) generates the tensors of that LoRA
    assert "peer" in qpa and "own" in qpa and qpa["own"] == "lora r=2 on c_attn"
    text = (out / "results.md").read_text()
    assert (
        "| lora r=2 on c_attn |" in text and "| qpa-lora k=64 L=2 on lm_head |" in text and "| ia3 |" in text
    )
    study = json.loads((out / "study.json").read_text())
    assert study["target_sets"] == [["lm_head"], ["c_attn"]]
    for plot in ("params.png", "qubits.png"):
        assert (out / plot).stat().st_size > 10_000
    assert study_params(small(corpus, steps=1, eval_tokens=200), out, **grid, **QUIET) == rows
