"""``QPAModel``: an adapted causal LM that behaves as a peft model does, for Hugging Face code.

peft cannot register a third-party method (``register_peft_method`` accepts only names already
in its ``PeftType`` enum), so a QPA adapter cannot *be* a peft method; this class makes it
*behave* like one. It is the :class:`~qpa_qiskit.adapters.AdaptedModel` (peft's own layers,
their generated tensors produced by the circuit and the mapping network on every training
step) with what peft users and transformers' ``Trainer`` call:

* ``forward`` with named arguments (``Trainer`` keeps the dataset columns a forward names);
* ``state_dict``/``load_state_dict`` of the QPA state alone (:mod:`.state`): the trainable
  tensors, the configuration and the model's random states, so a ``Trainer`` checkpoint is a
  few safetensors kilobytes, never the tied base weights safetensors refuses, and resumes exactly;
* ``generate``, ``print_trainable_parameters``, ``save_pretrained``/``from_pretrained``,
  ``merge_and_unload`` and ``export`` (the plain peft adapter ``qpa export`` writes).

Training mode draws a training step's adapter (a fresh label draw, fresh shots); evaluation
mode and ``generate`` use the trained adapter exactly as ``qpa eval`` does (the expected weights
over random labels; one sampled evaluation drawn from the model's random state, which is put
back afterwards, so every call sees the same adapter and training resumes unchanged).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..adapters import TUNERS, AdaptedModel
from ..backends import QPABackend
from ..errors import InputError
from ..files import atomic_write
from ..generator.core import chunk_spread
from ..models import LoadedModel
from ..train.export import write_adapter
from ..train.run_config import RunConfig
from .config import QPAConfig
from .state import (
    CONFIG_KEY,
    FORMAT,
    RNG_KEY,
    WEIGHTS,
    json_tensor,
    model_tensor_name,
    read_folder,
    tensor_json,
    weights_bytes,
    write_description,
)

NAMED_INPUTS = ("input_ids", "attention_mask", "labels", "inputs_embeds", "position_ids")


@dataclass
class PerTokenOutput(ModelOutput):
    """Per-token figures of a forward pass called with ``fused_lm_head=True`` (the fields of
    TRL's ``FusedCausalLMOutput`` that its ``SFTTrainer`` reads); zero where the label is -100."""

    loss: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    is_top1: torch.Tensor | None = None
    label_mask: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


class LoadResult(NamedTuple):
    """What ``load_state_dict`` returns (torch's own result has these two fields)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def backend_description(backend: QPABackend | None) -> dict[str, Any] | None:
    """A backend as JSON: its spec, shots and the options it was built with (objects such as a
    hardware loop or a runtime service are not recorded: they belong to one process)."""
    if backend is None:
        return None
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in backend.options.items()
               if isinstance(v, (str, int, float, bool, list, tuple)) or v is None}  # fmt: skip
    return {
        "spec": backend.spec,
        "shots_factor": backend.shots_factor,
        "shots": backend.shots,
        "options": options,
    }


def backend_from_description(description: dict[str, Any], seed: int | None) -> QPABackend:
    return QPABackend(
        description["spec"],
        shots_factor=description.get("shots_factor"),
        shots=description.get("shots"),
        seed=seed,
        **description.get("options", {}),
    )


class QPAModel(AdaptedModel):
    """A causal LM with a QPA (or any other) adapter of :data:`~qpa_qiskit.choices.METHODS`,
    usable where a peft model is; see the module docstring. Make one with :func:`get_qpa_model`
    or :meth:`from_pretrained`."""

    def __init__(
        self,
        model: nn.Module | LoadedModel,
        config: QPAConfig,
        backend: QPABackend | str | None = None,
        *,
        seed: int = 0,
    ) -> None:
        if not isinstance(config, QPAConfig):
            raise InputError(f"config must be a QPAConfig, got {type(config).__name__}")
        loaded = model if isinstance(model, LoadedModel) else None
        base = model.model if loaded is not None else model
        if not isinstance(base, nn.Module):
            raise InputError(
                f"model must be a torch module (a causal LM) or a LoadedModel, got {type(base).__name__}"
            )
        reads_circuit = config.run_config().reads_circuit
        if backend is None:
            backend = "statevector"
        if isinstance(backend, str):
            backend = QPABackend(backend, seed=seed) if reads_circuit else None
        elif backend is not None and not isinstance(backend, QPABackend):
            raise InputError(f"backend must be a QPABackend or a spec string, got {type(backend).__name__}")
        if not reads_circuit:
            backend = None  # a classical method, or a control that reads no circuit
        super().__init__(base, config.adapter, config.generator, backend, seed=seed)
        self.qpa_config = config
        self.qpa_backend = backend
        self.seed = seed
        self.base_model_name = loaded.hub_id if loaded is not None else _name_or_path(base)
        # the name qpa's commands load the base model by (qpa eval and qpa export of a saved model)
        self.model_name = loaded.name if loaded is not None else _name_or_path(base)
        self.step: int | None = None
        self._state_names = {model_tensor_name(n): n for n in self.trainable_parameters()}
        self._random_state_shared = False

    def __getattr__(self, name: str) -> Any:
        """What the base model has (``config``, ``generation_config``, ``get_input_embeddings``,
        ``gradient_checkpointing_enable``, ...), as peft's ``PeftModel`` forwards it."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "peft_model":
                raise
            return getattr(self.peft_model, name)

    # ------------------------------------------------------------------ forward and generate
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """The adapted model's forward pass (the base model's arguments, by name): in training
        mode with a training step's adapter, in evaluation mode with the trained one."""
        if kwargs.pop("fused_lm_head", False):
            return self._per_token(input_ids, attention_mask, labels, inputs_embeds, position_ids, **kwargs)
        named = dict(zip(NAMED_INPUTS, (input_ids, attention_mask, labels, inputs_embeds, position_ids),
                         strict=True))  # fmt: skip
        batch = {k: v for k, v in named.items() if v is not None} | kwargs
        if self.generator is None:
            return self.peft_model(**batch)
        if self.training:
            self._refuse_circuit_every()
            self._share_random_state()
            return self.forward_with(self.generated_tensors(), **batch)
        return self.forward_with(self.final_tensors_at_rest(), **batch)

    def __setattr__(self, name: str, value: Any) -> None:
        """A library that replaces a model's ``forward`` (TRL's ``SFTTrainer`` puts a fused LM head
        there, which runs the base model's body and its ``lm_head.weight`` directly) would train
        around the generated adapter: the QPA forward stays, and answers ``fused_lm_head=True``
        itself (:meth:`_per_token`)."""
        if name == "forward":
            return
        super().__setattr__(name, value)

    def _per_token(self, input_ids, attention_mask, labels, inputs_embeds, position_ids, *,
                   shift_labels=None, num_items_in_batch=None, **kwargs: Any) -> PerTokenOutput:  # fmt: skip
        """What TRL's fused LM head returns (its ``FusedCausalLMOutput`` fields), computed from
        this model's full logits: each next-token label's log-probability, the distribution's
        entropy, whether the label is the top token, the label mask, and the mean loss."""
        logits = self(input_ids, attention_mask, None, inputs_embeds, position_ids, **kwargs).logits.float()
        if shift_labels is None:
            logits, target = logits[:, :-1], labels[:, 1:]
        else:
            target = shift_labels
        target = target.to(logits.device)
        mask = target != -100
        log_all = torch.log_softmax(logits, dim=-1)
        log_probs = log_all.gather(-1, target.clamp(min=0)[..., None])[..., 0].masked_fill(~mask, 0.0)
        with torch.no_grad():
            entropy = -(log_all.exp() * log_all).sum(-1).masked_fill(~mask, 0.0)
            is_top1 = (logits.argmax(-1) == target) & mask
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return PerTokenOutput(loss=-log_probs.sum() / count, log_probs=log_probs, entropy=entropy,
                              is_top1=is_top1, label_mask=mask)  # fmt: skip

    def final_tensors_at_rest(self, probabilities: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The trained adapter's generated tensors (:meth:`final_tensors`), the model's random
        states put back afterwards: the same adapter on every call, as ``qpa eval`` computes
        it from a checkpoint, and training continues as if nothing had been drawn."""
        return self._at_rest(self.final_tensors, probabilities)

    def _at_rest(self, compute, *args: Any) -> Any:
        self._check_backend()
        state = self.rng_state
        try:
            return compute(*args)
        finally:
            self.rng_state = state

    @torch.no_grad()
    def qpa_diagnostics(self) -> dict[str, float]:
        """How far the probability source moved from its start (:meth:`diagnostics`) and how
        different the trained adapter's chunks are (``chunk_spread``); empty without a generator."""
        if self.generator is None:
            return {}
        vector = self._at_rest(self.generator.final_weights)
        return {**self.diagnostics(), "chunk_spread": chunk_spread(vector, self.generator.chunk_size)}

    @torch.no_grad()
    def materialize(self, probabilities: torch.Tensor | None = None) -> None:
        """Write the trained adapter into peft's own tensors (see :meth:`final_tensors_at_rest`)."""
        if self.generator is None:
            return
        params = dict(self.peft_model.named_parameters())
        for name, tensor in self.final_tensors_at_rest(probabilities).items():
            params[name].copy_(tensor)

    @torch.no_grad()
    def generate(self, *args: Any, **kwargs: Any):
        """The base model's ``generate`` with the trained adapter, generated once for the call
        (not once per token); its arguments are transformers' ``generate``'s."""
        self.materialize()
        return self.peft_model.generate(*args, **kwargs)

    def _check_backend(self) -> None:
        """A backend that needs an account opens it now: its error comes before any work."""
        if self.qpa_backend is not None:
            self.qpa_backend.connect()

    def _refuse_circuit_every(self) -> None:
        """circuit_every needs each optimiser step's index, which a forward pass does not have
        (``Trainer`` calls it once per micro-batch): refused for training, before any work. A
        model trained with it (``qpa train``) loads, evaluates and exports here as any other."""
        every = self.qpa_config.circuit_every
        if every != 1:
            raise InputError(
                f"circuit_every {every} runs the circuit once every {every} optimiser steps, and a "
                "QPAModel's forward pass does not know the step (Trainer calls it once per micro-batch). "
                f"Train with 'qpa train ... --circuit-every {every}' (its run folder loads here with "
                "QPAModel.from_pretrained), or build the model with circuit_every=1"
            )

    def _share_random_state(self) -> None:
        """Under torch.distributed (accelerate, DDP), every rank must generate the same adapter:
        at the first training step rank 0's random states (shots, labels, completion) go to every
        rank, which then draw alike; a backend that submits jobs to a service is refused (every
        rank would submit, and pay for, its own)."""
        if self._random_state_shared:
            return
        self._random_state_shared = True
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        backend = self.qpa_backend
        if backend is not None and backend.runs_remotely and not backend.is_local_testing:
            raise InputError(
                f"{backend.name} runs on IBM Quantum: under {dist.get_world_size()} processes every process "
                "would submit its own jobs for the same adapter. Train a hardware run in one process"
            )
        states = [self.rng_state]
        dist.broadcast_object_list(states, src=0)
        self.rng_state = states[0]

    # ------------------------------------------------------------------ counts
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all) parameters, as peft counts them: all is the base model's frozen
        weights plus the trainable ones (the generated adapter is an output, not a parameter)."""
        adapter = set(self.adapter_tensor_names())
        frozen = sum(p.numel() for n, p in self.peft_model.named_parameters() if n not in adapter)
        trainable = self.counts()["trainable"]
        return trainable, frozen + trainable

    def print_trainable_parameters(self) -> None:
        """peft's line, with the generated weights and the qubits after it."""
        trainable, total = self.get_nb_trainable_parameters()
        share = 100 * trainable / total
        line = f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {share:.4f}"
        counts = self.counts()
        if "generated" in counts:
            line += f" || generated weights: {counts['generated']:,d}"
        if "qubits" in counts:
            line += f" || qubits: {counts['qubits']}"
        print(line)

    # ------------------------------------------------------------------ state
    def description(self) -> dict[str, Any]:
        """What rebuilds this model around a base model: configuration, backend, seed."""
        return {"format": FORMAT, "config": self.qpa_config.to_dict(),
                "backend": backend_description(self.qpa_backend), "seed": self.seed, "step": self.step,
                "base_model": self.base_model_name, "model": self.model_name}  # fmt: skip

    def _state_tensors(self) -> dict[str, nn.Parameter]:
        trainable = self.trainable_parameters()
        return {name: trainable[run_name] for name, run_name in self._state_names.items()}

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False):
        """The QPA state alone (see :mod:`.state`): the trainable tensors by their names in this
        model, ``qpa.config`` and ``qpa.rng_state``; never the base model's weights."""
        out = OrderedDict() if destination is None else destination
        for name, tensor in self._state_tensors().items():
            out[prefix + name] = tensor if keep_vars else tensor.detach()
        out[prefix + CONFIG_KEY] = json_tensor(self.description())
        out[prefix + RNG_KEY] = json_tensor(self.rng_state)
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):
        """Put back a :meth:`state_dict` (a ``Trainer`` checkpoint's): whole or not at all,
        whatever `strict` says (``Trainer`` passes False); a state of another configuration
        or base model is refused, naming what differs."""
        state = dict(state_dict)
        described = state.pop(CONFIG_KEY, None)
        rng = state.pop(RNG_KEY, None)
        described = None if described is None else tensor_json(described, CONFIG_KEY)
        if described is not None:
            self._check_description(described, "the state")
        self._load_tensors(state, None if rng is None else tensor_json(rng, RNG_KEY), "the state")
        if described is not None:
            self.step = described.get("step")
        return LoadResult([], [])

    def _check_description(self, described: dict[str, Any], source: str) -> None:
        saved = QPAConfig.from_dict(described.get("config"), f"{source}'s configuration")
        differ = self.qpa_config.differences(saved)
        if described.get("seed") != self.seed:
            differ["seed"] = (self.seed, described.get("seed"))
        if differ:
            detail = "; ".join(f"{k}: this model {a!r}, {source} {b!r}" for k, (a, b) in differ.items())
            raise InputError(f"{source} belongs to another QPA model ({detail}); nothing was loaded")

    def _load_tensors(self, tensors: dict[str, torch.Tensor], rng: Any, source: str) -> None:
        own = self._state_tensors()
        problems = [f"{n}: {tuple(t.shape)} there, {tuple(own[n].shape)} here"
                    for n, t in tensors.items() if n in own and t.shape != own[n].shape]  # fmt: skip
        unknown, missing = sorted(set(tensors) - set(own)), sorted(set(own) - set(tensors))
        if unknown:
            problems.append(f"tensors this model has not: {unknown[:4]}")
        if missing:
            problems.append(f"tensors missing: {missing[:4]}")
        if problems:
            raise InputError(
                f"{source} does not fit this model (another base model or adapter?): {'; '.join(problems)}. "
                "Nothing was loaded"
            )
        with torch.no_grad():
            for name, tensor in tensors.items():
                own[name].copy_(tensor)
        if rng is not None:
            self.rng_state = rng

    def save_pretrained(self, save_directory: str | Path, **_: Any) -> None:
        """Write ``model.safetensors`` (:meth:`state_dict`) and ``qpa_config.json`` into the
        folder (created if absent; each file replaced whole). No base weights."""
        folder = Path(save_directory)
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder} is a file; give a folder to save the QPA model in")
        try:
            atomic_write(folder / WEIGHTS, weights_bytes(self.state_dict()))
            write_description(folder, {**self.description(), "counts": self.counts()})
        except OSError as exc:
            raise InputError(f"cannot save the QPA model in {folder} ({type(exc).__name__}: {exc})") from None

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module | LoadedModel,
        folder: str | Path,
        backend: QPABackend | str | None = None,
        *,
        is_trainable: bool = False,
    ) -> QPAModel:
        """The QPA model saved in `folder` (by :meth:`save_pretrained`, by ``Trainer`` or by
        ``qpa train``) around the base model `model`, in evaluation mode; `is_trainable` keeps
        its tensors trainable. `backend` replaces the saved one (a note says so where it
        differs: the generated adapter then differs too)."""
        described, tensors, rng = read_folder(folder)
        if "run_config" in described:
            run = RunConfig.from_dict(described["run_config"], source=str(Path(folder) / "config.json"))
            config = QPAConfig.from_run_config(run)
            saved = QPABackend.from_config(run.backend, seed=run.training.seed) if run.reads_circuit else None
            saved_description = backend_description(saved)
        else:
            config = QPAConfig.from_dict(described.get("config"), f"the configuration in {folder}")
            saved_description = described.get("backend")
            saved = None
        seed = described.get("seed", 0)
        if backend is None:
            backend = saved or (None if saved_description is None
                                else backend_from_description(saved_description, seed))  # fmt: skip
        else:
            given = QPABackend(backend, seed=seed) if isinstance(backend, str) else backend
            if saved_description is not None and backend_description(given) != saved_description:
                warnings.warn(
                    f"{folder} was trained with the backend {saved_description}; it now generates its "
                    f"adapter on {backend_description(given)}, so the adapter's weights differ from the "
                    "saved model's",
                    stacklevel=2,
                )
            backend = given
        qpa = cls(model, config, backend, seed=seed)
        qpa.step = described.get("step")
        qpa._load_tensors(tensors, rng, str(folder))
        if not is_trainable:
            for p in qpa.parameters():
                p.requires_grad_(False)
        return qpa.eval()

    # ------------------------------------------------------------------ the plain model
    def merge_and_unload(self) -> nn.Module:
        """The base model with the trained adapter merged into its weights. A target that shares
        its weight with another layer (a tied ``lm_head``) gets its own copy first, so the
        merged model computes what the adapted one does and the input embedding is unchanged."""
        if not TUNERS[self.cfg.tuner].mergeable:
            raise InputError(
                f"{self.cfg.method!r} cannot be merged into the base model's weights (a {self.cfg.tuner} "
                "adapter is not a change of a weight); use export() for a peft adapter folder"
            )
        self.materialize()
        base = self.peft_model.get_base_model()
        shared = [p for _, p in base.named_parameters(remove_duplicate=False)]
        for module in base.modules():
            layer = getattr(module, "base_layer", None)
            weight = getattr(layer, "weight", None)
            if isinstance(weight, nn.Parameter) and sum(p is weight for p in shared) > 1:
                layer.weight = nn.Parameter(weight.detach().clone(), requires_grad=weight.requires_grad)
                if getattr(base.config, "tie_word_embeddings", False):
                    base.config.tie_word_embeddings = False
        return self.peft_model.merge_and_unload()

    def export(self, out_dir: str | Path) -> Path:
        """The plain peft adapter folder ``qpa export`` writes (generated weights materialised),
        loadable with no qpa-qiskit (``PeftModel.from_pretrained``); `out_dir` must be new or empty."""
        out = Path(out_dir)
        write_adapter(
            self, out, {"base_model_id": self.base_model_name, "method": self.cfg.method, "step": self.step}
        )
        return out


def get_qpa_model(
    model: nn.Module | LoadedModel,
    config: QPAConfig,
    backend: QPABackend | str | None = None,
    *,
    seed: int = 0,
) -> QPAModel:
    """`model` with the adapter `config` describes, as peft's ``get_peft_model``: the QPA
    methods generate it on `backend` (a :class:`QPABackend` or a spec string, seeded with
    `seed`; default ``statevector``); `seed` sets every initial value as ``qpa train --seed``."""
    return QPAModel(model, config, backend, seed=seed)


def _name_or_path(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    return getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None) or None
