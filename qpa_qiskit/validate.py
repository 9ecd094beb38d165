"""The one place where numbers, names and choices are checked.

Every public entry point (the run configuration, backends, the generator, the completion,
job stores) checks its inputs with these helpers, so a bad value gets the same clear
message everywhere: what is wrong, the value given, and what is accepted. numpy integers
and floats are accepted wherever Python ones are; ``bool`` is never taken for a number.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import InputError


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def integer(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (numpy integers too) within [minimum, maximum]."""
    out = _integer(value)
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum}")
    if maximum is not None:
        bounds.append(f"<= {maximum}")
    what = f"an integer {' and '.join(bounds)}".rstrip()
    if out is None or (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise InputError(f"{name} must be {what}, got {value!r}")
    return out


def switch(value: Any, name: str) -> bool:
    """True or False; nothing else (not 0/1, not "yes") is taken for a switch."""
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


def positive_int(value: Any, name: str) -> int:
    """An integer >= 1."""
    out = _integer(value)
    if out is None or out < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return out


def number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> float:
    """A finite real number, >= minimum, > above, <= maximum (each when given)."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    out = float(value) if ok else math.nan
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum:g}")
        ok = ok and out >= minimum
    if above is not None:
        bounds.append(f"> {above:g}")
        ok = ok and out > above
    if maximum is not None:
        bounds.append(f"<= {maximum:g}")
        ok = ok and out <= maximum
    if not ok or not math.isfinite(out):
        extra = f" {' and '.join(bounds)}" if bounds else ""
        raise InputError(f"{name} must be a finite number{extra}, got {value!r}")
    return out


def positive_number(value: Any, name: str) -> float:
    """A finite number > 0."""
    return number(value, name, above=0.0)


def perturbation(value: Any, name: str) -> float:
    """An angle ε in (0, π): a perturbation θ ± ε of circuit angles. The probabilities repeat
    every 2π in each angle, so at ε = π the two perturbed circuits are the same one."""
    out = positive_number(value, name)
    if out >= math.pi:
        raise InputError(
            f"{name} must be a finite number > 0 and < π (3.14159...), got {value!r}: the probabilities "
            "repeat every 2π in each angle, so at ε = π the circuits at θ + ε and θ - ε are the same "
            "and the estimate is 0, and beyond π it points the other way"
        )
    return out


def one_of(value: Any, name: str, choices: Iterable[str]) -> str:
    """One of `choices`, exactly."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def positive_ints(values: Any, name: str, *, allow_empty: bool = False) -> tuple[int, ...]:
    """A sequence of integers >= 1 (hidden widths, ...)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InputError(f"{name} must be a list of positive integers, got {values!r}")
    out = tuple(_integer(v) for v in values)
    if any(v is None or v < 1 for v in out) or (not out and not allow_empty):
        raise InputError(f"{name} must be a list of positive integers, got {list(values)!r}")
    return out  # type: ignore[return-value]


LAYOUTS = ("noise_aware", "preset")  # the named layouts of the backends (backends/layout.py)


def layout(value: Any, name: str = "layout") -> str | tuple[int, ...]:
    """A backend's ``layout``: ``"noise_aware"``, ``"preset"``, or the physical qubit of each
    circuit qubit, distinct non-negative integers (a list, or text such as ``"3,4,5"``)."""
    accepted = f"{', '.join(LAYOUTS)}, or distinct physical qubits such as 3,4,5 (circuit qubit 0 first)"
    if isinstance(value, str):
        text = value.strip()
        if text in LAYOUTS:
            return text
        if not text or not all(part.strip().isdigit() for part in text.split(",")):
            raise InputError(f"{name} must be {accepted}; got {value!r}")
        value = [int(part) for part in text.split(",")]
    if isinstance(value, (bytes, bool)) or not isinstance(value, Sequence):
        raise InputError(f"{name} must be {accepted}; got {value!r}")
    qubits = tuple(_integer(v) for v in value)
    if not qubits or any(q is None or q < 0 for q in qubits):
        raise InputError(f"{name} must be {accepted}; got {list(value)!r}")
    if len(set(qubits)) != len(qubits):
        twice = sorted({q for q in qubits if qubits.count(q) > 1})
        raise InputError(f"{name} places two circuit qubits on physical qubit(s) {twice}; give distinct ones")
    return qubits  # type: ignore[return-value]


def names(values: Any, name: str) -> tuple[str, ...]:
    """A non-empty sequence of non-empty strings (module names, ...)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise InputError(f"{name} must be a non-empty list of names, got {values!r}")
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise InputError(f"{name} must be a non-empty list of names, got {list(values)!r}")
    return tuple(values)


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_UNITS.update({"tb": 10**12, "tib": 2**40})


def memory_size(value: Any, name: str) -> int:
    """Bytes: a positive integer, or a string such as "12GiB", "500MB" (units B, kB, MB, GB, KiB,
    MiB, GiB)."""
    accepted = 'a positive number of bytes or a size such as "12GiB" or "500MB"'
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(digits) :]
        try:
            amount = float(digits)
        except ValueError:
            amount = math.nan
        if unit not in _UNITS or not math.isfinite(amount) or amount <= 0:
            raise InputError(f"{name} must be {accepted}, got {value!r}")
        return int(amount * _UNITS[unit])
    out = _integer(value)
    if out is None or out < 1:
        raise InputError(f"{name} must be {accepted}, got {value!r}")
    return out


