"""What a QPA model's state is on disk: one safetensors file, self-describing.

``model.safetensors`` (the name transformers' ``Trainer`` gives a checkpoint of a model that is
not a ``PreTrainedModel``, so its checkpoints and ``save_pretrained`` folders are the same
format) holds, by their names in the :class:`~qpa_qiskit.hf.QPAModel`:

* the trainable tensors only (the generator's angles and mapping, an adapter's own trained
  tensors), never the base model's weights nor the generated adapter, which are rebuilt;
* ``qpa.config``: the configuration, the backend and the seed as JSON text in a uint8 tensor
  (everything that is not trained is rebuilt from these, as ``qpa train --resume`` rebuilds it);
* ``qpa.rng_state``: the model's own random states (the backend's shot sampler, the label and
  completion streams) likewise, so sampled evaluations and resumed training continue exactly.

``save_pretrained`` also writes ``qpa_config.json``, the same description for a reader. A run
folder of ``qpa train`` (``config.json``, ``checkpoint.pt``) is read into the same state.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save

from ..errors import InputError, StateError
from ..train.folder import CHECKPOINT, CONFIG, RunFolder
from ..train.run_config import RunConfig

WEIGHTS = "model.safetensors"
DESCRIPTION = "qpa_config.json"
CONFIG_KEY = "qpa.config"
RNG_KEY = "qpa.rng_state"
FORMAT = 1
# a run checkpoint's names ("peft.<name>", "generator.<name>") -> the QPA model's
RUN_PREFIXES = {"peft.": "peft_model.", "generator.": "generator."}
# backend options that change no result, left out when a saved model is read as a run
NEUTRAL_OPTIONS = {"connect", "memory_budget"}
# backend options a run configuration holds only at their defaults (qpa train sets no other)
FIXED_OPTIONS = {"optimization_level": 1, "seed_transpiler": 0}


def _encode(value: Any) -> Any:
    """`value` with its tensors and arrays as JSON (uint8 bytes as base64)."""
    if isinstance(value, torch.Tensor):
        return {"__tensor__": base64.b64encode(value.to(torch.uint8).numpy().tobytes()).decode()}
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            data = bytearray(base64.b64decode(value["__tensor__"]))
            return (
                torch.frombuffer(data, dtype=torch.uint8).clone()
                if data
                else torch.empty(0, dtype=torch.uint8)
            )
        if "__array__" in value:
            return np.asarray(value["__array__"], dtype=value["dtype"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def json_tensor(value: Any) -> torch.Tensor:
    """`value` as JSON text in a uint8 tensor: what safetensors can hold besides numbers."""
    return torch.frombuffer(bytearray(json.dumps(_encode(value)).encode()), dtype=torch.uint8).clone()


def tensor_json(tensor: torch.Tensor, what: str) -> Any:
    try:
        return _decode(json.loads(bytes(tensor.to(torch.uint8).tolist()).decode()))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"{what} is not the JSON a QPA model writes ({type(exc).__name__}: {exc})") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, read whole before anything is loaded from it."""
    if not path.is_file():
        raise StateError(f"{path} is missing: the QPA model's state is not there")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors' own errors: truncated header, bad offsets, ...
        raise StateError(
            f"cannot read {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): it "
            "is truncated or corrupt; nothing was loaded. Restore it, or save the model again"
        ) from None


