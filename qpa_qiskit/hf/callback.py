"""``QPACallback``: QPA's own diagnostics in a ``Trainer``'s logs.

At every logging step it adds, under ``qpa/``, how far the probability source moved from its
start (the angles' largest and RMS change, the TVD between the initial and the current ideal
distribution) and how different the generated chunks are (``chunk_spread``: 0 when the adapter
is one chunk repeated), the figures ``qpa train`` writes to ``metrics.jsonl``; and it keeps the
model's ``step`` (what its saved folders and exports record) at ``Trainer``'s. They reach every
callback after it: the console, the log history and, with :meth:`QPACallback.add_to`, the
``report_to`` integrations (TensorBoard, W&B, ...), which ``Trainer`` places before the
callbacks it is given.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from .model import QPAModel

PREFIX = "qpa/"


class QPACallback(TrainerCallback):
    """Adds the QPA model's diagnostics to ``Trainer``'s logs (see the module docstring) and keeps
    the model's ``step`` (what its saved folders and exports record) at ``Trainer``'s."""

    def add_to(self, trainer: Any) -> QPACallback:
        """Put this callback first in `trainer`'s callbacks, so the ``report_to`` integrations
        (which ``Trainer`` adds before any callback it is given) log its figures too."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any):
        if isinstance(model, QPAModel):
            model.step = state.global_step  # what save_pretrained, export and checkpoints record

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, model: Any = None, **_: Any
    ):
        if logs is None or not isinstance(model, QPAModel) or "loss" not in logs:
            return  # the figures go with the training logs, not the final summary or evaluations
        figures = {PREFIX + k: v for k, v in model.qpa_diagnostics().items()}
        logs.update(figures)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(figures)
