"""QPA in the Hugging Face ecosystem: a peft-style model (:class:`QPAModel`,
:func:`get_qpa_model`) and its flat configuration (:class:`QPAConfig`) that transformers'
``Trainer``, TRL's ``SFTTrainer`` and accelerate train, checkpoint, resume and scale out, and a
``Trainer`` callback that logs QPA's own diagnostics (:class:`QPACallback`). The manual is
``docs/huggingface.md``.

The names are imported on first use (PEP 562 ``__getattr__``): they import torch, peft and
transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

# public name -> the submodule that defines it
_LAZY: dict[str, str] = {
    "QPACallback": "callback",
    "QPAConfig": "config",
    "QPAModel": "model",
    "get_qpa_model": "model",
}

if TYPE_CHECKING:  # what type checkers and editors see
    from .callback import QPACallback
    from .config import QPAConfig
    from .model import QPAModel, get_qpa_model


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = ["QPACallback", "QPAConfig", "QPAModel", "get_qpa_model"]
