"""``qpa compare`` with a setting per method (issue 38): ``--methods lora:rank=1:targets=c_attn``
parsed by the run options' own parser and checked by RunConfig, every refusal naming its entry;
the run names; shared initial values; the paired differences from ``--reference`` against a hand
computation, read at ``--margin``; a resume with another reference re-reporting without
training; ``differences.png``; plain comparisons unchanged."""

import json
import math

import pytest
import torch
from conftest import tiny_cli_args, tiny_config
from scipy import stats

from qpa_qiskit import InputError
from qpa_qiskit.cli import main
from qpa_qiskit.config import RunConfig
from qpa_qiskit.studies.compare import CompareStudy, compare
from qpa_qiskit.studies.runner import RESULT, STUDY, Trial
from qpa_qiskit.studies.settings import parse_setting
from qpa_qiskit.train import Run

QUIET = dict(log=lambda m: None)


def small(corpus, **overrides):
    return tiny_config(corpus, **{"steps": 2, "reps": 1, "hidden": [8], "eval_tokens": 200, "dev_tokens": 200,
                                  **overrides})  # fmt: skip


def grid(methods, seeds=(0, 1), cfg=None, **fields):
    """The trials of a comparison of `methods`, on a run's defaults (no model loaded)."""
    cfg = cfg or RunConfig()
    spec = CompareStudy(methods=tuple(methods), seeds=seeds, **fields).checked(cfg)
    return spec, spec.trials(cfg)


def stamps(out):
    """Each finished run's result file and metric lines: a run trained again changes them."""
    return {p.parent.name: (p.stat().st_mtime_ns, (p.parent / "metrics.jsonl").read_text())
            for p in out.glob(f"*/{RESULT}")}  # fmt: skip


# ------------------------------------------------------------------ the text of a setting
NOISY = "qpa-lora:backend=aer_noisy:fake_manila:chunk_size=64"  # a value may hold ':'
TARGETS = "targets_q_proj+v_proj"


@pytest.mark.parametrize(
    "text, normalised, name, label",
    [
        ("lora", "lora", "lora", "lora"),
        ("lora:rank=1:targets=q_proj,v_proj", "lora:rank=1:targets=q_proj,v_proj",
         f"lora-rank1-{TARGETS}", "lora rank=1 on q_proj,v_proj"),
        ("lora:targets=q_proj,v_proj:rank=1", "lora:rank=1:targets=q_proj,v_proj",
         f"lora-rank1-{TARGETS}", "lora rank=1 on q_proj,v_proj"),  # fields in alphabetical order
        ("qpa-lora:probabilities=frozen", "qpa-lora:probabilities=frozen", "qpa-lora-probabilities_frozen",
         "qpa-lora probabilities=frozen"),
        ("qpa-lora:preset=paper", "qpa-lora:preset=paper", "qpa-lora-preset_paper", "qpa-lora preset=paper"),
        ("qpa-lora:targets=q_proj,v_proj", "qpa-lora:targets=q_proj,v_proj", f"qpa-lora-{TARGETS}",
         "qpa-lora on q_proj,v_proj"),
        ("lora:lora-alpha=8", "lora:lora_alpha=8", "lora-lora_alpha8", "lora lora_alpha=8"),  # - or _
        (NOISY, NOISY, "qpa-lora-backend_aer_noisy-fake_manila-chunk_size64",
         "qpa-lora backend=aer_noisy:fake_manila chunk_size=64"),
        ("qpa-lora:feature_cache=false", "qpa-lora:feature_cache=false", "qpa-lora-feature_cache_false",
         "qpa-lora feature_cache=false"),
    ],
)  # fmt: skip
def test_a_setting_text_its_name_and_its_label(text, normalised, name, label):
    setting = parse_setting(text)
    assert (setting.text, setting.name, setting.label) == (normalised, name, label)
    assert parse_setting(setting.text) == setting  # the normalised text reads back to the same setting


def test_values_are_read_as_qpa_train_reads_its_options():
    setting = parse_setting("qpa-lora:hidden=16,8:lr=3e-4:targets=c_attn:feature-cache=false")
    assert setting.changes == {"feature_cache": False, "hidden": [16, 8], "lr": 3e-4, "targets": ["c_attn"]}


MALFORMED = "write METHOD or METHOD:FIELD=VALUE[:FIELD=VALUE...], e.g. lora:rank=1:targets=q_proj,v_proj"


STUDY_SETS = "is not a setting of one method: "
AB = "lora:rank=1:targets=a,b"


