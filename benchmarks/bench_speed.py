"""Where users wait, ours beside the reference in one run: the demo's phases and imports; the report's nearest
distances, pruned by lower bounds vs every pair matched (the same summary, checked); loading a large pipeline with
its verification record vs hashing every file; decoding 100 networks vs the bare matrix product it is.

    python benchmarks/bench_speed.py [--pipeline bench_out/scale/resnet18_flow_r1] [--out bench_out/speed]

``--pipeline``: a large saved pipeline (``bench_scale.py`` writes one of ResNet-18 size); without it the load and
decode rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch


def demo_row(out: Path) -> None:
    """``dwf-hub demo`` in a fresh process: wall time, its phases, and the imports' share."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dwf_hub.cli", "-q", "demo", "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    timings = json.loads((out / "summary.json").read_text())["timings"]
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import dwf_hub.demo, dwf_hub.flow.fitting, "
                              "dwf_hub.evaluation.report, dwf_hub.zoo.training"], capture_output=True, text=True)  # fmt: skip
    top = [line.split("|") for line in imports.stderr.splitlines()[1:] if "|" in line]
    seconds = sum(int(c) for _, c, name in top if name.startswith(" ") and not name.startswith("  ")) / 1e6
    print(f"| demo, fresh process | {wall:.1f} s wall | zoo training {timings['zoo_training']:.2f}, flow "
          f"{timings['flow_training']:.2f}, generation {timings['generation']:.2f}, evaluation "
          f"{timings['evaluation']:.2f} s; importing the modules it runs: {seconds:.1f} s | target 10 s |")  # fmt: skip


def evaluation_row(demo: Path) -> None:
    """The demo's report twice in one process: nearest distances of every pair vs the pruned ones."""
    from dwf_hub.evaluation import metrics, novelty
    from dwf_hub.evaluation.report import build_report
    from dwf_hub.zoo.weight_zoo import open_zoo

    gen, zoo = open_zoo(demo / "generated"), open_zoo(demo / "canonical_zoo")
    build_report(gen, zoo, demo.parent / "speed_report_warmup", seed=0, overwrite=True)  # imports, caches

    def every_pair(self, query, pool, exclude_self=False, candidates=None):
        d = novelty.invariant_distances(self.arch, query, pool, candidates or self.candidates, self.max_iter)
        return metrics.nearest(d, exclude_self)

    pruned = novelty.NoveltyScorer.nearest
    rows = {}
    for name, method in (("every pair matched (before)", every_pair), ("pruned by bounds (ours)", pruned)):
        novelty.NoveltyScorer.nearest = method
        t0 = time.perf_counter()
        rows[name] = build_report(gen, zoo, demo.parent / "speed_report", seed=0, overwrite=True)
        print(f"| demo report, {name} | {time.perf_counter() - t0:.2f} s | | target 2 s |", flush=True)
    novelty.NoveltyScorer.nearest = pruned
    same = len({json.dumps(s, sort_keys=True) for s in rows.values()}) == 1
    print(f"| the two reports' summaries identical | {same} | | |")


def load_rows(pipeline: Path) -> None:
    """``from_pretrained`` of a large pipeline: trusting its verification record vs hashing every file again."""
    from dwf_hub import artifacts
    from dwf_hub.pipeline import DeepWeightFlowPipeline

    size = sum(p.stat().st_size for p in pipeline.rglob("*") if p.is_file()) / 1e9
    for name, forget in (("every file hashed (before)", True), ("verification record (ours)", False)):
        artifacts._VERIFIED.clear()
        record = pipeline / artifacts.VERIFIED_NAME
        if forget:
            record.unlink(missing_ok=True)
        t0 = time.perf_counter()
        pipe = DeepWeightFlowPipeline.from_pretrained(pipeline)
        print(
            f"| load {size:.1f} GB pipeline, {name} | {time.perf_counter() - t0:.2f} s | | target 2 s + mapping |"
        )
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(0)
    latents = pipe.sample_latents(100, gen)
    out = pipe.codec.decode(latents)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        pipe.codec.decode(latents, out=out)
        times.append(time.perf_counter() - t0)
    blocks = pipe.codec.basis()
    dense = torch.randn(
        blocks[0][2].shape[0], out.shape[1]
    )  # the same product from one aligned in-memory basis
    t0 = time.perf_counter()
    torch.mm(latents, dense, out=out)
    floor = time.perf_counter() - t0
    flops = 2 * out.shape[0] * dense.shape[0] * out.shape[1]
    print(f"| decode 100 networks into the reused buffer | {min(times):.2f} s (best of 3) | the bare product "
          f"{floor:.2f} s ({flops / floor / 1e9:.0f} GFLOP/s: compute-bound) | target 1.5 s |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pipeline", default=None, help="a large saved pipeline (bench_scale.py writes one)")
    p.add_argument("--out", default="bench_out/speed")
    a = p.parse_args()
    out = Path(a.out)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n\n| what | ours | detail | issue 39 |\n|---|---|---|---|")  # fmt: skip
    demo_row(out / "demo")
    evaluation_row(out / "demo")
    if a.pipeline:
        load_rows(Path(a.pipeline))


if __name__ == "__main__":
    main()
