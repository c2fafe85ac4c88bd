"""Per-phase timings of the Iris job next to the authors' figures (REFERENCE_NOTES, same kind of 2-core CPU).

    python benchmarks/research/bench_phases.py [--out bench_out/phases] [--skip-demo]

Measured in one run: batched zoo training vs a one-by-one PyTorch loop (the authors' approach: DataLoader,
one model at a time), Git Re-Basin on 100 networks, flow training, generation (weights only, and ready
``nn.Module``s), and the whole ``dwf-hub demo`` as a fresh process (imports included).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.zoo.data import load_task
from dwf_hub.zoo.recipes import load_recipe
from dwf_hub.zoo.training import init_member, train_zoo
from dwf_hub.zoo.weight_zoo import WeightZoo

AUTHORS = {
    "zoo training, 100 Iris MLPs": 47.8,
    "Git Re-Basin, 100 Iris MLPs": 0.17,
    "Git Re-Basin, 100 random MNIST MLPs": 0.40,
    "Git Re-Basin, 100 random Fashion MLPs": 2.0,
    "flow training": 47.0,  # their fastest (width 32); 106 s at width 512
    "generate 100 networks (weights)": 0.09,  # their fastest; 0.31 s at width 512
}
TARGETS = {"zoo training, 100 Iris MLPs": 5.0, "generate 100 networks (weights)": 0.05,
           "generate 100 networks (nn.Modules)": 0.05, "dwf-hub demo (fresh process)": 30.0}  # fmt: skip


def one_by_one(recipe, seeds: list[int]) -> float:
    """The usual loop: one model, one DataLoader, one optimizer at a time."""
    task = load_task(recipe.data)
    arch, cfg = recipe.arch_spec, recipe.training
    t0 = time.perf_counter()
    for seed in seeds:
        model = arch.instantiate(init_member(arch, cfg.init_for(seed), seed)).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        loader = DataLoader(TensorDataset(task.x_train, task.y_train), batch_size=cfg.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))  # fmt: skip
        for _ in range(cfg.epochs):
            for xb, yb in loader:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
    return time.perf_counter() - t0


def random_zoo(layer_sizes: list[int], n: int) -> WeightZoo:
    from dwf_hub.archs import get_arch

    arch = get_arch("mlp", layer_sizes=layer_sizes)
    return WeightZoo(arch, [init_member(arch, "default", s) for s in range(n)])


def timed(f) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench_out/phases")
    p.add_argument("--skip-demo", action="store_true")
    a = p.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    recipe = load_recipe("iris_mlp")
    load_task(recipe.data)
    ours: dict[str, float] = {}
    baseline: dict[str, float] = {}

    ours["zoo training, 100 Iris MLPs"], zoo = timed(
        lambda: train_zoo(recipe, 100, out / "zoo", progress=False)
    )
    baseline["zoo training, 100 Iris MLPs"] = one_by_one(recipe, list(range(100)))
    ours["Git Re-Basin, 100 Iris MLPs"], canon = timed(lambda: canonicalize(zoo, progress=False).zoo)
    mnist, fashion = random_zoo([784, 32, 32, 10], 100), random_zoo([784, 128, 128, 10], 100)
    ours["Git Re-Basin, 100 random MNIST MLPs"], _ = timed(lambda: canonicalize(mnist, progress=False))
    ours["Git Re-Basin, 100 random Fashion MLPs"], _ = timed(lambda: canonicalize(fashion, progress=False))
    cfg = default_flow_config(zoo)
    flat = cfg.flat()
    ours["flow training"], fit = timed(lambda: fit_pipeline(canon, cfg, progress=False))
    pipe = fit.pipeline
    pipe(num_networks=100, output_type="model")  # warm-up

    def generate(kind: str):
        return lambda: pipe(num_networks=100, generator=torch.Generator().manual_seed(0), output_type=kind)

    ours["generate 100 networks (weights)"] = min(timed(generate("pt"))[0] for _ in range(5))
    ours["generate 100 networks (nn.Modules)"] = min(timed(generate("model"))[0] for _ in range(5))
    if not a.skip_demo:
        cmd = [str(Path(sys.executable).with_name("dwf-hub")), "-q", "demo", "--out", str(out / "demo")]
        ours["dwf-hub demo (fresh process)"], _ = timed(
            lambda: subprocess.run(cmd, check=True, capture_output=True)
        )

    print(f"Iris job, flow: width {flat['hidden_dim']}, {flat['iterations']} iterations, batch {flat['batch_size']}; "
          f"sampling: {flat['solver']}, {flat['num_inference_steps']} steps")  # fmt: skip
    print("| phase | ours (s) | baseline in this run (s) | authors' code (s) | authors / ours | target (s) |")
    print("|---|---|---|---|---|---|")
    for phase, t in ours.items():
        base = (
            f"{baseline[phase]:.2f} (one-by-one loop, ×{baseline[phase] / t:.1f})"
            if phase in baseline
            else "–"
        )
        auth = AUTHORS.get(phase)
        ratio = f"{auth / t:.1f}×" if auth else "–"
        target = TARGETS.get(phase)
        verdict = "–" if target is None else f"{target} ({'met' if t <= target else 'missed'})"
        print(f"| {phase} | {t:.3f} | {base} | {auth if auth else '–'} | {ratio} | {verdict} |")


if __name__ == "__main__":
    main()
