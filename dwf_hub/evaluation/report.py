"""Evaluation report: are generated networks both good and new, and better than the trivial generators?

``build_report(generated, training_zoo, out)`` writes ``report.md``, ``summary.json`` and PNG figures. Every
set — generated networks, held-out zoo members, the baselines — is scored the same way (``frontier``): task
metric, permutation-invariant novelty, diversity and held-out ratio (``novelty``). The baselines
(``baselines.BASELINES``) are set to the generated networks' novelty and function novelty, and the verdict says
whether the generator beats each there; the two that cannot copy the zoo (mean + noise, Gaussian) are also set
to its diversity. Table 17 of the paper (mIoU, nearest-neighbour L2, cosine, Wasserstein,
Jensen–Shannon) is computed in canonical weight space.
"""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor

from ..artifacts import check_output, write_folder
from ..errors import DWFError
from ..io import write_json, write_text
from ..zoo.weight_zoo import WeightZoo
from . import metrics
from .baselines import BASELINES
from .report_figures import _figures
from .report_markdown import _markdown
from .verdict import (
    FAILURES,
    INTERVALS,
    MEMORIZED,
    RATIOS,
    beats_overall,
    diversity_outcome,
    failures,
    headline,
    verdict,
)


def build_report(
    generated: WeightZoo,
    reference: WeightZoo,
    out: str | os.PathLike,
    noise: tuple[float, ...] = (),
    split: str = "test",
    holdout: int | None = None,
    baselines: bool = True,
    seed: int = 0,
    progress: bool = False,
    sweep_networks: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Compare ``generated`` with the training zoo ``reference`` into folder ``out`` (a report artifact, written
    whole: ``artifacts.write_folder``; another folder is refused unless ``overwrite``), every set scored with the
    architecture's task metric. ``holdout``: the last members of ``reference`` were not fitted on (default: what
    ``generated`` records); ``noise``: extra zoo + noise rows at these relative sigmas; ``baselines``: also find
    each baseline's setting at the generated set's novelty (``sweep_networks`` per sweep setting) and compare."""
    from ..matching import canonicalize
    from .frontier import Frontier
    from .zoo_evaluation import aligned_matrices

    check_output(out, "report", overwrite)  # before the work, not only at its end
    if not reference.recipe:
        raise DWFError("the reference zoo has no recipe, so there is no task to evaluate on")
    if generated.arch != reference.arch:
        raise DWFError(f"architectures differ: {generated.arch!r} vs {reference.arch!r}")
    x, y = reference.recipe.split(split)
    if not reference.is_canonical:
        reference = canonicalize(reference, progress=progress).zoo
    holdout = generated.info.get("holdout", 0) if holdout is None else holdout
    seen, heldout = reference.split_holdout(holdout)
    gen_w, _ = aligned_matrices(generated, reference, progress)
    units = bool(generated.info.get("unit_recalibration"))  # baselines recalibrated as the generated set was
    frontier = Frontier(seen, x, y, heldout, len(generated), seed, sweep_networks, recalibrate_units=units)
    with _scoring_bar(len(noise) + 2 + (heldout is not None), baselines, progress) as frontier.bar:
        sets, scores = _score_sets(frontier, gen_w, noise)
        sweeps, (matched, by_function, by_diversity) = _baselines(frontier, sets, scores, baselines)
    per_network, preds = _per_network(reference.arch, sets, x, y)
    table = _table17(sets, preds, y)
    novelty = scores["generated"]["novelty_ratio"]
    summary = {
        "split": split, "metric": frontier.metric, "num_zoo": len(seen), "num_generated": len(generated),
        "holdout": holdout, "sweep_networks": min(sweep_networks or len(generated), len(generated)),
        "accuracy": {k: {s: v[s] for s in ("mean", "std", "min", "max")} for k, v in scores.items()},
        **{m: {k: v.get(m) for k, v in scores.items() if k != "zoo"} for m in (*RATIOS, *INTERVALS.values(), *FAILURES)},
        "baselines": matched, "baselines_function": by_function, "baselines_diversity": by_diversity,
        "beats": beats_overall(matched, by_function), "sweeps": sweeps, "table17": table,
        "verdict": verdict(novelty, table["gen→orig"]["miou_mean"], matched, frontier.metric, by_function,
                           by_diversity, scores["generated"].get("novelty_interval")) + failures(scores),
        "memorized": novelty < MEMORIZED,
        "baselines_checked": _checked_baselines(frontier, generated, {"novelty": matched, "function novelty": by_function}),
    }  # fmt: skip
    summary["headline"] = headline(summary)
    with write_folder(out, "report", overwrite) as root:
        figures = _figures(root, sets, per_network, preds, y, summary, frontier.scorer)
        write_json(root / "summary.json", summary)
        write_text(root / "report.md", _markdown(summary, figures))
    return summary


def _scoring_bar(sets: int, baselines: bool, progress: bool):
    """A progress bar over the sets a report scores: ``sets`` fixed ones, then each baseline's sweep and its
    matched settings (at most: a setting is not matched when the generated set has no such ratio)."""
    from huggingface_hub.utils import tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS

    from .frontier import COPIES, GRIDS

    if baselines:
        matched = len(BASELINES) * (len(MATCHED_NAME) - 1) + sum(k not in COPIES for k in BASELINES)
        sets += sum(len(GRIDS[k]) for k in BASELINES) + matched
    return tqdm(total=sets, desc="scoring sets", unit="set", disable=not progress, leave=False)


def _score_sets(
    frontier, gen_w: Tensor, noise: tuple[float, ...]
) -> tuple[dict[str, Tensor], dict[str, dict[str, Any]]]:
    """The compared sets (zoo, generated, held-out members, noise rows) in canonical space, and their
    scores (task metric, novelty, diversity, held-out ratio)."""
    zoo_w = frontier.scorer.train
    sets: dict[str, Tensor] = {"zoo": zoo_w, "generated": gen_w}
    scores: dict[str, dict[str, Any]] = {
        "zoo": frontier.score(zoo_w, quick=True, diversity=False),
        "generated": frontier.score(gen_w),
    }
    if frontier.scorer.heldout is not None:
        sets["held-out zoo members"] = frontier.scorer.heldout
    for s in noise:
        sets[f"noise σ={s:g}"] = frontier.baseline_weights("noise", {"sigma": s})
    for name, w in sets.items():
        if name not in scores:  # (not setdefault: its argument, a full score, would be computed anyway)
            scores[name] = frontier.score(w, heldout=name != "held-out zoo members")
    return sets, scores


def _baselines(
    frontier, sets: dict[str, Tensor], scores: dict[str, dict[str, Any]], enabled: bool
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, dict[str, Any]]]]:
    """Each baseline's sweep (with diversity for those that cannot copy the zoo), and the summary rows at the
    generated set's novelty, function novelty and diversity (``_match_baselines``)."""
    from .frontier import COPIES

    sweeps = {
        kind: frontier.sweep(kind, diversity=kind not in COPIES) for kind in (BASELINES if enabled else ())
    }
    return sweeps, [_match_baselines(frontier, sweeps, sets, scores, key) for key in MATCHED_NAME]


