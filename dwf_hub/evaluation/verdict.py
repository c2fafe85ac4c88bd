"""What a report says: the verdict sentences (new or memorized; ahead of, behind or tied with each baseline at
the generated set's novelty, function novelty and diversity), the three headline lines, and how values are shown."""

from __future__ import annotations

from typing import Any

MEMORIZED, PARTLY_NEW = 0.5, 0.8  # novelty-ratio thresholds of the verdict
RATIOS = ("novelty_ratio", "diversity_ratio", "heldout_ratio", "function_novelty_ratio")  # per scored set
INTERVALS = {m: m.replace("_ratio", "_interval") for m in RATIOS}  # each ratio's 95 % bootstrap interval
FAILURES = ("failed_share", "working_function_novelty_ratio")  # per scored set (``frontier.FAILED_MARGIN``)
FAILED_NOTE = 0.05  # the verdict speaks of failed generated networks from this share on


def unit(metric: str) -> tuple[float, str]:
    """How a metric is shown: accuracy in percent, Spearman's rho as it is."""
    return (100.0, " (%)") if metric == "accuracy" else (1.0, "")


def verdict(
    novelty: float,
    miou: float | None,
    baselines: dict[str, dict[str, Any]] | None = None,
    metric: str = "accuracy",
    function_baselines: dict[str, dict[str, Any]] | None = None,
    diversity_baselines: dict[str, dict[str, Any]] | None = None,
    novelty_interval: list[float] | None = None,
) -> str:
    """Plain sentences: are the generated networks new, and do they beat each baseline at their novelty —
    in function space (``function_baselines``, first: what the networks compute) and in weight space
    (``baselines``), then overall (both)? Baselines that cannot copy the zoo are also set to the generated
    set's diversity (``diversity_baselines``). (``miou``: error overlap with the zoo, classification only;
    ``novelty_interval``: the novelty ratio's bootstrap interval.)"""
    overlap = "" if miou is None else f", error overlap with the zoo mIoU {miou:.2f}"
    spread = (
        ""
        if novelty_interval is None
        else f", 95 % interval {novelty_interval[0]:.2f}–{novelty_interval[1]:.2f}"
    )
    if novelty < MEMORIZED:
        bracket = f" ({spread[2:]})" if spread else ""
        text = (f"**Generated networks look memorized**: a generated network sits {novelty:.2f}×{bracket} as far from "
                f"its nearest zoo network as zoo networks sit from each other{overlap}.")  # fmt: skip
    elif novelty < PARTLY_NEW:
        text = (f"Generated networks are partly new: closer to zoo networks than those are to each other "
                f"(novelty ratio {novelty:.2f}{spread}){overlap}.")  # fmt: skip
    else:
        text = (f"Generated networks are new: as far from the zoo as its own networks are from each other "
                f"(novelty ratio {novelty:.2f}{spread}){overlap}.")  # fmt: skip
    spaces = (("function", function_baselines or {}, "function_novelty_ratio", "the same function novelty"),
              ("weight", baselines or {}, "novelty_ratio", "the same novelty"))  # fmt: skip
    for space, rows, key, same in spaces:
        if rows:
            text += f" In {space} space" + _comparisons(rows, metric, key, same).replace(
                " The generator", ", the generator", 1
            )
    text += _at_diversity(diversity_baselines or {}, metric)
    overall = beats_overall(baselines or {}, function_baselines or {})
    if overall:
        won = [k for k, v in overall.items() if v]
        text += (f" Overall (both spaces): significantly ahead of {', '.join(won) or 'none'} ({len(won)} of the "
                 f"{len(overall)} baselines it can be compared with).")  # fmt: skip
    return text


