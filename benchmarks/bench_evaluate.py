"""Evaluation reports for the MLP zoos, and vectorized evaluation vs a per-model loop.

    python benchmarks/bench_evaluate.py [--zoos iris,digits,digits_resnet20] [--out bench_out/report] [--skip-speed]

For each zoo: train it (reused if already in ``--out``), fit the recipe's default flow, generate 100
networks and write the full report (``report.md``, ``summary.json``, figures) with noise baselines.
Then: predictions of 100 generated digits MLPs on the test split, one vectorized pass vs a loop that builds
and runs each model (both give identical predictions; best of 5 runs each); and the alignments behind every
novelty figure (each of them to each zoo member): the stacked descent ``novelty`` uses vs per-pair results
(``weight_matching_pairs``; both reach the same inner products).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dwf_hub.evaluation.report import build_report
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.matching import canonicalize, matching_spec
from dwf_hub.matching.weight_matching import matched_inner_products, weight_matching_pairs
from dwf_hub.scoring import predict_many, stack_matrix
from dwf_hub.zoo.training import train_zoo

ZOOS = {"iris": ("iris_mlp", 100), "digits": ("digits_mlp", 50), "digits_resnet20": ("digits_resnet20", 50)}
NOISE = (0.1, 0.3)  # relative to each tensor's spread in the zoo


def report_for(name: str, out: Path) -> dict:
    recipe, n = ZOOS[name]
    zoo = train_zoo(recipe, n, out / name / "zoo", progress=False)
    canonical = canonicalize(zoo, progress=False).zoo
    fit = fit_pipeline(canonical, progress=False)
    generated = fit.pipeline.generate_zoo(100, seed=0, quality_check=False)
    return build_report(generated, canonical, out / name, noise=NOISE)


def timed(f, repeats: int = 5) -> tuple[float, torch.Tensor]:
    """Best wall time of ``repeats`` calls of ``f``, and its result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = f()
        best = min(best, time.perf_counter() - t0)
    return best, result


def speed(out: Path) -> tuple[float, float]:
    """(vectorized, looped) prediction times of 100 generated digits MLPs."""
    zoo = train_zoo("digits_mlp", 50, out / "digits" / "zoo", progress=False)
    weights = generated(zoo)
    x, arch = zoo.recipe.task.x_test, zoo.arch

    def loop() -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([arch.instantiate(arch.unflatten(w)).eval()(x).argmax(-1) for w in weights])

    t_vec, p_vec = timed(lambda: predict_many(arch, weights, x))
    t_loop, p_loop = timed(loop)
    assert torch.equal(p_vec, p_loop)
    return t_vec, t_loop


def generated(zoo) -> torch.Tensor:
    """100 networks of ``zoo``'s default flow, ``[100, D]``."""
    fit = fit_pipeline(canonicalize(zoo, progress=False).zoo, progress=False)
    return fit.pipeline(
        num_networks=100, generator=torch.Generator().manual_seed(0), output_type="pt"
    ).weights


def alignment_speed(name: str, out: Path) -> tuple[int, float, float]:
    """Aligning 100 generated networks to every member of zoo ``name``: (pairs, stacked s, per-pair s)."""
    recipe, n = ZOOS[name]
    zoo = train_zoo(recipe, n, out / name / "zoo", progress=False)
    arch, weights, pool = zoo.arch, generated(zoo), canonicalize(zoo, progress=False).zoo.to_matrix()
    spec = matching_spec(arch)
    qi, pj = (
        torch.arange(len(weights)).repeat_interleave(len(pool)),
        torch.arange(len(pool)).repeat(len(weights)),
    )
    q, p = stack_matrix(arch, weights), stack_matrix(arch, pool)
    t_stacked, inner = timed(
        lambda: matched_inner_products(spec, {k: p[k][pj] for k in p}, {k: q[k][qi] for k in q}), 2
    )
    q_sd, p_sd = [arch.unflatten(w) for w in weights], [arch.unflatten(w) for w in pool]
    pairs = lambda: weight_matching_pairs(spec, [p_sd[j] for j in pj], [q_sd[i] for i in qi])  # noqa: E731
    t_pairs, results = timed(pairs, 2)
    torch.testing.assert_close(inner, torch.tensor([r.objective for r in results], dtype=torch.float64))
    return len(qi), t_stacked, t_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", default="iris,digits")
    parser.add_argument("--out", default="bench_out/report")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    print("| zoo | zoo acc (%) | generated acc (%) | novelty | mIoU gen→orig | mIoU orig→orig | NN L2 gen→orig "
          "| NN L2 orig→orig | W | JS | noise 0.1: novelty / mIoU | noise 0.3: novelty / mIoU | verdict |")  # fmt: skip
    print("|---" * 13 + "|")
    for name in args.zoos.split(","):
        s = report_for(name, out)
        acc, t = s["accuracy"], s["table17"]
        noise = [(s["novelty_ratio"][f"noise σ={v:g}"], t[f"noise σ={v:g}→orig"]["miou_mean"]) for v in NOISE]
        pct = lambda a: f"{100 * a['mean']:.2f} ± {100 * a['std']:.2f}"  # noqa: E731
        print(f"| {name} | {pct(acc['zoo'])} | {pct(acc['generated'])} | {s['novelty_ratio']['generated']:.3f} "
              f"| {t['gen→orig']['miou_mean']:.3f} | {t['orig→orig']['miou_mean']:.3f} | {t['gen→orig']['nn_l2_median']:.3f} "
              f"| {t['orig→orig']['nn_l2_median']:.3f} | {t['gen→orig']['wasserstein']:.4f} | {t['gen→orig']['jensen_shannon']:.3f} "
              f"| {noise[0][0]:.3f} / {noise[0][1]:.3f} | {noise[1][0]:.3f} / {noise[1][1]:.3f} "
              f"| {'memorized' if s['memorized'] else 'new' if s['novelty_ratio']['generated'] >= 0.8 else 'partly new'} |")  # fmt: skip
    if args.skip_speed:
        return
    t_vec, t_loop = speed(out)
    print(f"\npredictions of 100 generated digits MLPs on the test split: vectorized {1e3 * t_vec:.1f} ms, "
          f"per-model loop {1e3 * t_loop:.1f} ms: {t_loop / t_vec:.1f}× (target ≥ 10×: "
          f"{'met' if t_loop / t_vec >= 10 else 'missed'})")  # fmt: skip
    for name in ("iris", "digits"):
        n, t_stacked, t_pairs = alignment_speed(name, out)
        print(f"aligning 100 generated {name} MLPs to each zoo member ({n:,} pairs): stacked descent "
              f"{t_stacked:.2f} s, per-pair results {t_pairs:.2f} s: {t_pairs / t_stacked:.1f}×")  # fmt: skip
    print(f"reports in {out}/<zoo>/report.md")


if __name__ == "__main__":
    main()
