"""``QPAConfig``: a QPA adapter's settings in one flat object, as peft's ``LoraConfig`` is.

Its fields are the adapter's (:class:`~qpa_qiskit.adapters.config.AdapterConfig`) and the
generator's (:class:`~qpa_qiskit.generator.config.GeneratorConfig`), under the names ``qpa train``
gives them, so a configuration moves between the command line, a run folder and Python code
unchanged. It is not a second description of those settings: the fields are the sections' own
(inherited), and every check is the run configuration's (:class:`~qpa_qiskit.train.run_config.RunConfig`),
the one place that validates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..adapters.config import AdapterConfig
from ..errors import InputError
from ..generator.config import PRESETS, GeneratorConfig
from ..train.run_config import RunConfig

ADAPTER_FIELDS = tuple(f.name for f in dataclasses.fields(AdapterConfig))
GENERATOR_FIELDS = tuple(f.name for f in dataclasses.fields(GeneratorConfig))


@dataclass
class QPAConfig(GeneratorConfig, AdapterConfig):  # this order: the adapter's fields first
    """The adapter and its generator, flat: ``QPAConfig(method="qpa-lora", rank=4,
    chunk_size=2048, reps=8)``. ``method`` may be any of ``qpa train --method``'s: a classical
    peft method (``lora``) has no generator and takes no generator setting but its defaults.

    With ``preset="paper"`` the fields left at their defaults take the preset's values; a field
    given otherwise than the preset sets it is refused, as on the command line.
    """

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset in PRESETS:
            defaults = {f.name: _default(f) for f in dataclasses.fields(self)}
            for name, value in PRESETS[self.preset].items():
                if getattr(self, name) == defaults[name]:
                    setattr(self, name, value)
        run = self.run_config()  # every check, across the two sections too
        for name in (*ADAPTER_FIELDS, *GENERATOR_FIELDS):  # the values as the checks normalised them
            setattr(self, name, run.get(name))

    def run_config(self, **changes: Any) -> RunConfig:
        """The run configuration these settings (and `changes`, such as the backend's) describe;
        a run's length is not among them, so it is at least ``circuit_every`` (a run trained
        with ``qpa train --circuit-every 50 --steps 300`` loads here)."""
        steps = RunConfig().training.steps
        if isinstance(self.circuit_every, int):  # a value of another type is refused by the checks
            steps = max(steps, self.circuit_every)
        return RunConfig().replace(**{"steps": steps, **self.to_dict(), **changes})

    @property
    def adapter(self) -> AdapterConfig:
        """The adapter's section of these settings."""
        return AdapterConfig(**{n: getattr(self, n) for n in ADAPTER_FIELDS})

    @property
    def generator(self) -> GeneratorConfig:
        """The generator's section of these settings."""
        return GeneratorConfig(**{n: getattr(self, n) for n in GENERATOR_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (JSON-ready), what ``save_pretrained`` records."""
        return {n: _plain(getattr(self, n)) for n in (*ADAPTER_FIELDS, *GENERATOR_FIELDS)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "the QPA configuration") -> QPAConfig:
        """From :meth:`to_dict`'s mapping; unknown keys are refused with the accepted ones."""
        if not isinstance(data, dict):
            raise InputError(f"{source} must be a mapping of settings, got {type(data).__name__}")
        unknown = sorted(set(data) - {*ADAPTER_FIELDS, *GENERATOR_FIELDS})
        if unknown:
            accepted = ", ".join((*ADAPTER_FIELDS, *GENERATOR_FIELDS))
            raise InputError(f"{source}: unknown setting(s) {unknown}; accepted: {accepted}")
        try:
            return cls(**data)
        except TypeError as exc:  # a value of the wrong structure
            raise InputError(f"{source}: {exc}") from None

    @classmethod
    def from_run_config(cls, cfg: RunConfig) -> QPAConfig:
        """The adapter and generator settings of a run (``qpa train``'s ``config.json``)."""
        return cls(**{n: cfg.get(n) for n in (*ADAPTER_FIELDS, *GENERATOR_FIELDS)})

    def differences(self, other: QPAConfig) -> dict[str, tuple[Any, Any]]:
        """Field name -> (this value, other value) for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
