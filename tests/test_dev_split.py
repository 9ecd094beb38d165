"""The dev split: held out of training, scored for learning curves and selection, never the test split."""

import json

import pytest
import torch
from conftest import SENTENCE, tiny_config

from qpa_qiskit.cli import main
from qpa_qiskit.config import RunConfig
from qpa_qiskit.data import DEV, hold_out_dev, load_wikitext
from qpa_qiskit.errors import InputError
from qpa_qiskit.studies.runner import Trial, run_trial
from qpa_qiskit.train import Run, evaluate_run


def article(title: str, n: int) -> str:
    return f" \n = {title} = \n \n" + SENTENCE * n + "\n"


def articles_text(n_articles: int = 10, size: int = 20) -> str:
    return "".join(article(f"Article {i}", size) for i in range(n_articles))


@pytest.fixture
def valid_only(tmp_path):
    """WikiText-2 as on these machines: valid and test splits, no train split, in articles."""
    folder = tmp_path / "wikitext-valid-only"
    folder.mkdir()
    (folder / "valid.txt").write_text(articles_text())
    (folder / "test.txt").write_text(articles_text(3))
    return folder


def test_data_with_a_train_split_select_on_their_validation_split():
    texts = {"train": "a b c", "valid": "d e f", "test": "g h"}
    out = hold_out_dev(texts, 0.1)
    assert out[DEV] == "d e f" and out["train"] == "a b c"


def test_data_without_a_train_split_hold_out_whole_articles_at_the_end(valid_only):
    texts = load_wikitext(valid_only, log=lambda m: None)
    assert texts["train"] == texts["valid"]  # trained on valid
    said = []
    out = hold_out_dev(texts, 0.1, said.append)
    text = texts["valid"]
    assert out["train"] + out[DEV] == text  # contiguous: nothing lost, nothing shared
    assert out[DEV].startswith(" = Article 9 = \n")  # from an article's title line
    assert out[DEV] not in out["train"]
    assert 0.05 < len(out[DEV]) / len(text) <= 0.1 + 1 / 10  # the last share, rounded up to an article
    assert "held out" in said[0] and "1 article" in said[0]
    assert hold_out_dev(texts, 0.1) == out  # deterministic
    assert hold_out_dev(out, 0.3) is out  # a dev split already held out is kept
    wider = hold_out_dev(texts, 0.3)
    assert wider[DEV].startswith(" = Article 7 = ")


def test_no_dev_share_no_dev_split_and_text_without_articles_cut_at_a_line():
    texts = {"train": "x\n" * 100, "valid": "x\n" * 100, "test": "y"}
    assert DEV not in hold_out_dev(texts, None)
    out = hold_out_dev(texts, 0.25)
    assert out["train"] + out[DEV] == texts["train"] and out[DEV].count("\n") == 25
    one_line = {"train": "ab " * 100, "valid": "ab " * 100, "test": "y"}  # no line break: at a space
    out = hold_out_dev(one_line, 0.1)
    assert out["train"] + out[DEV] == one_line["train"] and out[DEV] == "ab " * 10


@pytest.mark.parametrize("share", [0, -0.1, 0.51, float("nan"), "0.1"])
def test_dev_share_outside_its_range_is_refused(share):
    with pytest.raises(InputError, match=r"dev_share .*> 0 and <= 0.5"):
        RunConfig().replace(dev_share=share)
    assert RunConfig().replace(dev_share=0.5).task.dev_share == 0.5


def test_eval_every_larger_than_the_run_or_without_a_dev_split_is_refused():
    with pytest.raises(InputError, match=r"eval_every \(31\) is larger than the run's 30 steps"):
        RunConfig().replace(eval_every=31)
    with pytest.raises(InputError, match=r"eval_every 5 scores the dev split.*Drop --eval-every"):
        RunConfig().replace(eval_every=5, dev_share=None)


def test_a_dev_split_smaller_than_one_window_is_refused_with_the_minimum(valid_only, tmp_path):
    (valid_only / "valid.txt").write_text(articles_text(9) + article("Short", 1))  # dev: the short one
    cfg = tiny_config(valid_only, method="lora", dev_share=0.01, eval_window=128, eval_stride=96)
    with pytest.raises(
        InputError, match=r"dev split .* fewer than one evaluation window of 128 \(the minimum\)"
    ):
        Run.create(tmp_path / "run", cfg)
    assert not (tmp_path / "run").exists()


def test_training_never_sees_the_dev_split(valid_only, tmp_path):
    cfg = tiny_config(valid_only, method="lora")
    with Run.create(tmp_path / "run", cfg) as run:
        trained = run.train_blocks().flatten().tolist()
        dev_ids = run.loaded.tokenizer(run.texts[DEV], add_special_tokens=False)["input_ids"]
        train_ids = run.loaded.tokenizer(run.texts["train"], add_special_tokens=False)["input_ids"]
    assert trained == train_ids[: len(trained)]
    assert len(train_ids) < len(run.loaded.tokenizer(run.texts["valid"])["input_ids"]) - len(dev_ids) + 8


def curve_and_state(cfg, folder):
    with Run.create(folder, cfg) as run:
        records = run.train(progress=False)
        tensors = {n: p.detach().clone() for n, p in run.params.items()}
    return records, tensors