@pytest.mark.parametrize(
    "methods, fields, match",
    [
        (["lora:rank"], {}, f"entry 'lora:rank': 'rank' is not FIELD=VALUE; {MALFORMED}"),
        (["lora:"], {}, "entry 'lora:': '' is not FIELD=VALUE"),
        (["lora:rank="], {}, "entry 'lora:rank=': 'rank=' is not FIELD=VALUE"),
        (["lorra:rank=1"], {}, "entry 'lorra:rank=1': its method must be one of dora, ffa"),
        (["lorra"], {}, "methods must be one of dora, ffa"),  # a method alone: as ever
        (["lora:rnk=1"], {}, "entry 'lora:rnk=1': unknown setting(s) ['rnk']; accepted: activation, alpha"),
        (["lora:rank=x"], {}, "entry 'lora:rank=x': argument --rank: invalid int value: 'x' (qpa train"),
        (["qpa-lora:probabilities=frozn"], {}, "argument --probabilities: invalid choice: 'frozn' (choose"),
        (["lora:rank=1:rank=2"], {}, "entry 'lora:rank=1:rank=2' sets rank twice (1 and 2); give each field"),
        (["lora:rank=1:RANK=2"], {}, "unknown setting(s) ['RANK']"),
        (["lora:seed=3"], {}, f"seed {STUDY_SETS}the study runs every setting once per seed"),
        (["lora:method=dora"], {}, f"method {STUDY_SETS}it is the entry's first part"),
        (["lora:lr=0.01"], {"lrs": "family"},
         f"lr {STUDY_SETS}--lrs chooses it per setting on the dev split; drop it, or give --lrs none"),
        (["qpa-lora:circuit_lr=0.1"], {"circuit_lrs": (0.01,)}, "--circuit-lrs chooses it per setting"),
        (["lora:eval_tokens=100"], {},
         f"eval_tokens {STUDY_SETS}the runs of a comparison share their model, data and scoring"),
        (["lora:data=x"], {}, "give --data to qpa compare"),
        (["lora:device=cpu"], {}, "where the runs train is the study's"),
        (["lora:precision=bf16"], {}, f"precision {STUDY_SETS}every run of a comparison computes in"),
        # RunConfig's own refusals, naming the entry
        (["lora:preset=paper"], {}, "entry 'lora:preset=paper': preset 'paper' sets the qpa-* generator"),
        (["qpa-lora:probabilities=uniform:shots_factor=2"], {},
         "'qpa-lora:probabilities=uniform:shots_factor=2': shots_factor 2.0 applies to circuit evaluations"),
        (["lora:chunk_size=64"], {}, "entry 'lora:chunk_size=64': --chunk-size sets the generator"),
        (["ia3:rank=2"], {}, "entry 'ia3:rank=2': --rank does not apply to ia3"),
        (["qpa-lora:preset=paper:mapping=mlp"], {}, "preset 'paper' contradicts the settings given"),
        (["qpa-lora:rank=0"], {}, "entry 'qpa-lora:rank=0': rank must be"),
        # the same setting twice
        ([AB, "lora:targets=a,b:rank=1"], {}, f"lists {AB!r} more than once"),
        (["lora", "lora:rank=4"], {}, "'lora' and 'lora:rank=4' are the same setting (they give the same"),
        (["lora:targets=a,b", "lora:targets=b,a"], {}, "'lora:targets=a,b' and 'lora:targets=b,a' are the"),
        (["qpa-lora:preset=paper", "qpa-lora:mapping=linear:preset=paper"], {}, "are the same setting"),
        # the reference and the margin
        (["lora", "qpa-lora"], {"reference": "lora:rank=1"},
         "reference (--reference) 'lora:rank=1' is none of the study's --methods entries (lora, qpa-lora)"),
        (["lora", "qpa-lora"], {"reference": "lora:rnk=1"}, "reference (--reference) 'lora:rnk=1': unknown"),
        (["lora", "qpa-lora"], {"reference": "lorra"}, "reference (--reference) must be one of dora, ffa"),
        (["lora", "qpa-lora"], {"reference": "lora:preset=paper"},
         "reference (--reference) 'lora:preset=paper': preset 'paper' sets the qpa-* generator"),
        (["lora", "qpa-lora"], {"margin": 0}, "margin must be a finite number > 0"),
    ],
)  # fmt: skip
def test_bad_entries_are_refused_naming_the_entry(methods, fields, match):
    with pytest.raises(InputError) as refused:
        grid(methods, **fields)
    assert match in str(refused.value)


def test_an_entry_may_set_its_rate_without_a_selection():
    _, trials = grid(["lora", "lora:lr=0.01"], seeds=(0,))
    assert [t.config.training.lr for t in trials] == [1e-3, 0.01] and trials[1].name == "lora-lr0.01"