def _per_network(
    arch, sets: dict[str, Tensor], x: Tensor, y: Tensor
) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Per set, each network's task metric ``[N]`` and predicted labels ``[N, B]`` (classification only: errors
    are what mIoU compares), from one pass over the split (a report on ResNets spends minutes here)."""
    from ..scoring import metric_of_outputs, outputs_many

    outputs = {k: outputs_many(arch, w, x) for k, w in sets.items()}
    metric = {k: metric_of_outputs(arch, o, y) for k, o in outputs.items()}
    return metric, {k: o.argmax(-1) for k, o in outputs.items()} if arch.task == "classification" else None


def _table17(
    sets: dict[str, Tensor], preds: dict[str, Tensor] | None, y: Tensor
) -> dict[str, dict[str, Any]]:
    """The paper's Table 17 between the zoo, the generated set and every other set (mIoU: classification)."""

    def pair(a: str, b: str) -> dict[str, Any]:
        if preds is None:
            return {
                "miou_mean": None,
                "miou_std": None,
                **metrics.weight_metrics(sets[a], sets[b], same=a == b),
            }
        return metrics.set_metrics(sets[a], preds[a], sets[b], preds[b], y, same=a == b)

    table = {"orig→orig": pair("zoo", "zoo"), "orig→gen": pair("zoo", "generated"),
             "gen→orig": pair("generated", "zoo"), "gen→gen": pair("generated", "generated")}  # fmt: skip
    table.update({f"{name}→orig": pair(name, "zoo") for name in sets if name not in ("zoo", "generated")})
    return table


