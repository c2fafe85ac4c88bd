"""Scale-out: dual PCA + flow + generation on synthetic zoos of ResNet-18 and BERT-Base size, 1 vs 2 ranks;
decoding 100 ResNet-18s; 100,000 Iris networks generated to disk.

    python benchmarks/bench_scale.py [--dir bench_out/scale] [--families resnet18,bert] [--ranks 1,2]
                                     [--scale 1.0] [--iterations 2000] [--iris 1000,10000,100000]

Each zoo is an MLP whose weight count matches the family (ResNet-18: 11.0M, BERT-Base: 109.1M; ``--scale``
shrinks them): a shared mean plus 8 planted directions plus noise, written once as a packed zoo (one network
per shard, streamed). Every stage runs in fresh processes (``torchrun --nproc_per_node R`` for R > 1: NCCL on
GPUs, gloo on CPUs) that report their own wall time, peak memory per rank — ``ru_maxrss`` (which counts the
pages of memory-mapped files such as the PCA basis, reclaimable page cache) and the peak of the process's own
(anonymous) memory, sampled every 10 ms — and peak GPU memory. The paper's Appendix G figures (one A100) are printed beside ours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from _common import synthetic_rows

FAMILIES = {  # name -> (MLP layer sizes of about the family's weight count, zoo size, components)
    "resnet18": ([4096, 2048, 1024, 512, 10], 100, 99),
    "bert": ([8192, 8192, 5120, 10], 20, 19),
}
PAPER = {  # Appendix G, one A100: flow training, generating 100 networks
    "resnet18": "flow 3 min, generation 1.38 s / 100",
    "bert": "– (ViT-Small: flow 19–21 min, generation 1.7–2.2 s / 100)",
}
IRIS_FLOW = Path(__file__).parents[1] / "spaces_demo" / "flows" / "iris_mlp" / "pipeline"


def layer_sizes(family: str, scale: float) -> list[int]:
    sizes = FAMILIES[family][0]
    return [max(2, int(s * scale**0.5)) for s in sizes[:-1]] + [sizes[-1]]


def make_zoo(folder: Path, family: str, scale: float) -> Path:
    from dwf_hub.archs import get_arch
    from dwf_hub.zoo.weight_zoo import write_packed_zoo

    if (folder / "zoo.json").is_file():
        return folder
    arch = get_arch(name="mlp", layer_sizes=layer_sizes(family, scale))
    n = FAMILIES[family][1]
    chunks = ((row[None], [{"seed": i}]) for i, row in enumerate(synthetic_rows(n, arch.num_params)))
    return write_packed_zoo(folder, arch, chunks)


class AnonPeak(threading.Thread):
    """Samples ``RssAnon`` (memory the process owns, not mapped files) every 10 ms; ``peak`` in bytes."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.start()

    def run(self) -> None:
        status = Path("/proc/self/status")
        while True:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)
            time.sleep(0.01)


ANON = AnonPeak() if "--worker" in sys.argv else None


