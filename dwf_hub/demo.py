"""The main job on the embedded default: Iris zoo -> canonicalize -> fit -> generate -> evaluate."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

RECIPE = "iris_mlp"
NOISE = (0.01, 0.1)  # noise baselines of the evaluation report


def _pct(summary: dict[str, Any], prefix: str) -> str:
    return f"{100 * summary[f'{prefix}_mean']:.2f} ± {100 * summary[f'{prefix}_std']:.2f}"


def run_demo(
    out: str | os.PathLike = "demo_out",
    num_models: int = 100,
    num_generated: int = 100,
    seed: int = 0,
    progress: bool = True,
    **flow_overrides: Any,
) -> dict[str, Any]:
    """Run the whole loop into ``out`` and return the summary (also written to ``summary.json``).

    Rerunning resumes: finished zoo members and flow checkpoints are reused.
    """
    from .fitting import default_flow_config, fit_pipeline
    from .io import write_json, write_text
    from .matching import canonicalize
    from .report import build_report
    from .training import train_zoo

    root = Path(out)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    zoo = train_zoo(RECIPE, num_models, root / "zoo", seed=seed, progress=progress)
    timings["zoo_training"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    canonical = canonicalize(zoo, reference=0, progress=progress).zoo
    timings["canonicalization"] = time.perf_counter() - t0
    canonical.save(root / "canonical_zoo")

    config = default_flow_config(zoo, seed=seed, **flow_overrides)
    checkpoint = root / "flow_checkpoint"
    fit = fit_pipeline(canonical, config, checkpoint_dir=checkpoint, progress=progress)
    timings["flow_training"] = fit.timings["flow_training"]
    fit.pipeline.save_pretrained(root / "pipeline")
    shutil.rmtree(checkpoint, ignore_errors=True)  # only an interrupted run needs it

    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    output = fit.pipeline(num_networks=num_generated, generator=gen, output_type="model")
    timings["generation"] = time.perf_counter() - t0
    generated = fit.pipeline.to_zoo(output, seed=seed)
    generated.save(root / "generated")

    t0 = time.perf_counter()
    report = build_report(
        generated, canonical, root / "evaluation", noise=NOISE, seed=seed, progress=progress
    )
    timings["evaluation"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all

    summary = {
        "recipe": RECIPE,
        "num_models": num_models,
        "num_generated": num_generated,
        "seed": seed,
        "zoo_accuracy_mean": report["accuracy"]["zoo"]["mean"],
        "zoo_accuracy_std": report["accuracy"]["zoo"]["std"],
        "generated_accuracy_mean": report["accuracy"]["generated"]["mean"],
        "generated_accuracy_std": report["accuracy"]["generated"]["std"],
        "generated_accuracy_min": report["accuracy"]["generated"]["min"],
        "generated_accuracy_max": report["accuracy"]["generated"]["max"],
        "novelty_ratio": report["novelty_ratio"]["generated"],
        "miou_generated_to_zoo": report["table17"]["gen→orig"]["miou_mean"],
        "verdict": report["verdict"],
        "flow_config": config.to_dict(),
        "timings": timings,
    }
    write_json(root / "summary.json", summary)
    write_text(root / "report.md", render_report(summary))
    return summary


def render_report(s: dict[str, Any]) -> str:
    zoo = {"accuracy_mean": s["zoo_accuracy_mean"], "accuracy_std": s["zoo_accuracy_std"]}
    gen = {"accuracy_mean": s["generated_accuracy_mean"], "accuracy_std": s["generated_accuracy_std"]}
    nov = s["novelty_ratio"]
    lines = [
        f"# DeepWeightFlow demo: {s['recipe']}",
        "",
        "| | networks | test accuracy (%) |",
        "|---|---|---|",
        f"| zoo (trained) | {s['num_models']} | {_pct(zoo, 'accuracy')} |",
        f"| generated | {s['num_generated']} | {_pct(gen, 'accuracy')} |",
        "",
        s["verdict"],
        "",
        f"Novelty ratio {nov:.3f}: median distance of a generated network to its nearest training network over "
        "the median distance of a training network to its nearest other one, both in canonical weight space. "
        "The full comparison (paper Table 17 metrics, noise baselines, figures) is in "
        "[evaluation/report.md](evaluation/report.md).",
        "",
        "| phase | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.3f} |" for k, v in s["timings"].items()],
        "",
    ]
    return "\n".join(lines)


def print_summary(s: dict[str, Any]) -> None:
    zoo = {"accuracy_mean": s["zoo_accuracy_mean"], "accuracy_std": s["zoo_accuracy_std"]}
    gen = {"accuracy_mean": s["generated_accuracy_mean"], "accuracy_std": s["generated_accuracy_std"]}
    print(f"{'':<12}{'networks':>10}  {'test accuracy (%)':>18}")
    print(f"{'zoo':<12}{s['num_models']:>10}  {_pct(zoo, 'accuracy'):>18}")
    print(f"{'generated':<12}{s['num_generated']:>10}  {_pct(gen, 'accuracy'):>18}")
    print(f"novelty ratio: {s['novelty_ratio']:.3f}")
    print("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in s["timings"].items()))
    print(json.dumps({"summary": "summary.json", "report": "report.md"}))