MATCHED_NAME = {
    "novelty_ratio": "matched",
    "function_novelty_ratio": "function-matched",
    "diversity_ratio": "diversity-matched",  # the baselines that cannot copy the zoo (no COPIES setting)
}


def _match_baselines(
    frontier,
    sweeps: dict[str, list[dict[str, Any]]],
    sets: dict[str, Tensor],
    scores: dict[str, dict[str, Any]],
    key: str = "novelty_ratio",
) -> dict[str, dict[str, Any]]:
    """Each swept baseline at the generated set's novelty (``key``: weight or function novelty; or diversity,
    for the baselines whose sweep has it), added to ``sets`` / ``scores`` as ``KIND (matched)`` /
    ``KIND (function-matched)`` / ``KIND (diversity-matched)``; returns the summary rows (the diversity is
    scored too: a baseline that wins on accuracy with a narrower set is said to)."""
    from .frontier import compare

    generated, matched = scores["generated"], {}
    if generated.get(key) is None:
        return matched
    for kind, sweep in sweeps.items():
        if key not in sweep[0]:
            continue
        row = frontier.matched(kind, generated[key], sweep, key=key)
        name = f"{kind} ({MATCHED_NAME[key]})"
        sets[name], scores[name] = frontier.baseline_weights(kind, row["knob"]), row
        matched[kind] = {
            "accuracy_mean": row["mean"], "accuracy_std": row["std"], "novelty_ratio": row["novelty_ratio"],
            "function_novelty_ratio": row["function_novelty_ratio"], "diversity_ratio": row["diversity_ratio"],
            "generated_diversity_ratio": generated["diversity_ratio"], "generated_novelty_ratio": generated["novelty_ratio"],
            "knob": row["knob"], "reached": row["reached"], "too_novel": row["too_novel"],
            **compare(generated, row, frontier.num_networks),
            "mean": generated["mean"], "baseline_mean": row["mean"],
        }  # fmt: skip
        if key == "diversity_ratio":
            matched[kind]["outcome"] = diversity_outcome(matched[kind])
    return matched


def _checked_baselines(
    frontier, generated: WeightZoo, matched: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, Any] | None:
    """When ``generated`` was drawn through the pipeline's quality check (its info records the check and the
    counts), each matched baseline given the same check: of its networks at the matched setting (``matched``: by
    novelty or function novelty), the share that passes and their mean (what redrawing the rejected ones until
    they pass gives on average; ``None`` when none pass), next to the generated set's acceptance rate — a checked
    generator is compared with checked baselines, never with raw ones only. ``None``: no check was applied."""
    from ..generation.quality_check import QualityCheck
    from ..scoring import score_many

    record = generated.info.get("quality_check")
    if not isinstance(record, dict) or frontier.seen.recipe is None:
        return None
    check = QualityCheck.from_dict({k: v for k, v in record.items() if k != "counts"}, "generated zoo info")
    arch, counts = frontier.seen.arch, record.get("counts") or {}
    out: dict[str, Any] = {"threshold": check.threshold, "generated_drawn": counts.get("drawn"),
                           "generated_rejected": counts.get("rejected"), "rows": {}}  # fmt: skip
    for where, rows in matched.items():
        for kind, row in (rows or {}).items():
            weights = frontier.baseline_weights(kind, row["knob"])
            ok = check.passes(arch, weights, frontier.seen.recipe)
            values = score_many(arch, weights[ok], frontier.x, frontier.y) if ok.any() else None
            out["rows"][f"{kind} at {where}"] = {"knob": row["knob"], "acceptance": float(ok.float().mean()),
                                                 "mean": None if values is None else float(values.mean())}  # fmt: skip
    return out
