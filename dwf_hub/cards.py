"""Dataset cards for zoos (rendered with huggingface_hub's card classes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .zoo import WeightZoo

CITATION = """@article{deepweightflow,
  title  = {DeepWeightFlow: Re-Basined Flow Matching for Generating Neural Network Weights},
  year   = {2025}
}"""


def _metric_line(records: list[dict[str, Any]], key: str) -> str | None:
    vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    if not vals:
        return None
    import statistics

    std = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return f"| {key} | {statistics.fmean(vals):.4f} | {std:.4f} | {min(vals):.4f} | {max(vals):.4f} |"


def render_zoo_card(zoo: WeightZoo, records: list[dict[str, Any]]) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    recipe = zoo.recipe or {}
    data = DatasetCardData(
        license="mit",
        tags=["dwf-hub", "weight-zoo", "model-weights", f"arch:{zoo.arch.name}"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "metadata.parquet"}]}],
    )
    seeds = sorted({r["seed"] for r in records if "seed" in r})
    inits = sorted({str(r["init"]) for r in records if "init" in r})
    metrics = [m for m in (_metric_line(records, k) for k in ("val_accuracy", "test_accuracy")) if m]
    lines = [
        f"# Weight zoo: {recipe.get('name', zoo.arch.name)}",
        "",
        f"{len(zoo)} networks of architecture `{zoo.arch.name}` ({zoo.arch.num_params:,} parameters each), "
        "stored as safetensors checkpoints with one metadata row per network.",
        "",
        f"- architecture: `{zoo.arch.config}`",
        f"- recipe: `{recipe.get('name', 'n/a')}`; training: `{recipe.get('training', {})}`",
        f"- seeds: {seeds[0]}…{seeds[-1]}" if seeds else "- seeds: n/a",
        f"- init schemes: {', '.join(inits) if inits else 'n/a'}",
        f"- canonical: {zoo.info.get('canonical', 'no')}",
        "",
    ]
    if metrics:
        lines += ["| metric | mean | std | min | max |", "|---|---|---|---|---|", *metrics, ""]
    lines += [
        "## Load",
        "",
        "```python",
        "from dwf_hub import WeightZoo",
        'zoo = WeightZoo.load("path/to/zoo")',
        "model = zoo.model(0)",
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))
