"""The trivial generators a weight generator must beat (Zeng et al., "Generative modeling of weights:
generalization or memorization?"): training networks plus Gaussian noise, interpolations of training
networks, and a reviewer's two more: the zoo's mean plus noise, and a Gaussian fitted to the zoo. All work on
a canonical zoo and hand back networks exactly as the flow pipeline does (``DeepWeightFlowOutput``, BatchNorm
recalibrated, ``generate_zoo`` in the zoo format).

- ``noise``: a random member plus ``N(0, (sigma * s_k)^2)`` on every entry of tensor ``k``, where ``s_k``
  is the standard deviation of tensor ``k``'s values over the whole canonical zoo (so ``sigma`` is relative
  to each tensor's spread, and BatchNorm scales, biases and weights are perturbed in proportion).
- ``interpolation``: ``(1 - alpha) * a + alpha / (k - 1) * (b_1 + ... + b_{k-1})`` for ``k`` distinct random
  members ``a, b_i``: ``k = 2`` is the classic pairwise interpolation (``alpha = 0.5`` the midpoint),
  ``alpha = (k - 1) / k`` the plain average of ``k`` members.
- ``mean_noise``: the mean of all members plus the same noise as ``noise`` (``sigma = 0``: one network, the
  mean). Never closer to the zoo than the mean is, so it is compared only where it reaches (``frontier``).
- ``gaussian``: a Gaussian in canonical weight space fitted to the members' *in-span parts* (each member
  projected onto the affine span of the others: what a generator confined to the span of its training members
  can reach of an unseen one), drawn with its covariance times ``scale ** 2`` (``scale = 0``: the mean, so it
  too is compared only where it reaches). Fitted to the members themselves it would mix their private parts
  (the 98 % of a digits member outside its peers' span) into noise that breaks every network (benchmarks/HISTORY.md).

With ``recalibrate_units`` (MLPs, SmallCNNs), every network's hidden units are reset to the same mixture of its parents'
pre-activation statistics (REPAIR; ``dwf_hub.generation.unit_recalibration``): what a flow fitted with unit recalibration
does to its samples, so the two are compared on equal terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from ..configs import CallConfig
from ..errors import DWFError
from ..generation.postprocess import DeepWeightFlowOutput, check_memory, postprocess
from ..registry import Registry
from ..zoo.weight_zoo import WeightZoo


@dataclass
class ZooBaseline:
    """``baseline(num_networks=N)`` -> ``N`` networks made from the members of ``zoo`` (canonical, or
    canonicalized on creation). ``kind``: ``noise`` or ``mean_noise`` (knob ``sigma``), ``interpolation``
    (``alpha``, ``k``) or ``gaussian`` (``scale``)."""

    zoo: WeightZoo
    kind: str = "noise"
    sigma: float = 0.1
    alpha: float = 0.5
    k: int = 2
    scale: float = 1.0
    recalibrate_units: bool = False
    parent_statistics: Tensor | None = field(default=None, repr=False)
    """``unit_statistics`` of the zoo on the recipe's calibration data, when already computed (a ``Frontier``
    shares one across its settings); computed on first use otherwise."""
    span_coefficients: Tensor | None = field(default=None, repr=False)
    """``in_span_parts``, when already computed (shared like ``parent_statistics``)."""

    def __post_init__(self) -> None:
        DRAWS[self.kind]  # an unknown kind: one line listing the known ones
        for name in ("sigma", "alpha", "scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DWFError(f"{self.kind} baseline: {name} must be a number, got {value!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int):
            raise DWFError(f"{self.kind} baseline: k must be an integer, got {self.k!r}")
        if self.kind in ("gaussian", "mean_noise", "interpolation") and len(self.zoo) < 2:
            raise DWFError(f"{self.kind} baseline: needs a zoo of at least 2 networks, got {len(self.zoo)}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise DWFError(f"noise baseline: sigma must be a finite number >= 0, got {self.sigma}")
        if not (math.isfinite(self.alpha) and 0 <= self.alpha <= 1):
            raise DWFError(f"interpolation baseline: alpha must be in [0, 1], got {self.alpha}")
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise DWFError(f"gaussian baseline: scale must be a finite number >= 0, got {self.scale}")
        if self.kind == "interpolation" and not 2 <= self.k <= len(self.zoo):
            raise DWFError(
                f"interpolation baseline: k must be between 2 and the zoo size {len(self.zoo)}, got {self.k}"
            )
        if self.recalibrate_units:
            from ..generation.unit_recalibration import check_supported

            check_supported(self.zoo.arch)
        if not self.zoo.is_canonical:
            from ..matching import canonicalize

            self.zoo = canonicalize(self.zoo, progress=False).zoo
        self._matrix = self.zoo.to_matrix()  # [M, D]

    @property
    def arch(self):
        return self.zoo.arch

    @property
    def knob(self) -> dict[str, float]:
        """The setting that defines this baseline (for tables and reports)."""
        if self.kind == "interpolation":
            return {"alpha": self.alpha, "k": self.k}
        return {"scale": self.scale} if self.kind == "gaussian" else {"sigma": self.sigma}

    @cached_property
    def tensor_spread(self) -> Tensor:
        """``[D]``: per weight, the std of its tensor's values over the whole zoo (``s_k`` above)."""
        w, out = self._matrix, torch.empty(self._matrix.shape[1])
        for p in self.arch.layout:
            block = w[:, p.offset : p.offset + p.numel]
            out[p.offset : p.offset + p.numel] = block.std() if block.numel() > 1 else 0.0
        return out

    @property
    def in_span_parts(self) -> Tensor:
        """``[M, M]``: row ``j`` mixes the members into member ``j``'s projection onto the affine span of the
        other members (``in_span_coefficients``)."""
        if self.span_coefficients is None:
            self.span_coefficients = in_span_coefficients(self._matrix)
        return self.span_coefficients

    def sample(self, num_networks: int, generator: torch.Generator | None = None) -> Tensor:
        """Raw weights ``[N, D]`` (before BatchNorm recalibration)."""
        return self._draw(num_networks, generator)[0]

    def _draw(self, num_networks: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Raw weights ``[N, D]`` and each network's parents as mixing weights over the zoo ``[N, M]``."""
        return DRAWS[self.kind](self, num_networks, generator)

    def _unit_targets(self, mixing: Tensor, calibration_data: Tensor | None) -> Tensor | None:
        """``[N, S]``: the parents' hidden-unit statistics mixed as the networks are (``recalibrate_units``)."""
        if not self.recalibrate_units:
            return None
        from ..generation.postprocess import recipe_calibration_data
        from ..generation.unit_recalibration import unit_statistics

        if calibration_data is not None:
            return mixing @ unit_statistics(self.arch, self._matrix, calibration_data)
        if self.parent_statistics is None:
            data = recipe_calibration_data(self.arch, self.zoo.recipe)
            self.parent_statistics = unit_statistics(self.arch, self._matrix, data)
        return mixing @ self.parent_statistics

    @torch.no_grad()
    def __call__(
        self,
        num_networks: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "model",
        return_dict: bool = True,
        calibration_data: Tensor | None = None,
        calibrate: bool = True,
    ) -> DeepWeightFlowOutput | tuple:
        """The pipeline's call: ``N`` networks as models, state dicts or flat weights (``output_type``)."""
        CallConfig(num_networks)
        check_memory(num_networks, 2 * self.arch.num_params)
        weights, mixing = self._draw(num_networks, generator)
        targets = self._unit_targets(mixing, calibration_data) if calibrate and output_type != "pt" else None
        out = postprocess(
            self.arch, weights, output_type, self.zoo.recipe, calibration_data, calibrate, targets
        )
        return out if return_dict else out.to_tuple()

    def generate_zoo(self, num_networks: int, seed: int = 0, **kwargs: Any) -> WeightZoo:
        """Generated networks as a ``WeightZoo`` (canonical, like the zoo they come from)."""
        gen = torch.Generator().manual_seed(seed)
        out = self(num_networks, generator=gen, output_type="state_dict", **kwargs)
        info = {"source": f"baseline:{self.kind}", "baseline": {"kind": self.kind, **self.knob}, "seed": seed}
        if self.recalibrate_units and kwargs.get("calibrate", True):
            info["unit_recalibration"] = True
        info["canonical"] = dict(self.zoo.info["canonical"])
        records = [{"source": f"baseline:{self.kind}", "seed": seed, "index": i} for i in range(num_networks)]
        return WeightZoo(self.arch, out.state_dicts, records, recipe=self.zoo.recipe, info=info)


def in_span_coefficients(weights: Tensor) -> Tensor:
    """``[M, M]`` for members ``weights [M, D]``: row ``j`` mixes the members into member ``j``'s projection onto
    the affine span of the other members. Computed from their Gram matrix (``M x M``, summed over column
    blocks), so a ResNet-size zoo costs no ``D``-sized decomposition or copy."""
    from ..compression.pca import centred_gram

    m = len(weights)
    gram = centred_gram(weights, weights.mean(0))  # centring leaves the projections unchanged
    coef = torch.zeros(m, m, dtype=torch.float64)
    for j in range(m):
        others = torch.cat([torch.arange(j), torch.arange(j + 1, m)])
        centre = torch.zeros(m, dtype=torch.float64)
        centre[others] = 1.0 / len(others)
        spread = -centre.expand(len(others), -1).clone()  # rows: each other member minus their mean
        spread[torch.arange(len(others)), others] += 1.0
        target = -centre
        target[j] += 1.0
        # the others' centred Gram matrix has a null direction (their mean): a relative cutoff drops it
        inv = torch.linalg.pinv(spread @ gram @ spread.T, hermitian=True, rtol=1e-10)
        coef[j] = centre + spread.T @ inv @ (spread @ gram @ target)
    return coef


Draw = Callable[["ZooBaseline", int, "torch.Generator | None"], tuple[Tensor, Tensor]]
DRAWS: Registry[Draw] = Registry("baseline")
"""Per kind: ``(baseline, N, generator) -> (raw weights [N, D], each network's parents as mixing weights
over the zoo [N, M])``."""


@DRAWS.register("noise")
def _noise(b: ZooBaseline, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    w, mixing = b._matrix, torch.zeros(n, len(b._matrix))
    first = torch.randint(0, len(w), (n,), generator=generator)
    noise = torch.randn(n, w.shape[1], generator=generator)
    mixing[torch.arange(n), first] = 1.0
    return w[first] + b.sigma * b.tensor_spread * noise, mixing


@DRAWS.register("interpolation")
def _interpolation(b: ZooBaseline, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    w, m = b._matrix, len(b._matrix)
    picks = torch.stack([torch.randperm(m, generator=generator)[: b.k] for _ in range(n)])
    coef = torch.full((b.k,), b.alpha / (b.k - 1))
    coef[0] = 1 - b.alpha
    mixing = torch.zeros(n, m).scatter_add_(1, picks, coef.expand(n, -1).contiguous())
    return torch.einsum("k,nkd->nd", coef, w[picks]), mixing


@DRAWS.register("mean_noise")
def _mean_noise(b: ZooBaseline, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    w = b._matrix  # every network's parents: all members, equally
    noise = torch.randn(n, w.shape[1], generator=generator)
    return w.mean(0) + b.sigma * b.tensor_spread * noise, torch.full((n, len(w)), 1.0 / len(w))


@DRAWS.register("gaussian")
def _gaussian(b: ZooBaseline, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    w, parts = b._matrix, b.in_span_parts  # parents for recalibration: all members, equally (the mean's)
    z = torch.randn(n, len(w), generator=generator, dtype=parts.dtype)
    coef = parts.mean(0) + b.scale * z @ (parts - parts.mean(0)) / max(len(w) - 1, 1) ** 0.5
    return coef.to(w.dtype) @ w, torch.full((n, len(w)), 1.0 / len(w))


BASELINES = DRAWS.names()
