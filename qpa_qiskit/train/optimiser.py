"""A run's optimiser: AdamW over its parameter groups, and its learning-rate schedule.

One group at ``--lr``; with ``--circuit-lr`` the probability source's parameters (circuit
angles, softmax logits) in a second group at that rate. The warm-up and the schedule (cosine,
linear, constant) scale both. A checkpoint keeps the optimiser's and the scheduler's state dicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from .config import TrainingConfig


def schedule(training: TrainingConfig) -> Callable[[int], float]:
    """The factor of the peak rate at each step: a linear warm-up, then the schedule."""
    t = training

    def factor(step: int) -> float:
        if step < t.warmup:
            return (step + 1) / t.warmup
        if t.schedule == "constant":
            return 1.0
        progress = (step - t.warmup) / max(1, t.steps - t.warmup)
        if t.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def parameter_groups(
    params: dict[str, torch.nn.Parameter], circuit: set[str], rate: float | None
) -> list[dict]:
    """One group of `params`; with a `rate` the `circuit` ones (by name) in a second group at
    that rate."""
    if rate is None or not circuit:
        return [{"params": list(params.values())}]
    return [
        {"params": [p for n, p in params.items() if n not in circuit]},
        {"params": [p for n, p in params.items() if n in circuit], "lr": rate},
    ]


def optimiser(
    training: TrainingConfig, params: dict[str, torch.nn.Parameter], circuit: Iterable[str]
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser of a run's trainable `params` (`circuit`: the names of the probability
    source's) and its scheduler."""
    groups = parameter_groups(params, set(circuit), training.circuit_lr)
    optimizer = torch.optim.AdamW(groups, lr=training.lr, weight_decay=training.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(training))