def test_a_learning_curve_changes_nothing_of_the_training(corpus, tmp_path):
    # shots: every circuit evaluation draws from the sampler, and so does the dev evaluation's
    cfg = tiny_config(corpus, shots_factor=2.0)
    plain, plain_tensors = curve_and_state(cfg, tmp_path / "plain")
    curved, curved_tensors = curve_and_state(cfg.replace(eval_every=4), tmp_path / "curved")
    assert [r["loss"] for r in plain] == [r["loss"] for r in curved]
    assert all(torch.equal(plain_tensors[n], curved_tensors[n]) for n in plain_tensors)
    scored = [r["step"] for r in curved if "dev_perplexity" in r]
    assert scored == [4, 6]  # every 4 steps and the last
    assert all("dev_perplexity" not in r for r in plain)
    lines = [json.loads(x) for x in (tmp_path / "curved" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "dev_perplexity" in x] == [4, 6]
    final = evaluate_run(tmp_path / "curved", DEV)
    assert final["split"] == DEV and final["perplexity"] == pytest.approx(lines[-1]["dev_perplexity"])


def test_the_dev_split_is_scored_over_dev_tokens(corpus, tmp_path):
    cfg = tiny_config(corpus, method="lora", dev_tokens=300, eval_tokens=800, steps=2)
    curve_and_state(cfg, tmp_path / "run")
    assert evaluate_run(tmp_path / "run", DEV)["tokens"] == 299
    assert evaluate_run(tmp_path / "run", "test")["tokens"] == 799


def test_a_run_created_before_the_dev_split_resumes_as_it_trained(valid_only, tmp_path, capsys):
    cfg = tiny_config(valid_only, method="lora", steps=2, save_every=2)
    folder = tmp_path / "old"
    curve_and_state(cfg.replace(dev_share=None), folder)
    stored = json.loads((folder / "config.json").read_text())
    del stored["task"]["dev_share"]  # as such a run's config.json reads
    (folder / "config.json").write_text(json.dumps(stored))
    assert Run.stored_config(folder).task.dev_share is None
    with Run.open(folder, overrides={"steps": 3}) as run:
        assert DEV not in run.texts and run.texts["train"] == run.texts["valid"]  # all of its text, as before
        run.train(progress=False)
    with pytest.raises(InputError, match="this run has no dev split"):
        evaluate_run(folder, DEV)
    assert main(["eval", str(folder), "--split", "dev"]) == 2
    assert "no dev split" in capsys.readouterr().err


def test_qpa_eval_scores_the_dev_split(corpus, tmp_path, capsys):
    cfg = tiny_config(corpus, method="lora", steps=2)
    curve_and_state(cfg, tmp_path / "run")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--split", "dev"]) == 0
    out = capsys.readouterr().out
    assert '"split": "dev"' in out


def test_a_study_trial_records_its_dev_perplexity_and_curve(corpus, tmp_path):
    cfg = tiny_config(corpus, method="lora", eval_every=3)
    result = run_trial(tmp_path / "study", Trial("lora", cfg, {"method": "lora"}))
    assert [step for step, _ in result["curve"]] == [3, 6]
    assert result["dev_perplexity"] == pytest.approx(result["curve"][-1][1])
    assert result["dev_perplexity"] != result["perplexity"]  # another split
    stored = json.loads((tmp_path / "study" / "lora" / "result.json").read_text())
    assert stored["curve"] == result["curve"]


def test_mean_curves_average_the_seeds_and_read_the_last_stretch():
    from qpa_qiskit.studies.curves import curves_table, flattening, mean_curves

    results = [
        {"axes": {"method": "lora", "seed": 0}, "curve": [[10, 30.0], [20, 20.0], [30, 19.9]]},
        {"axes": {"method": "lora", "seed": 1}, "curve": [[10, 32.0], [20, 22.0], [30, 21.5]]},
        {"axes": {"method": "qpa-lora", "seed": 0}, "curve": [[10, 40.0], [20, 30.0]]},
        {"axes": {"method": "ia3", "seed": 0}, "curve": []},  # no curve: left out
    ]
    curves = mean_curves(results)
    assert curves["method=lora"] == [(10, 31.0, 2), (20, 21.0, 2), (30, 20.7, 2)]
    assert list(curves) == ["method=lora", "method=qpa-lora"]
    assert flattening(curves["method=lora"]) == pytest.approx(0.3 / 21.0)
    table = curves_table(curves)
    assert "| method=lora | 2 | 31.000 | 21.000 | 20.700 | +1.4% (still moving) |" in table
    assert "| method=qpa-lora | 1 | 40.000 | 30.000 | - | +25.0% (still moving) |" in table


def test_a_study_with_curves_writes_them(corpus, tmp_path):
    from qpa_qiskit.studies.params import ParamsStudy

    cfg = tiny_config(corpus, method="lora", eval_every=3, dev_tokens=300)
    ParamsStudy(methods=("lora",), ranks=(1, 2), seeds=(0, 1), lrs="none", target_sets=("lm_head",)).run(
        cfg, tmp_path / "study", log=lambda m: None
    )
    table = (tmp_path / "study" / "curves.md").read_text()
    # each setting named as the study's table names it (issue 38), not by its raw axes
    assert "| lora r=1 on lm_head | 2 |" in table and "step 3 | step 6" in table
    assert (tmp_path / "study" / "curves.png").stat().st_size > 0
