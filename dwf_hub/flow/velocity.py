"""The DeepWeightFlow velocity field: an MLP on ``[x, time embedding]`` (paper §4, Table 14)."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn


class VelocityModel(ModelMixin, ConfigMixin):
    """``v(x [B, D], t [B], labels [B] | None) -> [B, D]``.

    Time embedding ``Linear(1, te)-GELU-Linear(te, te)``; with ``num_labels`` (conditional generation, paper
    Appendix K) a learned label embedding ``Embedding(num_labels + 1, te)`` is added to it — index
    ``num_labels`` is "no label" (classifier-free guidance, and ``labels=None``). A conditional flow lives in
    each condition's own whitened coordinates: a sample ``x [D]`` of condition ``l`` is the codec latent
    ``label_offsets[l] + (x - label_sources[l]) @ label_maps[l]`` (``[K]``; see ``to_latent``): each condition's
    flow starts from and ends around its own point ``label_sources[l]``, so the conditions' paths do not cross; body ``Linear(D+te, h)-LN-GELU-Dropout ->
    Linear(h, h/2)-LN-GELU-Dropout -> Linear(h/2, h)-LN-GELU -> Linear(h, D)`` with the last layer
    zero-initialised, so the untrained field is 0.
    """

    @register_to_config
    def __init__(
        self,
        dim: int,
        hidden_dim: int = 256,
        time_embed_dim: int = 64,
        dropout: float = 0.1,
        num_labels: int = 0,
        label_latent_dim: int | None = None,
    ) -> None:
        super().__init__()
        h, te = hidden_dim, time_embed_dim
        self.time_embed = nn.Sequential(nn.Linear(1, te), nn.GELU(), nn.Linear(te, te))
        self.label_embed = nn.Embedding(num_labels + 1, te) if num_labels else None
        if (
            num_labels
        ):  # each condition's own whitened coordinates in the codec's latent space (fit_conditional)
            k = label_latent_dim or dim
            self.register_buffer("label_offsets", torch.zeros(num_labels, k))
            self.register_buffer("label_maps", torch.zeros(num_labels, dim, k))
            self.register_buffer("label_sources", torch.zeros(num_labels, dim))
        self.net = nn.Sequential(
            nn.Linear(dim + te, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(h, h // 2), nn.LayerNorm(h // 2), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(h // 2, h), nn.LayerNorm(h), nn.GELU(),
            nn.Linear(h, dim),
        )  # fmt: skip
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def to_latent(self, x: Tensor, labels: Tensor) -> Tensor:
        """Conditional samples ``x [N, D]`` of ``labels [N]`` -> codec latents ``[N, K]``."""
        maps = self.label_maps[labels].to(x.dtype)
        x = x - self.label_sources[labels].to(x.dtype)
        return self.label_offsets[labels].to(x.dtype) + torch.bmm(x[:, None, :], maps)[:, 0]

    def forward(self, x: Tensor, t: Tensor | float, labels: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(t.reshape(-1, 1))
        if self.label_embed is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), self.config.num_labels, device=x.device)
            emb = emb + self.label_embed(labels).to(emb.dtype)
        elif labels is not None:
            raise ValueError("labels given to an unconditional velocity model")
        return self.net(torch.cat([x, emb], dim=1))
