from __future__ import annotations

import pytest
import torch

from dwf_hub.compression.pca import fit_pca
from dwf_hub.errors import DWFError


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


def test_incremental_pca_agrees_with_exact():
    from dwf_hub.compression.pca import fit_pca_incremental

    w, _ = _low_rank(n=40)
    w = w + 0.01 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
    exact = fit_pca(w, n_components=5)
    calls = []

    def batches():
        calls.append(1)
        for s in range(0, len(w), 7):  # uneven batches: the streaming re-chunks them
            yield w[s : s + 7]

    inc = fit_pca_incremental(batches, len(w), n_components=5, batch_size=16)
    assert len(calls) == 1
    torch.testing.assert_close(inc.mean, exact.mean, atol=1e-4, rtol=0)
    overlap = (inc.components.double() @ exact.components.double().T).abs()
    assert overlap.diagonal().min() > 0.999  # same leading directions
    torch.testing.assert_close(inc.std, exact.std, rtol=1e-3, atol=1e-4)
    assert inc.explained_variance == pytest.approx(exact.explained_variance, rel=1e-3)
    assert inc.explained_variance < 1.0
    frac = fit_pca_incremental(batches, len(w), n_components=0.9, batch_size=16)
    assert frac.explained_variance >= 0.9
    with pytest.raises(DWFError, match="expected 41 rows"):
        fit_pca_incremental(batches, 41, n_components=5, batch_size=16)
    with pytest.raises(DWFError, match="between 1 and"):
        fit_pca_incremental(batches, len(w), n_components=20, batch_size=16)


def test_fit_pipeline_streams_pca_over_checkpoints(tiny_zoo, tmp_path):
    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
    from dwf_hub.zoo.weight_zoo import WeightZoo

    tiny_zoo.save(tmp_path / "zoo")
    on_disk = WeightZoo.load(tmp_path / "zoo")
    kwargs = dict(normalization="pca", n_components=4, iterations=5, pca_batch_size=8)
    inc = fit_pipeline(
        on_disk, default_flow_config(on_disk, **kwargs, pca_solver="incremental"), progress=False
    )
    ex = fit_pipeline(on_disk, default_flow_config(on_disk, **kwargs, pca_solver="exact"), progress=False)
    a, b = inc.pipeline.codec, ex.pipeline.codec
    assert a.latent_dim == b.latent_dim == 4
    overlap = (a.components.double() @ b.components.double().T).abs().diagonal()
    assert overlap.min() > 0.99
    assert a.config.explained_variance == pytest.approx(b.config.explained_variance, rel=1e-3)
    torch.testing.assert_close(a.reference, b.reference)


def _offset_low_rank(n=30, d=5000, seed=2):
    """Rows = a large common mean + a low-rank spread + noise (like a zoo of trained networks)."""
    w, _ = _low_rank(n=n, d=d)
    g = torch.Generator().manual_seed(seed)
    return w + 0.01 * torch.randn(w.shape, generator=g) + 5.0 * torch.randn(d, generator=g)


