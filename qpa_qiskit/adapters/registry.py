"""The tuner registry: one entry per peft method, by name (after peft's ``PEFT_TYPE_TO_*``).

An entry says how to build the peft config for a model, which field of
:class:`~qpa_qiskit.adapters.config.AdapterConfig` sets its size, where it goes by default, what must
hold for it to fit a model, and which of its tensors a ``qpa-<name>`` method generates:
the attribute names under which the tuner keeps them (``lora_A``/``lora_B`` on every LoRA
layer, ``prompt_encoder`` on the prefix-tuned model, ``ffa_down``/``ffa_up`` on every FFA
layer). A tuner with no generated tensors has no QPA version.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from ..choices import (  # noqa: F401 - GENERATOR_KINDS, METHODS, split_method: re-exported
    GENERATED_TUNERS,
    GENERATOR_KINDS,
    METHODS,
    TUNER_NAMES,
    split_method,
)
from ..errors import InputError

if TYPE_CHECKING:
    from .config import AdapterConfig

FEED_FORWARD_BLOCKS = ("mlp", "feed_forward", "ffn")
# Every adapter here is for a causal LM: peft wraps it in PeftModelForCausalLM, and the
# exported adapter_config.json says so (what AutoPeftModelForCausalLM and the Hub read).
TASK_TYPE = "CAUSAL_LM"
# The words for a target module the model lacks (a study adds the option its targets came from).
MISSING_TARGET = "not found in the model; candidates"
# What peft warns whenever an adapter holds a tied layer (a LoRA on the lm_head that shares the
# input embedding's matrix, SmolLM2's and GPT-2's) and does not tie its adapters too. The adapter
# adapts the output projection alone, on purpose (ensure_weight_tying=False below); what merging
# it does to the input embedding is in the README (Export), so the warning is not repeated.
TIED_LAYER_WARNING = "Model has `tie_word_embeddings=True` and a tied layer is part of the adapter"


def _layer_dims(layer: nn.Module) -> tuple[int, int] | None:
    """(in, out) features of a Linear, transformers' Conv1D or an Embedding."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    if isinstance(layer, nn.Embedding):
        return layer.num_embeddings, layer.embedding_dim
    weight = getattr(layer, "weight", None)
    if type(layer).__name__ == "Conv1D" and weight is not None and weight.dim() == 2:
        return int(weight.shape[0]), int(weight.shape[1])
    return None


