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


MATCHED_ON = (
    ("baselines_function", "function novelty"),
    ("baselines", "weight novelty"),
    ("baselines_diversity", "diversity"),
)


def _verdict_table(summary: dict[str, Any], scale: float, suffix: str) -> list[str]:
    """One table for every comparison: each baseline at the generated set's function novelty, weight novelty and
    (for those that cannot copy the zoo) diversity — its setting, both means with 95 % intervals, the difference,
    whether it exceeds twice its standard error, and the verdict (ahead / behind / tie, or who dominates)."""
    gen = summary["accuracy"]["generated"]

    def ci(mean: float, std: float, n: int) -> str:
        return f"{scale * mean:.2f} ± {1.96 * scale * std / max(n, 1) ** 0.5:.2f}"

    lines = ["", "Every baseline at the generated set's function novelty, weight novelty and diversity (± 95 % "
             "intervals of the means; a difference within twice its standard error is a tie):", "",
             f"| baseline | matched on | its setting | its mean{suffix} | generated{suffix} | generated − baseline "
             "| beyond 2 s.e. | verdict |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, on in MATCHED_ON:
        for kind, b in (summary.get(key) or {}).items():
            knob = ", ".join(f"{k}={v:.3g}" for k, v in b["knob"].items())
            if b.get("too_novel"):
                knob += " (least novel setting; always more novel)"
            elif not b["reached"]:
                knob += " (most novel setting; cannot reach)"
            n = summary.get("sweep_networks") or summary["num_generated"]
            lines.append(f"| {kind} | {on} | {knob} | {ci(b['accuracy_mean'], b.get('accuracy_std', 0.0), n)} "
                         f"| {ci(gen['mean'], gen['std'], summary['num_generated'])} | {scale * b['difference']:+.2f} "
                         f"| {'yes' if b['significant'] else 'no'} "
                         f"| {b['outcome'] if key == 'baselines_diversity' else _beats_cell(b)} |")  # fmt: skip
    return lines if len(lines) > 5 else []


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
        *(summary.get("headline") or headline(summary)),
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
    lines += _verdict_table(summary, scale, suffix)
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
