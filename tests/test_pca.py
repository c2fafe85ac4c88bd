from __future__ import annotations

import pytest
import torch

from dwf_hub.errors import DWFError
from dwf_hub.pca import fit_pca


def _low_rank(n=30, d=500, r=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, r, generator=g))[0].T  # [r, d] orthonormal
    scales = torch.tensor([8.0, 5.0, 3.0, 2.0, 1.0, 0.5])[:r]
    return torch.randn(n, r, generator=g) * scales @ basis + torch.randn(d, generator=g), basis


def test_matches_svd_and_reports_fraction_of_total_variance():
    w, _ = _low_rank()
    w = w + 0.01 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
    pca = fit_pca(w, n_components=4)
    centred = (w - w.mean(0)).double()
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    # same subspace as the SVD's top 4 right singular vectors, orthonormal rows
    overlap = pca.components.double() @ vh[:4].T
    torch.testing.assert_close(overlap.abs().sum(1), torch.ones(4, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(pca.std.double(), s[:4] / (len(w) - 1) ** 0.5, atol=1e-4, rtol=1e-4)
    total = (s**2).sum()
    assert pca.explained_variance == pytest.approx(float((s[:4] ** 2).sum() / total), rel=1e-6)
    assert pca.explained_variance < 1.0  # a fraction of the total, not of the kept components


def test_component_count_by_variance_fraction():
    w, _ = _low_rank()
    full = fit_pca(w)
    assert full.rank == 6 and full.components.shape[0] == 6
    assert full.explained_variance == pytest.approx(1.0)
    k90 = fit_pca(w, n_components=0.9)
    assert k90.explained_variance >= 0.9
    assert fit_pca(w, n_components=k90.components.shape[0] - 1).explained_variance < 0.9
    assert fit_pca(w, n_components=1.0).components.shape[0] == 6


def test_decoding_reconstructs_within_the_kept_subspace():
    w, _ = _low_rank()
    pca = fit_pca(w)
    latents = (w - pca.mean) @ pca.components.T
    torch.testing.assert_close(torch.addmm(pca.mean, latents, pca.components), w, atol=1e-4, rtol=1e-4)


def test_pca_errors():
    with pytest.raises(DWFError, match="at least two networks"):
        fit_pca(torch.randn(1, 5))
    with pytest.raises(DWFError, match="identical"):
        fit_pca(torch.ones(4, 5))
    w, _ = _low_rank()
    with pytest.raises(DWFError, match="between 1 and the zoo's rank 6"):
        fit_pca(w, n_components=7)
    with pytest.raises(DWFError, match=r"\(0, 1\]"):
        fit_pca(w, n_components=1.5)