def torch_device(value: Any, name: str) -> str:
    """A torch device that exists here: "cpu", or "cuda"/"cuda:<index>" with a CUDA device."""
    # lazy: torch (seconds); the command line's parsers import this module
    import torch

    accepted = "'cpu', or 'cuda' / 'cuda:<index>' where torch sees a CUDA device"
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"{name} must be {accepted}, got {value!r}") from None
    if device.type == "cpu":
        return "cpu"
    if device.type != "cuda":
        raise InputError(f"{name} must be {accepted}, got {value!r}")
    return str(_cuda_device(device.index, value, name))


DEVICE_FORMS = "auto, cpu, cuda, cuda:<index> (cuda:0, cuda:1, ...) or mps"


def device_form(value: Any, name: str, *, auto: bool = True) -> str:
    """The written form of a device, checked without torch (a configuration is checked on any
    machine, and a run trained on a GPU is evaluated on a CPU): ``auto`` (with `auto`),
    ``cpu``, ``cuda``, ``cuda:<index>`` or ``mps``; returned stripped and in lower case.
    Whether the device exists here is :func:`run_device`'s question, when a run starts."""
    forms = DEVICE_FORMS if auto else DEVICE_FORMS.removeprefix("auto, ")
    text = value.strip().lower() if isinstance(value, str) else None
    base, sep, index = (text or "").partition(":")
    if text in (*(("auto",) if auto else ()), "cpu", "cuda", "mps") or (
        base == "cuda" and sep and index.isdigit() and index.isascii()
    ):
        return text if not sep else f"cuda:{int(index)}"
    raise InputError(f"{name} must be {forms}; got {value!r}")


def torch_sees(kind: str = "cuda") -> str:
    """What torch sees here of `kind` ("cuda" or "mps"), for a message about a device that is
    not there: torch's version and build, the CUDA devices and ``CUDA_VISIBLE_DEVICES``, or MPS."""
    # lazy: torch (seconds); the command line's parsers import this module
    import os

    import torch

    if kind == "mps":
        built = "built with MPS" if torch.backends.mps.is_built() else "built without MPS"
        return f"torch {torch.__version__} ({built}) sees no MPS device here"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    about = [f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"]
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        about.append(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}")
    seen = "no CUDA device" if count == 0 else f"{count} CUDA device(s)"
    return f"torch {torch.__version__} ({'; '.join(about)}) sees {seen} here"


def _cuda_device(index: int | None, value: Any, name: str, instead: str = "'cpu'"):
    # lazy: torch (seconds); the command line's parsers import this module
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise InputError(f"{name}={value!r}, but {torch_sees()}; use {instead}")
    index = 0 if index is None else index
    if index >= count:
        raise InputError(f"{name}={value!r}, but {torch_sees()}: cuda:0..cuda:{count - 1}; give one of those")
    return torch.device("cuda", index)


def run_device(value: Any, name: str = "device"):
    """The torch device a run uses for `value` (:func:`device_form`): ``auto`` is the first
    CUDA device torch sees (inside a Ray task: the GPU Ray gave it), else the CPU; ``cuda``,
    ``cuda:<index>`` and ``mps`` must exist here, or the error says what torch sees."""
    # lazy: torch (seconds); the command line's parsers import this module
    import torch

    text = device_form(value, name)
    if text == "auto":
        cuda = torch.cuda.is_available() and torch.cuda.device_count() > 0
        return torch.device("cuda", 0) if cuda else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"{name}='mps', but {torch_sees('mps')}; use 'cpu' or 'auto'")
        return torch.device("mps")
    _, _, index = text.partition(":")
    return _cuda_device(int(index) if index else None, value, name, "'cpu' or 'auto'")
