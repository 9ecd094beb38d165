"""A run's adapter as a plain peft adapter folder, usable with no qpa-qiskit at all.

``PeftModel.from_pretrained(base_model, out_dir)`` loads it: the generated weights are
materialised into peft's own tensors. The folder holds the adapter's tensors only, never the
base model's (a LoRA on a tied ``lm_head`` would otherwise carry the whole embedding matrix).
Its ``base_model_name_or_path`` is the base model's Hub id (the embedded model's
``HuggingFaceTB/SmolLM2-135M-Instruct``, the name given for others), so
``AutoPeftModelForCausalLM.from_pretrained(out_dir)`` loads it where that model is available;
``qpa_export.json`` keeps the local path the run loaded it from and says how to load it. A
method whose tuner is written here (``ffa``) needs its module imported first, which registers
the tuner with peft. The folder appears complete or not at all.

The top of the run wing, beside :mod:`.evaluation`: it opens a run read-only
(:meth:`~qpa_qiskit.train.Run.open`). ``qpa_qiskit.export`` is the function :func:`export`;
``qpa_qiskit/export.py``, this module's old home, re-exports its names for old imports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..adapters import TUNERS, AdaptedModel
from ..errors import InputError
from ..files import atomic_directory
from ..models import LoadedModel
from .trainer import Run


def loads_with(tuner: str) -> str:
    """How the exported folder loads, in words (written into ``qpa_export.json``)."""
    how = "PeftModel.from_pretrained(base_model, folder), or AutoPeftModelForCausalLM.from_pretrained(folder)"
    if TUNERS[tuner].loads_without_qpa:
        return how
    return f"{how} after 'import qpa_qiskit.adapters.ffa', which registers the {tuner} tuner with peft"


def base_model_note(loaded: LoadedModel) -> str | None:
    """What a user of the export should know about its base model, if anything."""
    if loaded.gguf_file is None:
        return None
    return (
        f"trained on {loaded.gguf_file} de-quantised to fp32 (from base_model_path); "
        f"{loaded.hub_id} on the Hub holds the full-precision weights, which differ slightly"
    )


def export(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the adapter of the run in `run_dir`, at its checkpoint, to the new folder `out_dir`.
    Written from the CPU whatever device the run trained on (a GPU-trained run exports on a
    laptop; the adapter's tensors are small)."""
    out = check_new_folder(out_dir)
    on_cpu = {"device": "cpu", "torch_device": None}
    with Run.open(run_dir, overrides=on_cpu, for_training=False) as run:
        run.require_checkpoint()
        run.label_final_weights()
        info = {
            "base_model": run.loaded.name,
            "base_model_id": run.loaded.hub_id,
            "base_model_path": run.loaded.source,
            "gguf_file": run.loaded.gguf_file,
            "base_model_note": base_model_note(run.loaded),
            "method": run.cfg.adapter.method,
            "step": run.step,
        }
        write_adapter(run.model, out, info)
    return out


def check_new_folder(out_dir: str | Path) -> Path:
    """`out_dir` as a path that an export may create: absent or an empty folder."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not empty; export into a new folder")
    return out


def write_adapter(model: AdaptedModel, out: Path, info: dict[str, Any]) -> None:
    """The plain peft folder `out` (absent or empty) with `model`'s adapter, generated weights
    materialised, and ``qpa_export.json``: `info` (``base_model_id`` is written into the
    adapter's config) with how it loads and the trainable counts. Whole or not at all."""
    out = check_new_folder(out)
    try:
        with atomic_directory(out) as tmp:
            model.save_adapter(tmp, base_model_name=info.get("base_model_id"))
            info = {**info, "loads_with": loads_with(model.cfg.tuner), "counts": model.counts()}
            (tmp / "qpa_export.json").write_text(json.dumps(info, indent=2))
    except OSError as exc:
        raise InputError(
            f"cannot write the adapter to {out} ({type(exc).__name__}: {exc}); check that its "
            "parent folder is writable and has free space"
        ) from None