def adaptable_layers(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Every Linear/Conv1D/Embedding of `model` by full name, with its (in, out) features."""
    out = {}
    for name, module in model.named_modules():
        dims = _layer_dims(module)
        if name and dims is not None:
            out[name] = dims
    return out


def matching(layers: dict[str, tuple[int, int]], target: str) -> list[str]:
    """Full names that `target` selects, as peft matches a list of names: the name itself or
    a dotted suffix of it."""
    return [n for n in layers if n == target or n.endswith("." + target)]


def feed_forward_outputs(model: nn.Module) -> list[str]:
    """The output projection of each layer's feed-forward block, as dotted suffixes
    (``mlp.down_proj`` in Llama/SmolLM2/Gemma, ``mlp.c_proj`` in GPT-2): the Linear inside an
    ``mlp``/``feed_forward``/``ffn`` block that maps back to the model's width."""
    layers = adaptable_layers(model)
    suffixes = set()
    for name, (n_in, n_out) in layers.items():
        parts = name.split(".")
        if len(parts) >= 2 and parts[-2] in FEED_FORWARD_BLOCKS and n_out < n_in:
            suffixes.add(".".join(parts[-2:]))
    return sorted(suffixes)


def _targets(cfg: AdapterConfig, model: nn.Module, default: Callable[[nn.Module], list[str]]) -> list[str]:
    targets = list(cfg.targets) if cfg.targets else default(model)
    if not targets:
        raise InputError(f"method {cfg.method!r} found no default target in this model; give --targets")
    layers = adaptable_layers(model)
    missing = [t for t in targets if not matching(layers, t)]
    if missing:
        short = sorted({n.rsplit(".", 1)[-1] for n in layers})
        raise InputError(
            f"target module(s) {missing} {MISSING_TARGET}: {', '.join(short)}"
            + (
                f" (feed-forward outputs: {', '.join(feed_forward_outputs(model))})"
                if cfg.tuner == "ffa"
                else ""
            )
        )
    return targets


def _check_rank(cfg: AdapterConfig, model: nn.Module, targets: list[str], size: int, what: str) -> None:
    layers = adaptable_layers(model)
    for target in targets:
        for name in matching(layers, target):
            limit = min(layers[name])
            if size > limit:
                raise InputError(
                    f"{what} {size} is out of range for {name} ({layers[name][0]} -> {layers[name][1]}): "
                    f"it must be between 1 and {limit}, the smaller of its dimensions"
                )


def _check_linear(tuner: str, model: nn.Module, targets: list[str]) -> None:
    """Refuses a target that is not a Linear or a Conv1D, for a tuner that adapts only those
    (peft's VeRA: an Embedding target ends in peft's ValueError or TypeError otherwise)."""
    layers = adaptable_layers(model)
    for target in targets:
        for name in matching(layers, target):
            module = model.get_submodule(name)
            if not isinstance(module, nn.Linear) and type(module).__name__ != "Conv1D":
                raise InputError(
                    f"{tuner} adapts Linear and Conv1D layers only; {name} is an {type(module).__name__}: "
                    "give --targets naming Linear or Conv1D layers (the default is lm_head)"
                )


def _lm_head(model: nn.Module) -> list[str]:
    return ["lm_head"] if "lm_head" in adaptable_layers(model) else []


# ---------------------------------------------------------------- peft configs per tuner
def _lora(cfg: AdapterConfig, model: nn.Module, dora: bool):
    # lazy: peft (seconds), only when an adapter is built
    from peft import LoraConfig

    targets = _targets(cfg, model, _lm_head)
    _check_rank(cfg, model, targets, cfg.rank, "rank")
    return LoraConfig(
        task_type=TASK_TYPE,
        r=cfg.rank,
        lora_alpha=cfg.lora_alpha if cfg.lora_alpha is not None else 2 * cfg.rank,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        use_dora=dora,
        # On a tied lm_head, True would move the LoRA onto the input embedding and share it with
        # lm_head (both adapted); False adapts lm_head's output alone, what every study measured.
        ensure_weight_tying=False,
    )


def _vera(cfg: AdapterConfig, model: nn.Module):
    # lazy: peft (seconds), only when an adapter is built
    from peft import VeraConfig

    targets = _targets(cfg, model, _lm_head)
    _check_linear("VeRA", model, targets)
    _check_rank(cfg, model, targets, cfg.rank, "rank")
    # save_projection: the shared random matrices travel with the adapter, so it loads alone
    return VeraConfig(
        task_type=TASK_TYPE,
        r=cfg.rank,
        target_modules=targets,
        vera_dropout=cfg.dropout,
        save_projection=True,
    )


def _ia3(cfg: AdapterConfig, model: nn.Module):
    # lazy: peft (seconds), only when an adapter is built
    from peft import IA3Config

    targets = _targets(cfg, model, _lm_head)
    return IA3Config(task_type=TASK_TYPE, target_modules=targets, feedforward_modules=[])


def accepts_key_value_cache(model: nn.Module) -> bool:
    """Prefix tuning hands the prefix to the model as its key/value cache."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    config = getattr(model, "config", None)
    takes_cache = "past_key_values" in params or "cache" in params  # transformers 5 renamed it
    return takes_cache and config is not None and hasattr(config, "num_hidden_layers")


def _prefix(cfg: AdapterConfig, model: nn.Module):
    # lazy: peft (seconds), only when an adapter is built
    from peft import PrefixTuningConfig

    if cfg.targets:
        raise InputError(
            "prefix tuning prepends virtual tokens to the keys and values of every attention layer; "
            f"it takes no --targets (got {list(cfg.targets)}). Drop --targets, or choose lora, dora, vera, "
            "ia3 or ffa"
        )
    if not accepts_key_value_cache(model):
        raise InputError(
            "prefix tuning needs a model with a key/value cache (a forward that takes past_key_values or "
            f"cache, and a config with num_hidden_layers); {type(model).__name__} has none. Use lora, dora, "
            "vera, ia3 or ffa"
        )
    return PrefixTuningConfig(task_type=TASK_TYPE, num_virtual_tokens=cfg.prefix_tokens)


def _small_prefix(peft_model: nn.Module) -> None:
    """Start the prefix at std 0.01 instead of peft's N(0, 1) embedding: random unit-scale keys
    and values take over the attention of every layer (30 steps at lr 1e-3 left SmolLM2 at
    perplexity 200-4,300, from 29), and a QPA prefix starts near zero (its mapping's last layer
    starts small), so both start from the same scale."""
    for encoder in peft_model.prompt_encoder.values():
        nn.init.normal_(encoder.embedding.weight, std=0.01)


def _ffa(cfg: AdapterConfig, model: nn.Module):
    from .ffa import FFAConfig, output_width  # lazy: it imports peft's tuner machinery (seconds)

    targets = _targets(cfg, model, feed_forward_outputs)
    modules = dict(model.named_modules())
    layers = adaptable_layers(model)
    for target in targets:
        for name in matching(layers, target):
            try:
                width = output_width(modules[name])
            except TypeError as exc:
                raise InputError(f"FFA target {name}: {exc}") from None
            if cfg.bottleneck > width:
                raise InputError(
                    f"bottleneck {cfg.bottleneck} is out of range for {name} (width {width}): it must be "
                    f"between 1 and {width}"
                )
    return FFAConfig(task_type=TASK_TYPE, target_modules=targets, bottleneck=cfg.bottleneck)


@dataclass(frozen=True)
class Tuner:
    """One peft method: its config for a model, its size field, and what QPA generates."""

    name: str
    summary: str
    size: str | None  # the AdapterConfig field that sets its size (None: fixed by the targets)
    peft_config: Callable[[AdapterConfig, nn.Module], object]
    generated: tuple[str, ...] = ()  # attribute names holding the tensors qpa-<name> generates
    loads_without_qpa: bool = True  # its export loads with plain peft
    initialize: Callable[[nn.Module], None] | None = None  # on the peft model, after peft's own
    # merge_and_unload() folds it into the base model's weights: not a prefix (virtual tokens, no
    # weight of the base model) nor FFA (a nonlinear bottleneck beside the layer)
    mergeable: bool = True


TUNERS: dict[str, Tuner] = {
    t.name: t
    for t in (
        Tuner("lora", "LoRA (peft)", "rank", lambda c, m: _lora(c, m, dora=False), ("lora_A", "lora_B")),
        Tuner(
            "dora",
            "DoRA (peft LoRA, use_dora)",
            "rank",
            lambda c, m: _lora(c, m, dora=True),
            ("lora_A", "lora_B"),
        ),
        Tuner(
            "prefix",
            "prefix tuning (peft)",
            "prefix_tokens",
            _prefix,
            ("prompt_encoder",),
            initialize=_small_prefix,
            mergeable=False,
        ),
        Tuner(
            "ffa",
            "feed-forward bottleneck adapter",
            "bottleneck",
            _ffa,
            ("ffa_down", "ffa_up"),
            loads_without_qpa=False,
            mergeable=False,
        ),
        Tuner("vera", "VeRA (peft)", "rank", _vera),
        Tuner("ia3", "IA3 (peft)", None, _ia3),
    )
}
if tuple(TUNERS) != TUNER_NAMES or tuple(n for n, t in TUNERS.items() if t.generated) != GENERATED_TUNERS:
    raise AssertionError("choices.TUNER_NAMES, GENERATED_TUNERS: the TUNERS, those with generated tensors")
