"""Where a run computes: its torch device (resolved and checked against its precision),
bf16 autocast, and the random states it draws from, the device's own among them.

Apart from the trainer: they depend on the configuration and the device alone. The trainer
seeds with them, autocasts its steps, and takes and puts back the random states around a
checkpoint and a dev evaluation in the middle of training; the checks and the scoring use the
device and autocast too.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from .. import validate
from ..errors import InputError
from .run_config import RunConfig


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators, seeded from the run's seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_device(cfg: RunConfig) -> torch.device:
    """The torch device of a run (``--device``, resolved here: ``auto`` is a CUDA device where
    torch sees one, else the CPU), checked against ``--precision``: bf16 where the device has
    it. Every CPU autocasts to bf16 (emulated where it lacks the instructions: slower, not
    refused)."""
    device = validate.run_device(cfg.training.device, "device")
    if cfg.training.precision != "bf16":
        return device
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(
            f"--precision bf16 on {device} ({torch.cuda.get_device_name(device)}): torch says this GPU "
            "does not support bfloat16; use --precision fp32"
        )
    if device.type == "mps" and not torch.backends.mps.is_macos_or_newer(14, 0):
        raise InputError("--precision bf16 on mps needs macOS 14 or newer; use --precision fp32")
    return device


def autocast(device: torch.device, precision: str):
    """bf16 autocast on `device` for ``--precision bf16``; fp32 (no autocast) otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def device_rng(device: torch.device) -> dict[str, torch.Tensor]:
    """The random state of `device`'s own generator (CUDA, MPS: dropout there draws from it),
    keyed by the device type; nothing for the CPU, whose state is saved as torch's."""
    if device.type == "cuda":
        return {"cuda": torch.cuda.get_rng_state(device)}
    if device.type == "mps":
        return {"mps": torch.mps.get_rng_state()}
    return {}


def random_state(model: Any, device: torch.device) -> dict:
    """Every random state a run draws from: torch's, numpy's, Python's, the `model`'s (shots,
    completion) and the `device`'s own."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "model": model.rng_state, **device_rng(device)}  # fmt: skip


def set_random_state(model: Any, device: torch.device, rng: dict) -> None:
    """Put back what :func:`random_state` took; a device's own state where the run is on a
    device of that type (a run trained on a GPU resumes on a CPU without it)."""
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    model.rng_state = rng["model"]
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)
    elif device.type == "mps" and "mps" in rng:
        torch.mps.set_rng_state(rng["mps"])
