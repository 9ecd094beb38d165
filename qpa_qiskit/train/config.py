"""The run's training section: optimisation, randomness, the device, precision and checkpoints.

Beside the trainer it configures (:mod:`.trainer`), and import-light: the run configuration
(:mod:`qpa_qiskit.train.run_config`) composes it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import validate
from ..errors import InputError
from ..sections import described

SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainingConfig:
    """Optimisation, randomness, the device, precision and checkpoints."""

    _argument_group_name = "training"
    steps: int = field(default=30, metadata=described("optimiser steps"))
    batch_size: int = field(default=4, metadata=described("sequences per micro-batch"))
    grad_accum: int = field(default=1, metadata=described("micro-batches per optimiser step"))
    block_size: int = field(default=128, metadata=described("tokens per training sequence"))
    lr: float = field(default=1e-3, metadata=described("peak learning rate (AdamW)"))
    circuit_lr: float | None = field(
        default=None,
        metadata=described("qpa-*: the peak rate of the circuit angles (or softmax logits); default --lr"),
    )
    weight_decay: float = field(default=0.0, metadata=described("AdamW weight decay"))
    warmup: int = field(default=3, metadata=described("linear warm-up steps"))
    schedule: str = field(
        default="cosine", metadata=described("learning-rate schedule after the warm-up", choices=SCHEDULES)
    )
    max_grad_norm: float = field(default=1.0, metadata=described("gradient clipping (0: off)"))
    seed: int = field(
        default=0, metadata=described("seeds every initial value, the data order and the shots")
    )
    device: str = field(
        default="auto",
        metadata=described(
            "where the model, adapter, generator and batches live: auto (a CUDA device when torch sees "
            "one, else the CPU), cpu, cuda, cuda:<index> or mps; a resumed run may change it"
        ),
    )
    precision: str = field(
        default="fp32", metadata=described("bf16: autocast on the run's device", choices=PRECISIONS)
    )
    eval_every: int = field(
        default=0,
        metadata=described(
            "score the dev split every K steps and at the last, into metrics.jsonl: the learning curve "
            "(0: off)"
        ),
    )
    save_every: int = field(default=10, metadata=described("checkpoint interval in steps"))
    feature_cache: bool = field(
        default=True,
        metadata=described(
            "adapters only in lm_head: the frozen body's hidden states computed once per training block "
            "and evaluation window, reused by every step and a study's runs (on; --no-feature-cache: the "
            "body runs at every step)"
        ),
    )

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "block_size", "save_every"):
            setattr(self, name, validate.positive_int(getattr(self, name), name))
        self.eval_every = validate.integer(self.eval_every, "eval_every", minimum=0)
        if self.eval_every > self.steps:
            raise InputError(
                f"eval_every ({self.eval_every}) is larger than the run's {self.steps} steps: the dev "
                f"split would be scored only at the last step. Give --eval-every at most {self.steps}, or 0 "
                "for no curve"
            )
        self.lr = validate.positive_number(self.lr, "lr")
        if self.circuit_lr is not None:
            self.circuit_lr = validate.positive_number(self.circuit_lr, "circuit_lr")
        self.weight_decay = validate.number(self.weight_decay, "weight_decay", minimum=0.0)
        self.warmup = validate.integer(self.warmup, "warmup", minimum=0)
        validate.one_of(self.schedule, "schedule", SCHEDULES)
        self.max_grad_norm = validate.number(self.max_grad_norm, "max_grad_norm", minimum=0.0)
        self.seed = validate.integer(self.seed, "seed", minimum=0, maximum=2**63 - 1)
        self.device = validate.device_form(self.device, "device")  # exists here? checked when a run starts
        validate.one_of(self.precision, "precision", PRECISIONS)
        self.feature_cache = validate.switch(self.feature_cache, "feature_cache")
