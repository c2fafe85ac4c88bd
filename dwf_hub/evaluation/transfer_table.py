"""What a transfer run says: per method and budget the mean target test metric with its 95 % interval over the K
networks, the learning rate each cell chose, the pairwise comparisons (Welch's t-test) and a one-line verdict —
written to ``table.md``, ``table.csv``, ``summary.json`` and ``transfer.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_json, write_text

ALPHA = 0.05
"""Significance level of the comparisons and coverage (1 - ALPHA) of the intervals."""
PAIRS = (("generated", "pretrained"), ("generated", "random"), ("pretrained", "random"))


def interval(values: list[float]) -> dict[str, float | int]:
    """Mean, sample std and the half-width of the 95 % t-interval of the mean (``nan`` for one value)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    std = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    half = (
        float(stats.t.ppf(1 - ALPHA / 2, len(v) - 1) * std / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    )
    return {"mean": float(v.mean()), "std": std, "ci95": half, "k": len(v)}


def compare(a: list[float], b: list[float]) -> dict[str, Any]:
    """``a`` against ``b``: difference of means, Welch's p-value and ``outcome`` (``ahead`` / ``behind`` when
    significant at ALPHA, else ``tie``)."""
    from scipy import stats

    d = float(np.mean(a) - np.mean(b))
    if min(len(a), len(b)) < 2:
        p = float("nan")
    elif (
        np.ptp(a) == np.ptp(b) == 0
    ):  # constant sets (e.g. chance-level new heads): no spread to test against
        p = 1.0 if d == 0 else 0.0
    else:
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    outcome = "tie" if not p < ALPHA else "ahead" if d > 0 else "behind"
    return {"difference": d, "p": p, "outcome": outcome}


def _budget_verdict(comparisons: dict[str, dict[str, Any]]) -> str:
    """``generated ties pretrained, both beat random`` for one budget (only the pairs that were run)."""
    words, both = (
        {"ahead": "beats", "behind": "trails", "tie": "ties"},
        {"ahead": "beat", "behind": "trail", "tie": "tie"},
    )
    parts = []
    if "generated-pretrained" in comparisons:
        parts.append(f"generated {words[comparisons['generated-pretrained']['outcome']]} pretrained")
    gr, pr = comparisons.get("generated-random"), comparisons.get("pretrained-random")
    if gr and pr and gr["outcome"] == pr["outcome"]:
        parts.append(f"both {both[gr['outcome']]} random")
    else:
        parts += [
            f"{m} {words[c['outcome']]} random" for m, c in (("generated", gr), ("pretrained", pr)) if c
        ]
    return ", ".join(parts) or "nothing to compare"


def summarize_cells(results: dict[str, Any]) -> dict[str, Any]:
    """``{"table": {method: {budget: interval + lr}}, "comparisons": {budget: {"a-b": compare}}, "verdict"}``."""
    cells = results["cells"]
    table = {
        m: {b: {**interval(c["test"]), "lr": c.get("lr")} for b, c in by_b.items()}
        for m, by_b in cells.items()
    }
    budgets = sorted({b for by_b in cells.values() for b in by_b}, key=int)
    comparisons = {
        b: {f"{x}-{y}": compare(cells[x][b]["test"], cells[y][b]["test"])
            for x, y in PAIRS if b in cells.get(x, {}) and b in cells.get(y, {})}
        for b in budgets
    }  # fmt: skip
    lines = [f"{_epochs(b)}: {_budget_verdict(comparisons[b])}" for b in budgets]
    return {"table": table, "comparisons": comparisons, "verdict": "; ".join(lines)}


def write_table(root: Path, results: dict[str, Any], metric: str, mode: str) -> dict[str, Any]:
    """``table.md``, ``table.csv``, ``summary.json`` and ``transfer.png`` into ``root``; returns the summary."""
    summary = {"metric": metric, "mode": mode, **summarize_cells(results)}
    table, budgets = summary["table"], sorted({b for c in summary["table"].values() for b in c}, key=int)
    scale, unit = (100.0, " (%)") if metric == "accuracy" else (1.0, "")
    ks = "/".join(sorted({str(c["k"]) for cells in table.values() for c in cells.values()}))
    lines = [
        f"Target test {metric}{unit}, mean ± 95 % interval over K = {ks} networks per method; mode: {mode}; "
        "in brackets the learning rate chosen on the validation shots",
        "",
        f"| method | mode | {' | '.join(_epochs(b) for b in budgets)} |",
        "|---" * (len(budgets) + 2) + "|",
    ]
    for m, cells in table.items():
        entries = [_entry(cells[b], scale) if b in cells else "–" for b in budgets]
        lines.append(f"| {m} | {mode} | {' | '.join(entries)} |")
    lines += ["", f"**Verdict** (Welch's t-test, p < {ALPHA}): {summary['verdict']}", ""]
    for b in budgets:
        for pair, c in summary["comparisons"][b].items():
            lines.append(
                f"- {_epochs(b)}, {pair.replace('-', ' − ')}: {scale * c['difference']:+.2f}, p = {c['p']:.3g}"
            )
    write_text(root / "table.md", "\n".join(lines) + "\n")
    csv = ["method,mode,epochs,mean,std,ci95,k,lr"] + [
        f"{m},{mode},{b},{v['mean']:.6f},{v['std']:.6f},{v['ci95']:.6f},{v['k']},{v['lr'] if v['lr'] else ''}"
        for m, cells in table.items() for b, v in sorted(cells.items(), key=lambda kv: int(kv[0]))
    ]  # fmt: skip
    write_text(root / "table.csv", "\n".join(csv) + "\n")
    write_json(root / "summary.json", summary)
    _plot(root, summary, scale, unit)
    return summary


def _epochs(budget: str) -> str:
    return f"{budget} epoch{'' if budget == '1' else 's'}"


def _entry(cell: dict[str, Any], scale: float) -> str:
    ci = "" if np.isnan(cell["ci95"]) else f" ± {scale * cell['ci95']:.2f}"
    return f"{scale * cell['mean']:.2f}{ci}" + (f" ({cell['lr']:.0e})" if cell["lr"] else "")


def _plot(root: Path, summary: dict[str, Any], scale: float, unit: str) -> None:
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for m, cells in summary["table"].items():
        b = sorted(cells, key=int)
        ci = [0.0 if np.isnan(cells[x]["ci95"]) else scale * cells[x]["ci95"] for x in b]
        ax.errorbar(
            [int(x) for x in b],
            [scale * cells[x]["mean"] for x in b],
            yerr=ci,
            marker="o",
            capsize=3,
            label=m,
        )
    title = f"Transfer ({summary['mode']}), 95 % intervals\n" + textwrap.fill(summary["verdict"], 70)
    ax.set(xlabel="fine-tuning epochs", ylabel=f"target test {summary['metric']}{unit}")
    ax.set_title(title, fontsize=8)
    ax.legend()
    with atomic_path(root / "transfer.png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
