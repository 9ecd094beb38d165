"""What ``qpa eval RUN`` reports: a run's perplexity at its checkpoint, read from its folder
alone, with its trainable counts and its generator's diagnostics.

Above the trainer (it opens the run read-only, :meth:`~qpa_qiskit.train.Run.open`); studies
call it too, so they report the same number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..generator.core import chunk_spread
from ..models import LoadedModel
from .trainer import Run


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    *,
    overrides: dict[str, Any] | None = None,
    loaded: LoadedModel | None = None,
    texts: dict[str, str] | None = None,
    counterfactual: str | None = None,
    progress: bool = False,
) -> dict:
    """What ``qpa eval RUN`` reports: the perplexity of a run's adapter at its checkpoint,
    read from the folder alone (studies call this too, so they report the same number), with
    the trainable counts and the generator's diagnostics (how far its probability source moved;
    with random labels, how far one label draw's weights are from the final ones; how different
    the generated chunks are, ``chunk_spread``).
    `counterfactual` (``qpa eval --probabilities``) scores the adapter generated from other
    probabilities: uniform, permuted or fixed-random. `progress`: a bar of the windows scored."""
    with Run.open(run_dir, overrides=overrides, for_training=False, loaded=loaded, texts=texts) as run:
        return evaluate_opened(run, split, counterfactual, progress=progress)


def evaluate_opened(run: Run, split: str = "test", counterfactual: str | None = None, *,
                    progress: bool = False) -> dict:  # fmt: skip
    """What :func:`evaluate_run` reports, of a run already open at its checkpoint (a study
    scores its dev split, its test split and its measures on one opened run)."""
    run.require_checkpoint()
    result = run.evaluate(split, counterfactual, progress=progress)
    result.update(method=run.cfg.adapter.method, step=run.step, counts=run.model.counts())
    generator = run.model.generator
    if generator is not None:
        diagnostics = run.model.diagnostics()
        if run.cfg.generator.labels == "random" and run.cfg.adapter.generator_kind == "qpa":
            diagnostics["label_spread"] = generator.label_spread()
        with torch.no_grad():
            diagnostics["chunk_spread"] = chunk_spread(generator.final_weights(), generator.chunk_size)
        result["diagnostics"] = diagnostics
    return result
