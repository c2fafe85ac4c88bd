"""The DeepWeightFlow velocity field: an MLP on ``[x, time embedding]`` (paper §4, Table 14)."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn


class VelocityModel(ModelMixin, ConfigMixin):
    """``v(x [B, D], t [B]) -> [B, D]``.

    Time embedding ``Linear(1, te)-GELU-Linear(te, te)``; body ``Linear(D+te, h)-LN-GELU-Dropout ->
    Linear(h, h/2)-LN-GELU-Dropout -> Linear(h/2, h)-LN-GELU -> Linear(h, D)`` with the last layer
    zero-initialised, so the untrained field is 0.
    """

    @register_to_config
    def __init__(
        self, dim: int, hidden_dim: int = 256, time_embed_dim: int = 64, dropout: float = 0.1
    ) -> None:
        super().__init__()
        h, te = hidden_dim, time_embed_dim
        self.time_embed = nn.Sequential(nn.Linear(1, te), nn.GELU(), nn.Linear(te, te))
        self.net = nn.Sequential(
            nn.Linear(dim + te, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(h, h // 2), nn.LayerNorm(h // 2), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(h // 2, h), nn.LayerNorm(h), nn.GELU(),
            nn.Linear(h, dim),
        )  # fmt: skip
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(t.reshape(-1, 1))
        return self.net(torch.cat([x, emb], dim=1))
