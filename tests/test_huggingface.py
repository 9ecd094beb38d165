"""The QPA model as Hugging Face code uses it: a flat config, named forward arguments,
generate, save/load (its own folders, Trainer's checkpoints and qpa train runs), merge,
export, transformers' Trainer with default arguments (checkpoints that resume bit for bit) and
the diagnostics callback."""

import json
import shutil
import warnings

import pytest
import torch
from conftest import tiny_config
from datasets import Dataset
from peft import PeftModel
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

from qpa_qiskit import InputError
from qpa_qiskit.backends import QPABackend
from qpa_qiskit.cli import main
from qpa_qiskit.errors import AccountError, StateError
from qpa_qiskit.export import export
from qpa_qiskit.hf import QPACallback, QPAConfig, QPAModel, get_qpa_model
from qpa_qiskit.hf.state import WEIGHTS, read_weights
from qpa_qiskit.models import tiny_gpt2
from qpa_qiskit.train import Run, evaluate_run

SMALL = dict(method="qpa-lora", rank=4, chunk_size=64, reps=2, hidden=[16])
IDS = torch.arange(40).reshape(2, 20) % 250


def qpa(config=None, backend="statevector", seed=0, **overrides):
    return get_qpa_model(tiny_gpt2(), config or QPAConfig(**{**SMALL, **overrides}), backend, seed=seed)


def logits(model, ids=IDS):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def train_a_little(model, steps=3):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    model.train()
    for _ in range(steps):
        model(input_ids=IDS, labels=IDS).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


# ---------------------------------------------------------------- the configuration
def test_the_config_is_flat_and_checked_where_a_run_is():
    cfg = QPAConfig(method="qpa-lora", rank=4, chunk_size=2048, reps=8)
    assert (cfg.adapter.rank, cfg.generator.chunk_size, cfg.generator.reps) == (4, 2048, 8)
    assert QPAConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="method must be one of"):
        QPAConfig(method="qpa-nope")
    with pytest.raises(InputError, match="lowrank_k is the rank of the lowrank"):
        QPAConfig(method="qpa-lora", lowrank_k=3)
    with pytest.raises(InputError, match=r"unknown setting.*'shots'.*accepted: method"):
        QPAConfig.from_dict({"method": "qpa-lora", "shots": 3})


def test_a_preset_fills_the_fields_left_at_their_defaults_and_refuses_a_contradiction():
    cfg = QPAConfig(method="qpa-lora", preset="paper")
    assert (cfg.labels, cfg.mapping, cfg.output_centring) == ("random", "linear", "mean")
    with pytest.raises(InputError, match="preset 'paper' contradicts"):
        QPAConfig(method="qpa-lora", preset="paper", mapping_init="small", gamma=0.5)


def test_a_method_the_model_cannot_take_names_the_accepted_targets():
    with pytest.raises(InputError, match=r"not found in the model; candidates: .*c_attn"):
        qpa(targets=["q_proj"])


# ---------------------------------------------------------------- the model object
def test_the_model_counts_and_trains_like_the_adapted_model_and_prints_peft_wording(capsys):
    model = qpa(QPAConfig(method="qpa-lora", rank=4, chunk_size=64))
    assert model.counts() == {
        "trainable": 3432,
        "circuit_angles": 40,
        "probability_logits": 0,
        "mapping": 3392,
        "completion": 0,
        "generated": 1156,
        "other_adapter": 0,
        "qubits": 5,
    }  # fmt: skip  (the README's example)
    model.print_trainable_parameters()
    line = capsys.readouterr().out.strip()
    trainable, total = model.get_nb_trainable_parameters()
    assert line == (f"trainable params: 3,432 || all params: {total:,d} || trainable%: "
                    f"{100 * 3432 / total:.4f} || generated weights: 1,156 || qubits: 5")  # fmt: skip
    assert total == sum(p.numel() for p in tiny_gpt2().model.parameters()) + trainable
    out = model(input_ids=IDS, attention_mask=torch.ones_like(IDS), labels=IDS)
    out.loss.backward()
    assert model.generator.quantum.theta.grad.abs().sum() > 0