def record(path: Path, **values) -> None:
    """This process's figures, one file per rank."""
    from dwf_hub.distributed import process_state

    state = process_state()
    values["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    values["peak_anon_gb"] = ANON.peak / 1e9
    values["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else 0.0
    Path(f"{path}.rank{state.process_index}.json").write_text(json.dumps(values))


def worker_fit(zoo: Path, out: Path, k: int, iterations: int) -> None:
    """Dual PCA + flow training (under DDP when launched with several ranks); the main process saves."""
    from dwf_hub.configs import FlowConfig
    from dwf_hub.flow.fitting import fit_pipeline

    cfg = FlowConfig.from_flat(canonicalize=False, normalization="whiten", n_components=k, pca_solver="dual",
                               iterations=iterations, hidden_dim=512, batch_size=min(64, k + 1))  # fmt: skip
    t0 = time.perf_counter()
    result = fit_pipeline(zoo, cfg, checkpoint_dir=out.parent / f".{out.name}.work", progress=False)
    t1 = time.perf_counter()
    from dwf_hub.distributed import process_state

    if process_state().is_main_process:
        result.pipeline.save_pretrained(out, overwrite=True)
    times = {**result.timings, "save": time.perf_counter() - t1, "fit": t1 - t0}
    process_state().wait_for_everyone()
    shutil.rmtree(out.parent / f".{out.name}.work", ignore_errors=True)  # the basis file used while fitting
    record(out.parent / f"{out.name}.fit", **times)


def worker_generate(pipeline: Path, out: Path, n: int, per_shard: int) -> None:
    """Generation into memory (the pipeline call) and to disk (chunked); two fresh processes."""
    from dwf_hub.pipeline import DeepWeightFlowPipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    pipe = DeepWeightFlowPipeline.from_pretrained(pipeline).to(device)
    load = time.perf_counter() - t0
    if per_shard:
        t0 = time.perf_counter()
        pipe.generate_to_disk(out, n, networks_per_shard=per_shard, overwrite=True, progress=False)
        record(out, load=load, to_disk=time.perf_counter() - t0)
        return
    gen = torch.Generator(device).manual_seed(0)
    t0 = time.perf_counter()
    latents = pipe.sample_latents(n, gen)
    t1 = time.perf_counter()
    fresh = pipe.codec.decode(latents)  # fresh output memory (first touch included)
    t2 = time.perf_counter()
    reused = []
    for _ in range(2):  # the steady state: the output buffer reused, the basis pages already mapped
        t3 = time.perf_counter()
        pipe.codec.decode(latents, out=fresh)
        if device == "cuda":
            torch.cuda.synchronize()
        reused.append(time.perf_counter() - t3)
    t3 = time.perf_counter()
    for s in range(0, n, 10):  # 10 networks at a time into one buffer: the basis is streamed once per chunk
        pipe.codec.decode(latents[s : s + 10], out=fresh[: len(latents[s : s + 10])])
    if device == "cuda":
        torch.cuda.synchronize()
    chunked = time.perf_counter() - t3
    record(
        out,
        load=load,
        sample=t1 - t0,
        decode_fresh=t2 - t1,
        decode_reused=min(reused),
        decode_chunked=chunked,
    )


def launch(ranks: int, args: list[str]) -> None:
    if ranks == 1:
        cmd = [sys.executable, __file__, *args]
    else:  # torchrun: one process per GPU, or gloo on CPUs (accelerate launch --cpu runs one process)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               __file__, *args]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")


def read(prefix: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(prefix.parent.glob(f"{prefix.name}.rank*.json"))]


def run_family(
    root: Path, family: str, ranks_list: list[int], scale: float, iterations: int, fit: bool
) -> None:
    t0 = time.perf_counter()
    zoo = make_zoo(root / f"{family}_zoo", family, scale)
    from dwf_hub.zoo.weight_zoo import WeightZoo

    z = WeightZoo.load(zoo)
    n, d, k = len(z), z.arch.num_params, FAMILIES[family][2]
    print(f"\n## {family}: {n} networks of {d:,} weights ({n * d * 4 / 1e9:.1f} GB), k = {k}; zoo ready in "
          f"{time.perf_counter() - t0:.0f} s; paper (A100): {PAPER[family]}\n")  # fmt: skip
    print("| ranks | dual PCA + latents (s) | flow training (s) | save (s) | peak own memory GB per rank "
          "| ru_maxrss GB (with mapped basis) | peak GPU GB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for ranks in ranks_list if fit else []:
        out = root / f"{family}_flow_r{ranks}"
        for stale in root.glob(f"{out.name}.fit.rank*.json"):
            stale.unlink()
        shutil.rmtree(root / f".{out.name}.work", ignore_errors=True)  # a fresh fit, not a resumed one
        launch(ranks, ["--worker", "fit", str(zoo), str(out), str(k), str(iterations)])
        rs = read(root / f"{out.name}.fit")
        print(f"| {ranks} | {max(r['codec'] for r in rs):.1f} | {max(r['flow_training'] for r in rs):.1f} | "
              f"{rs[0]['save']:.1f} | {' / '.join(format(r['peak_anon_gb'], '.2f') for r in rs)} | "
              f"{' / '.join(format(r['peak_rss_gb'], '.2f') for r in rs)} | "
              f"{max(r['peak_gpu_gb'] for r in rs):.2f} |")  # fmt: skip
        if ranks > 1:
            shutil.rmtree(out)  # disk: only the one-rank flow is used below
    pipe = root / f"{family}_flow_r1"
    launch(1, ["--worker", "generate", str(pipe), str(root / f"{family}_gen"), str(n), "0"])
    g = read(root / f"{family}_gen")[0]
    print(f"\ngeneration of {n} ({iterations} flow iterations fitted, RK4 10 steps): load {g['load']:.2f} s, "
          f"sampling {g['sample']:.2f} s, decode into fresh memory (first call: page faults on the output and "
          f"the mapped basis) {g['decode_fresh']:.2f} s, decode into the reused output buffer "
          f"{g['decode_reused']:.2f} s, the same 10 networks at a time {g['decode_chunked']:.2f} s; peak own "
          f"memory {g['peak_anon_gb']:.2f} GB")  # fmt: skip
    per = 10 if family == "resnet18" else 1
    launch(1, ["--worker", "generate", str(pipe), str(root / f"{family}_disk"), str(n), str(per)])
    g = read(root / f"{family}_disk")[0]
    shutil.rmtree(root / f"{family}_disk")
    print(f"generation of {n} to disk ({per} per shard): {g['to_disk']:.2f} s, peak own memory "
          f"{g['peak_anon_gb']:.2f} GB (ru_maxrss {g['peak_rss_gb']:.2f} GB)")  # fmt: skip


def run_iris(root: Path, sizes: list[int]) -> None:
    print(
        f"\n## Iris: generate_to_disk, 1,000 networks per shard (flow: {IRIS_FLOW.relative_to(Path.cwd())})\n"
    )
    print(
        "| networks | wall (s) | networks / s | peak own memory (GB) | ru_maxrss (GB) | folder (MB) | files |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        out = root / f"iris_{n}"
        launch(1, ["--worker", "generate", str(IRIS_FLOW), str(out), str(n), "1000"])
        g = read(out)[0]
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
        files = sum(1 for f in out.rglob("*") if f.is_file())
        print(f"| {n:,} | {g['to_disk']:.1f} | {n / g['to_disk']:,.0f} | {g['peak_anon_gb']:.2f} | "
              f"{g['peak_rss_gb']:.2f} | {size:.0f} | {files} |")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, *rest = sys.argv[2:]
        if kind == "fit":
            worker_fit(Path(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]))
        else:
            worker_generate(Path(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="bench_out/scale")
    parser.add_argument("--families", default="resnet18,bert")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--scale", type=float, default=1.0, help="weight-count factor (CPU: e.g. 0.1)")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--iris", default="1000,10000,100000")
    parser.add_argument(
        "--reuse-flows", action="store_true", help="skip fitting: generate with the flows in --dir"
    )
    a = parser.parse_args()
    root = Path(a.dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"# bench_scale on {device}, torch {torch.__version__}, scale {a.scale}")
    for family in filter(None, a.families.split(",")):
        run_family(
            root, family, [int(r) for r in a.ranks.split(",")], a.scale, a.iterations, not a.reuse_flows
        )
    if a.iris:
        run_iris(root, [int(n) for n in a.iris.split(",")])


if __name__ == "__main__":
    main()
