"""Backend specs: ``"<family>:<device>"`` read against every registered family.

Why a module of its own: spec parsing needs every family registered, so it imports every
family module (each registers its family with :func:`.family.register` on import), and sits
above them; the contract (:mod:`.family`) below them names none. A new family is a new
module and one import here. :func:`family_class` resolves a spec to its family class without
building a backend, for the checks of a configuration that ask what a backend will be (does it
run remotely, does it simulate a noise model).
"""

from __future__ import annotations

import difflib

from ..credentials import redact
from ..errors import SpecError

# the families register on import, in the order the accepted forms are listed
# isort: off
from . import statevector, aer_noisy, ibm  # noqa: F401

# isort: on
from .family import ALIASES, FAMILIES, Family


def spec_forms() -> str:
    """The accepted spec forms of every registered family, for error messages."""
    return ", ".join(form for family in FAMILIES.values() for form in family.forms)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``(family, device_name)`` of a backend spec, the device name canonical (or None).

    ``"ideal"`` -> ``("statevector", None)``, ``"aer_noisy:Fake_Brisbane"`` ->
    ``("aer_noisy", "fake_brisbane")``, ``"ibm:ibm_torino"`` -> ``("ibm", "ibm_torino")``.
    Raises SpecError naming the accepted forms (and close matches) for anything else.
    """
    if not isinstance(spec, str):
        raise SpecError(f"a backend spec is a string, got {type(spec).__name__}; accepted: {spec_forms()}")
    text = spec.strip()
    head, _, rest = text.partition(":")
    family = family_named(head)
    if family is None:
        names = [*ALIASES, *(f"{n}:" for n, f in FAMILIES.items() if f.needs_device)]
        close = difflib.get_close_matches(text.lower(), names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"unknown backend spec {redact(repr(spec))}.{hint} Accepted: {spec_forms()}")
    rest = rest.strip()
    if not family.needs_device:
        if rest:
            raise SpecError(
                f"{family.name!r} takes no device, got {redact(repr(spec))}. Accepted: {spec_forms()}"
            )
        return family.name, None
    if not rest:
        raise SpecError(
            f"{redact(repr(spec))} names no device: write {family.missing_device()}. Accepted: {spec_forms()}"
        )
    return family.name, family.device_name(rest)


def family_class(spec: str) -> type[Family]:
    """The :class:`Family` a backend spec names (SpecError as :func:`parse_spec`), to ask what it
    declares (``runs_remotely``, ``has_noise_model``, ...) without building the backend."""
    return FAMILIES[parse_spec(spec)[0]]


def family_named(name: str) -> type[Family] | None:
    """The :class:`Family` of a family name or alias (``"ideal"``, ``"IBM"``), None if none."""
    return FAMILIES.get(ALIASES.get(name.strip().lower(), ""))
