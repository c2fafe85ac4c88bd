"""WeightCodec: flat weights <-> the space the flow lives in, bundled as a diffusers component.

It carries the architecture config (so models can be rebuilt from the pipeline alone), the normalisation
and the canonicalization reference, as config values and buffers saved with ``save_pretrained``; how the
flow was fitted (recipe, canonicalization, flow config) is the pipeline's own config.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor

from .archs import ArchSpec, arch_from_config
from .errors import DWFError, WeightFormatError
from .normalizations import NORMALIZATIONS, Normalization
from .pca import PCAResult, fit_pca


class WeightCodec(ModelMixin, ConfigMixin):
    """``encode: [N, D] -> [N, K]`` and ``decode: [N, K] -> [N, D]``.

    Buffers: ``mean [D]``, ``scale [D]`` (per-weight normalisation), ``components [K, D]`` and
    ``component_std [K]`` (``pca``/``whiten``: orthonormal principal directions and the zoo's standard
    deviation along each), ``reference [D]`` (the network every training member was aligned to).
    """

    @register_to_config
    def __init__(
        self,
        arch: dict[str, Any],
        normalization: str = "none",
        latent_dim: int | None = None,
        explained_variance: float | None = None,
    ) -> None:
        """``latent_dim``: number of principal components (``pca``/``whiten``); ``explained_variance``: the
        fraction of the zoo's total variance they hold."""
        super().__init__()
        norm = NORMALIZATIONS[normalization]
        d = arch_from_config(arch).num_params
        if latent_dim is not None and (
            isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or not 1 <= latent_dim <= d
        ):
            raise DWFError(
                f"codec config: latent_dim={latent_dim!r} must be an integer in [1, {d}] (the weights)"
            )
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        self.register_buffer("reference", torch.zeros(d))
        if norm.pca:
            if not latent_dim:
                raise DWFError(
                    f"codec: normalization {normalization!r} needs latent_dim (the number of components)"
                )
            self.register_buffer("components", torch.zeros(latent_dim, d))
            self.register_buffer("component_std", torch.ones(latent_dim))

    @cached_property
    def arch(self) -> ArchSpec:
        return arch_from_config(self.config.arch)

    @property
    def normalization(self) -> Normalization:
        return NORMALIZATIONS[self.config.normalization]

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim or self.mean.numel()

    @classmethod
    def fit(
        cls,
        arch: ArchSpec,
        weights: Tensor | None,
        normalization: str = "none",
        n_components: int | float | None = None,
        reference: Tensor | None = None,
        pca: PCAResult | None = None,
    ) -> WeightCodec:
        """Codec for training weights ``[N, D]``; ``reference [D]`` defaults to the first row.

        ``pca``: a PCA already fitted (e.g. streamed over checkpoints), for ``pca``/``whiten``; then
        ``weights`` may be ``None`` and ``reference`` is required.
        """
        norm = NORMALIZATIONS[normalization]
        uses_pca = norm.pca
        if weights is None:
            if pca is None or not uses_pca or reference is None:
                raise DWFError("codec: without the weights matrix, give a fitted pca and the reference")
        elif weights.dim() != 2 or weights.shape[1] != arch.num_params:
            raise WeightFormatError(
                f"codec: weights have shape {tuple(weights.shape)}, expected (N, {arch.num_params})"
            )
        if uses_pca and pca is None:
            pca = fit_pca(weights, n_components)
        latent_dim = pca.components.shape[0] if uses_pca else None
        explained = pca.explained_variance if uses_pca else None
        codec = cls(arch.config, normalization, latent_dim, explained)
        with torch.no_grad():
            if uses_pca:
                codec.mean.copy_(pca.mean)
                codec.components.copy_(pca.components)
                codec.component_std.copy_(pca.std)
            elif norm.center:
                codec.mean.copy_(weights.mean(0))
            if norm.standardize and len(weights) > 1:
                std = weights.std(0)
                codec.scale.copy_(std.clamp_min(1e-3 * float(std.mean()) + 1e-12))
            codec.reference.copy_(weights[0] if reference is None else reference)
        return codec

    def encode(self, weights: Tensor) -> Tensor:
        """``[N, D] -> [N, K]`` (with PCA, without an N x D temporary)."""
        if not self.normalization.pca:
            return (weights - self.mean) / self.scale
        latents = weights @ self.components.T - self.mean @ self.components.T
        if self.normalization.whiten:
            latents /= self.component_std
        return latents

    def decode(self, latents: Tensor) -> Tensor:
        """``[N, K] -> [N, D]``: with PCA, one matrix multiply."""
        if self.normalization.whiten:
            latents = latents * self.component_std
        if self.normalization.pca:
            return torch.addmm(self.mean, latents, self.components)
        return latents * self.scale + self.mean

    def reference_state_dict(self) -> dict[str, Tensor]:
        return self.arch.unflatten(self.reference)