def test_bad_entries_on_the_command_line_write_nothing(corpus, tmp_path, capsys):
    out = tmp_path / "study"
    args = tiny_cli_args(corpus, f"--steps 1 --out {out}")
    assert main(["compare", *args, "--methods", "qpa-lora", "lora:rnk=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qpa: error: methods (--methods) entry 'lora:rnk=1': unknown setting(s) ['rnk']")
    assert "Traceback" not in err and not out.exists()


# ------------------------------------------------------------------ the grid
def test_plain_methods_keep_their_runs_names_axes_and_identity():
    cfg = RunConfig()
    spec, trials = grid(["lora", "qpa-lora"], cfg=cfg)
    assert trials == [Trial(f"{m}-s{s}", cfg.for_method(m, seed=s), {"method": m, "seed": s})
                      for m in ("lora", "qpa-lora") for s in (0, 1)]  # fmt: skip
    assert spec.definition(cfg) == {"config": cfg.to_dict(), "methods": ["lora", "qpa-lora"], "seeds": [0, 1]}
    assert spec.reference == "qpa-lora" and spec.margin is None  # the first qpa-* entry by default
    assert grid(["lora", "ia3"])[0].reference is None  # no qpa-* entry: no reference
    assert grid(["lora", "qpa-lora"], reference="none")[0].reference is None


def test_settings_name_their_runs_and_carry_their_setting_in_the_axes():
    methods = ["qpa-lora", "lora:rank=1:targets=q_proj,v_proj", "qpa-lora:probabilities=frozen"]
    _, trials = grid(methods)
    assert [t.name for t in trials] == [
        "qpa-lora-s0", "qpa-lora-s1", f"lora-rank1-{TARGETS}-s0", f"lora-rank1-{TARGETS}-s1",
        "qpa-lora-probabilities_frozen-s0", "qpa-lora-probabilities_frozen-s1",
    ]  # fmt: skip
    assert trials[2].axes == {"method": "lora", "setting": "lora:rank=1:targets=q_proj,v_proj", "seed": 0}
    lora = trials[2].config
    assert (lora.adapter.method, lora.adapter.rank, lora.adapter.targets, lora.training.seed) == (
        "lora", 1, ["q_proj", "v_proj"], 0)  # fmt: skip
    assert trials[5].config.generator.probabilities == "frozen" and trials[5].config.training.seed == 1
    assert grid(methods, seeds=(0,))[1][1].name == f"lora-rank1-{TARGETS}"  # one seed: no suffix
    # with a selection the rate follows, as for every study
    selection = grid(methods, lrs=(1e-3, 3e-3))[0].selection(RunConfig())
    assert [t.name for t in selection.trials()][2:4] == [
        f"lora-rank1-{TARGETS}-s0-lr0.001", f"lora-rank1-{TARGETS}-s0-lr0.003"]  # fmt: skip


def test_the_study_s_circuit_settings_leave_an_entry_whose_source_does_not_read_them():
    cfg = RunConfig().replace(circuit_lr=0.05, shots_factor=2.0)
    methods = ["qpa-lora", "qpa-lora:probabilities=frozen", "qpa-lora:probabilities=uniform"]
    _, trials = grid(methods, (0,), cfg)
    rates = [(t.config.training.circuit_lr, t.config.backend.shots_factor) for t in trials]
    assert rates == [(0.05, 2.0), (None, 2.0), (None, None)]
    with pytest.raises(InputError, match=r"'qpa-lora:circuit_lr=0\.1:probabilities=frozen': circuit_lr sets"):
        grid(["qpa-lora:probabilities=frozen:circuit_lr=0.1"], (0,), cfg)  # given by the entry: refused


def test_a_setting_shares_its_initial_values_with_its_method(corpus, tmp_path):
    """``qpa-lora`` and ``qpa-lora:probabilities=frozen`` of one seed start from the same mapping,
    the same angles, so the same generated adapter."""
    cfg = small(corpus)
    _, trials = grid(["qpa-lora", "qpa-lora:probabilities=frozen"], (0,), cfg)
    runs = [Run.create(tmp_path / t.name, t.config) for t in trials]
    try:
        circuit, frozen = (run.model.generator for run in runs)
        for a, b in zip(circuit.mapping.parameters(), frozen.mapping.parameters(), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(circuit.quantum.theta, frozen.quantum.theta)
        with torch.no_grad():
            assert torch.allclose(circuit(), frozen(), atol=1e-7)
    finally:
        for run in runs:
            run.close()


# ------------------------------------------------------------------ a tiny study end to end
def test_a_comparison_of_settings_end_to_end(corpus, tmp_path, capsys):
    out, seeds = tmp_path / "s", (0, 1)
    methods = ("qpa-lora", "lora:rank=1:targets=c_attn", "qpa-lora:probabilities=frozen")
    cfg = small(corpus, eval_every=1)
    rows = compare(cfg, out, methods=methods, seeds=seeds, margin=0.5, **QUIET)
    lora_run = out / "lora-rank1-targets_c_attn-s0"
    stored = Run.stored_config(lora_run)
    assert (stored.adapter.method, stored.adapter.rank, stored.adapter.targets) == ("lora", 1, ["c_attn"])
    trials = {t["name"]: t for t in json.loads((out / "results.json").read_text())["trials"]}
    assert trials["lora-rank1-targets_c_attn-s0"]["counts"]["trainable"] == 2 * (32 + 96)  # 2 layers, r = 1
    # the same initial values and data order: the first step's loss is the same with the circuit frozen
    first = {n: json.loads((out / n / "metrics.jsonl").read_text().splitlines()[0])["loss"]
             for n in ("qpa-lora-s0", "qpa-lora-probabilities_frozen-s0")}  # fmt: skip
    assert first["qpa-lora-s0"] == pytest.approx(first["qpa-lora-probabilities_frozen-s0"], rel=1e-6)
    # every row against qpa-lora, paired by seed, by hand
    data = json.loads((out / "results.json").read_text())
    assert data["reference"] == "qpa-lora" and data["margin"] == 0.5
    assert [r["setting"] for r in rows] == ["base", *methods]
    assert rows[2]["label"] == "lora rank=1 on c_attn" and rows[2]["targets"] == ["c_attn"]
    kept = ("method", "perplexity", "std", "seeds", "trainable", "generated", "qubits", "tokens")
    assert list(rows[1])[: len(kept)] == list(kept)  # a comparison's keys as they were, the new ones after
    assert "vs_reference" not in rows[1] and "vs_reference" not in rows[0]
    for row, prefix in ((rows[2], "lora-rank1-targets_c_attn"), (rows[3], "qpa-lora-probabilities_frozen")):
        ppl = {name: t["perplexity"] for name, t in trials.items()}
        diffs = [ppl[f"{prefix}-s{s}"] - ppl[f"qpa-lora-s{s}"] for s in seeds]
        half = stats.t.ppf(0.975, 1) * abs(diffs[0] - diffs[1]) / math.sqrt(2) / math.sqrt(2)
        mine = row["vs_reference"]
        assert mine["mean"] == pytest.approx(sum(diffs) / 2) and mine["n"] == 2
        assert (mine["low"], mine["high"]) == pytest.approx((mine["mean"] - half, mine["mean"] + half))
        assert row["vs_reference_equivalence"] in ("inside", "outside", "undecided")
        assert row["vs_reference_reading"].startswith(f"{mine['mean']:+.3f} ± ")
    table = (out / "results.md").read_text()
    assert "| setting | test perplexity (mean ± std over seeds) |" in table
    assert "| vs qpa-lora (paired by seed) | at ±0.5 | last stretch |" in table
    assert "| lora rank=1 on c_attn |" in table and "| reference | - |" in table
    assert "(still moving) |" in table or "(flat) |" in table
    assert "| lora rank=1 on c_attn | 2 |" in (out / "curves.md").read_text()  # readable curve labels
    assert (out / "differences.png").stat().st_size > 5_000
    # another reference (and margin) re-reports the same runs: nothing trains again
    before = stamps(out)
    (out / "differences.png").unlink()
    rows = compare(cfg, out, methods=methods, seeds=seeds, reference="lora:targets=c_attn:rank=1", **QUIET)
    assert stamps(out) == before
    data = json.loads((out / "results.json").read_text())
    assert data["reference"] == "lora:rank=1:targets=c_attn" and data["margin"] is None
    assert "vs_reference" not in rows[2] and "vs_reference_equivalence" not in rows[1]
    by_hand = sum(rows[1]["by_seed"][s] - rows[2]["by_seed"][s] for s in ("0", "1")) / 2
    assert rows[1]["vs_reference"]["mean"] == pytest.approx(by_hand)  # qpa-lora minus the LoRA now
    assert "vs lora rank=1 on c_attn (paired by seed)" in (out / "results.md").read_text()
    assert (out / "differences.png").exists()
    assert json.loads((out / STUDY).read_text())["methods"] == list(methods)  # neither reference nor margin


def test_one_seed_reads_no_interval_and_draws_no_figure(corpus, tmp_path):
    rows = compare(small(corpus), tmp_path / "s", methods=("qpa-lora", "lora:rank=1"), **QUIET)
    assert rows[2]["vs_reference"]["n"] == 1 and rows[2]["vs_reference"]["low"] is None
    assert "(one seed: no interval)" in (tmp_path / "s" / "results.md").read_text()
    assert not (tmp_path / "s" / "differences.png").exists()