def failures(scores: dict[str, dict[str, Any]]) -> str:
    """A sentence when generated networks fail (``frontier.FAILED_MARGIN``): their function novelty is that of
    broken networks, so the working ones' is given beside it."""
    from .frontier import FAILED_MARGIN

    gen, held = scores["generated"], scores.get("held-out zoo members", {})
    if gen["failed_share"] < FAILED_NOTE:
        return ""
    margin = f"{100 * FAILED_MARGIN:g} pp" if gen["metric"] == "accuracy" else f"{FAILED_MARGIN:g}"
    text = f" {100 * gen['failed_share']:.0f} % of the generated networks fail (more than {margin} below the worst fitted zoo network"
    if "failed_share" in held:
        text += f"; held-out members: {100 * held['failed_share']:.0f} %"
    text += "); a failed network computes a function far from every zoo network, so function novelty counts it as new"
    working = gen.get("working_function_novelty_ratio")
    if working is not None and gen.get("function_novelty_ratio") is not None:
        text += f": the working ones' function novelty is {working:.2f} (all: {gen['function_novelty_ratio']:.2f})"
    return text + "."


def beats_overall(
    baselines: dict[str, dict[str, Any]], function_baselines: dict[str, dict[str, Any]]
) -> dict[str, bool]:
    """``{kind: bool}``: the generator is significantly ahead of the baseline (``frontier.compare``'s ``beats``) in
    every space (weight novelty, function novelty where measured) where the two can be compared; a baseline
    comparable in neither is left out."""
    out = {}
    for kind, b in baselines.items():
        rows = [r for r in (b, function_baselines.get(kind)) if r is not None and r.get("comparable", True)]
        if rows:
            out[kind] = all(bool(r["beats"]) for r in rows)
    return out


def _comparisons(baselines: dict[str, dict[str, Any]], metric: str, key: str, same: str) -> str:
    """One sentence per baseline: does the generator beat it at the generated set's ``key``?"""
    scale, text = unit(metric)[0], ""
    for kind, b in baselines.items():
        knob = ", ".join(f"{k} {v:.3g}" for k, v in b["knob"].items())
        label = key.replace("_ratio", "").replace("_", " ")
        where = (f"at {same} ({kind} {knob}: {label} {b[key]:.2f})" if b["reached"] else
                 f"(it reaches at most {label} {b[key]:.2f}, at {knob})")  # fmt: skip
        if b.get("too_novel"):
            where = f"(more novel at every setting; its least novel, {knob}, has {label} {b[key]:.2f})"
        words = {"ahead": "**is ahead of**", "behind": "**is behind**", "tie": "**ties with**"}
        outcome = words[b.get("verdict", "ahead" if b["beats"] else "tie")]
        if not b.get("comparable", True):
            outcome = "**cannot be compared with**"
        noise = " (within twice the standard error)" if b.get("verdict") == "tie" else ""
        text += (f" The generator {outcome} the {kind} baseline {where}: {scale * b['mean']:.2f} vs "
                 f"{scale * b['baseline_mean']:.2f}{noise}{_narrower(b)}.")  # fmt: skip
    return text


def _at_diversity(baselines: dict[str, dict[str, Any]], metric: str) -> str:
    """One sentence per baseline set to the generated set's diversity: which of the two is more accurate and
    which more novel (a baseline that cannot copy the zoo is more novel at every setting, so matching it on
    novelty says only whether it dominates; at equal diversity the accuracy a generator's variety costs shows)."""
    scale, text = unit(metric)[0], ""
    for kind, b in baselines.items():
        knob = ", ".join(f"{k} {v:.3g}" for k, v in b["knob"].items())
        ours, theirs = f"{scale * b['mean']:.2f}", f"{scale * b['baseline_mean']:.2f}"
        novelty = f"novelty {b['novelty_ratio']:.2f} vs {b['generated_novelty_ratio']:.2f}"
        where = "At the generated networks' diversity" if b["reached"] else "At its most diverse setting"
        outcome = {
            "generator dominates": f"the generator is more accurate ({ours} vs {theirs}) and at least as novel ({novelty}): it dominates",
            "baseline dominates": f"the baseline is as accurate ({theirs} vs {ours}) and at least as novel ({novelty}): it dominates",
            "generator more accurate": f"the generator is more accurate ({ours} vs {theirs}), the baseline more novel ({novelty})",
            "baseline more accurate": f"the baseline is more accurate ({theirs} vs {ours}), the generator more novel ({novelty})",
        }[diversity_outcome(b)]  # fmt: skip
        noise = "" if b["significant"] else " (an accuracy difference within twice its standard error)"
        text += (f" {where} (the {kind} baseline at {knob}: diversity {b['diversity_ratio']:.2f}), "
                 f"{outcome}{noise}.")  # fmt: skip
    return text


