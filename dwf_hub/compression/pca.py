"""PCA of a zoo's weight matrix ``[N, D]`` (N networks << D weights).

``fit_pca``: exact, through the N x N Gram matrix of the centred rows, computed without a centred
copy — peak memory is the matrix plus the ``[k, D]`` components (at most two N x D copies).
``fit_pca_incremental``: scikit-learn's ``IncrementalPCA`` over batches of rows (e.g. read from
checkpoints one batch at a time) when the matrix does not fit in memory.
``fit_pca_dual``: dual (Gram) PCA streamed over *column* blocks read lazily from the checkpoints — one
pass builds the mean and the N x N Gram matrix, a randomized eigendecomposition follows, a second pass
recovers the components block by block (optionally straight into a file): memory O(N * block + N^2).

Explained variance is always a fraction of the zoo's *total* variance.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import DWFError
from ..resources import available_memory


@dataclass
class PCAResult:
    mean: Tensor
    """``[D]``"""
    components: Tensor
    """``[k, D]``, orthonormal rows, by decreasing variance."""
    std: Tensor
    """``[k]``: standard deviation of the zoo along each component."""
    explained_variance: float
    """Fraction of the zoo's total variance the ``k`` components hold."""
    rank: int
    """Number of components with non-zero variance (at most N - 1)."""


def choose_k(variances: Tensor, n_components: int | float | None, rank: int, total: float) -> int:
    """``None``: every non-zero component; int: that many; float in (0, 1]: the fewest reaching that
    fraction of ``total`` variance."""
    if n_components is None:
        return rank
    if isinstance(n_components, float):
        if not 0 < n_components <= 1:
            raise DWFError(
                f"n_components as a fraction of the variance must be in (0, 1], got {n_components}"
            )
        cumulative = torch.cumsum(variances[:rank].double(), 0) / total
        return min(rank, int((cumulative < n_components - 1e-12).sum()) + 1)
    k = int(n_components)
    if isinstance(n_components, bool) or not 1 <= k <= rank:
        raise DWFError(f"n_components={n_components} must be between 1 and the zoo's rank {rank}")
    return k


def _result(mean: Tensor, components: Tensor, variances: Tensor, total: float, rank: int) -> PCAResult:
    """The ``k = len(components)`` leading components with their stds and share of the ``total`` variance."""
    k = components.shape[0]
    return PCAResult(mean, components, variances[:k].sqrt().float(), float(variances[:k].sum()) / total, rank)


def _rank(spectrum: Tensor) -> int:
    """Components above 1e-10 of the largest in a decreasing ``spectrum``; refuses a zoo without variance."""
    rank = int((spectrum > spectrum[0] * 1e-10).sum()) if spectrum[0] > 0 else 0
    if rank == 0:
        raise DWFError("PCA: all networks are identical (zero variance)")
    return rank


def _check_matrix(n: int, shape: tuple[int, ...]) -> None:
    if len(shape) != 2 or n < 2:
        raise DWFError(f"PCA needs a matrix of at least two networks, got shape {shape}")


def fit_pca(weights: Tensor, n_components: int | float | None = None) -> PCAResult:
    """Exact PCA of ``weights [N, D]`` (float32) from the eigenvectors of the centred Gram matrix."""
    n = weights.shape[0]
    _check_matrix(n, tuple(weights.shape))
    mean = weights.mean(0)
    gram = centred_gram(weights, mean)
    eigvals, eigvecs = torch.linalg.eigh(gram)  # ascending
    eigvals, eigvecs = eigvals.flip(0).clamp_min(0), eigvecs.flip(1)
    variances = eigvals / (n - 1)
    rank = _rank(eigvals)
    total = float(variances.sum())
    k = choose_k(variances, n_components, rank, total)
    # components = U_k^T (X - 1 mean^T) / s_k, without forming X - 1 mean^T
    coef = (eigvecs[:, :k] / eigvals[:k].sqrt()).T  # [k, N] float64
    components = coef.float() @ weights
    components.addr_(coef.sum(1).float(), mean, alpha=-1)  # in place: no third N x D-sized tensor
    components /= components.norm(dim=1, keepdim=True)
    return _result(mean, components, variances, total, rank)


