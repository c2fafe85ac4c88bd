"""Streaming dual PCA at scale: 100 checkpoints of 21M weights each (8.4 GB) stored as safetensors.

    python benchmarks/research/bench_dual_pca.py [--n 100] [--k 64] [--dir bench_out/dual_pca]

The checkpoints (an MLP [4096, 4096, 1024, 16]: 20,993,040 weights) are a shared mean plus 8 random
directions with per-network coefficients plus noise, written once and reused. The fit runs in a fresh
process that reads the checkpoints column block by column block and writes the components to a file;
its peak resident memory (``ru_maxrss``) is compared with the size of the ``N x D`` float32 matrix.
Then exact PCA (in memory) and dual PCA are compared on a problem small enough for both.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from _common import DIRECTIONS, synthetic_rows

from dwf_hub.archs import get_arch
from dwf_hub.compression.pca import fit_pca, fit_pca_dual
from dwf_hub.io import save_tensors
from dwf_hub.zoo.weight_zoo import WeightZoo

ARCH = {"name": "mlp", "layer_sizes": [4096, 4096, 1024, 16]}


def write_checkpoints(folder: Path, n: int) -> list[Path]:
    arch = get_arch(**ARCH)
    paths = [folder / f"model_{i:05d}.safetensors" for i in range(n)]
    if all(p.is_file() for p in paths):
        return paths
    for path, row in zip(paths, synthetic_rows(n, arch.num_params)):
        save_tensors(path, {k: v.clone() for k, v in arch.unflatten(row).items()})
    return paths


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def fit_in_this_process(folder: Path, n: int, k: int) -> None:
    arch = get_arch(**ARCH)
    zoo = WeightZoo(arch, sorted(folder.glob("model_*.safetensors"))[:n])
    before = rss_now()  # torch and the other libraries, before the fit
    t0 = time.perf_counter()
    pca = fit_pca_dual(
        zoo.read_columns, n, arch.num_params, k, components_path=folder / "components.safetensors"
    )
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the checks below touch the file
    ortho = torch.zeros(8, 8, dtype=torch.float64)
    for s in range(0, arch.num_params, 1 << 22):
        part = pca.components[:8, s : s + (1 << 22)].double()
        ortho += part @ part.T
    print(json.dumps({
        "seconds": seconds,
        "peak_rss": peak,
        "rss_before": before,
        "explained": pca.explained_variance,
        "k": int(pca.components.shape[0]),
        "orthonormality_error": float((ortho - torch.eye(8, dtype=torch.float64)).abs().max()),
    }))  # fmt: skip


def small_agreement(n: int = 100, d: int = 200_000, k: int = DIRECTIONS) -> dict:
    """Beyond the 8 planted directions the spectrum is flat noise, whose directions no method pins down."""
    x = torch.stack(list(synthetic_rows(n, d, seed=1)))
    exact = fit_pca(x, k)
    dual = fit_pca_dual(lambda s, e: x[:, s:e], n, d, k, block_size=10_000)
    a, b = dual.components.double(), exact.components.double()
    sine = torch.linalg.svdvals(a - (a @ b.T) @ b).max().clamp(max=1.0)  # of the largest principal angle
    largest_angle = float(torch.rad2deg(torch.arcsin(sine)))

    def error(p):
        centred = x - p.mean
        return float((centred - centred @ p.components.T @ p.components).norm() / (x - x.mean(0)).norm())

    return {"angle": largest_angle, "err_exact": error(exact), "err_dual": error(dual),
            "ev_exact": exact.explained_variance, "ev_dual": dual.explained_variance}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--dir", default="bench_out/dual_pca")
    parser.add_argument("--fit-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.dir)
    if args.fit_only:
        fit_in_this_process(folder, args.n, args.k)
        return
    folder.mkdir(parents=True, exist_ok=True)
    d = get_arch(**ARCH).num_params
    t0 = time.perf_counter()
    write_checkpoints(folder, args.n)
    print(f"{args.n} checkpoints of {d:,} weights ready in {time.perf_counter() - t0:.1f} s ({folder})")
    cmd = [
        sys.executable,
        __file__,
        "--fit-only",
        "--n",
        str(args.n),
        "--k",
        str(args.k),
        "--dir",
        str(folder),
    ]
    fit = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    matrix = args.n * d * 4
    print(f"\n| dual PCA, {args.n} x {d:,} from disk, k = {fit['k']} | value |")
    print("|---|---|")
    print(f"| time (s) | {fit['seconds']:.1f} |")
    print(
        f"| peak resident memory (GB) | {fit['peak_rss'] / 1e9:.2f} (libraries before the fit: {fit['rss_before'] / 1e9:.2f}) |"
    )
    print(f"| N x D float32 matrix (GB) | {matrix / 1e9:.2f} ({matrix / fit['peak_rss']:.1f}x the peak) |")
    print(f"| explained variance (fraction of total) | {fit['explained']:.4f} |")
    print(f"| max orthonormality error, first 8 components | {fit['orthonormality_error']:.1e} |")
    a = small_agreement()
    print(f"\n| agreement on 100 x 200,000, k = {DIRECTIONS} | exact PCA | dual PCA |")
    print("|---|---|---|")
    print(f"| largest principal angle between subspaces (deg) | – | {a['angle']:.2e} |")
    print(f"| relative reconstruction error | {a['err_exact']:.6f} | {a['err_dual']:.6f} |")
    print(f"| explained variance | {a['ev_exact']:.6f} | {a['ev_dual']:.6f} |")


if __name__ == "__main__":
    main()
