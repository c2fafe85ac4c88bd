"""The architecture spec: everything architecture-specific lives in one subclass of ``ArchSpec``."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import DWFError, WeightFormatError
from ..permutations import PermutationSpec

# What every plain-torch network class passes to ``huggingface_hub.PyTorchModelHubMixin``: a generated (or
# zoo) network then saves, pushes and loads as a Hub model of its own (config + safetensors + card).
HUB_MODEL_CARD = {"library_name": "dwf-hub", "tags": ["dwf-hub", "weight-zoo-member"], "license": "mit"}

# Buffers that carry no learned information and are not part of the weight vector.
SKIPPED_SUFFIXES = ("num_batches_tracked",)


@dataclass(frozen=True)
class ParamInfo:
    key: str
    shape: tuple[int, ...]
    offset: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class ArchSpec(ABC):
    """Builds one architecture and knows its exact parameter layout and permutation symmetries."""

    name: ClassVar[str]
    #: whether ``unit_recalibration = "auto"`` resets the ``unit_layers`` (``"on"`` always may)
    units_recalibrated_by_default: ClassVar[bool] = True

    # -- to implement per architecture ---------------------------------------------------------
    @abstractmethod
    def build(self) -> nn.Module:
        """A fresh, randomly initialised model (PyTorch's default init)."""

    @abstractmethod
    def permutation_spec(self) -> PermutationSpec:
        """For every key of ``layout``, the permutation acting on each axis."""

    @property
    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments; ``type(self)(**self.kwargs)`` rebuilds this spec. Every spec keeps
        each constructor argument as the attribute of the same name."""
        return {k: getattr(self, k) for k in self.param_names()}

    @classmethod
    def param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]

    @classmethod
    @abstractmethod
    def tiny(cls) -> ArchSpec:
        """A very small instance for tests."""

    @abstractmethod
    def example_input(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """A random input batch ``[B, ...]`` the model accepts."""

    @property
    def needs_calibration(self) -> bool:
        """Whether generated networks need BatchNorm recalibration."""
        return False

    @property
    def unit_layers(self) -> tuple[str, ...]:
        """Modules (names, in forward order) whose outputs are hidden pre-activations that unit recalibration may
        reset (``dwf_hub.generation.unit_recalibration``): for architectures without BatchNorm; ``()``: none."""
        return ()

    @property
    def task(self) -> str:
        """``classification`` (outputs are logits) or ``regression`` (one output per sample)."""
        return "classification"

    @property
    def num_outputs(self) -> int:
        """Outputs per sample: the length of the head's last parameter (its bias)."""
        return int(self.layout[-1].shape[0])

    @property
    def head_keys(self) -> tuple[str, ...]:
        """The task head: the last layer's weight and bias (re-initialised when transferring to another label set)."""
        return tuple(p.key for p in self.layout[-2:])

    def with_outputs(self, n: int) -> ArchSpec:
        """The same architecture with an ``n``-way head (specs whose constructor names it ``num_classes`` or
        ``num_labels``; others override this)."""
        kw = dict(self.kwargs)
        for key in ("num_classes", "num_labels"):
            if key in kw:
                return type(self)(**{**kw, key: n})
        raise DWFError(f"{self.name}: no way to change the number of outputs")

    def for_export(self, net: nn.Module) -> tuple[ArchSpec, nn.Module]:
        """The architecture and network to export as a Hub model for the ecosystem's tools (the same function;
        default: as they are)."""
        return self, net

    def input_processor(self, task: Any = None) -> Any:
        """A transformers processor that prepares raw inputs as ``task``'s data were (saved with exported
        networks; ``None``: the architecture has none)."""
        return None

    @property
    def metric(self) -> str:
        """The task metric: ``accuracy`` (classification) or ``spearman`` (regression, as the paper's BERT)."""
        return "accuracy" if self.task == "classification" else "spearman"

    def call(self, model: nn.Module, x: Tensor) -> Tensor:
        """``model`` applied to an input batch ``x [B, ...]`` -> outputs ``[B, C]`` (plain tensors, vmap-safe)."""
        return model(x)

    def pretrained_state(self, path: str, strict: bool = False) -> dict[str, Tensor]:
        """The state dict of a pretrained checkpoint ``path`` (folder or Hub repo id) in this layout."""
        raise DWFError(
            f"{self.name}: starting from a pretrained checkpoint needs a transformers architecture"
        )

    def functional_model(self, train: bool = False) -> nn.Module:
        """A model without weights (meta tensors) for ``torch.func.functional_call``; buffers that are not
        part of the state dict (e.g. position ids) stay real."""
        return self.empty_model().train(train)

    # -- shared machinery ------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArchSpec) and self.config == other.config

    def __hash__(self) -> int:
        return hash(repr(self.config))

    @cached_property
    def layout(self) -> tuple[ParamInfo, ...]:
        """Ordered ``(key, shape, offset)`` of every tensor in the flat weight vector."""
        with torch.device("meta"):
            state = self.build().state_dict()
        infos, offset = [], 0
        for key, t in state.items():
            if key.endswith(SKIPPED_SUFFIXES):
                continue
            info = ParamInfo(key, tuple(t.shape), offset)
            infos.append(info)
            offset += info.numel
        return tuple(infos)

    @cached_property
    def parameter_keys(self) -> frozenset[str]:
        """The keys of ``layout`` that are trainable parameters (the others: buffers such as BatchNorm statistics)."""
        with torch.device("meta"):
            return frozenset(k for k, _ in self.build().named_parameters())

    def empty_model(self) -> nn.Module:
        """``build()`` with parameters and state-dict buffers on the meta device (no memory, no init)."""
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            model = self.build()
        for m in model.modules():  # persistent buffers (BatchNorm statistics) carry no information yet
            for name, b in m.named_buffers(recurse=False):
                if name not in m._non_persistent_buffers_set and not b.is_meta:
                    m._buffers[name] = b.to("meta")
        return model

    @property
    def num_params(self) -> int:
        last = self.layout[-1]
        return last.offset + last.numel

    def validate(
        self, state_dict: dict[str, Tensor], source: str = "state dict", check_finite: bool = True
    ) -> None:
        """Raise ``WeightFormatError`` naming ``source`` and the key at fault."""
        expected = {p.key: p.shape for p in self.layout}
        got = {k for k in state_dict if not k.endswith(SKIPPED_SUFFIXES)}
        missing, unexpected = sorted(expected.keys() - got), sorted(got - expected.keys())
        if missing or unexpected:
            raise WeightFormatError(
                f"{source}: keys do not match architecture {self!r}"
                + (f"; missing {missing[:5]}{' ...' if len(missing) > 5 else ''}" if missing else "")
                + (
                    f"; unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
                    if unexpected
                    else ""
                )
            )
        for key, shape in expected.items():
            t = state_dict[key]
            if tuple(t.shape) != shape:
                raise WeightFormatError(
                    f"{source}: key {key!r} has shape {tuple(t.shape)}, expected {shape} for {self!r}"
                )
            if not t.is_floating_point():
                raise WeightFormatError(
                    f"{source}: key {key!r} has dtype {t.dtype}, expected a floating-point tensor"
                )
            if check_finite and not torch.isfinite(t).all():
                raise WeightFormatError(f"{source}: key {key!r} contains NaN or Inf values")

    def flatten(self, state_dict: dict[str, Tensor], source: str = "state dict") -> Tensor:
        """State dict -> ``[D]`` float32 vector in ``layout`` order."""
        self.validate(state_dict, source)
        return torch.cat([state_dict[p.key].detach().reshape(-1).float() for p in self.layout])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """``[D]`` vector -> state dict of views (no copy) in ``layout`` order."""
        if flat.dim() != 1 or flat.numel() != self.num_params:
            raise WeightFormatError(
                f"flat weights have shape {tuple(flat.shape)}, expected ({self.num_params},) for {self!r}"
            )
        return {p.key: flat[p.offset : p.offset + p.numel].view(p.shape) for p in self.layout}

    def instantiate(self, state_dict: dict[str, Tensor]) -> nn.Module:
        """A ready-to-use model in eval mode holding ``state_dict`` (validated, shared memory)."""
        self.validate(state_dict, check_finite=False)
        model = self.empty_model()
        full = dict(state_dict)
        for key, t in model.state_dict().items():
            if key.endswith(SKIPPED_SUFFIXES):
                full[key] = torch.zeros(t.shape, dtype=t.dtype)
        model.load_state_dict(full, assign=True)
        return model.eval()
