"""How the codec maps flat weights to the space the flow lives in, by name (``NORMALIZATIONS``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry


@dataclass(frozen=True)
class Normalization:
    center: bool
    """Subtract the zoo's mean weights."""
    standardize: bool = False
    """Divide each weight by its standard deviation over the zoo."""
    pca: bool = False
    """Project on the zoo's principal components (``latent_dim`` of them)."""
    whiten: bool = False
    """With ``pca``: divide by the zoo's standard deviation along each component."""


NORMALIZATIONS: Registry[Normalization] = Registry("normalization")
NORMALIZATIONS.add("none", Normalization(center=False))  # raw weights (the authors' code, small networks)
NORMALIZATIONS.add("center", Normalization(center=True))
NORMALIZATIONS.add("standardize", Normalization(center=True, standardize=True))  # per-weight z-scores
NORMALIZATIONS.add("pca", Normalization(center=True, pca=True))  # the paper's PCA
NORMALIZATIONS.add("whiten", Normalization(center=True, pca=True, whiten=True))
