"""PCA solvers by name (``PCA_SOLVERS``): how a codec's principal components are fitted on a zoo.

Each is ``(zoo, num_params, n_components, batch_size, seed, progress) -> PCAResult``; ``dual`` also takes
``basis_path`` (a file all ranks see, for a basis larger than memory); ``zoo`` is a
``WeightZoo`` (``to_matrix``, ``iter_matrix``, ``read_columns``). The module stays light (the CLI builds
its choices from it); the solvers import ``dwf_hub.compression.pca`` when called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from .pca import PCAResult

PCA_SOLVERS: Registry[Callable[..., PCAResult]] = Registry("PCA solver")


@PCA_SOLVERS.register("auto")
def _auto(zoo, d: int, *rest) -> PCAResult:
    return PCA_SOLVERS[resolve_pca_solver("auto", len(zoo), d)](zoo, d, *rest)


@PCA_SOLVERS.register("exact")
def _exact(zoo, d: int, k, batch: int, seed: int, progress: bool) -> PCAResult:
    from .pca import fit_pca

    return fit_pca(zoo.to_matrix(), k)


@PCA_SOLVERS.register("dual")
def _dual(zoo, d: int, k, batch: int, seed: int, progress: bool, basis_path=None) -> PCAResult:
    from .pca import fit_pca_dual

    return fit_pca_dual(
        zoo.read_columns, len(zoo), d, k, components_path=basis_path, seed=seed, progress=progress
    )


@PCA_SOLVERS.register("incremental")
def _incremental(zoo, d: int, k, batch: int, seed: int, progress: bool) -> PCAResult:
    from .pca import fit_pca_incremental

    return fit_pca_incremental(lambda: zoo.iter_matrix(batch), len(zoo), k, batch)


def resolve_pca_solver(name: str, n: int, d: int) -> str:
    """``auto``: ``exact`` when two copies of the ``[n, d]`` zoo fit in memory, else the streaming ``dual``."""
    from .pca import exact_fits_in_memory

    PCA_SOLVERS[name]  # an unknown name raises, naming the known ones
    if name == "auto":
        return "exact" if exact_fits_in_memory(n, d) else "dual"
    return name
