"""WeightCodec: flat weights <-> the space the flow lives in, bundled as a diffusers component.

It carries the architecture config (so models can be rebuilt from the pipeline alone), the normalisation
and the canonicalization reference, as config values and buffers saved with ``save_pretrained``; how the
flow was fitted (recipe, canonicalization, flow config) is the pipeline's own config.

A basis larger than ``BASIS_SHARD_BYTES`` (e.g. 64 components of BERT-Base: 28 GB) is kept out of the diffusers
weights file: it is saved as column shards ``basis-0000i-of-0000n.safetensors`` (each ``components [K, D_i]``,
written row by row) and memory-mapped on load, so a pipeline larger than memory saves, loads and decodes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor

from .archs import ArchSpec, arch_from_config
from .compression.normalizations import NORMALIZATIONS, Normalization
from .compression.pca import PCAResult, fit_pca
from .configs import CodecState
from .errors import DWFError, WeightFormatError

BASIS_SHARD_BYTES = 1 << 30  # a basis above this many bytes is saved as column shards of at most this size
BASIS_FILE = "basis-{:05d}-of-{:05d}.safetensors"


class WeightCodec(ModelMixin, ConfigMixin):
    """``encode: [N, D] -> [N, K]`` and ``decode: [N, K] -> [N, D]``.

    Buffers: ``mean [D]``, ``scale [D]`` (per-weight normalisation; not with PCA), ``components [K, D]`` and
    ``component_std [K]`` (``pca``/``whiten``: orthonormal principal directions and the zoo's standard
    deviation along each), ``reference [D]`` (the network every training member was aligned to), and with
    ``unit_statistics`` set, ``unit_target_map [K + 1, S]`` (latent -> every hidden unit's target
    pre-activation mean and std, ``unit_recalibration``).
    """

    @register_to_config
    def __init__(
        self,
        arch: dict[str, Any],
        normalization: str = "none",
        latent_dim: int | None = None,
        explained_variance: float | None = None,
        basis_shard_columns: int | None = None,
        unit_statistics: int | None = None,
    ) -> None:
        """``latent_dim``: number of principal components (``pca``/``whiten``); ``explained_variance``: the
        fraction of the zoo's total variance they hold; ``basis_shard_columns``: the basis lives in column
        shards of that many weights (``None``: a buffer in the weights file); ``unit_statistics``: the number
        of hidden-unit statistics ``S`` the latent predicts (``None``: no unit recalibration)."""
        super().__init__()
        d = arch_from_config(arch).num_params
        CodecState(d, normalization, latent_dim, explained_variance, basis_shard_columns, unit_statistics)
        # uninitialised (no page touched): ``fit`` replaces them with its own tensors and ``from_pretrained``
        # loads them, so a BERT-size codec never holds a second [D] copy of its mean or reference
        self.register_buffer("mean", torch.empty(d))
        if not NORMALIZATIONS[
            normalization
        ].pca:  # a PCA codec never uses it (0.44 GB at BERT-Base); older saves
            self.register_buffer("scale", torch.ones(d))  # hold one, which loading ignores (LEGACY_BUFFERS)
        self.register_buffer("reference", torch.empty(d))
        if NORMALIZATIONS[normalization].pca:
            self.register_buffer("component_std", torch.ones(latent_dim))
            if basis_shard_columns is None:
                self.register_buffer("components", torch.empty(latent_dim, d))
        self._shards: list[tuple[int, int, Tensor]] = []  # (start, stop, [K, stop - start]) when sharded
        if unit_statistics is not None:
            self.register_buffer("unit_target_map", torch.zeros(self.latent_dim + 1, unit_statistics))

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
        shard_bytes: int = BASIS_SHARD_BYTES,
    ) -> WeightCodec:
        """Codec for training weights ``[N, D]``; ``reference [D]`` defaults to the first row.

        ``pca``: a PCA already fitted (e.g. streamed over checkpoints), for ``pca``/``whiten``; then
        ``weights`` may be ``None`` and ``reference`` is required. A basis above ``shard_bytes`` is kept as
        it is (memory-mapped when the PCA wrote it to a file) and saved in column shards of that size.
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
        columns = None
        if uses_pca and pca.components.numel() * 4 > shard_bytes:
            columns = max(1, shard_bytes // (4 * latent_dim))
        codec = cls(arch.config, normalization, latent_dim, explained, columns)
        with torch.no_grad():  # buffers are replaced by the fitted tensors, not copied into
            if uses_pca:
                codec.mean = pca.mean.float()
                codec.component_std.copy_(pca.std)
                if columns:
                    codec._shards = [(0, arch.num_params, pca.components)]
                else:
                    codec.components = pca.components.float().contiguous()
            else:
                codec.mean = weights.mean(0) if norm.center else torch.zeros(arch.num_params)
            if norm.standardize and len(weights) > 1:
                std = weights.std(0)
                codec.scale.copy_(std.clamp_min(1e-3 * float(std.mean()) + 1e-12))
            ref = (weights[0] if reference is None else reference).detach().float()
            # a row of a matrix gets its own copy; a lone row is kept (no second [D] copy: 0.44 GB at BERT-Base)
            shared = ref.untyped_storage().nbytes() > ref.numel() * ref.element_size()
            codec.reference = ref.clone() if shared else ref
        return codec

    def set_unit_targets(self, target_map: Tensor) -> None:
        """Attach ``unit_target_map [K + 1, S]`` (``fit_target_map`` on the training latents)."""
        self.register_to_config(unit_statistics=target_map.shape[1])
        self.register_buffer("unit_target_map", target_map.float().to(self.mean.device))

    @property
    def has_unit_targets(self) -> bool:
        return self.config.get("unit_statistics") is not None

    def unit_targets(self, latents: Tensor) -> Tensor | None:
        """``[N, S]`` hidden-unit target statistics of ``latents [N, K]`` (``None`` without a target map)."""
        if not self.has_unit_targets:
            return None
        return predict_targets(self.unit_target_map, latents.float().to(self.unit_target_map.device)).cpu()

    def encode_columns(self, read_columns: Callable[[int, int], Tensor], n: int, block_size: int) -> Tensor:
        """``encode`` of the ``[N, D]`` matrix whose column blocks ``read_columns(start, stop)`` returns, one
        block at a time (memory ``N x block``, never ``N x D``); under a multi-process launch each rank reads
        its share of the blocks and one all-reduce sums the partial latents."""
        from .compression.pca import Ranks

        if not self.normalization.pca:
            raise DWFError("encode_columns: only for pca/whiten codecs (the others are per-weight)")
        ranks, d = Ranks(), self.mean.numel()
        latents = torch.zeros(n, self.latent_dim, dtype=torch.float64)
        for start in ranks.share(range(0, d, block_size)):
            stop = min(start + block_size, d)
            x = read_columns(start, stop) - self.mean[start:stop]
            latents += (x @ self._column_block(start, stop).T).double()
        ranks.sum(latents)
        latents = latents.float()
        return latents / self.component_std if self.normalization.whiten else latents

    def _column_block(self, start: int, stop: int) -> Tensor:
        """Columns ``[start, stop)`` of the basis, ``[K, stop - start]`` (a view unless it spans shards)."""
        parts = [
            c[:, max(s, start) - s : min(e, stop) - s] for s, e, c in self.basis() if s < stop and start < e
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def basis(self) -> list[tuple[int, int, Tensor]]:
        """The principal directions as column blocks ``(start, stop, [K, stop - start])``: the one buffer, or
        the (memory-mapped) shards."""
        return self._shards or [(0, self.mean.numel(), self.components)]

    def encode(self, weights: Tensor) -> Tensor:
        """``[N, D] -> [N, K]`` (with PCA, without an N x D temporary)."""
        if not self.normalization.pca:
            return (weights - self.mean) / self.scale
        latents = sum((weights[:, s:e] - self.mean[s:e]).to(c.device) @ c.T for s, e, c in self.basis()).to(
            weights.device
        )
        if self.normalization.whiten:
            latents /= self.component_std
        return latents

    def decode(self, latents: Tensor, out: Tensor | None = None) -> Tensor:
        """``[N, K] -> [N, D]``: with PCA, one matrix multiply per basis block, into ``out [N, D]`` when given
        (a buffer reused across chunks skips the first-touch cost of fresh memory)."""
        if self.normalization.whiten:
            latents = latents * self.component_std
        if not self.normalization.pca:
            return torch.add(self.mean, latents * self.scale, out=out)
        blocks = self.basis()
        c0 = blocks[0][2]
        if out is None:
            out = torch.empty(len(latents), self.mean.numel(), dtype=c0.dtype, device=c0.device)
        latents = latents.to(c0.device, c0.dtype)
        for s, e, c in blocks:
            torch.addmm(self.mean[s:e].to(c.device, c.dtype), latents, c, out=out[:, s:e])
        return out

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """diffusers' save, plus the basis shards when the basis is sharded (streamed row by row)."""
        super().save_pretrained(save_directory, **kwargs)
        columns = self.config.basis_shard_columns
        if columns and self.normalization.pca:
            from .io import save_rows

            d = self.mean.numel()
            starts = range(0, d, columns)
            for i, s in enumerate(starts):
                e = min(s + columns, d)
                rows = (self._column_block(s, e)[r] for r in range(self.latent_dim))
                save_rows(Path(save_directory) / BASIS_FILE.format(i + 1, len(starts)), "components",
                          (self.latent_dim, e - s), rows)  # fmt: skip

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> WeightCodec:
        """diffusers' load, plus the basis shards memory-mapped (copy-on-write) when the basis is sharded."""
        codec = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        columns = codec.config.basis_shard_columns
        if columns and codec.normalization.pca:
            from .io import map_tensor

            d, folder = codec.mean.numel(), Path(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
            starts = range(0, d, columns)
            codec._shards = [
                (s, min(s + columns, d), map_tensor(folder / BASIS_FILE.format(i + 1, len(starts)), "components",
                                                     (codec.latent_dim, min(s + columns, d) - s)))
                for i, s in enumerate(starts)
            ]  # fmt: skip
        return codec

    def reference_state_dict(self) -> dict[str, Tensor]:
        return self.arch.unflatten(self.reference)


class CodecCollection(ModelMixin, ConfigMixin):
    """The codecs of a multi-architecture conditional flow's further conditions (experimental): codec ``i``
    decodes condition ``i + 1`` (condition 0 uses the pipeline's own ``codec``). ``codecs``: their configs;
    ``members``: the codecs."""

    @register_to_config
    def __init__(self, codecs: list[dict[str, Any]]) -> None:
        super().__init__()
        if not isinstance(codecs, list) or not all(isinstance(c, dict) for c in codecs):
            raise DWFError(
                f"codec collection config: 'codecs' must be a list of codec configs, got {codecs!r}"
            )
        if any(c.get("basis_shard_columns") for c in codecs):
            raise DWFError("codec collection: a sharded basis (over 1 GiB) is not supported in a collection")
        self.members = torch.nn.ModuleList(WeightCodec(**c) for c in codecs)

    @classmethod
    def of(cls, codecs: list[WeightCodec]) -> CodecCollection:
        """A collection holding ``codecs`` (their buffers, not copies)."""
        collection = cls([{k: v for k, v in c.config.items() if not k.startswith("_")} for c in codecs])
        collection.members = torch.nn.ModuleList(codecs)
        return collection


def fit_target_map(coords: Tensor, stats: Tensor) -> Tensor:
    """``[K + 1, S]``: the minimum-norm affine least-squares map from coordinates ``[N, K]`` to statistics
    ``[N, S]`` (last row: the intercept); exact on every member when ``K >= N - 1``."""
    a = torch.cat([coords.double(), torch.ones(len(coords), 1, dtype=torch.float64)], 1)
    return torch.linalg.pinv(a) @ stats.double()


def predict_targets(target_map: Tensor, coords: Tensor) -> Tensor:
    """``[N, S]`` target statistics of coordinates ``[N, K]``."""
    m = target_map.to(coords.dtype)
    return coords @ m[:-1] + m[-1]


# Buffers older saves hold that the codec no longer keeps: a PCA codec's unused ``scale`` (ones).
LEGACY_BUFFERS = ("scale",)