def test_generate_uses_the_trained_adapter_generated_once_per_call(monkeypatch):
    model = train_a_little(qpa())
    calls = []
    final = model.generator.final_weights
    monkeypatch.setattr(model.generator, "final_weights", lambda *a: calls.append(1) or final(*a))
    out = model.generate(input_ids=IDS[:1, :5], max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 11) and len(calls) == 1
    plain = model.peft_model.generate(input_ids=IDS[:1, :5], max_new_tokens=6, do_sample=False,
                                      pad_token_id=0)  # fmt: skip
    assert torch.equal(out, plain)  # the peft model now holds the trained adapter


def test_with_shots_evaluation_sees_one_adapter_and_training_resumes_unchanged():
    backend = QPABackend("statevector", shots_factor=2, seed=7)
    model = train_a_little(qpa(backend=backend))
    state = model.rng_state["backend"]
    first, second = logits(model), logits(model)
    assert torch.equal(first, second)  # the same sampled adapter on every call
    assert model.rng_state["backend"] == state  # nothing drawn for it
    model.train()
    model.generated_tensors()  # a training step draws its own shots
    assert model.rng_state["backend"] != state


def test_a_forward_replaced_by_a_library_is_kept_and_the_fused_head_is_answered():
    model = train_a_little(qpa())
    model.forward = lambda *a, **k: "patched"  # what TRL's SFTTrainer does
    labels = IDS.clone()
    labels[:, :4] = -100
    model.eval()
    with torch.no_grad():
        fused = model(input_ids=IDS, labels=labels, fused_lm_head=True)
        plain = model(input_ids=IDS, labels=labels)
    assert fused.loss.item() == pytest.approx(plain.loss.item(), rel=1e-6)
    assert fused.log_probs.shape == (2, 19) and int(fused.label_mask.sum()) == 2 * 19 - 2 * 3
    assert fused.entropy.shape == fused.is_top1.shape == (2, 19)


# ---------------------------------------------------------------- save and load
@pytest.mark.parametrize("backend", ["statevector", "shots"])
def test_save_pretrained_then_from_pretrained_gives_the_same_logits(tmp_path, backend):
    if backend == "shots":
        backend = QPABackend("statevector", shots_factor=2, seed=3)
    model = train_a_little(qpa(backend=backend, labels="random"))
    model.save_pretrained(tmp_path / "saved")
    files = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert files == ["model.safetensors", "qpa_config.json"]
    assert (tmp_path / "saved" / WEIGHTS).stat().st_size < 40_000  # no base weights (tied wte: 33 kB)
    described = json.loads((tmp_path / "saved" / "qpa_config.json").read_text())
    assert described["config"]["labels"] == "random" and described["seed"] == 0
    loaded = QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "saved")
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    assert torch.equal(logits(loaded), logits(model))
    trainable = QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "saved", is_trainable=True)
    assert trainable.counts()["trainable"] == model.counts()["trainable"]
    assert sum(p.numel() for p in trainable.parameters() if p.requires_grad) == model.counts()["trainable"]


def test_a_different_backend_is_taken_with_a_note(tmp_path):
    qpa().save_pretrained(tmp_path / "saved")
    with pytest.warns(UserWarning, match="differ from the saved model's"):
        model = QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "saved",
                                         QPABackend("statevector", shots_factor=1, seed=0))  # fmt: skip
    assert model.qpa_backend.shots_factor == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the same backend: no note
        QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "saved", "statevector")


def test_a_folder_of_another_base_model_is_refused_naming_the_shapes(tmp_path):
    qpa(QPAConfig(**{**SMALL, "method": "lora", "chunk_size": 2048})).save_pretrained(tmp_path / "lora")
    bigger = tiny_gpt2().model.__class__(tiny_gpt2().model.config.__class__(**{
        **tiny_gpt2().model.config.to_dict(), "n_embd": 64}))  # fmt: skip
    shapes = r"lora_A.default.weight: \(4, 32\) there, \(4, 64\) here.*Nothing was"
    with pytest.raises(InputError, match=shapes):
        QPAModel.from_pretrained(bigger, tmp_path / "lora")


def test_a_truncated_or_missing_file_is_named_and_nothing_is_loaded(tmp_path):
    model = train_a_little(qpa())
    model.save_pretrained(tmp_path / "saved")
    weights = tmp_path / "saved" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(StateError, match=f"cannot read {weights}.*truncated or corrupt; nothing was loaded"):
        QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "saved")
    target = qpa()
    before = logits(target)
    with pytest.raises(StateError, match="truncated or corrupt"):
        target.load_state_dict(read_weights(weights))
    assert torch.equal(logits(target), before)
    weights.unlink()
    with pytest.raises(InputError, match=r"holds no QPA model: neither model.safetensors"):
        QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "saved")


