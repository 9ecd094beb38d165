"""Whether the circuit matters: the published generator as settings, the preset, the controls,
--circuit-lr, counterfactual evaluation, the padded-lines figure, t-based intervals and
`qpa study ablation`, on the tiny GPT-2."""

import json
import math

import pytest
import torch
from conftest import assert_resume_is_bit_identical, tiny_cli_args
from conftest import tiny_config as config
from scipy import stats

from qpa_qiskit import InputError
from qpa_qiskit.cli import main
from qpa_qiskit.config import PRESETS, RunConfig
from qpa_qiskit.data import padded_lines_perplexity, text_rows
from qpa_qiskit.export import export
from qpa_qiskit.intervals import PairedDifference, paired_reading
from qpa_qiskit.models import tiny_gpt2
from qpa_qiskit.train import Run, evaluate, evaluate_run

PAPER_WIDTHS = PRESETS["paper"]["hidden"]


def lined(corpus):
    """The tiny corpus with WikiText-2's line structure: article lines and blank lines."""
    for split in ("train", "valid", "test"):
        text = (corpus / f"{split}.txt").read_text()
        (corpus / f"{split}.txt").write_text(
            " \n".join(text[i : i + 90] + "\n" for i in range(0, len(text), 90))
        )
    return corpus


# ---------------------------------------------------------------------------- intervals
def test_paired_difference_interval_is_t_based():
    diff = PairedDifference.of([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert diff.mean == 2.0 and diff.std == 1.0 and diff.half_width == pytest.approx(half)
    assert half == pytest.approx(2.4841, abs=1e-4)  # t(0.975, 2) = 4.303, not the 2 of "two standard errors"
    assert diff.verdict() == "inconclusive"  # 2.0 > 2 * 1/sqrt(3): the old rule would have said "worse"
    assert PairedDifference.of([1.0, 1.1, 0.9]).verdict() == "worse"
    assert PairedDifference.of([-1.0, -1.1, -0.9]).verdict() == "better"
    assert PairedDifference.of([0.01, -0.01, 0.0]).verdict(margin=0.1) == "equivalent"
    assert PairedDifference.of([0.01, -0.01, 0.0]).verdict() == "inconclusive"
    assert PairedDifference.of([0.5]).verdict() == "one seed"
    assert paired_reading(2.0, 1.0, 3) == "+2.000 ± 1.000 [-0.484, +4.484] inconclusive"


def test_equivalence_reads_the_interval_against_the_margin():
    assert PairedDifference.of([0.01, -0.01, 0.0]).equivalence(0.1) == "inside"
    assert PairedDifference.of([0.5, 0.6, 0.55]).equivalence(0.1) == "outside"  # [+0.426, +0.674]
    assert PairedDifference.of([-0.5, -0.6, -0.55]).equivalence(0.1) == "outside"
    assert PairedDifference.of([0.05, 0.15, 0.1]).equivalence(0.1) == "undecided"  # straddles +0.1
    assert PairedDifference.of([0.05, 0.06, 0.055]).equivalence(0.1) == "inside"  # worse, yet inside
    assert PairedDifference.of([0.05, 0.06, 0.055]).verdict() == "worse"
    assert PairedDifference.of([0.5]).equivalence(0.1) == "undecided"  # one seed: no interval


# ---------------------------------------------------------------------------- settings and bad input
def test_preset_sets_the_published_generator_and_is_recorded(corpus, tmp_path):
    cfg = config(corpus, hidden=None).replace(preset="paper")
    for name, value in PRESETS["paper"].items():
        assert cfg.get(name) == value, name
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # config.json round trip
    assert main(["train", str(tmp_path / "run"), *tiny_cli_args(corpus, "--steps 1 --preset paper")]) == 0
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["generator"]
    assert stored["preset"] == "paper" and stored["labels"] == "random" and stored["mapping"] == "linear"


@pytest.mark.parametrize(
    "settings, match",
    [
        (dict(labels="shuffled"), "labels must be one of fixed, random; got 'shuffled'"),
        (dict(mapping="deep"), "mapping must be one of mlp, linear; got 'deep'"),
        (
            dict(probabilities="quantum"),
            "probabilities must be one of circuit, frozen, uniform, fixed-random, "
            "softmax, none; got 'quantum'",
        ),
        (dict(x_centring="batch"), "x_centring must be one of chunks, states, none"),
        (dict(output_centring="median"), "output_centring must be one of none, mean"),
        (dict(mapping_init="xavier"), "mapping_init must be one of small, torch"),
        (dict(eval_protocol="padded"), "eval_protocol must be one of windows, padded-lines; got 'padded'"),
        (dict(preset="published"), "preset must be one of paper; got 'published'"),
        (
            dict(method="lora", probabilities="frozen"),
            "probabilities 'frozen' is a control of the qpa-\\* "
            "methods' generator; 'lora' reads no probabilities",
        ),
        (
            dict(method="lora", circuit_lr=0.1),
            "circuit_lr is the learning rate of a qpa-\\* method's circuit; 'lora' has no circuit",
        ),
        (dict(method="lowrank-lora", circuit_lr=0.1), "'lowrank-lora' has no circuit"),
        (dict(probabilities="frozen", circuit_lr=0.1), "probabilities 'frozen' are not trained"),
        (
            dict(probabilities="uniform", shots_factor=2.0),
            "shots_factor 2.0 applies to circuit evaluations; probabilities 'uniform' evaluate no circuit",
        ),
        (dict(probabilities="softmax", completion="gi"), "completion 'gi' applies to circuit evaluations"),
        (dict(lowrank_k=4), "lowrank_k is the rank of the lowrank-\\* methods' generator, not of 'qpa-lora'"),
        (
            dict(method="ia3", preset="paper", hidden=PAPER_WIDTHS),
            "preset 'paper' sets the qpa-\\* generator; 'ia3' has none",
        ),
        (
            dict(preset="paper", hidden=PAPER_WIDTHS, mapping="mlp", dropout=0.0),
            "preset 'paper' contradicts the settings given "
            r"\(it sets mapping='linear', given 'mlp'; it sets dropout=0.05, given 0.0\)",
        ),
        (dict(circuit_lr=-1.0), "circuit_lr must be a finite number > 0"),
        (dict(padded_block=1), "padded_block must be an integer >= 2"),
    ],
)
def test_bad_settings_name_the_problem(corpus, settings, match):
    with pytest.raises(InputError, match=match):
        config(corpus, **{"hidden": None, **settings})


def test_preset_contradiction_on_the_command_line(corpus, tmp_path, capsys):
    args = tiny_cli_args(corpus, "--steps 1 --preset paper --mapping mlp")
    assert main(["train", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "qpa: error: preset 'paper' contradicts the settings given (it sets mapping='linear'"
    )
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_padded_lines_needs_line_structure(corpus, tmp_path):
    with pytest.raises(
        InputError, match=r"'padded-lines' scores the lines of WikiText-2; the test split .* has 0 line"
    ):
        Run.create(tmp_path / "run", config(corpus, eval_protocol="padded-lines"))
    assert not (tmp_path / "run").exists()


def test_a_padded_block_longer_than_the_model_is_refused_by_train_and_eval(corpus, tmp_path, capsys):
    """qpa train took --padded-block 300 on the 256 positions of tiny-gpt2 and its qpa eval then
    ended in the embedding's IndexError; qpa eval of any run did the same with the option."""
    lined(corpus)
    refusal = (
        "qpa: error: padded_block 300 is longer than the 256 positions of tiny-gpt2; "
        "use --padded-block at most 256"
    )
    padded = ["--eval-protocol", "padded-lines", "--padded-block", "300"]
    args = ["--model", "tiny-gpt2", "--data", str(corpus), "--method", "lora", "--block-size", "32"]
    assert main(["train", str(tmp_path / "padded"), *args, *padded]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == refusal
    assert not (tmp_path / "padded").exists()
    with Run.create(tmp_path / "run", config(corpus, method="lora", steps=1)) as run:
        run.train(progress=False)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "run").iterdir())
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), *padded]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == refusal and "Traceback" not in err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "run").iterdir()) == before


