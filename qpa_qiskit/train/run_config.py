"""The run configuration: one typed, nested description of a fine-tuning run.

It is the single source of every setting. ``qpa train`` and the other run commands build
their options from these dataclasses (transformers' ``HfArgumentParser``, already a
dependency, turns each field into ``--field-name`` with its type, default, choices and
help), ``config.json`` of a run is :meth:`RunConfig.to_dict`, ``qpa train RUN --config FILE``
reads the same layout from JSON or YAML, and every value is checked once, when a section is
built (``__post_init__``, through :mod:`qpa_qiskit.validate`). A section object that exists
is valid; ``dataclasses.replace`` checks again.

Sections (option names are flat on the command line and unique across sections); each that
configures one layer's code sits beside it, import-light, and is re-exported here:

* ``task``: the model and the data (:mod:`qpa_qiskit.data.config`);
* ``adapter``: the peft method and its size (:mod:`qpa_qiskit.adapters.config`);
* ``backend``: the circuit's backend, shots, engine, noise, IBM execution
  (:mod:`qpa_qiskit.backends.config`);
* ``generator``: the QPA circuit and mapping network, ``qpa-*`` methods
  (:mod:`qpa_qiskit.generator.config`);
* ``training``: optimisation, seed, precision, checkpoints (:mod:`qpa_qiskit.train.config`, beside it);
* ``eval``: how perplexity is scored (:mod:`qpa_qiskit.data.config`).

This module keeps only the composition (:class:`RunConfig`: the checks across sections, the
flat view, files; what a resumed run may change is :mod:`qpa_qiskit.train.resume`'s). It is
the bottom of the run wing (:mod:`qpa_qiskit.train`: configuration, folder, trainer,
evaluation, export); ``qpa_qiskit.config``, its old home, re-exports its names for old
imports. Importing it imports no torch, peft, transformers or qiskit, so ``qpa --help`` is
fast.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import validate
from ..adapters.config import TUNER_SETTINGS, AdapterConfig
from ..backends.config import BackendConfig
from ..choices import CIRCUIT_SOURCES, METHODS, SPSA_EPSILON, TRAINED_SOURCES, split_method
from ..data.config import EvalConfig, TaskConfig
from ..errors import InputError
from ..generator.config import PRESETS, GeneratorConfig
from .config import TrainingConfig

__all__ = [  # the sections beside their code, re-exported: the composition's parts
    "PRESETS",
    "QPA_ONLY",
    "SECTIONS",
    "TUNER_SETTINGS",
    "AdapterConfig",
    "BackendConfig",
    "EvalConfig",
    "GeneratorConfig",
    "RunConfig",
    "TaskConfig",
    "TrainingConfig",
    "check_given",
    "check_names",
]

SECTIONS: dict[str, type] = {
    "task": TaskConfig,
    "adapter": AdapterConfig,
    "backend": BackendConfig,
    "generator": GeneratorConfig,
    "training": TrainingConfig,
    "eval": EvalConfig,
}

# Settings of the qpa-* generator that other methods do not take, with their neutral values:
# RunConfig.for_method resets them when a study trains a classical method beside QPA.
QPA_ONLY = {"completion": "none", "shots_factor": None, "probabilities": "circuit", "circuit_lr": None,
            "preset": None, "gradient": "shift", "spsa_samples": 1, "spsa_epsilon": SPSA_EPSILON,
            "circuit_every": 1}  # fmt: skip
# the settings of how the circuit trains: what they mean where a run trains no circuit
CIRCUIT_TRAINING = {"gradient": "shift", "spsa_samples": 1, "spsa_epsilon": SPSA_EPSILON, "circuit_every": 1}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_given(names, methods, cfg: RunConfig | None = None, varied=()) -> None:
    """Refuse settings given explicitly (on the command line) that none of `methods` takes:
    an adapter size of another tuner (``--rank`` for ia3 or prefix), or a generator setting for
    methods without a generator. With the configuration `cfg` they will run, also those its
    values make meaningless (:func:`_meaningless`), unless the setting that decides it is among
    `varied` (a study's grid sets it per run). The message names the methods and the options
    that apply, or for each meaningless one why and what to do."""
    methods = list(methods)
    tuners = {split_method(m)[1] for m in methods}
    generated = any(split_method(m)[0] for m in methods)
    which = ", ".join(methods)
    problems = []
    for name in sorted(names):
        takers = TUNER_SETTINGS.get(name)
        if takers is not None and not tuners & set(takers):
            own = sorted({_option(k) for k, v in TUNER_SETTINGS.items() if tuners & set(v)})
            takes = f"{which} take(s) {', '.join(own)}" if own else f"{which} take(s) no adapter size"
            problems.append(
                f"{_option(name)} does not apply to {which} (it sets {', '.join(takers)} adapters and their "
                f"qpa-/lowrank- versions); {takes}"
            )
        if FIELD_SECTION.get(name) in ("backend", "generator") and not generated:
            problems.append(
                f"{_option(name)} sets the generator of the qpa-* and lowrank-* methods; {which} have none"
            )
        if name == "circuit_lr" and not any(split_method(m)[0] == "qpa" for m in methods):
            problems.append(f"--circuit-lr is the rate of a qpa-* method's circuit; {which} have none")
    if problems:
        problems = ["; ".join(problems) + ". Drop those options, or choose a method they apply to"]
    if cfg is not None:
        problems += _meaningless(names, methods, cfg, set(varied))
    if problems:
        raise InputError("; ".join(problems))


def _meaningless(names, methods, cfg: RunConfig, varied: set[str]) -> list[str]:
    """A message, each with its way out, for every setting in `names` that the values of `cfg`
    make meaningless for `methods` (it would be accepted and never read); the generator's and
    backend's settings only where a method has a generator (else :func:`check_given` refused
    them already)."""
    names = set(names)
    out = []
    generated = any(split_method(m)[0] for m in methods)
    qpa = any(split_method(m)[0] == "qpa" for m in methods)
    which = ", ".join(methods)
    gen = cfg.generator
    if generated and "activation" in names and "mapping" not in varied and not (qpa and gen.mapping == "mlp"):
        preset = f" (set by --preset {gen.preset})" if gen.preset else ""
        if not qpa:
            why, fix = f"{which} have no mapping network", "use a qpa-* method"
        else:
            why = f"mapping {gen.mapping!r}{preset} is a chain of Linear layers with none between them"
            fix = "drop --preset and use --mapping mlp" if gen.preset else "use --mapping mlp"
        out.append(
            f"--activation sets the activation between the layers of the qpa-* methods' mlp mapping; {why}. "
            f"Drop --activation, or {fix}"
        )
    backend = sorted(n for n in names if FIELD_SECTION.get(n) == "backend")
    reads_circuit = qpa and gen.probabilities in CIRCUIT_SOURCES
    if generated and backend and "probabilities" not in varied and not reads_circuit:
        flags = ", ".join(map(_option, backend))
        sources = " or ".join(CIRCUIT_SOURCES)
        if qpa:
            why = f"probabilities {gen.probabilities!r} evaluate no circuit (only {sources} do)"
            fix = f"use --probabilities {sources}"
        else:
            why, fix = f"{which} evaluate(s) no circuit (H @ C, both trained)", "use a qpa-* method"
        out.append(
            f"{flags} set(s) the backend that evaluates the qpa-* methods' circuit (its noise, shots, "
            f"device); {why}. Drop {flags}, or {fix}"
        )
    if "padded_block" in names and cfg.eval.eval_protocol != "padded-lines":
        out.append(
            f"--padded-block sets the line length of the padded-lines protocol; eval_protocol "
            f"{cfg.eval.eval_protocol!r} scores no padded lines. Drop --padded-block, or add --eval-protocol "
            "padded-lines"
        )
    options = json.loads(cfg.backend.sampler_options or "{}")
    if "sampler_options" in names and options.get("default_shots") is not None:
        out.append(
            f"--sampler-options sets default_shots {options['default_shots']}, which no job reads: every job "
            "of a run asks for the run's own shots (n_shot = ceil(c 2^N), --shots-factor c). Drop "
            "default_shots from --sampler-options, and set the shots with --shots-factor"
        )
    return out


def _section_of() -> dict[str, str]:
    out = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            out[f.name] = section
    return out


FIELD_SECTION: dict[str, str] = _section_of()


def check_names(names) -> None:
    """Refuse names that are no field of the configuration, with the accepted ones."""
    unknown = sorted(set(names) - set(FIELD_SECTION))
    if unknown:
        raise InputError(f"unknown setting(s) {unknown}; accepted: {', '.join(sorted(FIELD_SECTION))}")


# config.json files written before the backend had its own section hold its fields under
# "generator": (section read, section the field is in now) that from_dict still accepts
LEGACY = ("generator", "backend")


@dataclass
class RunConfig:
    """Every setting of a run, by section; see the module docstring."""

    task: TaskConfig = field(default_factory=TaskConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise InputError(f"section {name!r} must be a {cls.__name__}")
        gen = self.generator
        method = self.adapter.method
        kind = self.adapter.generator_kind
        circuit_lr = self.training.circuit_lr
        if kind != "qpa":
            if gen.completion != "none":
                raise InputError(f"completion {gen.completion!r} is for qpa-* methods only, not {method!r}")
            if self.backend.shots_factor is not None:
                raise InputError(f"shots_factor applies to the qpa-* methods only, not {method!r}")
            if gen.probabilities != "circuit":
                raise InputError(
                    f"probabilities {gen.probabilities!r} is a control of the qpa-* methods' generator; "
                    f"{method!r} reads no probabilities. Drop --probabilities, or use a qpa-* method"
                )
            if circuit_lr is not None:
                raise InputError(
                    f"circuit_lr is the learning rate of a qpa-* method's circuit; {method!r} has no "
                    "circuit. Drop --circuit-lr, or use a qpa-* method"
                )
            if gen.preset is not None:
                raise InputError(
                    f"preset {gen.preset!r} sets the qpa-* generator; {method!r} has none. Drop --preset, or "
                    "use a qpa-* method"
                )
        else:
            if gen.probabilities not in CIRCUIT_SOURCES:
                for name, value, neutral in (("shots_factor", self.backend.shots_factor, None),
                                             ("completion", gen.completion, "none")):  # fmt: skip
                    if value != neutral:
                        raise InputError(
                            f"{name} {value!r} applies to circuit evaluations; probabilities "
                            f"{gen.probabilities!r} evaluate no circuit (only "
                            f"{', '.join(CIRCUIT_SOURCES)} do)"
                        )
            if circuit_lr is not None and gen.probabilities not in TRAINED_SOURCES:
                raise InputError(
                    f"circuit_lr sets the rate of trained probabilities; probabilities {gen.probabilities!r} "
                    f"are not trained (only {', '.join(TRAINED_SOURCES)} are). Drop --circuit-lr"
                )
        self._check_circuit_training()
        if self.training.eval_every and self.task.dev_share is None:
            raise InputError(
                f"eval_every {self.training.eval_every} scores the dev split, and this configuration has "
                "none (dev_share None: a run created before the dev split existed). Drop --eval-every"
            )
        if kind != "lowrank" and gen.lowrank_k is not None:
            raise InputError(f"lowrank_k is the rank of the lowrank-* methods' generator, not of {method!r}")
        if gen.preset is not None:
            wrong = {k: v for k, v in PRESETS[gen.preset].items() if self.get(k) != v}
            if wrong:
                detail = "; ".join(f"it sets {k}={v!r}, given {self.get(k)!r}" for k, v in wrong.items())
                raise InputError(
                    f"preset {gen.preset!r} contradicts the settings given ({detail}). Drop those settings "
                    f"(the preset sets them), or drop --preset and give every setting yourself"
                )

    def _check_circuit_training(self) -> None:
        """The circuit's gradient and schedule (:data:`CIRCUIT_TRAINING`) only where a qpa-* run
        trains its circuit; the SPSA settings only with the SPSA gradient; the circuit at least
        once in the run."""
        gen = self.generator
        trains_circuit = self.adapter.generator_kind == "qpa" and gen.probabilities == "circuit"
        if not trains_circuit:
            why = (
                f"probabilities {gen.probabilities!r} train no circuit (only 'circuit' does)"
                if self.adapter.generator_kind == "qpa"
                else f"{self.adapter.method!r} has no circuit"
            )
            for name, neutral in CIRCUIT_TRAINING.items():
                if getattr(gen, name) != neutral:
                    raise InputError(
                        f"{name} {getattr(gen, name)!r} sets how a qpa-* run trains its circuit; {why}. Drop "
                        f"{_option(name)}, or train the circuit (a qpa-* method with --probabilities circuit)"
                    )
            return
        if gen.gradient != "spsa":
            for name in ("spsa_samples", "spsa_epsilon"):
                if getattr(gen, name) != CIRCUIT_TRAINING[name]:
                    raise InputError(
                        f"{name} {getattr(gen, name)!r} sets the SPSA gradient, and gradient is "
                        f"{gen.gradient!r}. Drop {_option(name)}, or add --gradient spsa"
                    )
        if gen.circuit_every > self.training.steps:
            raise InputError(
                f"circuit_every {gen.circuit_every} is larger than the run's {self.training.steps} steps: "
                f"the circuit would run only at the first step. Give --circuit-every at most "
                f"{self.training.steps}, or --probabilities frozen for a circuit measured once"
            )

    @property
    def reads_circuit(self) -> bool:
        """A qpa-* run whose probabilities come from the circuit on the backend."""
        return self.adapter.generator_kind == "qpa" and self.generator.probabilities in CIRCUIT_SOURCES

    # ------------------------------------------------------------------ flat view
    def flat(self) -> dict[str, Any]:
        """Every field by its (unique) name: the names of the command-line options."""
        return {k: v for section in SECTIONS for k, v in dataclasses.asdict(getattr(self, section)).items()}

    def get(self, name: str) -> Any:
        return getattr(getattr(self, FIELD_SECTION[name]), name)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with fields changed by name; every changed section is checked again. A
        ``preset`` among the changes brings its settings, under the other changes given."""
        check_names(changes)
        preset = changes.get("preset")
        if preset is not None:
            validate.one_of(preset, "preset", PRESETS)
            changes = {**PRESETS[preset], **changes}
        sections = {}
        for section in SECTIONS:
            mine = {k: v for k, v in changes.items() if FIELD_SECTION[k] == section}
            current = getattr(self, section)
            sections[section] = dataclasses.replace(current, **mine) if mine else current
        return RunConfig(**sections)

    def for_method(self, method: str, **changes: Any) -> RunConfig:
        """A copy for `method` with `changes`: a method without the QPA generator gets the
        neutral values of the settings only the qpa-* methods take (:data:`QPA_ONLY`), so a
        study can train classical peers from a QPA configuration."""
        validate.one_of(method, "method", METHODS)
        neutral = {} if method.startswith("qpa-") else dict(QPA_ONLY)
        if not method.startswith("lowrank-"):
            neutral["lowrank_k"] = None
        return self.replace(**{**neutral, "method": method, **changes})

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {section: dataclasses.asdict(getattr(self, section)) for section in SECTIONS}

    @classmethod
    def from_dict(cls, data: Any, source: str = "the configuration") -> RunConfig:
        """From the nested layout of ``config.json`` or a flat mapping of field names (a mix
        works too). Unknown keys are refused with the accepted ones; the backend's fields under
        "generator" (the layout before the backend section, :data:`LEGACY`) still load."""
        if not isinstance(data, dict):
            raise InputError(f"{source} must be a mapping of settings, got {type(data).__name__}")
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key in SECTIONS and isinstance(value, dict):
                for name, v in value.items():
                    if FIELD_SECTION.get(name) != key and (key, FIELD_SECTION.get(name)) != LEGACY:
                        accepted = ", ".join(f.name for f in dataclasses.fields(SECTIONS[key]))
                        raise InputError(
                            f"{source}: unknown setting {key}.{name}; accepted in {key}: {accepted}"
                        )
                    flat[name] = v
            elif key in FIELD_SECTION:
                flat[key] = value
            else:
                raise InputError(
                    f"{source}: unknown setting {key!r}; accepted: the sections {', '.join(SECTIONS)} "
                    f"or the fields {', '.join(sorted(FIELD_SECTION))}"
                )
        try:
            return RunConfig().replace(**flat)
        except TypeError as exc:  # a section given a value of the wrong structure
            raise InputError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        """A JSON or YAML file (by suffix: .yaml/.yml is YAML, anything else JSON)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(
                f"cannot read the configuration file {path} ({type(exc).__name__}: {exc})"
            ) from None
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                # lazy: PyYAML, only for a YAML file
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
            kind = "YAML" if path.suffix.lower() in (".yaml", ".yml") else "JSON"
            raise InputError(f"the configuration file {path} is not valid {kind}: {exc}") from None
        return cls.from_dict(data, source=str(path))

    def changes(self, other: RunConfig) -> dict[str, tuple[Any, Any]]:
        """Field name -> (this value, other value) for every field that differs."""
        mine, theirs = self.flat(), other.flat()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