def test_dual_pca_agrees_with_exact(tmp_path):
    from dwf_hub.compression.pca import fit_pca_dual

    w = _offset_low_rank()
    exact = fit_pca(w, n_components=5)
    calls = []

    def read(start, stop):
        calls.append((start, stop))
        return w[:, start:stop].clone()

    dual = fit_pca_dual(read, len(w), w.shape[1], n_components=5, block_size=777)
    assert calls[0] == (0, 777) and calls[-1][1] == w.shape[1]  # streamed in column blocks, two passes
    assert len(calls) == 2 * -(-w.shape[1] // 777)
    torch.testing.assert_close(dual.mean, exact.mean, atol=1e-4, rtol=0)
    overlap = (dual.components.double() @ exact.components.double().T).abs()
    angles = torch.linalg.svdvals(overlap)  # cosines of the principal angles between the subspaces
    assert angles.min() > 0.9999
    torch.testing.assert_close(dual.std, exact.std, rtol=1e-4, atol=1e-5)
    assert (
        dual.explained_variance == pytest.approx(exact.explained_variance, rel=1e-5)
        and dual.explained_variance < 1
    )
    gram = dual.components.double() @ dual.components.double().T
    torch.testing.assert_close(gram, torch.eye(5, dtype=torch.float64), atol=1e-4, rtol=0)

    def reconstruct(p):
        return (w - p.mean) @ p.components.T @ p.components + p.mean

    err_dual, err_exact = (float((reconstruct(p) - w).norm() / (w - w.mean(0)).norm()) for p in (dual, exact))
    assert err_dual == pytest.approx(err_exact, rel=1e-4)
    # components written to a file and memory-mapped back
    on_disk = fit_pca_dual(read, len(w), w.shape[1], n_components=0.95, block_size=1000,
                           components_path=tmp_path / "components.safetensors")  # fmt: skip
    assert on_disk.explained_variance >= 0.95
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "components.safetensors"))["components"]
    assert torch.equal(saved, on_disk.components)
    lead = (on_disk.components[:5].double() @ exact.components.double().T).abs().diagonal()
    assert lead.min() > 0.9999
    with pytest.raises(DWFError, match="between 1 and 29"):
        fit_pca_dual(read, len(w), w.shape[1], n_components=30)
    bad = w.clone()
    bad[3, 1234] = float("nan")
    with pytest.raises(DWFError, match="network 3 has NaN"):
        fit_pca_dual(lambda s, e: bad[:, s:e], len(w), w.shape[1], block_size=1000)


def test_dual_pca_reads_checkpoint_columns_from_disk(tiny_zoo, tmp_path):
    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
    from dwf_hub.io import save_tensors
    from dwf_hub.zoo.weight_zoo import WeightZoo

    tiny_zoo.save(tmp_path / "zoo")
    on_disk = WeightZoo.load(tmp_path / "zoo")
    d = on_disk.arch.num_params
    torch.testing.assert_close(
        on_disk.read_columns(5, d - 3), on_disk.to_matrix()[:, 5 : d - 3], atol=0, rtol=0
    )
    # half-precision checkpoints are read (as float32) too
    half = {k: v.half() for k, v in tiny_zoo.state_dict(0).items()}
    save_tensors(tmp_path / "half.safetensors", half)
    mixed = WeightZoo(
        on_disk.arch, [tmp_path / "half.safetensors", tmp_path / "zoo" / on_disk.records[1]["checkpoint"]]
    )
    assert torch.equal(
        mixed.read_columns(0, d)[0], on_disk.arch.flatten({k: v.float() for k, v in half.items()})
    )
    kwargs = dict(normalization="pca", n_components=4, iterations=5)
    dual = fit_pipeline(on_disk, default_flow_config(on_disk, **kwargs, pca_solver="dual"), progress=False)
    ex = fit_pipeline(on_disk, default_flow_config(on_disk, **kwargs, pca_solver="exact"), progress=False)
    a, b = dual.pipeline.codec, ex.pipeline.codec
    overlap = (a.components.double() @ b.components.double().T).abs().diagonal()
    assert overlap.min() > 0.999
    assert a.config.explained_variance == pytest.approx(b.config.explained_variance, rel=1e-4)


def test_auto_picks_dual_pca_when_the_zoo_does_not_fit(monkeypatch):
    from dwf_hub.compression import pca
    from dwf_hub.compression.pca_solvers import resolve_pca_solver

    assert resolve_pca_solver("auto", 100, 1000) == "exact"
    monkeypatch.setattr(pca, "exact_fits_in_memory", lambda n, d: False)
    assert resolve_pca_solver("auto", 100, 110_000_000) == "dual"
    assert resolve_pca_solver("incremental", 100, 1000) == "incremental"
