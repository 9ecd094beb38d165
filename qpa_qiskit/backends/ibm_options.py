"""The settings of IBM Quantum jobs that a configuration checks: execution modes by name and
the runtime Sampler's options. Apart from :mod:`.ibm` because they import no qiskit: the run
configuration (:mod:`.config`) checks them when a section is built, and ``import
qpa_qiskit.train.run_config`` stays light (qiskit-ibm-runtime is imported only when options are given)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError

EXECUTION_MODES = ("job", "batch", "session")  # the runtime's execution modes, by name


def _option_names(model: Any) -> str:
    return ", ".join(model.model_fields)


def _validation_message(exc: Any, model: Any) -> str:
    """One line for a pydantic ValidationError of a runtime options model: each field by its
    dotted path, what is wrong, and for an unknown name the names accepted there."""
    parts = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error.get("loc", ()))
        if error.get("type") == "extra_forbidden":
            owner = model
            for name in error.get("loc", ())[:-1]:
                field = owner.model_fields.get(name) if hasattr(owner, "model_fields") else None
                owner = getattr(field, "annotation", None)
            accepted = f" (accepted: {_option_names(owner)})" if hasattr(owner, "model_fields") else ""
            parts.append(f"unknown option {path!r}{accepted}")
        else:
            parts.append(f"{path or 'options'}: {error.get('msg')} (got {error.get('input')!r})")
    return "; ".join(parts)


def sampler_options(value: Any, what: str = "sampler_options") -> Any:
    """`value` as the runtime's own ``qiskit_ibm_runtime.options_models.SamplerOptions``
    (the options of the client-side Sampler), validated by that model; None stays None.

    Accepted: that model (copied), a mapping, JSON text (``'{"default_shots": 100}'``) or the
    path of a JSON file. The top-level ``qiskit_ibm_runtime.SamplerOptions`` (the options of
    the deprecated ``SamplerV2``) is refused by name. Raises InputError in one line."""
    if value is None:
        return None
    # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
    import qiskit_ibm_runtime
    from pydantic import ValidationError
    from qiskit_ibm_runtime.options_models import SamplerOptions

    accepted = (
        "give qiskit_ibm_runtime.options_models.SamplerOptions, a dict, JSON text or a JSON file "
        f"of its fields ({_option_names(SamplerOptions)})"
    )
    if isinstance(value, SamplerOptions):
        return value.model_copy(deep=True)
    if isinstance(value, qiskit_ibm_runtime.SamplerOptions):
        raise InputError(
            f"{what}: qiskit_ibm_runtime.SamplerOptions is the options class of the deprecated "
            f"SamplerV2, which the client-side Sampler does not take; {accepted}"
        )
    if isinstance(value, (str, Path)):
        text = str(value).strip()
        if not text.startswith("{"):
            try:
                text = Path(text).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(
                    f"{what}: {str(value)!r} is neither JSON text nor a readable JSON file "
                    f"({type(exc).__name__}: {exc}); {accepted}"
                ) from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{what} is not valid JSON ({exc}); {accepted}") from None
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a mapping of options, got {type(value).__name__}; {accepted}")
    try:
        return SamplerOptions(**value)
    except ValidationError as exc:
        message = _validation_message(exc, SamplerOptions)
        raise InputError(f"{what} refused by the runtime's SamplerOptions: {message}") from None
    except TypeError as exc:  # keys that are not strings
        raise InputError(f"{what}: {exc}; {accepted}") from None
