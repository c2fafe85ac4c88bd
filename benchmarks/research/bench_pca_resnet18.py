"""PCA at ResNet-18 scale: fit on 100 random ResNet-18-sized weight vectors, decode 100 networks.

    python benchmarks/research/bench_pca_resnet18.py [--n 100] [--skip-incremental]

Peak memory is the process's resident high-water mark (reset before each phase through
/proc/self/clear_refs), reported above what was resident when the phase began, in units of one
float32 N x D matrix. Decoding writes a fresh ``[N, D]`` output, page faults included.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dwf_hub.archs import get_arch
from dwf_hub.codec import WeightCodec
from dwf_hub.compression.pca import fit_pca, fit_pca_incremental


def rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return rss_bytes("VmRSS")


def random_rows(n: int, d: int, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of a fixed random ``[n, d]`` matrix (row i seeded with i)."""
    out = torch.empty(stop - start, d)
    for j, i in enumerate(range(start, stop)):
        out[j].normal_(generator=torch.Generator().manual_seed(i)).mul_(0.05)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--skip-incremental", action="store_true")
    args = parser.parse_args()
    arch = get_arch("resnet18")
    n, d = args.n, arch.num_params
    unit = n * d * 4
    rows = []

    weights = random_rows(n, d, 0, n)
    base = reset_peak()
    t0 = time.perf_counter()
    pca = fit_pca(weights)
    fit_s = time.perf_counter() - t0
    fit_peak = (rss_bytes("VmHWM") - base) / unit
    rows.append(("exact fit (Gram matrix), k = all", fit_s, fit_peak + 1, pca.components.shape[0]))
    codec = WeightCodec.fit(arch, None, "pca", reference=weights[0], pca=pca)
    latents = codec.encode(weights[:n])
    del weights, pca

    decode = {}
    for k in (codec.latent_dim, 64, 32, 16):
        if k > codec.latent_dim:
            continue
        comps, lat = codec.components[:k].contiguous(), latents[:, :k].contiguous()
        base = reset_peak()
        t0 = time.perf_counter()
        out = torch.addmm(codec.mean, lat, comps)
        decode[k] = time.perf_counter() - t0
        peak = (rss_bytes("VmHWM") - base) / unit
        rows.append((f"decode {n} networks, k = {k}", decode[k], peak, k))
        del out, comps, lat
    full_k = codec.latent_dim
    del codec, latents

    if not args.skip_incremental:
        batch = min(25, n // 2)
        base = reset_peak()
        t0 = time.perf_counter()
        batches = lambda: (random_rows(n, d, s, min(s + batch, n)) for s in range(0, n, batch))  # noqa: E731
        inc = fit_pca_incremental(batches, n, n_components=batch - 1, batch_size=batch)
        inc_s = time.perf_counter() - t0
        rows.append((f"IncrementalPCA streamed, batches of {batch}, k = {batch - 1}", inc_s,
                     (rss_bytes("VmHWM") - base) / unit, inc.components.shape[0]))  # fmt: skip

    print(f"PCA on {n} ResNet-18-sized vectors (D = {d:,}; one N x D float32 matrix = {unit / 2**30:.2f} GiB), "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print("| phase | time (s) | peak memory (N x D copies) | components |")
    print("|---|---|---|---|")
    for name, secs, peak, k in rows:
        print(f"| {name} | {secs:.2f} | {peak:.2f} | {k} |")
    print("\nexact fit peak includes the input matrix itself (target: at most 2 copies); decode target ≤ 3 s: "
          + ", ".join(f"k={k}: {'met' if s <= 3 else 'missed'}" for k, s in decode.items()))  # fmt: skip
    flops = 2 * n * full_k * d / decode[full_k] / 1e9
    print(
        f"decode at k = {full_k} runs at {flops:.0f} GFLOP/s: compute-bound (2·N·k·D flops), not memory-bound"
    )


if __name__ == "__main__":
    main()
