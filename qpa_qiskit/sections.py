"""The one form of a configuration section's field: its default, and its help as metadata.

Every section (:mod:`qpa_qiskit.data.config`, :mod:`qpa_qiskit.adapters.config`,
:mod:`qpa_qiskit.backends.config`, :mod:`qpa_qiskit.generator.config`,
:mod:`qpa_qiskit.train.config`) writes ``field(default=..., metadata=described("..."))``;
transformers' ``HfArgumentParser`` reads ``help`` and ``choices`` from that metadata when it
makes the command line. This module imports nothing, at the bottom of the layers.
"""

from __future__ import annotations

from typing import Any


def described(text: str, **extra: Any) -> dict[str, Any]:
    """A field's metadata: its `text` as the option's help, and `extra` (``choices``, ...)."""
    return {"help": text, **extra}