def test_a_state_of_another_configuration_is_refused_whole():
    model, other = qpa(), train_a_little(qpa(rank=2))
    before = logits(model)
    with pytest.raises(InputError, match=r"belongs to another QPA model.*rank: this model 4, the state 2"):
        model.load_state_dict(other.state_dict())
    assert torch.equal(logits(model), before)


def test_a_qpa_train_run_loads_with_the_figures_qpa_eval_reports(corpus, tmp_path):
    cfg = tiny_config(corpus, shots_factor=4, labels="random", steps=3)
    with Run.create(tmp_path / "run", cfg) as run:
        run.train(progress=False)
    with Run.open(tmp_path / "run", for_training=False) as run:
        run.model.materialize()
        expected = logits(run.model.peft_model)
    model = QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "run")
    assert model.step == 3 and model.qpa_config.labels == "random"
    assert torch.equal(logits(model), expected)


# ---------------------------------------------------------------- the plain model
def test_merge_and_unload_computes_what_the_adapter_did_and_keeps_the_embedding():
    model = train_a_little(qpa())
    expected = logits(model)
    embedding = model.get_input_embeddings().weight.detach().clone()
    merged = model.merge_and_unload()
    assert torch.allclose(logits(merged), expected, atol=1e-5)
    assert torch.equal(merged.get_input_embeddings().weight, embedding)


def test_a_prefix_cannot_be_merged():
    model = qpa(QPAConfig(method="qpa-prefix", prefix_tokens=2, chunk_size=64, reps=1))
    with pytest.raises(InputError, match=r"cannot be merged.*use export"):
        model.merge_and_unload()


def test_export_writes_the_plain_peft_adapter(tmp_path):
    model = train_a_little(qpa())
    expected = logits(model)
    model.export(tmp_path / "adapter")
    info = json.loads((tmp_path / "adapter" / "qpa_export.json").read_text())
    assert info["method"] == "qpa-lora" and info["counts"] == model.counts()
    peft_model = PeftModel.from_pretrained(tiny_gpt2().model, str(tmp_path / "adapter"))
    assert torch.allclose(logits(peft_model), expected, atol=1e-6)
    with pytest.raises(InputError, match="exists and is not empty"):
        model.export(tmp_path / "adapter")


def test_an_ibm_backend_without_an_account_fails_before_any_work(no_ibm_account, monkeypatch):
    backend = QPABackend("ibm:ibm_torino", shots_factor=1, connect=False)
    model = qpa(backend=backend)
    monkeypatch.setattr(model.generator, "final_weights", lambda *a: pytest.fail("work before the account"))
    with pytest.raises(AccountError):
        model.generate(input_ids=IDS[:1, :4], max_new_tokens=2)


# ---------------------------------------------------------------- Trainer
def tiny_dataset(tokenizer):
    texts = [f"the cat number {i} sat on the mat, and the dog on the log" for i in range(32)]
    return Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"]
    )


def trainer(model, out, **args):
    tokenizer = tiny_gpt2().tokenizer
    tokenizer.pad_token = tokenizer.eos_token
    defaults = dict(max_steps=6, save_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
                    logging_steps=2, report_to=[], use_cpu=True, disable_tqdm=True)  # fmt: skip
    return Trainer(model=model, args=TrainingArguments(str(out), **{**defaults, **args}),
                   train_dataset=tiny_dataset(tokenizer),
                   data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))  # fmt: skip


@pytest.mark.parametrize(
    "settings",
    [dict(), dict(labels="random", backend=("statevector", 2)), dict(method="lora", chunk_size=2048)],
    ids=["exact", "shots-random-labels", "classical-lora"],
)
def test_trainer_with_default_arguments_checkpoints_and_resumes_bit_for_bit(tmp_path, settings):
    settings = dict(settings)
    spec = settings.pop("backend", None)

    def build():
        backend = QPABackend(spec[0], shots_factor=spec[1], seed=5) if spec else "statevector"
        return qpa(backend=backend, **settings)

    whole = build()
    first = trainer(whole, tmp_path / "out")
    assert first.args.remove_unused_columns  # the defaults: columns by the forward's names, safetensors
    first.train()
    checkpoint = tmp_path / "out" / "checkpoint-3"
    assert (checkpoint / WEIGHTS).stat().st_size < 40_000
    final = {k: v.clone() for k, v in whole.state_dict().items()}
    resumed = build()
    trainer(resumed, tmp_path / "again").train(resume_from_checkpoint=str(checkpoint))
    after = resumed.state_dict()
    assert final.keys() == after.keys()
    assert [k for k in final if not torch.equal(final[k], after[k])] == []
    first.save_model(str(tmp_path / "saved"))
    loaded = QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "saved")
    assert torch.equal(logits(loaded), logits(whole))


