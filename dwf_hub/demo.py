"""The main job on the embedded default: Iris zoo -> canonicalize -> fit -> generate -> evaluate."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .evaluation.verdict import FAILURES, INTERVALS, RATIOS, fmt_ratio

RECIPE = "iris_mlp"
HOLDOUT_FRACTION = 0.2  # of the zoo kept out of flow training, for the held-out ratio
BASELINE_KEYS = (
    "accuracy_mean",
    "novelty_ratio",
    "function_novelty_ratio",
    "diversity_ratio",
    "knob",
    "reached",
    "too_novel",
    "beats",
    "comparable",
    "significant",
)


def _pct(summary: dict[str, Any], prefix: str) -> str:
    return f"{100 * summary[f'{prefix}_mean']:.2f} ± {100 * summary[f'{prefix}_std']:.2f}"


def run_demo(
    out: str | os.PathLike = "demo_out",
    num_models: int = 100,
    num_generated: int = 100,
    seed: int = 0,
    holdout: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    **flow_overrides: Any,
) -> dict[str, Any]:
    """Run the whole loop into ``out`` (a demo artifact, written whole at the end; another folder is refused
    unless ``overwrite``) and return the summary (also written to ``summary.json``).

    An interrupted run resumes: its work waits in a job folder beside ``out``, and finished zoo members and
    flow checkpoints are reused. The last ``holdout`` members (default: a fifth of the zoo, none below 10
    members) are kept out of flow training, for the held-out ratio.
    """
    from .artifacts import check_output, resumable_job
    from .hub.repos import package_version

    check_output(out, "demo", overwrite)
    if holdout is None:  # the held-out ratio needs at least two held-out members
        holdout = int(num_models * HOLDOUT_FRACTION) if num_models * HOLDOUT_FRACTION >= 2 else 0
    run = {"num_models": num_models, "holdout": holdout, "num_generated": num_generated, "seed": seed}
    job = {"demo": {**run, "flow": flow_overrides}, "dwf_hub": package_version()}
    finished = _finished(Path(out), job)
    if finished is not None and not overwrite:  # same inputs, same code: the same outputs, already there
        return finished
    with resumable_job(out, job, overwrite) as work:
        summary = _run_demo(work, Path(out), run, progress, overwrite, flow_overrides, job)
    return summary


def _finished(out: Path, job: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a finished demo in ``out`` made by ``job`` (``None``: none, or another job's)."""
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return (
        summary if isinstance(summary, dict) and summary.get("job") == json.loads(json.dumps(job)) else None
    )


