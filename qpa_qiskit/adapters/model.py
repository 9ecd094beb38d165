"""``AdaptedModel``: a causal LM with a peft adapter whose tensors are trained or generated.

``<tuner>`` methods are peft's adapters trained as usual. ``qpa-<tuner>`` is the same peft
adapter whose generated tensors (named by the tuner's registry entry) are not trained directly
but produced by a :class:`QPAGenerator` on every forward pass and handed to the peft model
with ``torch.func.functional_call``, so peft's own layer math runs. ``lowrank-<tuner>`` does the
same with the classical :class:`LowRankGenerator`. Anything else of the tuner (DoRA's magnitude
vector) stays peft's trainable parameter.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import InputError
from ..generator.core import CIRCUIT_SOURCES, LowRankGenerator, QPAGenerator, split_weights
from ..seeding import torch_seeded
from .registry import TIED_LAYER_WARNING, TUNERS, Tuner

if TYPE_CHECKING:
    from ..generator.config import GeneratorConfig
    from .config import AdapterConfig


# What transformers 5 warns when peft's get_peft_model reads `model.is_gradient_checkpointing`
DEPRECATED_ALIAS_WARNING = "`is_gradient_checkpointing` is deprecated"


def generated_parameter_names(peft_model: nn.Module, tuner: Tuner) -> list[str]:
    """Full names of the parameters held under the tuner's generated attributes, in the
    model's parameter order."""
    chosen = set()
    for module_name, module in peft_model.named_modules():
        for attr in tuner.generated:
            holder = module._modules.get(attr)
            if holder is None:
                continue
            prefix = f"{module_name}.{attr}" if module_name else attr
            chosen.update(f"{prefix}.{n}" for n, _ in holder.named_parameters())
    return [n for n, _ in peft_model.named_parameters() if n in chosen]