def test_the_callback_logs_the_diagnostics_for_the_reporting_integrations(tmp_path):
    seen = []

    class Reporter(TrainerCallback):  # stands for a report_to integration: added before the user's
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs))

    model = qpa()
    run = trainer(model, tmp_path / "out", save_strategy="no")
    run.add_callback(Reporter())
    QPACallback().add_to(run)
    run.train()
    training = [h for h in run.state.log_history if "loss" in h]
    assert len(training) == 3 and all("qpa/tvd_start" in h and "qpa/chunk_spread" in h for h in training)
    assert training[-1]["qpa/angle_drift_max"] > 0
    assert [s for s in seen if "loss" in s and "qpa/angle_drift_rms" not in s] == []
    assert model.step == 6 and model.description()["step"] == 6
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


def test_qpa_eval_and_export_read_a_saved_model_as_a_run(corpus, tmp_path, capsys):
    model = train_a_little(qpa(backend=QPABackend("statevector", shots_factor=2, seed=1), labels="random"))
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "qpa_config.json").read_text())["model"] == "tiny-gpt2"
    export(tmp_path / "saved", tmp_path / "adapter")
    peft_model = PeftModel.from_pretrained(tiny_gpt2().model, str(tmp_path / "adapter"))
    assert torch.allclose(logits(peft_model), logits(model), atol=1e-6)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "saved"), "--data", str(corpus), "--eval-tokens", "200",
                 "--eval-window", "64", "--eval-stride", "48"]) == 0  # fmt: skip
    assert "perplexity" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "saved"), "--resume"]) != 0
    assert "holds a saved QPA model" in capsys.readouterr().err


def test_a_saved_model_without_a_base_model_name_is_refused_by_qpa_with_the_way_out(tmp_path):
    get_qpa_model(tiny_gpt2().model, QPAConfig(**SMALL)).save_pretrained(tmp_path / "saved")
    with pytest.raises(InputError, match=r"does not name its base model.*QPAModel.from_pretrained"):
        evaluate_run(tmp_path / "saved")


@pytest.mark.slow
def test_trainer_fine_tunes_the_embedded_smollm2_read_from_its_gguf_file(tmp_path):
    """transformers de-quantises the GGUF file but kept its quantizer on the model, which Trainer
    then refused as "purely quantized"; the loaded model holds plain fp32 tensors."""
    from qpa_qiskit.models import load_model

    loaded = load_model("smollm2-135m")
    assert not loaded.model.is_quantized and next(loaded.model.parameters()).dtype == torch.float32
    model = get_qpa_model(loaded, QPAConfig(method="qpa-lora", rank=1, chunk_size=2048, reps=1))
    ids = loaded.tokenizer(["The capital of France is Paris."] * 2, return_tensors="pt").input_ids
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})
    args = TrainingArguments(str(tmp_path), max_steps=1, per_device_train_batch_size=2, report_to=[],
                             save_strategy="no", use_cpu=True, disable_tqdm=True)  # fmt: skip
    start = model.generator.quantum.theta.detach().clone()
    Trainer(model=model, args=args, train_dataset=data).train()
    assert not torch.equal(model.generator.quantum.theta, start)


def test_wrong_arguments_are_named_with_what_is_accepted(tmp_path):
    with pytest.raises(InputError, match="config must be a QPAConfig, got dict"):
        get_qpa_model(tiny_gpt2(), {"method": "qpa-lora"})
    with pytest.raises(InputError, match="backend must be a QPABackend or a spec string, got int"):
        get_qpa_model(tiny_gpt2(), QPAConfig(**SMALL), 7)
    with pytest.raises(InputError, match="model must be a torch module"):
        get_qpa_model("gpt2", QPAConfig(**SMALL))
    with pytest.raises(InputError, match=r"is not a folder; give a folder written by QPAModel"):
        QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "absent")
    with pytest.raises(InputError, match=r"must be a mapping of settings, got list"):
        QPAConfig.from_dict(["qpa-lora"])