def weights_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """`state` as the bytes of a safetensors file (what ``Trainer`` writes for it)."""
    return save({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata={"format": "pt"})


def read_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], Any]:
    """(description, trainable tensors by the QPA model's names, the model's random states) of
    a ``save_pretrained`` folder, a ``Trainer`` checkpoint of a QPA model, or a ``qpa train``
    run folder (its description then holds its :class:`~qpa_qiskit.train.run_config.RunConfig` as
    ``run_config`` and its step)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"{folder} is not a folder; give a folder written by QPAModel.save_pretrained, Trainer or "
            "qpa train"
        )
    if (folder / WEIGHTS).exists():
        tensors = read_weights(folder / WEIGHTS)
        if CONFIG_KEY not in tensors:
            raise InputError(
                f"{folder / WEIGHTS} holds no {CONFIG_KEY}: it is not a QPA model's state (a plain model's "
                "weights?). Give a folder written by QPAModel.save_pretrained or by Trainer on a QPA model"
            )
        description = tensor_json(tensors.pop(CONFIG_KEY), f"{CONFIG_KEY} of {folder / WEIGHTS}")
        rng = (
            tensor_json(tensors.pop(RNG_KEY), f"{RNG_KEY} of {folder / WEIGHTS}")
            if RNG_KEY in tensors
            else None
        )
        return description, tensors, rng
    if (folder / CONFIG).exists():
        return _read_run(folder)
    raise InputError(
        f"{folder} holds no QPA model: neither {WEIGHTS} (QPAModel.save_pretrained, Trainer) nor {CONFIG} "
        f"and {CHECKPOINT} (qpa train)"
    )


def _read_run(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], Any]:
    cfg = RunFolder.stored_config(folder)
    if not (folder / CHECKPOINT).exists():
        raise InputError(
            f"{folder} has no checkpoint yet: it has not been trained. Train it first with "
            f"'qpa train {folder} --resume'"
        )
    state: dict[str, Any] = {}
    RunFolder(folder, lambda m: None).load_checkpoint(state.update)
    try:
        trainable = {model_tensor_name(n): t for n, t in state["trainable"].items()}
        rng, step = state["rng"]["model"], int(state["step"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{folder / CHECKPOINT} lacks {exc}: it is not a qpa train checkpoint") from None
    description = {"format": FORMAT, "run_config": cfg.to_dict(), "seed": cfg.training.seed, "step": step,
                   "base_model": cfg.task.model}  # fmt: skip
    return description, trainable, rng


def holds_saved_model(folder: str | Path) -> bool:
    """`folder` holds a saved QPA model (``save_pretrained``, a ``Trainer`` checkpoint), not a run."""
    folder = Path(folder)
    return (folder / WEIGHTS).is_file() and not (folder / CONFIG).exists()


def saved_model_as_run(folder: str | Path) -> tuple[RunConfig, dict[str, torch.Tensor], Any, int]:
    """A saved QPA model read as ``qpa eval`` and ``qpa export`` read a run at its checkpoint:
    (its run configuration, its trainable tensors by a run checkpoint's names, the model's
    random states, its step, 0 where not recorded). Refused where a run cannot describe it."""
    folder = Path(folder)
    described, tensors, rng = read_folder(folder)
    model = described.get("model")
    if not model:
        raise InputError(
            f"{folder} does not name its base model (it was built on a model without a name or path), so "
            "qpa cannot load it; load it in Python with QPAModel.from_pretrained(base_model, folder)"
        )
    settings = {**(described.get("config") or {}), "model": model, "seed": described.get("seed", 0)}
    backend = described.get("backend")
    if backend is not None:
        options = {k: v for k, v in backend.get("options", {}).items() if k not in NEUTRAL_OPTIONS}
        fixed = {k: v for k, v in options.items() if k in FIXED_OPTIONS and v != FIXED_OPTIONS[k]}
        if backend.get("shots") is not None:
            fixed["shots"] = backend["shots"]
        if fixed:
            raise InputError(
                f"{folder} was saved with backend settings a qpa run cannot hold ({fixed}; a run takes "
                "shots_factor and the transpiler's defaults); load it in Python with QPAModel.from_pretrained"
            )
        sampler = options.pop("sampler_options", None)
        settings.update({k: v for k, v in options.items() if k not in FIXED_OPTIONS},
                        backend=backend["spec"], shots_factor=backend.get("shots_factor"))  # fmt: skip
        if sampler is not None:
            settings["sampler_options"] = sampler if isinstance(sampler, str) else json.dumps(sampler)
    cfg = RunConfig.from_dict(settings, source=f"the QPA model in {folder}")
    run_names = {f"{prefix}{name[len(own):]}": t for name, t in tensors.items()
                 for prefix, own in RUN_PREFIXES.items() if name.startswith(own)}  # fmt: skip
    return cfg, run_names, rng, int(described.get("step") or 0)


def model_tensor_name(name: str) -> str:
    """A trainable tensor's name in a run checkpoint ("peft.<n>") -> its name in the QPA model."""
    for prefix, replacement in RUN_PREFIXES.items():
        if name.startswith(prefix):
            return replacement + name[len(prefix) :]
    raise StateError(f"a checkpoint tensor named {name!r}, which no QPA model holds")


def write_description(folder: Path, description: dict[str, Any]) -> None:
    (folder / DESCRIPTION).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