def test_counterfactual_of_a_run_without_probabilities_is_refused(corpus, tmp_path, capsys):
    for name, settings in (("lora", dict(method="lora")), ("none", dict(probabilities="none"))):
        with Run.create(tmp_path / name, config(corpus, steps=1, **settings)) as run:
            run.train(progress=False)
    assert main(["eval", str(tmp_path / "lora"), "--probabilities", "uniform"]) == 2
    assert "'lora', which has no circuit and reads no probabilities" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "none"), "--probabilities", "permuted"]) == 2
    assert "reads no probabilities (probabilities 'none')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "none"), "--probabilities", "shuffled"])
    assert (
        "invalid choice: 'shuffled' (choose from 'uniform', 'permuted', 'fixed-random')"
        in capsys.readouterr().err
    )


# ---------------------------------------------------------------------------- training and evaluation
@pytest.mark.parametrize(
    "settings",
    [
        dict(labels="random"),
        dict(preset="paper", hidden=PAPER_WIDTHS),
        dict(probabilities="softmax", circuit_lr=0.1),
        dict(method="lowrank-lora"),
    ],
    ids=["random-labels", "paper", "softmax", "lowrank"],
)
def test_resume_is_bit_identical(corpus, tmp_path, settings):
    assert_resume_is_bit_identical(tmp_path, config(corpus, steps=4, save_every=2, **settings))