class AdaptedModel(nn.Module):
    """A causal LM with a peft adapter whose weights are trained or QPA-generated.

    Args:
        model: the base model (peft adapts it in place).
        adapter: the :class:`~qpa_qiskit.adapters.config.AdapterConfig`.
        generator: the :class:`~qpa_qiskit.generator.config.GeneratorConfig` (``qpa-*``, ``lowrank-*``).
        backend: the :class:`QPABackend` that evaluates the circuit (``qpa-*`` methods whose
            probabilities come from the circuit).
        seed: the adapter's own and the generator's initial values are drawn from streams
            derived from it (see :mod:`qpa_qiskit.seeding`).
    """

    def __init__(
        self,
        model: nn.Module,
        adapter: AdapterConfig,
        generator: GeneratorConfig | None = None,
        backend=None,
        *,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        # lazy: peft (seconds), only when an adapter is built
        from peft import get_peft_model

        self.cfg = adapter
        tuner = TUNERS[adapter.tuner]
        peft_config = tuner.peft_config(adapter, model)  # checks that the method fits the model
        reads_circuit = generator is None or generator.probabilities in CIRCUIT_SOURCES
        if adapter.generator_kind == "qpa" and reads_circuit and backend is None:
            raise InputError(f"method {adapter.method!r} needs a QPABackend")
        if adapter.generator_kind == "lowrank" and generator is None:
            raise InputError(f"method {adapter.method!r} needs a GeneratorConfig (its chunk size and rank)")
        with torch_seeded(seed, "adapter"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=re.escape(TIED_LAYER_WARNING))  # see TIED_LAYER_WARNING
            # peft reads transformers 5's deprecated alias as it wraps the model: nothing a user can change
            alias = re.escape(DEPRECATED_ALIAS_WARNING)
            warnings.filterwarnings("ignore", message=alias, category=FutureWarning)
            self.peft_model = get_peft_model(model, peft_config)
            if tuner.initialize is not None:
                tuner.initialize(self.peft_model)
        self.generated_names: list[str] = []
        self.generator: QPAGenerator | LowRankGenerator | None = None
        if adapter.generated:
            self.generated_names = generated_parameter_names(self.peft_model, tuner)
            params = dict(self.peft_model.named_parameters())
            self.generated_shapes = [params[n].shape for n in self.generated_names]
            for n in self.generated_names:
                params[n].requires_grad_(False)
            total = sum(s.numel() for s in self.generated_shapes)
            if adapter.generator_kind == "lowrank":
                self.generator = LowRankGenerator(total, generator, seed=seed)
            else:
                self.generator = QPAGenerator(total, backend, generator, seed=seed)

    def place(self, device: torch.device | str) -> None:
        """Put the model on a run's device: the peft model (base model and adapter) and the
        generator's mapping network (:meth:`QPAGenerator.place`: its probability source stays
        on the CPU, where the circuit is evaluated)."""
        self.peft_model.to(device)
        if self.generator is not None:
            self.generator.place(device)

    def _split(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        dtype = next(iter(self.peft_model.parameters())).dtype
        shapes = dict(zip(self.generated_names, self.generated_shapes, strict=True))
        return split_weights(vector, shapes, dtype)

    def generated_tensors(self, step: int | None = None) -> dict[str, torch.Tensor]:
        """A training step's generator output split into the peft tensors it replaces; `step`
        is the step's 0-based index (:meth:`QPAGenerator.forward`: ``circuit_every`` needs it)."""
        assert self.generator is not None
        return self._split(self.generator(step=step))

    def final_tensors(self, probabilities: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The trained adapter's generated tensors (:meth:`QPAGenerator.final_weights`: with
        random labels, the expected ones); `probabilities` replaces the circuit's output."""
        assert self.generator is not None
        return self._split(self.generator.final_weights(probabilities))

    def forward(self, **batch):
        if self.generator is None:
            return self.peft_model(**batch)
        return self.forward_with(self.generated_tensors(), **batch)

    def forward_with(self, tensors: dict[str, torch.Tensor], **batch):
        """The peft model's forward pass with `tensors` (from :meth:`generated_tensors`) in
        place of its generated weights: a training step generates them once and runs every
        micro-batch with them."""
        return torch.func.functional_call(self.peft_model, tensors, args=(), kwargs=batch)

    @property
    def rng_state(self) -> dict[str, Any]:
        """Random states this model owns beyond torch's global one: the generator's (the
        backend's shot sampler, the completion's, the label draws), checkpointed for an exact
        resume."""
        return {} if self.generator is None else self.generator.rng_state

    @rng_state.setter
    def rng_state(self, state: dict[str, Any]) -> None:
        if self.generator is not None:
            self.generator.rng_state = state

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Everything the optimiser updates, by a stable name."""
        out = {f"peft.{n}": p for n, p in self.peft_model.named_parameters() if p.requires_grad}
        if self.generator is not None:
            out.update({f"generator.{n}": p for n, p in self.generator.named_parameters() if p.requires_grad})
        return out

    def adapter_tensor_names(self) -> list[str]:
        """The names in :attr:`peft_model` of the adapter's tensors: the trained ones and the
        generated ones (what decides whether the base model's body stays frozen)."""
        trained = [n for n, p in self.peft_model.named_parameters() if p.requires_grad]
        return trained + [n for n in self.generated_names if n not in trained]

    def circuit_parameter_names(self) -> list[str]:
        """The names (as in :meth:`trainable_parameters`) of the probability source's trained
        parameters, which take ``circuit_lr``: the circuit angles or the softmax logits."""
        if self.generator is None:
            return []
        return [f"generator.{n}" for n in self.generator.source_parameter_names()]

    def diagnostics(self) -> dict[str, float]:
        """How far the generator's probability source moved from its start (empty without one)."""
        return {} if self.generator is None else self.generator.diagnostics()

    def counts(self) -> dict[str, int]:
        """Trainable-parameter counts; for QPA also what the generator produces."""
        peft_trainable = sum(p.numel() for n, p in self.peft_model.named_parameters() if p.requires_grad)
        counts = {"trainable": peft_trainable}
        if self.generator is not None:
            gen = self.generator.counts()
            counts.update({k: v for k, v in gen.items() if k != "trainable"})
            counts.update(trainable=peft_trainable + gen["trainable"], other_adapter=peft_trainable)
            if isinstance(self.generator, QPAGenerator):
                counts["qubits"] = self.generator.n_qubits
        return counts

    @torch.no_grad()
    def materialize(self, probabilities: torch.Tensor | None = None) -> None:
        """Write the trained adapter's generated weights into peft's own tensors (for export,
        evaluation and plain use); `probabilities` replaces the circuit's output there (a
        counterfactual evaluation)."""
        if self.generator is None:
            return
        params = dict(self.peft_model.named_parameters())
        for name, tensor in self.final_tensors(probabilities).items():
            params[name].copy_(tensor)

    def save_adapter(self, out_dir, base_model_name: str | None = None) -> None:
        """A standard peft adapter directory, generated weights materialised: the adapter's
        tensors only. peft's default (``save_embedding_layers="auto"``) also saves the base
        embedding matrix whenever an embedding layer or ``lm_head`` is a target, 114 MB for a
        rank-4 LoRA on SmolLM2's tied ``lm_head``; no method here changes the base model's
        weights or vocabulary, so the base model supplies them when the adapter loads."""
        self.materialize()
        if base_model_name is not None:
            for config in self.peft_model.peft_config.values():
                config.base_model_name_or_path = base_model_name
        self.peft_model.save_pretrained(str(out_dir), save_embedding_layers=False)
