"""The adapter's section of a run's configuration: which peft method, where, how large.

Beside the adapters, and import-light (no torch, no peft): the run configuration
(:mod:`qpa_qiskit.train.run_config`) composes this section, and the command line builds its options from
it before any command runs. The methods it names are in :mod:`qpa_qiskit.choices`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import validate
from ..choices import METHODS, split_method
from ..sections import described


@dataclass
class AdapterConfig:
    """The peft adapter: which method, where, how large."""

    _argument_group_name = "adapter"
    method: str = field(default="qpa-lora", metadata=described("adapter method", choices=list(METHODS)))
    rank: int = field(default=4, metadata=described("LoRA/DoRA/VeRA rank r"))
    lora_alpha: float | None = field(
        default=None, metadata=described("LoRA scaling alpha (default 2 * rank)")
    )
    targets: list[str] | None = field(
        default=None,
        metadata=described(
            "modules to adapt (q_proj v_proj, c_attn...); default lm_head (lora, dora, vera, ia3), "
            "each layer's feed-forward output (ffa); prefix takes none"
        ),
    )
    bottleneck: int = field(default=16, metadata=described("FFA: the adapter's hidden width"))
    prefix_tokens: int = field(default=8, metadata=described("prefix tuning: virtual tokens per layer"))
    dropout: float = field(default=0.0, metadata=described("LoRA/VeRA dropout probability"))

    def __post_init__(self) -> None:
        validate.one_of(self.method, "method", METHODS)
        self.rank = validate.positive_int(self.rank, "rank")
        if self.lora_alpha is not None:
            self.lora_alpha = validate.positive_number(self.lora_alpha, "lora_alpha")
        if self.targets is not None:
            self.targets = list(validate.names(self.targets, "targets"))
        self.bottleneck = validate.positive_int(self.bottleneck, "bottleneck")
        self.prefix_tokens = validate.positive_int(self.prefix_tokens, "prefix_tokens")
        self.dropout = validate.number(self.dropout, "dropout", minimum=0.0, maximum=0.999)

    @property
    def tuner(self) -> str:
        return split_method(self.method)[1]

    @property
    def generator_kind(self) -> str | None:
        """What generates the tuner's tensors: "qpa", "lowrank" (the classical low-rank peer), or
        None (a peft adapter trained as usual)."""
        return split_method(self.method)[0]

    @property
    def generated(self) -> bool:
        return self.generator_kind is not None


# Adapter settings only some tuners take (a qpa-/lowrank- method takes its tuner's): given for
# methods that take none of them, they would be silently ignored, so they are refused
# (:func:`check_given`).
TUNER_SETTINGS: dict[str, tuple[str, ...]] = {
    "rank": ("lora", "dora", "vera"),
    "lora_alpha": ("lora", "dora"),
    "dropout": ("lora", "dora", "vera"),
    "bottleneck": ("ffa",),
    "prefix_tokens": ("prefix",),
    "targets": ("lora", "dora", "vera", "ia3", "ffa"),
}