def test_circuit_lr_moves_the_angles_faster_and_is_logged(corpus, tmp_path):
    drift = {}
    for name, rate in (("same", None), ("fast", 0.3)):
        with Run.create(tmp_path / name, config(corpus, steps=4, circuit_lr=rate)) as run:
            assert len(run.optimizer.param_groups) == (1 if rate is None else 2)
            run.train(progress=False)
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert all("angle_drift_max" in line and "tvd_start" in line for line in lines)
        drift[name] = lines[-1]["angle_drift_max"]
        if rate:
            assert [line["circuit_lr"] / line["lr"] for line in lines] == pytest.approx([rate / 1e-2] * 4)
    # Adam moves an angle by at most about its rate per step: 4 steps at lr 1e-2 against 0.3
    assert drift["same"] < 4 * 1e-2 * 1.01 < 0.3 < drift["fast"]
    result = evaluate_run(tmp_path / "fast")
    assert result["diagnostics"]["angle_drift_max"] == pytest.approx(drift["fast"])


def test_frozen_circuit_never_moves(corpus, tmp_path):
    with Run.create(tmp_path / "run", config(corpus, steps=3, probabilities="frozen")) as run:
        start = run.model.generator.quantum.theta.detach().clone()
        run.train(progress=False)
        assert torch.equal(run.model.generator.quantum.theta, start)
    assert "generator.quantum.theta" not in run.params
    assert evaluate_run(tmp_path / "run")["diagnostics"]["tvd_start"] == 0.0


def test_random_label_runs_evaluate_and_export_one_fixed_adapter(corpus, tmp_path):
    from peft import PeftModel

    with Run.create(tmp_path / "run", config(corpus, steps=3, labels="random")) as run:
        run.train(progress=False)
    first, second = evaluate_run(tmp_path / "run"), evaluate_run(tmp_path / "run")
    assert first["perplexity"] == second["perplexity"]  # no label draw at evaluation
    assert first["diagnostics"]["label_spread"] > 0
    export(tmp_path / "run", tmp_path / "adapter")
    loaded = tiny_gpt2()
    peft_model = PeftModel.from_pretrained(loaded.model, str(tmp_path / "adapter"))
    with Run.open(tmp_path / "run", for_training=False) as opened:
        theirs = evaluate(peft_model, loaded, opened.cfg.eval, opened.texts)["perplexity"]
    assert theirs == pytest.approx(
        first["perplexity"], rel=1e-5
    )  # what qpa eval reports is what export gives


