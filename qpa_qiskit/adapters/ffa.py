"""Feed-forward (bottleneck) adapters as a peft tuner: ``FFAConfig``, ``FFAModel``.

A bottleneck adapter after a layer's feed-forward block (Houlsby et al. 2019): the block's
output h becomes h + W_up act(W_down h + b_down) + b_up, before the residual addition. peft
0.21 has no such tuner and AdapterHub's ``adapters`` library pins transformers 4.x (this
project runs transformers 5), so it is written here as a peft tuner: a ``PeftConfig``, a
``BaseTuner`` and a ``BaseTunerLayer`` wrapping the feed-forward block's output projection,
registered with ``peft.utils.register_peft_method`` under the type ``FFA``. Once this module
is imported, ``get_peft_model``, ``save_pretrained`` and ``PeftModel.from_pretrained`` treat it
like peft's own tuners; an exported FFA adapter therefore needs ``import qpa_qiskit`` (or
this module) before ``PeftModel.from_pretrained``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from peft import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import PeftType, register_peft_method
from torch import nn

FFA_TYPE = "FFA"
FFA_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _add_peft_type(name: str) -> PeftType:
    """``PeftType.<name>``, added to peft's enum if missing: ``register_peft_method`` accepts only
    names the enum holds, and peft's guide for new methods adds them to its source."""
    if name in PeftType.__members__:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = PeftType
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    type.__setattr__(PeftType, name, member)
    return member


@dataclass
class FFAConfig(PeftConfig):
    """A bottleneck adapter after each targeted feed-forward output projection."""

    target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "the feed-forward blocks' output projections (down_proj, mlp.c_proj)"}
    )
    bottleneck: int = field(default=16, metadata={"help": "the adapter's hidden width"})
    activation: str = field(default="relu", metadata={"help": f"one of {', '.join(FFA_ACTIVATIONS)}"})
    init_weights: bool = field(
        default=True, metadata={"help": "W_up = 0: the adapter starts as the identity"}
    )
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "extra trained modules"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PeftType[FFA_TYPE]
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if self.activation not in FFA_ACTIVATIONS:
            raise ValueError(
                f"FFA activation must be one of {', '.join(FFA_ACTIVATIONS)}, got {self.activation!r}"
            )


def output_width(layer: nn.Module) -> int:
    """Output features of a Linear or of transformers' Conv1D (GPT-2)."""
    if isinstance(layer, nn.Linear):
        return layer.out_features
    width = getattr(layer, "nf", None)  # transformers.pytorch_utils.Conv1D
    if isinstance(width, int):
        return width
    raise TypeError(f"FFA adapts Linear or Conv1D layers, not {type(layer).__name__}")


class FFALayer(nn.Module, BaseTunerLayer):
    """A feed-forward output projection followed by its bottleneck adapter(s)."""

    adapter_layer_names = ("ffa_down", "ffa_up")
    other_param_names = ()

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: FFAConfig) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.ffa_down = nn.ModuleDict({})
        self.ffa_up = nn.ModuleDict({})
        self.ffa_activation: dict[str, str] = {}
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self.width = output_width(self.get_base_layer())
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: FFAConfig) -> None:
        self.ffa_down[adapter_name] = nn.Linear(self.width, config.bottleneck)
        self.ffa_up[adapter_name] = nn.Linear(config.bottleneck, self.width)
        self.ffa_activation[adapter_name] = config.activation
        if config.init_weights:
            nn.init.kaiming_uniform_(self.ffa_down[adapter_name].weight, a=math.sqrt(5))
            nn.init.zeros_(self.ffa_down[adapter_name].bias)
            nn.init.zeros_(self.ffa_up[adapter_name].weight)
            nn.init.zeros_(self.ffa_up[adapter_name].bias)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError("an FFA adapter is nonlinear and cannot be merged into the base weights")

    def unmerge(self) -> None:
        pass

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return out
        for name in self.active_adapters:
            if name not in self.ffa_down:
                continue
            down, up = self.ffa_down[name], self.ffa_up[name]
            act = FFA_ACTIVATIONS[self.ffa_activation[name]]()
            hidden = act(down(out.to(down.weight.dtype)))
            out = out + up(hidden).to(out.dtype)
        return out


class FFAModel(BaseTuner):
    """peft's tuner for :class:`FFAConfig`: wraps every targeted layer in an :class:`FFALayer`."""

    prefix: str = "ffa_"
    tuner_layer_cls = FFALayer
    target_module_mapping: ClassVar[dict[str, list[str]]] = {}  # no defaults: targets are given

    def _create_and_replace(self, config, adapter_name, target, target_name, parent, current_key) -> None:
        if isinstance(target, FFALayer):
            target.update_layer(adapter_name, config)
            return
        layer = FFALayer(target, adapter_name, config)
        if adapter_name not in self.active_adapters:
            layer.requires_grad_(False)
        self._replace_module(parent, target_name, layer, target)


def _register() -> None:
    """Once per process (a reloaded module finds the type registered already)."""
    # lazy: peft (seconds), only when an adapter is built
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    if _add_peft_type(FFA_TYPE) not in PEFT_TYPE_TO_CONFIG_MAPPING:
        register_peft_method(name=FFA_TYPE.lower(), config_cls=FFAConfig, model_cls=FFAModel)


_register()

__all__ = ["FFAConfig", "FFALayer", "FFAModel"]
