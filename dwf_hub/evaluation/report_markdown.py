"""``report.md``: the headline, the verdict, the per-set table, the baseline tables and Table 17."""

from __future__ import annotations

from typing import Any

from .verdict import INTERVALS, RATIOS, fmt_ratio, headline, unit


def _fmt_summary(s: dict[str, float], metric: str) -> str:
    """``mean ± std (min, max)`` in the metric's unit."""
    c, d = unit(metric)[0], 2 if metric == "accuracy" else 4
    return (
        f"{c * s['mean']:.{d}f} ± {c * s['std']:.{d}f} (min {c * s['min']:.{d}f}, max {c * s['max']:.{d}f})"
    )


def _baseline_table(baselines: dict[str, dict[str, Any]], where: str, scale: float, suffix: str) -> list[str]:
    """Markdown lines: each baseline at the generated networks' ``where`` (novelty or function novelty)."""
    if not baselines:
        return []
    lines = ["", f"Baselines at the generated networks' {where}:", "",
             f"| baseline | setting | novelty | function novelty | diversity | mean{suffix} | generated − baseline "
             f"| {'outcome' if where == 'diversity' else 'verdict'} | beyond 2 standard errors |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for kind, b in baselines.items():
        knob = ", ".join(f"{k}={v:.3g}" for k, v in b["knob"].items())
        reach = "" if b["reached"] else " (most novel setting; cannot reach)"
        if b.get("too_novel"):
            reach = " (least novel setting; always more novel)"
        lines.append(f"| {kind} | {knob}{reach} | {b['novelty_ratio']:.3f} | {fmt_ratio(b['function_novelty_ratio'])} "
                     f"| {fmt_ratio(b.get('diversity_ratio'))} "
                     f"| {scale * b['accuracy_mean']:.2f} | {scale * b['difference']:+.2f} "
                     f"| {b['outcome'] if where == 'diversity' else _beats_cell(b)} "
                     f"| {'yes' if b['significant'] else 'no'} |")  # fmt: skip
    return lines


def _checked_lines(
    checked: dict[str, Any] | None, generated_mean: float, scale: float, suffix: str
) -> list[str]:
    """Markdown lines for ``_checked_baselines``."""
    if not checked:
        return []
    drawn, rejected = checked["generated_drawn"], checked["generated_rejected"]
    rate = f"{100 * (drawn - rejected) / drawn:.0f} %" if drawn else "–"
    lines = ["", f"The generated networks were drawn through the pipeline's quality check (threshold "
             f"{checked['threshold']:.4f} on the training split; {drawn} drawn, {rejected} rejected: acceptance {rate}). "
             "The baselines at their matched settings, given the same check:", "",
             f"| baseline | setting | passes the check | mean of those that pass{suffix} | generated − baseline |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, r in checked["rows"].items():
        knob = ", ".join(f"{k}={v:.3g}" for k, v in r["knob"].items())
        mean, diff = (
            ("–", "–")
            if r["mean"] is None
            else (f"{scale * r['mean']:.2f}", f"{scale * (generated_mean - r['mean']):+.2f}")
        )
        lines.append(f"| {name} | {knob} | {100 * r['acceptance']:.0f} % | {mean} | {diff} |")
    return lines


def _sweep_note(summary: dict[str, Any]) -> str:
    n = summary.get("sweep_networks", summary["num_generated"])
    if n >= summary["num_generated"]:
        return ""
    return (f" The baselines' sweeps drew {n} networks per setting to locate each matched setting; every "
            f"matched set has {summary['num_generated']} networks.")  # fmt: skip


def _beats_cell(b: dict[str, Any]) -> str:
    """The verdict against one baseline: ahead, behind, tie (within the noise) or not comparable."""
    return (
        "not comparable"
        if not b.get("comparable", True)
        else b.get("verdict", "ahead" if b["beats"] else "tie")
    )


def _markdown(summary: dict[str, Any], figures: dict[str, str]) -> str:
    metric = summary["metric"]
    scale, suffix = unit(metric)
    lines = [
        "# Evaluation report",
        "",
        *headline(summary),
        "",
        "## Details",
        "",
        summary["verdict"],
        "",
        f"{summary['num_generated']} generated networks vs. the {summary['num_zoo']} zoo networks the generator "
        f"was fitted on ({summary['holdout']} more held out), on the {summary['split']} split. Novelty, "
        "diversity and held-out ratios are permutation-invariant (each network aligned to each zoo network); "
        "function novelty compares what networks compute on the split's inputs instead of their weights (held-out "
        "members show the value of genuinely new networks); see docs/evaluation.md, Novelty. In brackets: 95 % "
        "bootstrap intervals over the scored networks (another draw of the same generator can land anywhere in them)."
        + _sweep_note(summary),
        "",
        f"| set | {metric}{suffix} | novelty | diversity | held-out ratio | function novelty | function novelty, "
        "working networks | failed networks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, s in summary["accuracy"].items():
        failed = summary.get("failed_share", {}).get(k)
        lines.append(
            f"| {k} | {_fmt_summary(s, metric)} | "
            + " | ".join(fmt_ratio(summary[m].get(k), summary.get(INTERVALS[m], {}).get(k)) for m in RATIOS)
            + f" | {fmt_ratio(summary.get('working_function_novelty_ratio', {}).get(k))} | "
            + ("–" if failed is None else f"{100 * failed:.0f} %")
            + " |"
        )
    for key, where in (("baselines", "novelty"), ("baselines_function", "function novelty"),
                       ("baselines_diversity", "diversity")):  # fmt: skip
        lines += _baseline_table(summary.get(key) or {}, where, scale, suffix)
    lines += _checked_lines(
        summary.get("baselines_checked"), summary["accuracy"]["generated"]["mean"], scale, suffix
    )
    lines += [
        "",
        "Set-to-set metrics (paper Table 17, canonical weight space; per-network values averaged over the first "
        "set, self-pairs left out):",
        "",
        "| from → to | mIoU | NN L2 (mean) | NN L2 (median) | max cosine | Wasserstein | Jensen–Shannon |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, m in summary["table17"].items():
        miou = "–" if m["miou_mean"] is None else f"{m['miou_mean']:.3f} ± {m['miou_std']:.3f}"
        lines.append(f"| {k} | {miou} | {m['nn_l2_mean']:.4f} | "
                     f"{m['nn_l2_median']:.4f} | {m['max_cosine_mean']:.4f} | {m['wasserstein']:.5f} | "
                     f"{m['jensen_shannon']:.4f} |")  # fmt: skip
    lines += ["", *[f"![{name}]({file})" for name, file in figures.items()], ""]
    return "\n".join(lines)
