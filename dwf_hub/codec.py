"""WeightCodec: flat weights <-> the space the flow lives in, bundled as a diffusers component.

It carries the architecture config (so models can be rebuilt from the pipeline alone), the recipe
(so generated networks can be evaluated), the normalisation and the canonicalization reference,
all as config values and buffers saved with ``save_pretrained``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor

from .archs import ArchSpec, arch_from_config
from .configs import NORMALIZATIONS
from .errors import DWFError, WeightFormatError


class WeightCodec(ModelMixin, ConfigMixin):
    """``encode: [N, D] -> [N, K]`` and ``decode: [N, K] -> [N, D]``.

    Buffers: ``mean [D]``, ``scale [D]`` (per-weight normalisation), ``components [K, D]`` and
    ``component_std [K]`` (``whiten`` only: orthonormal principal directions and their standard
    deviations), ``reference [D]`` (the network every training member was aligned to).
    """

    @register_to_config
    def __init__(
        self,
        arch: dict[str, Any],
        normalization: str = "none",
        latent_dim: int | None = None,
        explained_variance: float | None = None,
        recipe: dict[str, Any] | None = None,
        canonicalization: dict[str, Any] | None = None,
        flow_config: dict[str, Any] | None = None,
    ) -> None:
        """``latent_dim``: number of principal components (``whiten``); ``explained_variance``: the
        fraction of the zoo's total variance they hold; ``flow_config`` records how the flow was fitted."""
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise DWFError(
                f"codec: unknown normalization {normalization!r}; known: {', '.join(NORMALIZATIONS)}"
            )
        d = arch_from_config(arch).num_params
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        self.register_buffer("reference", torch.zeros(d))
        if normalization == "whiten":
            if not latent_dim:
                raise DWFError("codec: normalization 'whiten' needs latent_dim (the number of components)")
            self.register_buffer("components", torch.zeros(latent_dim, d))
            self.register_buffer("component_std", torch.ones(latent_dim))

    @cached_property
    def arch(self) -> ArchSpec:
        return arch_from_config(self.config.arch)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim or self.mean.numel()

    @classmethod
    def fit(
        cls,
        arch: ArchSpec,
        weights: Tensor,
        normalization: str = "none",
        n_components: int | None = None,
        reference: Tensor | None = None,
        **config: Any,
    ) -> WeightCodec:
        """Codec for training weights ``[N, D]``; ``reference [D]`` defaults to the first row."""
        n, d = weights.shape if weights.dim() == 2 else (0, 0)
        if weights.dim() != 2 or d != arch.num_params:
            raise WeightFormatError(
                f"codec: weights have shape {tuple(weights.shape)}, expected (N, {arch.num_params})"
            )
        mean = weights.mean(0) if normalization != "none" else torch.zeros(d)
        latent_dim = explained = None
        if normalization == "whiten":
            if n < 2:
                raise DWFError("codec: whitening needs at least two networks")
            _, s, vh = torch.linalg.svd((weights - mean).double(), full_matrices=False)
            var = s**2 / (n - 1)
            rank = int((var > var[0] * 1e-10).sum())
            k = rank if n_components is None else int(n_components)
            if not 1 <= k <= rank:
                raise DWFError(
                    f"codec: n_components={n_components} must be between 1 and the zoo's rank {rank}"
                )
            latent_dim, explained = k, float(var[:k].sum() / var.sum())
        codec = cls(arch.config, normalization, latent_dim, explained, **config)
        with torch.no_grad():
            codec.mean.copy_(mean)
            if normalization == "standardize" and n > 1:
                std = weights.std(0)
                codec.scale.copy_(std.clamp_min(1e-3 * float(std.mean()) + 1e-12))
            if normalization == "whiten":
                codec.components.copy_(vh[:latent_dim].float())
                codec.component_std.copy_(var[:latent_dim].sqrt().float())
            codec.reference.copy_(weights[0] if reference is None else reference)
        return codec

    def encode(self, weights: Tensor) -> Tensor:
        """``[N, D] -> [N, K]``."""
        x = (weights - self.mean) / self.scale
        if self.config.normalization == "whiten":
            x = (x @ self.components.T) / self.component_std
        return x

    def decode(self, latents: Tensor) -> Tensor:
        """``[N, K] -> [N, D]`` (one matrix multiply with ``whiten``)."""
        if self.config.normalization == "whiten":
            latents = (latents * self.component_std) @ self.components
        return latents * self.scale + self.mean

    def reference_state_dict(self) -> dict[str, Tensor]:
        return self.arch.unflatten(self.reference)
