"""Convolutional zoos end to end: SmallCNN and ResNet-20 on the 8x8 digits, and the paper's Table 7.

    python benchmarks/research/bench_conv.py [--device cuda] [--num-models 50] [--out bench_out/conv]

For each recipe: train a zoo, fit four flows (Git Re-Basin on/off x PCA-whitened / per-weight
standardised coordinates, i.e. with and without PCA), generate networks and report test accuracy
(mean ± std) against the zoo and the novelty ratio (median nearest-zoo distance of a generated network
/ median nearest-other distance within the zoo, in canonical space). For BatchNorm networks, Table 7:
the flow's own running statistics (no calibration), the reference network's statistics (Ref BN), and
recalibration on the training split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dwf_hub.evaluation.novelty import NoveltyScorer
from dwf_hub.evaluation.zoo_evaluation import aligned_matrices
from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.generation.calibration import recalibrate_batchnorm
from dwf_hub.matching import canonicalize
from dwf_hub.scoring import score_many, stack_state_dicts
from dwf_hub.zoo.data import load_task
from dwf_hub.zoo.recipes import load_recipe
from dwf_hub.zoo.training import train_zoo
from dwf_hub.zoo.weight_zoo import WeightZoo

CODINGS = {"PCA (whiten)": "whiten", "no PCA (standardize)": "standardize"}


def fmt(acc: torch.Tensor) -> str:
    return f"{100 * float(acc.mean()):.2f} ± {100 * float(acc.std(unbiased=False)):.2f}"


def bn_strategies(pipe, raw_state_dicts, x_cal) -> dict[str, list[dict]]:
    """Table 7: the generated networks with three kinds of BatchNorm running statistics."""
    ref = pipe.codec.reference_state_dict()
    stats = ("running_mean", "running_var")
    ref_bn = [{k: (ref[k] if k.endswith(stats) else v) for k, v in sd.items()} for sd in raw_state_dicts]
    recal = []
    for sd in raw_state_dicts:
        net = pipe.arch.instantiate({k: v.clone() for k, v in sd.items()})
        recal.append(
            recalibrate_batchnorm(net, x_cal, batch_size=pipe.calibration_config.batch_size).state_dict()
        )
    return {"no calibration": raw_state_dicts, "Ref BN": ref_bn, "recalibrated": recal}


def run_recipe(name: str, args, device: torch.device) -> dict:
    recipe = load_recipe(name)
    t0 = time.perf_counter()
    zoo = train_zoo(recipe, args.num_models, Path(args.out) / name, progress=not args.quiet, device=device)
    train_s = time.perf_counter() - t0
    task = load_task(recipe.data)
    arch = zoo.arch
    zoo_acc = score_many(arch, zoo.to_matrix(), task.x_test, task.y_test)
    t0 = time.perf_counter()
    canonical = canonicalize(zoo, progress=False).zoo
    canon_s = time.perf_counter() - t0
    out = {"recipe": name, "zoo_accuracy": zoo_acc.tolist(), "train_s": train_s, "canonicalize_s": canon_s,
           "num_params": arch.num_params, "flows": []}  # fmt: skip
    print(f"\n## {name}: {len(zoo)} networks, D = {arch.num_params:,}, zoo test accuracy {fmt(zoo_acc)} "
          f"(zoo training {train_s:.1f} s on {device}, Git Re-Basin {canon_s:.2f} s)")  # fmt: skip
    header = "| Git Re-Basin | coordinates | components (variance) | BN statistics | generated acc (%) | min | max | novelty | fit (s) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for canon in (True, False):
        for label, normalization in CODINGS.items():
            if normalization not in args.codings.split(","):
                continue
            overrides = {"normalization": normalization, "canonicalize": canon}
            if args.iterations:
                overrides["iterations"] = args.iterations
            cfg = default_flow_config(zoo, **overrides)
            t0 = time.perf_counter()
            fit = fit_pipeline(canonical if canon else zoo, cfg, progress=not args.quiet)
            fit_s = time.perf_counter() - t0
            pipe = fit.pipeline.to(device)
            gen = torch.Generator(device="cpu").manual_seed(0)
            raw = pipe(
                num_networks=args.num_generated, generator=gen, output_type="state_dict", calibrate=False
            )
            pipe.to("cpu")
            raw_sds = raw.state_dicts
            aligned, canon_matrix = aligned_matrices(WeightZoo(arch, raw_sds), canonical)
            novelty = NoveltyScorer(arch, canon_matrix).score(aligned, diversity=False)["novelty_ratio"]
            codec = pipe.codec.config
            comps = (
                f"{codec.latent_dim} ({100 * codec.explained_variance:.1f} %)" if codec.latent_dim else "–"
            )
            variants = (
                bn_strategies(pipe, raw_sds, pipe.bundled_calibration_data())
                if arch.needs_calibration
                else {"–": raw_sds}
            )
            for strategy, sds in variants.items():
                acc = score_many(arch, stack_state_dicts(arch, sds), task.x_test, task.y_test)
                row = {"canonicalize": canon, "coordinates": label, "bn": strategy, "accuracy": acc.tolist(),
                       "novelty": novelty, "fit_s": fit_s, "latent_dim": codec.latent_dim,
                       "explained_variance": codec.explained_variance}  # fmt: skip
                out["flows"].append(row)
                print(f"| {'yes' if canon else 'no'} | {label} | {comps} | {strategy} | {fmt(acc)} | "
                      f"{100 * float(acc.min()):.2f} | {100 * float(acc.max()):.2f} | {novelty:.3f} | {fit_s:.1f} |")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="digits_smallcnn,digits_resnet20")
    parser.add_argument("--num-models", type=int, default=50)
    parser.add_argument("--num-generated", type=int, default=50)
    parser.add_argument(
        "--iterations", type=int, default=None, help="flow iterations (default: the recipe's)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="bench_out/conv")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--codings", default="whiten,standardize", help="flow coordinates to try")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    results = []
    for name in args.recipes.split(","):
        results.append(run_recipe(name, args, device))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
