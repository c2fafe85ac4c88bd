"""Git Re-Basin on 100 random ResNet-20s (random BatchNorm statistics): ours vs the textbook loop.

    python benchmarks/bench_canonicalize.py [--n 100] [--repeats 3] [--workers 1,2,4]

Baseline in the same run: ``plain_weight_matching`` — the authors' algorithm (one network at a time,
every permutation re-solved every sweep). The authors' own code took 5.5–6.9 s for this on the same kind
of 2-core CPU (REFERENCE_NOTES). Checks the total matching objective and that every aligned network
computes the same function (max |Δ logits| in float32, eval mode, so BN running statistics count).
"""

from __future__ import annotations

import argparse
import time

import torch

from dwf_hub.archs import get_arch
from dwf_hub.matching import canonicalize
from dwf_hub.matching.reference import plain_weight_matching
from dwf_hub.matching.weight_matching import objective
from dwf_hub.permutations import apply_permutation
from dwf_hub.zoo.weight_zoo import WeightZoo

AUTHORS_S = (5.5, 6.9)


def random_resnet20s(n: int, seed: int = 0) -> WeightZoo:
    """Default-initialised ResNet-20s with random BN affine parameters and running statistics."""
    arch = get_arch("resnet20")
    gen = torch.Generator().manual_seed(seed)
    members = []
    for i in range(n):
        torch.manual_seed(seed + i)
        model = arch.build()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
        members.append({k: v.clone() for k, v in model.state_dict().items()})
    return WeightZoo(arch, members, [{"seed": seed + i} for i in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="", help="also time these worker counts, e.g. 1,2,4,8")
    args = parser.parse_args()
    zoo = random_resnet20s(args.n)
    spec = zoo.arch.permutation_spec()
    ref = zoo.state_dict(0)

    ours = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = canonicalize(zoo, progress=False)
        ours.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    plain = [plain_weight_matching(spec, ref, zoo.state_dict(i), seed=0) for i in range(len(zoo))]
    plain_s = time.perf_counter() - t0
    plain_obj = sum(
        objective(spec, ref, apply_permutation(spec, p, zoo.state_dict(i))) for i, p in enumerate(plain)
    )

    x = zoo.arch.example_input(64, torch.Generator().manual_seed(1))
    worst = 0.0
    with torch.no_grad():
        for i in range(len(zoo)):
            a, b = zoo.model(i).eval()(x), result.zoo.model(i).eval()(x)
            worst = max(worst, float((a - b).abs().max()))

    best = min(ours)
    print(f"Git Re-Basin, {len(zoo)} random ResNet-20s ({zoo.arch.num_params:,} weights each), "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print("| method | time (s) | × vs ours | total objective |")
    print("|---|---|---|---|")
    print(f"| ours (batched, exact skips), best of {args.repeats}: "
          f"{', '.join(f'{t:.2f}' for t in ours)} | {best:.2f} | 1.0 | {sum(result.objectives):.2f} |")  # fmt: skip
    print(f"| textbook loop, this run | {plain_s:.2f} | {plain_s / best:.1f} | {plain_obj:.2f} |")
    lo, hi = AUTHORS_S
    print(f"| authors' code (REFERENCE_NOTES) | {lo}–{hi} | {lo / best:.1f}–{hi / best:.1f} | – |")
    print(f"\nobjective ours − textbook: {sum(result.objectives) - plain_obj:+.4f}; "
          f"max |Δ logits| over all members (float32, eval mode): {worst:.2e}")  # fmt: skip
    for w in [int(v) for v in args.workers.split(",") if v]:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            canonicalize(zoo, progress=False, workers=w)
            times.append(time.perf_counter() - t0)
        print(f"workers {w}: best of {args.repeats} {min(times):.2f} s")
    print(f"target ≥ 3× faster than {lo} s: {'met' if lo / best >= 3 else 'missed'}; "
          f"|Δ logits| ≤ 1e-4: {'met' if worst <= 1e-4 else 'missed'}")  # fmt: skip


if __name__ == "__main__":
    main()