def test_counterfactual_evaluation(corpus, tmp_path, capsys):
    with Run.create(tmp_path / "run", config(corpus, steps=3)) as run:
        run.train(progress=False)
    trained = evaluate_run(tmp_path / "run")["perplexity"]
    for kind in ("uniform", "permuted", "fixed-random"):
        assert main(["eval", str(tmp_path / "run"), "--probabilities", kind]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["probabilities"] == kind and result["perplexity"] != trained
        assert result["perplexity"] == evaluate_run(tmp_path / "run", counterfactual=kind)["perplexity"]
    assert evaluate_run(tmp_path / "run")["perplexity"] == trained  # the folder is unchanged


def test_low_rank_peer_trains(corpus, tmp_path):
    with Run.create(tmp_path / "run", config(corpus, steps=6, method="lowrank-lora")) as run:
        records = run.train(progress=False)
        qpa = Run.create(tmp_path / "qpa", config(corpus, steps=1))
        assert abs(run.model.counts()["trainable"] - qpa.model.counts()["trainable"]) < (10 + 64)
        qpa.close()
    assert records[-1]["loss"] < records[0]["loss"]
    assert set(run.params) == {"generator.left", "generator.right"}


def test_padded_lines_figure_is_the_published_computation(corpus):
    """Against transformers' own loss with the padding scored (labels = input ids), as the
    published train.py computes it: the mean over every position, then exp."""
    text = " = Title = \n \n the cat sat on the mat . \n \n the dog sat . \n"
    rows = text_rows(text)
    assert rows == [" = Title = \n", "", " the cat sat on the mat . \n", "", " the dog sat . \n"]
    loaded = tiny_gpt2()
    tok, eos = loaded.tokenizer, loaded.tokenizer.eos_token_id
    ppl, n_rows, positions = padded_lines_perplexity(loaded.model, tok, text, block=24, batch_size=2)
    losses = []
    for row in rows:
        ids = tok(row, add_special_tokens=False)["input_ids"][:24] if row else []
        mask = [1] * len(ids) + [0] * (24 - len(ids))
        ids = torch.tensor([ids + [eos] * (24 - len(ids))])
        with torch.no_grad():
            losses.append(
                loaded.model(input_ids=ids, attention_mask=torch.tensor([mask]), labels=ids).loss.item()
            )
    assert n_rows == 5 and positions == 5 * 23
    assert ppl == pytest.approx(math.exp(sum(losses) / len(losses)), rel=1e-5)


def test_eval_protocol_padded_lines_reports_both_figures(corpus, tmp_path):
    lined(corpus)
    with Run.create(tmp_path / "run", config(corpus, steps=2)) as run:
        run.train(progress=False)
    plain = evaluate_run(tmp_path / "run")
    both = evaluate_run(tmp_path / "run", overrides={"eval_protocol": "padded-lines", "padded_block": 32})
    assert both["perplexity"] == plain["perplexity"] and "padded_lines_perplexity" not in plain
    assert both["padded_lines_rows"] == 800 // 32 and both["padded_lines_perplexity"] < plain["perplexity"]


# ---------------------------------------------------------------------------- the study
def test_study_ablation(corpus, tmp_path, capsys):
    out = tmp_path / "study"
    args = tiny_cli_args(
        corpus,
        f"--steps 2 --reps 1 --hidden 8 --eval-tokens 300 --eval-window 64 "
        f"--eval-stride 48 --circuit-lr 0.1 --seeds 0 1 --out {out}",
    )
    grid = [
        "--regimes",
        "fixed:mlp",
        "paper",
        "--controls",
        "circuit",
        "frozen",
        "none",
        "lowrank",
        "--lora-ranks",
        "1",
        "--counterfactuals",
        "uniform",
        "permuted",
    ]
    assert main(["study", "ablation", *args, *grid]) == 0
    data = json.loads((out / "results.json").read_text())
    trials = {t["name"]: t for t in data["trials"]}
    assert len(trials) == 2 * 4 * 2 + 2 and (out / "ablation.png").stat().st_size > 10_000
    # the regimes' settings and the controls' rates reach the runs
    stored = {n: RunConfig.from_dict(json.loads((out / n / "config.json").read_text())) for n in trials}
    assert stored["paper-circuit-s0"].generator.preset == "paper"
    assert stored["paper-circuit-s0"].get("hidden") == PAPER_WIDTHS  # the preset's, not the base's 8
    assert stored["fixed-mlp-circuit-s0"].generator.labels == "fixed"
    assert stored["fixed-mlp-circuit-s0"].training.circuit_lr == 0.1
    assert stored["fixed-mlp-frozen-s0"].training.circuit_lr is None
    assert stored["paper-lowrank-s0"].adapter.method == "lowrank-lora"
    assert stored["lora-r1-s1"].adapter.rank == 1 and stored["lora-r1-s1"].generator.preset is None
    # every difference is recomputed from the trials, paired by seed, with a t-based interval
    tables = data["rows"]
    for row in tables["rows"]:
        if row["control"] == "circuit":
            continue
        tag = row["regime"].replace(":", "-")
        diffs = [
            trials[f"{tag}-{row['control']}-s{s}"]["perplexity"] - trials[f"{tag}-circuit-s{s}"]["perplexity"]
            for s in (0, 1)
        ]
        half = stats.t.ppf(0.975, 1) * abs(diffs[0] - diffs[1]) / math.sqrt(2) / math.sqrt(2)
        assert row["vs_circuit"]["mean"] == pytest.approx(sum(diffs) / 2)
        assert row["vs_circuit"]["high"] - row["vs_circuit"]["mean"] == pytest.approx(half)
    for row in tables["counterfactual"]:
        tag = row["regime"].replace(":", "-")
        values = [trials[f"{tag}-circuit-s{s}"]["counterfactual"][row["probabilities"]] for s in (0, 1)]
        assert row["perplexity"] == pytest.approx(sum(values) / 2)
        assert (
            values[0]
            == evaluate_run(out / f"{tag}-circuit-s0", counterfactual=row["probabilities"])["perplexity"]
        )
    assert {r["regime"] for r in tables["counterfactual"]} == {"fixed:mlp", "paper"}
    assert set(tables["best_control"]) == {"fixed:mlp", "paper"}
    assert all("angle_drift_max" in trials[f"{t}-circuit-s0"]["diagnostics"] for t in ("fixed-mlp", "paper"))
    generated = [t for t in trials.values() if not t["name"].startswith("lora")]
    assert all("chunk_spread" in t["diagnostics"] for t in generated)
    text = (out / "results.md").read_text()
    assert "t-based 95% interval" in text and "lowrank (k=" in text and "vs paper circuit" in text
    # resumable: the same command trains nothing again
    capsys.readouterr()
    assert main(["study", "ablation", *args, *grid]) == 0
    assert "18 of 18 runs already finished" in capsys.readouterr().out


@pytest.mark.parametrize(
    "grid, match",
    [
        (
            ["--regimes", "fixed:cnn"],
            "regime must be one of fixed:mlp, fixed:linear, random:mlp, random:linear, paper",
        ),
        (["--regimes", "paper", "paper"], "regimes (--regimes) lists 'paper' more than once"),
        (["--controls", "frozen", "none"], "controls must include 'circuit'"),
        (["--lora-ranks", "1", "1"], "lora_ranks (--lora-ranks) lists 1 more than once"),
        (["--margin", "0"], "margin must be a finite number > 0"),
    ],
)
def test_study_ablation_bad_input(corpus, tmp_path, capsys, grid, match):
    args = tiny_cli_args(corpus, f"--steps 1 --out {tmp_path / 'study'}")
    assert main(["study", "ablation", *args, *grid]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qpa: error: ") and match in err and "Traceback" not in err
    assert not (tmp_path / "study").exists()


def test_readme_refused_preset_command_is_refused_as_documented(tmp_path, monkeypatch, capsys):
    """The `# refused` example of docs/studies.md fails before anything is loaded or written,
    with the message the page quotes."""
    import shlex

    from pages import page
    from pages import section as page_section

    section = page_section(page("docs/studies.md"), "## Does the circuit matter?")
    refused = [
        line for line in section.splitlines() if line.startswith("qpa ") and line.endswith("# refused")
    ]
    assert len(refused) == 1
    monkeypatch.chdir(tmp_path)
    words = shlex.split(refused[0], comments=True)
    assert main(words[1:]) == 2
    err = capsys.readouterr().err
    quoted = "preset 'paper' contradicts the settings given (it sets mapping='linear', given 'mlp')"
    assert quoted in err and quoted in section.replace("\n", " ")
    assert list(tmp_path.iterdir()) == []


def test_study_ablation_help():
    with pytest.raises(SystemExit) as info:
        main(["study", "ablation", "--help"])
    assert info.value.code == 0