def centred_gram(weights: Tensor, mean: Tensor) -> Tensor:
    """``(X - 1 m^T)(X - 1 m^T)^T`` in float64, over column blocks of ~16M values (no N x D copy)."""
    n, d = weights.shape
    block = max(1, (1 << 24) // n)
    gram = torch.zeros(n, n, dtype=torch.float64)
    for s in range(0, d, block):
        part = weights[:, s : s + block].double() - mean[s : s + block].double()
        gram += part @ part.T
    return gram


def fit_pca_incremental(
    batches: Callable[[], Iterator[Tensor]],
    n_networks: int,
    n_components: int | float | None = None,
    batch_size: int = 32,
) -> PCAResult:
    """PCA streamed over row batches: ``batches()`` yields ``[b, D]`` float tensors covering all
    ``n_networks`` rows once (called once). At most ``batch_size`` rows are held at a time.

    ``IncrementalPCA`` keeps at most ``batch_size`` components (each batch must hold as many rows);
    ``n_components`` then selects among them as in ``fit_pca``.
    """
    from sklearn.decomposition import IncrementalPCA
    from sklearn.utils import gen_batches

    if n_networks < 2:
        raise DWFError(f"PCA needs at least two networks, got {n_networks}")
    kept = min(n_networks - 1, batch_size) if not isinstance(n_components, int) else n_components
    if isinstance(n_components, int) and not 1 <= n_components <= min(n_networks - 1, batch_size):
        raise DWFError(
            f"n_components={n_components} must be between 1 and min(networks - 1, batch_size) = "
            f"{min(n_networks - 1, batch_size)} for incremental PCA"
        )
    ipca = IncrementalPCA(n_components=kept, batch_size=batch_size)
    # sklearn's own batch plan: the last batch absorbs a remainder smaller than `kept`
    plan = [sl.stop - sl.start for sl in gen_batches(n_networks, batch_size, min_batch_size=kept)]
    rows, buffer = 0, np.empty((0, 0), dtype=np.float32)
    for batch in batches():
        part = batch.detach().float().cpu().numpy()
        buffer = part if not len(buffer) else np.concatenate([buffer, part])
        while plan and len(buffer) >= plan[0]:
            size = plan.pop(0)
            ipca.partial_fit(buffer[:size])
            buffer, rows = buffer[size:], rows + size
    if plan or len(buffer):
        raise DWFError(f"incremental PCA: expected {n_networks} rows, the batches held {rows + len(buffer)}")
    variances = torch.from_numpy(ipca.explained_variance_.astype(np.float64))
    total = float(ipca.var_.astype(np.float64).sum()) * n_networks / (n_networks - 1)
    rank = _rank(variances)
    k = choose_k(variances, n_components, rank, total)
    mean = torch.from_numpy(ipca.mean_.astype(np.float32))
    components = torch.from_numpy(np.ascontiguousarray(ipca.components_[:k], dtype=np.float32))
    return _result(mean, components, variances, total, rank)


def _wanted_components(n_components: int | float | None, n: int) -> int:
    """How many eigenpairs the randomized SVD computes: ``n_components`` when a count, else all ``n - 1``."""
    wanted = n - 1 if not isinstance(n_components, int) or isinstance(n_components, bool) else n_components
    if not 1 <= wanted <= n - 1:
        raise DWFError(f"n_components={n_components} must be between 1 and {n - 1} (networks - 1)")
    return wanted


def _mean_and_gram(
    read_columns: Callable[[int, int], Tensor], n: int, d: int, block_size: int, starts
) -> tuple[Tensor, Tensor]:
    """Pass 1 of the dual PCA: column means ``[D]`` and ``S S^T [N, N]`` (float64) with ``S`` the matrix
    minus member 0's row, over this rank's column blocks ``starts`` (the other ranks' means stay 0)."""
    gram = torch.zeros(n, n, dtype=torch.float64)
    mean = torch.zeros(d)
    for s in starts:
        x = read_columns(s, min(s + block_size, d))
        if x.shape != (n, min(block_size, d - s)):
            raise DWFError(f"dual PCA: column block at {s} has shape {tuple(x.shape)}, expected ({n}, ...)")
        if not torch.isfinite(x).all():
            row = int((~torch.isfinite(x)).any(1).nonzero()[0])
            raise DWFError(f"dual PCA: network {row} has NaN or Inf weights in columns {s}..{s + x.shape[1]}")
        mean[s : s + x.shape[1]] = x.mean(0)
        shifted = x - x[0]
        gram += (shifted @ shifted.T).double()
    return mean, gram


def fit_pca_dual(
    read_columns: Callable[[int, int], Tensor],
    n_networks: int,
    num_params: int,
    n_components: int | float | None = None,
    block_size: int | None = None,
    components_path: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PCAResult:
    """Dual PCA of the ``[N, D]`` matrix whose column blocks ``read_columns(start, stop)`` returns.

    Pass 1, per block: the column means and ``S S^T`` with ``S`` the block minus member 0's
    values — centring is shift-invariant, and the shift keeps the float32 block products free of the
    large common mean (no cancellation, no overflow); the ``[N, N]`` products add up in float64. The
    centred Gram matrix is then ``H G H`` (``H = I - 11^T / N``), eigendecomposed by randomized SVD
    (Halko et al.; exact for PSD matrices up to the spectrum's tail). Pass 2 recovers the components
    ``Λ^-1/2 U^T (X - 1 m^T)`` one column block at a time (``block_size`` columns; default ~64 MB). With ``components_path`` they are written
    there (a safetensors file, key ``components``) and returned memory-mapped, so a basis larger than
    memory is fine. Explained variance is a fraction of the total variance, ``trace(H G H) / (N - 1)``.
    """
    from huggingface_hub.utils import tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS
    from sklearn.utils.extmath import randomized_svd

    n, d = n_networks, num_params
    _check_matrix(n, (n, d))
    ranks = Ranks()
    # blocks of ~64 MB (float32), at least one per rank
    block_size = block_size or max(1, min((1 << 24) // n, -(-d // ranks.count)))
    starts = ranks.share(range(0, d, block_size))
    blocks = lambda desc: tqdm(starts, desc=desc, disable=not progress, leave=False)  # noqa: E731
    mean, gram = _mean_and_gram(read_columns, n, d, block_size, blocks("dual PCA: Gram matrix"))
    ranks.sum(gram, mean)
    centre = torch.eye(n, dtype=torch.float64) - 1.0 / n
    gram = centre @ gram @ centre
    total = float(gram.trace()) / (n - 1)
    _rank(torch.tensor([total]))  # refuses a zoo without variance before the SVD
    wanted = _wanted_components(n_components, n)
    u, eig, _ = randomized_svd(gram.numpy(), wanted, n_oversamples=10, n_iter=7, random_state=seed)
    u, eig = ranks.from_main(torch.from_numpy(u.copy()), torch.from_numpy(eig.copy()))
    variances = eig / (n - 1)
    rank = _rank(variances)
    k = choose_k(variances, n_components, rank, total)
    coef = u[:, :k].T / eig[:k].sqrt()[:, None]  # [k, N]
    components = _recover_components(read_columns, coef, mean, blocks("dual PCA: components"), block_size,
                                     ranks, components_path)  # fmt: skip
    return _result(mean, components, variances, total, rank)


def _recover_components(read_columns, coef: Tensor, mean: Tensor, starts, block_size: int, ranks: Ranks,
                        path: str | os.PathLike | None) -> Tensor:  # fmt: skip
    """Pass 2 of the dual PCA: ``coef [k, N] @ (X - 1 m^T)`` over this rank's column blocks, into the shared
    file at ``path`` (returned memory-mapped) or a ``[k, D]`` tensor summed across ranks."""
    k, d = coef.shape[0], mean.numel()
    coef32, coef_sum = coef.float(), coef.sum(1).float()
    writer = ranks.components_file(path, k, d) if path else None
    components = None if writer else torch.zeros(k, d)
    for s in starts:
        e = min(s + block_size, d)
        block = coef32 @ read_columns(s, e)
        block.addr_(coef_sum, mean[s:e], alpha=-1)  # coef @ (X - 1 m^T) without the centred copy
        if writer:
            writer.write_columns(s, block)
        else:
            components[:, s:e] = block
    ranks.wait()
    if writer:
        return writer.open()
    ranks.sum(components)
    return components


class Ranks:
    """The processes of an ``accelerate launch`` / ``torchrun`` job sharing one dual PCA (one process: no-ops)."""

    def __init__(self) -> None:
        from ..distributed import process_state

        state = process_state()
        self.index, self.count = state.process_index, state.num_processes
        self.main = state.is_main_process

    def share(self, starts: range) -> range:
        """This rank's contiguous share of the column blocks."""
        per = -(-len(starts) // self.count)
        return starts[self.index * per : (self.index + 1) * per]

    def sum(self, *tensors: Tensor) -> None:
        if self.count > 1:
            import torch.distributed as dist

            for t in tensors:
                dist.all_reduce(t)

    def from_main(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """Rank 0's values everywhere (ranks on other machines may round an SVD differently)."""
        if self.count > 1:
            import torch.distributed as dist

            for t in tensors:
                dist.broadcast(t, 0)
        return tensors

    def wait(self) -> None:
        if self.count > 1:
            import torch.distributed as dist

            dist.barrier()

    def components_file(self, path: str | os.PathLike, k: int, d: int) -> _ComponentsFile:
        """The file every rank writes its columns into (created by the main process; a path all ranks see)."""
        if self.main:
            _ComponentsFile.create(path, k, d)
        self.wait()
        return _ComponentsFile(path, k, d)


class _ComponentsFile:
    """A ``[k, D]`` float32 safetensors file written column block by column block (``os.pwrite``)."""

    def __init__(self, path: str | os.PathLike, k: int, d: int) -> None:
        self.path, self.k, self.d = str(path), k, d
        self.start = 8 + len(self._header(k, d))

    @staticmethod
    def _header(k: int, d: int) -> str:
        import json

        header = json.dumps({"components": {"dtype": "F32", "shape": [k, d], "data_offsets": [0, 4 * k * d]}})
        return header + " " * (-len(header) % 8)

    @classmethod
    def create(cls, path: str | os.PathLike, k: int, d: int) -> None:
        header = cls._header(k, d)
        with open(path, "wb") as f:
            f.write(len(header).to_bytes(8, "little") + header.encode())
            f.truncate(8 + len(header) + 4 * k * d)

    def write_columns(self, start: int, block: Tensor) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for r, row in enumerate(block.numpy()):
                os.pwrite(fd, row.tobytes(), self.start + 4 * (r * self.d + start))
        finally:
            os.close(fd)

    def open(self) -> Tensor:
        """The components, memory-mapped (copy-on-write) from the file."""
        from ..io import map_tensor

        return map_tensor(self.path, "components", (self.k, self.d))


def exact_fits_in_memory(n: int, d: int, available_bytes: int | None = None) -> bool:
    """Whether two float32 ``N x D`` copies fit in half the available memory."""
    if available_bytes is None:
        available_bytes = available_memory()
    return 2 * n * d * 4 <= available_bytes // 2
