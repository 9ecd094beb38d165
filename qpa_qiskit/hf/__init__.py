"""QPA in the Hugging Face ecosystem: a peft-style model (:class:`QPAModel`,
:func:`get_qpa_model`) and its flat configuration (:class:`QPAConfig`) that transformers'
``Trainer``, TRL's ``SFTTrainer`` and accelerate train, checkpoint, resume and scale out, and a
``Trainer`` callback that logs QPA's own diagnostics (:class:`QPACallback`). The manual is
``docs/huggingface.md``.

The names are imported on first use (PEP 562 ``__getattr__``): they import torch, peft and
transformers.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".callback": "QPACallback",
    ".config": "QPAConfig",
    ".model": "QPAModel get_qpa_model",
})  # fmt: skip