def diversity_outcome(b: dict[str, Any]) -> str:
    """A diversity-matched baseline row against the generated set: who dominates (more accurate and at least as
    novel), or which of the two is more accurate when each wins on one axis."""
    more_accurate, more_novel = b["difference"] > 0, b["novelty_ratio"] > b["generated_novelty_ratio"]
    if more_accurate != more_novel:
        return "generator dominates" if more_accurate else "baseline dominates"
    return "generator more accurate" if more_accurate else "baseline more accurate"


def _narrower(b: dict[str, Any]) -> str:
    """A clause for a comparable baseline not beaten on the metric whose networks are less diverse than the
    generated ones (a lone network plus small noise can be accurate at a novelty without being a varied set)."""
    ours, theirs = b.get("generated_diversity_ratio"), b.get("diversity_ratio")
    if b["beats"] or not b.get("comparable", True) or ours is None or theirs is None or theirs >= ours:
        return ""
    return f", but the baseline's networks are less diverse than the generated ones (diversity {theirs:.2f} vs {ours:.2f})"


def fmt_ratio(v: float | None, interval: list[float] | None = None) -> str:
    """A ratio with 3 decimals (and its interval, if given), or a dash when there is none."""
    if v is None:
        return "–"
    return f"{v:.3f}" if interval is None else f"{v:.3f} ({interval[0]:.2f}–{interval[1]:.2f})"


_SAID = {"ahead": "ahead", "behind": "behind", "tie": "tied with it"}


def headline(summary: dict[str, Any]) -> list[str]:
    """Three lines a reader can trust in ten seconds: the generated set next to what genuinely new networks (the
    held-out members) score, the best baseline at the same function novelty, and the significant verdicts."""
    scale, suffix = unit(summary["metric"])[0], " %" if summary["metric"] == "accuracy" else ""
    acc, gen, held = summary["accuracy"], "generated", "held-out zoo members"

    def point(k: str) -> str:
        nov, fn = (summary[m].get(k) for m in ("novelty_ratio", "function_novelty_ratio"))
        return (f"{scale * acc[k]['mean']:.2f}{suffix} at novelty {fmt_ratio(nov)}"
                f"{'' if fn is None else f', function novelty {fn:.2f}'}")  # fmt: skip

    failed = summary.get("failed_share", {}).get(gen)
    first = f"- **Generated**: {point(gen)}" + ("" if failed is None else f", {100 * failed:.0f} % failed")
    first += f"; **held-out members** (what new networks score): {point(held)}." if held in acc else "."
    rows = {k: b for k, b in (summary.get("baselines_function") or summary.get("baselines") or {}).items()
            if b.get("comparable", True)}  # fmt: skip
    lines = [first]
    if rows:
        kind, b = max(rows.items(), key=lambda kv: kv[1]["baseline_mean"])
        lines.append(f"- **Best baseline** at the same {'function ' if summary.get('baselines_function') else ''}"
                     f"novelty: {kind}, {scale * b['baseline_mean']:.2f}{suffix}; the generator is "
                     f"**{_SAID[b.get('verdict', 'ahead' if b['beats'] else 'tie')]}** ({scale * b['difference']:+.2f}).")  # fmt: skip
    verdicts = {
        v: [k for k, won in summary["beats"].items() if won == (v == "ahead")] for v in ("ahead", "not ahead")
    }
    lines.append(f"- **Significantly ahead of** (both spaces): {', '.join(verdicts['ahead']) or 'none'}; "
                 f"not: {', '.join(verdicts['not ahead']) or 'none'}.")  # fmt: skip
    return lines