def _run_demo(
    root: Path,
    out: Path,
    run: dict[str, Any],
    progress: bool,
    overwrite: bool,
    flow_overrides: dict[str, Any],
    job: dict[str, Any],
) -> dict[str, Any]:
    """The demo's phases in work folder ``root``; its artifacts then become the folder ``out``."""
    from .evaluation.report import build_report
    from .flow.fitting import default_flow_config, fit_pipeline
    from .matching import canonicalize
    from .zoo.training import train_zoo

    num_models, holdout, num_generated, seed = (
        run[k] for k in ("num_models", "holdout", "num_generated", "seed")
    )
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    zoo = train_zoo(RECIPE, num_models, root / "zoo", seed=seed, progress=progress)
    timings["zoo_training"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    canonical = canonicalize(zoo, reference=0, progress=progress).zoo
    timings["canonicalization"] = time.perf_counter() - t0
    canonical.save(root / "canonical_zoo", overwrite=True)  # ours: the job folder's

    config = default_flow_config(zoo, seed=seed, holdout=holdout, **flow_overrides)
    checkpoint = root / "flow_checkpoint"
    fit = fit_pipeline(canonical, config, checkpoint_dir=checkpoint, progress=progress)
    timings["flow_training"] = fit.timings["flow_training"]
    fit.pipeline.save_pretrained(root / "pipeline", overwrite=True)
    shutil.rmtree(checkpoint, ignore_errors=True)  # only an interrupted run needs it

    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    output = fit.pipeline(num_networks=num_generated, generator=gen, output_type="model", quality_check=False)
    timings["generation"] = time.perf_counter() - t0
    generated = fit.pipeline.to_zoo(output, seed=seed)
    generated.save(root / "generated", overwrite=True)

    t0 = time.perf_counter()
    report = build_report(
        generated, canonical, root / "evaluation", seed=seed, progress=progress, overwrite=True
    )
    timings["evaluation"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all

    summary = _summary(report, run, config.to_dict(), timings)
    check = fit.pipeline.quality_check  # what `pipe(...)` would redraw: the raw networks below its threshold
    passed = check.passes(generated.arch, output.weights, generated.recipe).float().mean()
    summary["quality_check"] = {"threshold": check.threshold, "raw_pass_rate": float(passed)}
    summary["job"] = (
        job  # what made it: a rerun of the same job returns this summary without redoing anything
    )
    _publish(root, out, summary, overwrite)
    return summary


def _publish(root: Path, out: Path, summary: dict[str, Any], overwrite: bool) -> None:
    """The work folder's artifacts, the summary and the report become the demo folder ``out``, in one swap."""
    from .artifacts import write_folder
    from .io import write_json, write_text

    with write_folder(out, "demo", overwrite) as stage:
        for part in ("zoo", "canonical_zoo", "pipeline", "generated", "evaluation"):
            os.rename(root / part, stage / part)
        write_json(stage / "summary.json", summary)
        write_text(stage / "report.md", render_report(summary))


def _summary(
    report: dict[str, Any], run: dict[str, Any], flow_config: dict[str, Any], timings: dict[str, float]
) -> dict[str, Any]:
    """The demo's summary: the run's sizes, accuracies, ratios, baselines at matched novelty, timings."""
    acc = report["accuracy"]
    return {
        "recipe": RECIPE,
        **run,
        **{f"zoo_accuracy_{k}": acc["zoo"][k] for k in ("mean", "std", "min")},
        **{f"generated_accuracy_{k}": acc["generated"][k] for k in ("mean", "std", "min", "max")},
        **{m: report[m]["generated"] for m in (*RATIOS, *INTERVALS.values(), *FAILURES)},
        "heldout_members": _heldout_row(report),
        **{
            key: {
                kind: {k: b[k] for k in (*BASELINE_KEYS, "outcome") if k in b}
                for kind, b in report[key].items()
            }
            for key in ("baselines", "baselines_function", "baselines_diversity")
        },
        "beats": report["beats"],
        "miou_generated_to_zoo": report["table17"]["gen→orig"]["miou_mean"],
        "verdict": report["verdict"],
        "headline": report["headline"],
        "flow_config": flow_config,
        "timings": timings,
    }


def _ratio(s: dict[str, Any], m: str) -> str:
    """The generated set's ratio ``m`` with its bootstrap interval."""
    return fmt_ratio(s[m], s.get(INTERVALS[m]))


def _heldout_row(report: dict[str, Any]) -> dict[str, Any] | None:
    """Accuracy and novelty of the held-out zoo members: the values of genuinely new networks."""
    name = "held-out zoo members"
    if name not in report["accuracy"]:
        return None
    acc = report["accuracy"][name]
    return {"accuracy_mean": acc["mean"], "accuracy_std": acc["std"],
            **{m: report[m][name] for m in ("novelty_ratio", "function_novelty_ratio")}}  # fmt: skip


def _rows(s: dict[str, Any]) -> list[tuple[str, ...]]:
    """(set, networks, test accuracy, novelty, function novelty) rows of the demo table."""
    zoo = {"accuracy_mean": s["zoo_accuracy_mean"], "accuracy_std": s["zoo_accuracy_std"]}
    gen = {"accuracy_mean": s["generated_accuracy_mean"], "accuracy_std": s["generated_accuracy_std"]}
    rows = [
        ("zoo (fitted on)", str(s["num_models"] - s["holdout"]), _pct(zoo, "accuracy"), "0", "0"),
        ("generated", str(s["num_generated"]), _pct(gen, "accuracy"), _ratio(s, "novelty_ratio"),
         _ratio(s, "function_novelty_ratio")),
    ]  # fmt: skip
    if (h := s.get("heldout_members")) is not None:
        rows.append(("zoo members held out", str(s["holdout"]), _pct(h, "accuracy"), fmt_ratio(h["novelty_ratio"]),
                     fmt_ratio(h["function_novelty_ratio"])))  # fmt: skip
    for key, how in (("baselines", ""), ("baselines_function", "function-matched, "),
                     ("baselines_diversity", "diversity-matched, ")):  # fmt: skip
        for kind, b in s.get(key, {}).items():
            knob = ", ".join(f"{k}={v:.3g}" for k, v in b["knob"].items())
            rows.append((f"{kind} ({how}{knob})", str(s["num_generated"]), f"{100 * b['accuracy_mean']:.2f}",
                         fmt_ratio(b["novelty_ratio"]), fmt_ratio(b["function_novelty_ratio"])))  # fmt: skip
    return rows


def render_report(s: dict[str, Any]) -> str:
    lines = [
        f"# DeepWeightFlow demo: {s['recipe']}",
        "",
        "| | networks | test accuracy (%) | novelty | function novelty |",
        "|---|---|---|---|---|",
        *["| " + " | ".join(row) + " |" for row in _rows(s)],
        "",
        s["verdict"],
        "",
        f"Novelty ratio {_ratio(s, 'novelty_ratio')}, diversity ratio {_ratio(s, 'diversity_ratio')}, held-out ratio "
        f"{_ratio(s, 'heldout_ratio')} (permutation-invariant: each network aligned to each zoo network; the flow "
        f"never saw the last {s['holdout']} zoo members; in brackets, 95 % bootstrap intervals). Function novelty compares predicted class probabilities "
        "instead of weights; the held-out members show what genuinely new networks score. The baselines are set "
        "to the generated networks' novelty. The full comparison (paper Table 17 metrics, sweeps, figures) is in "
        "[evaluation/report.md](evaluation/report.md).",
        "",
        f"Quality check (on by default in `pipe(...)`; these are the raw flow's networks): "
        f"{100 * s['quality_check']['raw_pass_rate']:.0f} % of them reach {s['quality_check']['threshold']:.4f} "
        "training accuracy (the worst fitted member's minus 10 pp); the others would be drawn again.",
        "",
        "| phase | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.3f} |" for k, v in s["timings"].items()],
        "",
    ]
    return "\n".join(lines)


def print_summary(s: dict[str, Any]) -> None:
    rows = _rows(s)
    w = max(len(r[0]) for r in rows) + 2
    print(f"{'':<{w}}{'networks':>9}  {'test accuracy (%)':>18}  {'novelty':>17}  {'function novelty':>17}")
    for a, b, c, d, e in rows:
        print(f"{a:<{w}}{b:>9}  {c:>18}  {d:>17}  {e:>17}")
    print(
        f"novelty ratio {_ratio(s, 'novelty_ratio')}, diversity ratio {_ratio(s, 'diversity_ratio')}, "
        f"held-out ratio {_ratio(s, 'heldout_ratio')} (95 % bootstrap intervals)"
    )
    print("\n".join(s["headline"]).replace("**", ""))
    print(f"quality check: {100 * s['quality_check']['raw_pass_rate']:.0f} % of the raw networks pass "
          f"(threshold {s['quality_check']['threshold']:.4f}); pipe(...) redraws the others")  # fmt: skip
    print("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in s["timings"].items()))
    print(json.dumps({"summary": "summary.json", "report": "report.md"}))
