"""The product's own report on the zoos the frontier benchmark leaves to an accelerator: digits ViT and digits
ResNet-20, here on the CPU.

    python benchmarks/bench_reports.py [--zoos digits_vit,digits_resnet20] [--seeds 0] [--split test]
                                       [--out bench_out/frontier_big] [--sweep-networks N] [--set KEY=VALUE ...]

Per zoo: the cached 100-member zoo (trained first when missing; seed 0), canonicalized; the recipe's default
flow fitted on the first 80 members (20 held out), 100 networks generated and ``build_report`` run on them —
what ``dwf-hub evaluate`` writes, into ``--out/<zoo>/report_s<seed>``: every set scored on ``--split``,
each baseline found at the generated set's weight novelty, function novelty and (for the baselines that cannot
copy the zoo) diversity (``--sweep-networks``: networks per sweep setting; the matched sets always have 100).
Prints one markdown table per zoo and seed, the phases' wall times and the verdict's
last sentence; copies the report's accuracy-vs-novelty figure to ``benchmarks/figures/report_<zoo>.png``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from _common import add_overrides, cached_zoo, overrides

from dwf_hub.evaluation.report import build_report
from dwf_hub.evaluation.verdict import INTERVALS, fmt_ratio
from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.matching import canonicalize

HOLDOUT, GENERATED = 20, 100
WORKING = "working_function_novelty_ratio"
ROWS = ("zoo", "held-out zoo members", "generated")
MATCHED = {
    "baselines": "matched",
    "baselines_function": "function-matched",
    "baselines_diversity": "diversity-matched",
}


def run_zoo(recipe: str, seed: int, a: argparse.Namespace) -> dict:
    timings, t0 = {}, time.perf_counter()
    zoo = cached_zoo(recipe, Path(a.out))
    canonical = canonicalize(zoo, progress=False).zoo
    timings["zoo + canonicalization"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = fit_pipeline(
        canonical, default_flow_config(zoo, seed=seed, holdout=HOLDOUT, **a.overrides), progress=False
    )
    timings["flow"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    generated = fit.pipeline.generate_zoo(GENERATED, seed=seed, quality_check=False)  # the raw flow
    timings["generation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    folder = Path(a.out) / recipe / f"report_s{seed}"
    report = build_report(
        generated,
        canonical,
        folder,
        split=a.split,
        holdout=HOLDOUT,
        seed=seed,
        sweep_networks=a.sweep_networks,
    )
    timings["report"] = time.perf_counter() - t0
    print_report(recipe, seed, zoo.arch.num_params, report, timings)
    figure = Path(__file__).parent / "figures" / f"report_{recipe}.png"
    shutil.copyfile(folder / "accuracy_vs_novelty.png", figure)
    return report


def cell(report: dict, name: str, m: str) -> str:
    v = report[m].get(name)
    return fmt_ratio(v, report[INTERVALS[m]].get(name) if name == "generated" else None)


def print_report(recipe: str, seed: int, d: int, report: dict, timings: dict[str, float]) -> None:
    print(f"\n## {recipe} (D = {d:,}), flow seed {seed}, {report['split']} split")
    print("| set | acc (%) | min | failed (%) | novelty | diversity | held-out | fn novelty | fn novelty, working "
          "| generated − set (pp) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    generated = report["accuracy"]["generated"]["mean"]
    names = [*ROWS, *(n for n in report["accuracy"] if n not in ROWS)]
    for name in names:
        acc = report["accuracy"][name]
        ratios = [*(cell(report, name, m) for m in INTERVALS), fmt_ratio(report[WORKING].get(name))]
        delta = "–" if name in ROWS else f"{100 * (generated - acc['mean']):+.2f}"
        failed = report["failed_share"].get(name)
        print(f"| {name} | {100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} | {100 * acc['min']:.1f} | "
              f"{'–' if failed is None else f'{100 * failed:.0f}'} | {' | '.join(ratios)} | {delta} |")  # fmt: skip
    print("\nbeats:", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in report["beats"].items()))
    print("verdict (last sentence):", report["verdict"].rsplit(". ", 1)[-1])
    print("wall (s):", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zoos", default="digits_vit,digits_resnet20")
    p.add_argument("--seeds", default="0")
    p.add_argument("--split", default="test", help="val: for choosing settings")
    p.add_argument("--out", default="bench_out/frontier_big")
    p.add_argument("--sweep-networks", type=int, default=None, help="e.g. 25 for ResNet-20 on a CPU")
    add_overrides(p)
    a = p.parse_args()
    a.overrides = overrides(a)
    for recipe in a.zoos.split(","):
        for seed in map(int, a.seeds.split(",")):
            run_zoo(recipe, seed, a)


if __name__ == "__main__":
    main()
