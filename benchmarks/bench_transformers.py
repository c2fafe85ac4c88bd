"""Transformers: a tiny-ViT zoo on the 8x8 digits with and without TransFusion, and TransFusion speed.

    python benchmarks/bench_transformers.py [--num-models 50] [--widths 32,128,512] [--speed-models 100]

Part 1 trains the ``digits_vit`` zoo (resumable, in ``--out``), fits one flow per canonicalization x flow
width (``--coding whiten``: PCA-whitened coordinates, 4,000 iterations of batch 64 at lr 2e-3, matched source
std, 10 RK4 steps — our default for MLPs; ``paper``: the authors' preset on raw weights, source std 0.001,
batch 4, lr 5e-4, 99 RK4 steps; ``--iterations`` overrides), generates ``--generate`` networks from each
and reports their test accuracy (mean ± std) against the zoo's and the novelty ratio (median distance
from a generated network to its nearest zoo network / median nearest-other distance within the zoo, in
canonical space; near 0 = copies). Part 2 times TransFusion on ``--speed-models`` random ViT-Small-192
networks (the paper: 13 minutes for 100 on a GPU).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dwf_hub.archs import get_arch
from dwf_hub.evaluation.zoo_evaluation import evaluate_zoo
from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.zoo.training import init_member, train_zoo
from dwf_hub.zoo.weight_zoo import WeightZoo

MODES = {
    "full": ("TransFusion + residual stream", {"canonicalize": True, "permute_residual": True}),
    "heads": ("TransFusion, heads + FFN (authors')", {"canonicalize": True, "permute_residual": False}),
    "none": ("none", {"canonicalize": False}),
}


WHITENED = {"normalization": "whiten", "iterations": 4000, "batch_size": 64, "lr": 2e-3, "dropout": 0.0,
            "source_std": "matched", "num_inference_steps": 10}  # fmt: skip


def pm(summary: dict, key: str) -> str:
    return f"{100 * summary[key + '_mean']:.2f} ± {100 * summary[key + '_std']:.2f}"


def zoo_part(args) -> None:
    t0 = time.perf_counter()
    zoo = train_zoo("digits_vit", args.num_models, Path(args.out) / "digits_vit", progress=not args.quiet)
    train_s = time.perf_counter() - t0
    reference = canonicalize(zoo, progress=False).zoo  # novelty is measured in this canonical space
    base = evaluate_zoo(zoo)
    print(f"\ndigits_vit zoo: {len(zoo)} networks of {zoo.arch.num_params:,} weights, trained in {train_s:.0f} s; "
          f"test accuracy {pm(base, 'accuracy')}")  # fmt: skip
    preset, overrides = ("paper", {}) if args.coding == "paper" else ("dwf", dict(WHITENED))
    if args.iterations:
        overrides["iterations"] = args.iterations
    print(
        f"\n| canonicalization | flow width ({args.coding}) | generated accuracy (%) | novelty ratio | fit (s) |"
    )
    print("|---|---|---|---|---|")
    for width in args.widths:
        for mode, settings in (MODES[m] for m in args.modes):
            cfg = default_flow_config(zoo, preset, hidden_dim=width, seed=0, **settings, **overrides)
            t0 = time.perf_counter()
            fit = fit_pipeline(zoo, cfg, progress=False)
            fit_s = time.perf_counter() - t0
            generated = fit.pipeline.generate_zoo(args.generate, seed=1, quality_check=False)
            s = evaluate_zoo(generated, reference=reference)
            print(
                f"| {mode} | {width} | {pm(s, 'accuracy')} | {s['novelty_ratio']:.3f} | {fit_s:.0f} |",
                flush=True,
            )


def speed_part(args) -> None:
    arch = get_arch("vit_small")
    members = [init_member(arch, "default", seed) for seed in range(args.speed_models)]
    zoo = WeightZoo(arch, members)
    print(
        f"\n| TransFusion, {len(zoo)} random ViT-Small-192 ({arch.num_params:,} weights), 2-core CPU | time (s) |"
    )
    print("|---|---|")
    for residual in (True, False):
        t0 = time.perf_counter()
        canonicalize(zoo, progress=False, permute_residual=residual)
        label = "heads + FFN + residual stream" if residual else "heads + FFN (authors' scope)"
        print(f"| {label}, 10 sweeps | {time.perf_counter() - t0:.1f} |", flush=True)
    print("| the paper (GPU), 100 networks | 780 |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-models", type=int, default=50)
    parser.add_argument("--widths", type=lambda s: [int(w) for w in s.split(",")], default=[32, 128, 512])
    parser.add_argument("--generate", type=int, default=50)
    parser.add_argument("--coding", default="whiten", choices=["whiten", "paper"], help="see above")
    parser.add_argument(
        "--iterations", type=int, default=None, help="flow iterations (default: the coding's)"
    )
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES), help="full,heads,none")
    parser.add_argument("--speed-models", type=int, default=100)
    parser.add_argument("--skip-zoo", action="store_true")
    parser.add_argument("--out", default="bench_out/transformers")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.speed_models:
        speed_part(args)
    if not args.skip_zoo:
        zoo_part(args)


if __name__ == "__main__":
    main()
