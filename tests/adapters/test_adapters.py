"""Every tuner of the registry: what QPA generates, training, exact resume, and exports that
load with plain peft in a fresh process."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from conftest import SENTENCE, tiny_cli_args
from conftest import tiny_config as config
from torch import nn

from qpa_qiskit import InputError
from qpa_qiskit.adapters import METHODS, TUNERS, AdaptedModel, feed_forward_outputs, split_method
from qpa_qiskit.backends import QPABackend
from qpa_qiskit.cli import main
from qpa_qiskit.config import AdapterConfig, GeneratorConfig
from qpa_qiskit.data import perplexity
from qpa_qiskit.export import export
from qpa_qiskit.models import load_model, tiny_gpt2
from qpa_qiskit.train import Run

# every tuner and its QPA version, and the classical low-rank peer of one (the others share its code)
ALL = ["lora", "dora", "prefix", "ffa", "vera", "ia3", "qpa-lora", "qpa-dora", "qpa-prefix", "qpa-ffa"]
ALL += ["lowrank-lora"]
LOWRANK = ["lowrank-lora", "lowrank-dora", "lowrank-prefix", "lowrank-ffa"]
SIZES = dict(rank=2, bottleneck=4, prefix_tokens=4)


def adapted(method: str, **kw) -> AdaptedModel:
    return AdaptedModel(
        tiny_gpt2().model,
        AdapterConfig(method=method, **{**SIZES, **kw}),
        GeneratorConfig(chunk_size=32, reps=1),
        backend=QPABackend("statevector"),
    )


def test_methods_are_the_registry_and_its_generated_versions():
    assert sorted(set(ALL) | set(LOWRANK)) == list(METHODS)
    assert {split_method(m)[1] for m in METHODS} == set(TUNERS)
    assert [split_method(m)[0] for m in ("lora", "qpa-lora", "lowrank-ffa")] == [None, "qpa", "lowrank"]
    assert [t for t, tuner in TUNERS.items() if not tuner.generated] == ["vera", "ia3"]


@pytest.mark.parametrize("method", ALL)
def test_building_an_adapter_warns_nothing(method):
    """peft reads transformers 5's deprecated ``model.is_gradient_checkpointing`` as it wraps a
    model, a FutureWarning nobody using qpa can act on: AdaptedModel silences it where peft
    reads it (``qpa compare`` printed it for each adapter it built, issue 37). Any warning building an
    adapter gives, repeats included, fails this."""
    import peft  # noqa: F401  (imported lazily by AdaptedModel: its import is not what this checks)

    model, backend = tiny_gpt2().model, QPABackend("statevector")
    config = AdapterConfig(method=method, **SIZES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AdaptedModel(model, config, GeneratorConfig(chunk_size=32, reps=1), backend=backend)
    assert [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught] == []


def test_the_main_command_shows_no_warning(corpus, tmp_path, capsys):
    """``qpa compare`` (the README's main command, base, LoRA and QPA-LoRA) on the tiny GPT-2:
    no warning a user would see, repeats included (issue 37: six copies of the FutureWarning
    above). Python's default filters hide the deprecation and resource categories; so does this."""
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    options = "--steps 2 --rank 2 --reps 1 --hidden 16 --eval-tokens 400 --dev-tokens 400"
    words = ["compare", "--out", str(tmp_path / "study"), *tiny_cli_args(corpus, options)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(words) == 0
    shown = [w for w in caught if not issubclass(w.category, hidden)]
    assert [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in shown] == []
    assert "| qpa-lora |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "method, names",
    [
        ("qpa-lora", [f"base_model.model.lm_head.lora_{x}.default.weight" for x in "AB"]),
        ("qpa-dora", [f"base_model.model.lm_head.lora_{x}.default.weight" for x in "AB"]),
        ("qpa-prefix", ["prompt_encoder.default.embedding.weight"]),
        ("qpa-ffa", [f"base_model.model.transformer.h.{i}.mlp.c_proj.ffa_{p}.default.{w}"
                     for i in (0, 1) for p in ("down", "up") for w in ("weight", "bias")]),
    ],
)  # fmt: skip
def test_generated_tensors_are_the_registry_entries(method, names):
    model = adapted(method)
    assert model.generated_names == names
    params = dict(model.peft_model.named_parameters())
    sizes = {"qpa-prefix": 4 * 2 * 2 * 32, "qpa-ffa": 2 * (32 * 4 + 4 + 4 * 32 + 32)}
    assert model.counts()["generated"] == sizes.get(method, 2 * 32 + 257 * 2)
    assert sum(params[n].numel() for n in names) == model.counts()["generated"]
    # the generated tensors are not trained directly; everything else of the tuner is
    assert all(not params[n].requires_grad for n in names)
    trainable = model.trainable_parameters()
    assert not any(n.removeprefix("peft.") in names for n in trainable)
    extra = {n for n in trainable if n.startswith("peft.")}
    assert extra == ({"peft.base_model.model.lm_head.lora_magnitude_vector.default.weight"}
                     if method == "qpa-dora" else set())  # fmt: skip


@pytest.mark.parametrize("method", ["qpa-prefix", "qpa-ffa"])
def test_gradients_reach_the_generator_and_peft_math_runs(method):
    model = adapted(method)
    ids = torch.randint(0, 257, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    assert model.generator.quantum.theta.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.mapping.parameters())
    model.eval()
    with torch.no_grad():
        generated = model(input_ids=ids).logits
        model.materialize()
        plain = model.peft_model(input_ids=ids).logits
    assert torch.allclose(generated, plain, atol=1e-6)


def test_ffa_starts_as_the_identity_and_sits_after_the_feed_forward_block():
    base = tiny_gpt2().model.eval()
    ids = torch.randint(0, 257, (1, 10))
    with torch.no_grad():
        reference = base(input_ids=ids).logits
    model = adapted("ffa")
    assert feed_forward_outputs(base) == ["mlp.c_proj"]
    with torch.no_grad():
        assert torch.allclose(model.peft_model(input_ids=ids).logits, reference, atol=1e-6)
    # h -> h + W_up act(W_down h + b) + c on the block's output, checked on one layer
    layer = model.peft_model.base_model.model.transformer.h[0].mlp.c_proj
    with torch.no_grad():
        layer.ffa_up["default"].weight.normal_()
        x = torch.randn(3, 128)
        h = layer.base_layer(x)
        expect = h + layer.ffa_up["default"](torch.relu(layer.ffa_down["default"](h)))
        assert torch.allclose(layer(x), expect, atol=1e-6)


def test_prefix_starts_small_like_a_generated_one():
    prefix = adapted("prefix").peft_model.prompt_encoder["default"].embedding.weight
    assert 0.005 < prefix.std().item() < 0.015  # peft's own start is N(0, 1)
    again = adapted("prefix").peft_model.prompt_encoder["default"].embedding.weight
    assert torch.equal(prefix, again)  # seeded by the adapter's stream


def test_prefix_tuning_refuses_a_model_without_a_key_value_cache():
    class NoCache(nn.Module):
        def __init__(self):
            super().__init__()
            self.lm_head = nn.Linear(8, 8)

        def forward(self, input_ids):
            return self.lm_head(input_ids)

    with pytest.raises(
        InputError, match=r"prefix tuning needs a model with a key/value cache.*NoCache has none"
    ):
        AdaptedModel(NoCache(), AdapterConfig(method="qpa-prefix"), backend=QPABackend("statevector"))
    with pytest.raises(InputError, match="found no default target in this model; give --targets"):
        AdaptedModel(NoCache(), AdapterConfig(method="ffa"))


@pytest.mark.parametrize("targets", [["wte"], ["lm_head", "wpe"]])
def test_vera_refuses_an_embedding_naming_it_and_the_layers_it_takes(corpus, tmp_path, capsys, targets):
    """peft's VeRA takes Linear and Conv1D layers: an embedding alone ended in its ValueError (no
    compatible layer), beside another target in its TypeError, both as tracebacks."""
    name = "transformer." + targets[-1]
    refusal = (
        f"VeRA adapts Linear and Conv1D layers only; {name} is an Embedding: give --targets naming "
        "Linear or Conv1D layers (the default is lm_head)"
    )
    with pytest.raises(InputError) as refused:
        adapted("vera", targets=targets)
    assert str(refused.value) == refusal
    args = ["--model", "tiny-gpt2", "--data", str(corpus), "--method", "vera", "--targets", *targets]
    assert main(["train", str(tmp_path / "run"), *args]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"qpa: error: {refusal}"
    assert not (tmp_path / "run").exists()
    adapted("vera", targets=["c_attn", "lm_head"])  # Conv1D and Linear layers: taken


@pytest.mark.parametrize("method", ["prefix", "ffa", "vera", "ia3", "qpa-prefix", "qpa-ffa"])
def test_every_method_trains_and_resumes_exactly(corpus, tmp_path, method):
    cfg = config(corpus, method=method, steps=5, lr=2e-2, **SIZES)
    with Run.create(tmp_path / "a", cfg) as straight:
        records = straight.train(progress=False)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    with Run.create(tmp_path / "b", cfg) as interrupted:
        for _ in range(3):
            interrupted.train_step()
        interrupted.save()
        interrupted.train_step()  # lost
    del interrupted
    with Run.open(tmp_path / "b") as resumed:
        assert resumed.step == 3
        resumed.train(progress=False)
    for name, p in straight.params.items():
        assert torch.equal(p, resumed.params[name]), name
    a = [json.loads(x)["loss"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x)["loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert a == b


@pytest.mark.parametrize(
    "method, lr",  # IA3 and VeRA train scaling vectors: they take larger steps
    [("prefix", 2e-2), ("ffa", 2e-2), ("vera", 2e-1), ("ia3", 2e-1), ("qpa-prefix", 2e-2), ("qpa-ffa", 2e-2)],
)
def test_loss_decreases(corpus, tmp_path, method, lr):
    cfg = config(corpus, method=method, steps=25, lr=lr, **SIZES)
    with Run.create(tmp_path / method, cfg) as run:
        records = run.train(progress=False)
    first = sum(r["loss"] for r in records[:3]) / 3
    last = sum(r["loss"] for r in records[-3:]) / 3
    assert last < first - 0.02, (first, last)


def test_every_export_loads_with_plain_peft_in_a_fresh_process(corpus, tmp_path):
    """Each method trains a few steps and exports; one fresh process loads every adapter onto
    the base model with PeftModel.from_pretrained and scores the same tokens. Every peft-backed
    method loads without qpa_qiskit; FFA, a tuner written here, after importing its module."""
    base_dir = tmp_path / "base"
    tiny_gpt2().model.save_pretrained(base_dir)  # the same seeded base weights
    tokens = load_model("tiny-gpt2").tokenizer(SENTENCE * 40, add_special_tokens=False)["input_ids"][:600]
    torch.save(torch.tensor(tokens), tmp_path / "tokens.pt")
    ours = {}
    for method in ALL:
        with Run.create(tmp_path / method, config(corpus, method=method, steps=3, lr=2e-2, **SIZES)) as run:
            run.train(progress=False)
        out = export(tmp_path / method, tmp_path / f"{method}-adapter")
        info = json.loads((out / "qpa_export.json").read_text())
        assert info["method"] == method and info["loads_with"].startswith("PeftModel.from_pretrained")
        fresh = Run.open(tmp_path / method, for_training=False)
        fresh.model.materialize()
        ours[method] = perplexity(fresh.model.peft_model.eval(), torch.tensor(tokens), window=64, stride=64)[
            0
        ]
    plain = [m for m in ALL if TUNERS[split_method(m)[1]].loads_without_qpa]
    assert sorted(set(ALL) - set(plain)) == ["ffa", "qpa-ffa"]
    script = textwrap.dedent(f"""
        import json, sys, torch
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from plain_perplexity import windowed_perplexity
        from transformers import AutoModelForCausalLM
        from peft import PeftModel

        def score(method):
            base = AutoModelForCausalLM.from_pretrained({str(base_dir)!r})
            model = PeftModel.from_pretrained(base, {str(tmp_path)!r} + f"/{{method}}-adapter").eval()
            return windowed_perplexity(model, torch.load({str(tmp_path / "tokens.pt")!r}))

        out = {{m: score(m) for m in {plain!r}}}
        assert "qpa_qiskit" not in sys.modules
        import qpa_qiskit.adapters.ffa  # registers the FFA tuner with peft
        out.update({{m: score(m) for m in ("ffa", "qpa-ffa")}})
        print(json.dumps(out))
    """)
    env = os.environ.copy()  # offline: tests/offline.py set it for every test
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    base = perplexity(tiny_gpt2().model.eval(), torch.tensor(tokens), window=64, stride=64)[0]
    for method in ALL:
        assert theirs[method] == pytest.approx(ours[method], rel=1e-4), method
        assert ours[method] != pytest.approx(base, rel=1e-6), method  # the adapter is in the numbers
