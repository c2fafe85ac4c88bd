"""Dataset cards for zoos and model cards for flows, from the templates in ``model_cards/``.

Rendered with ``huggingface_hub``'s ``DatasetCard`` / ``ModelCard`` so the YAML metadata is the Hub's own.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from ..resources import shipped

if TYPE_CHECKING:
    from ..pipeline import DeepWeightFlowPipeline
    from ..zoo.weight_zoo import WeightZoo

TEMPLATES = shipped("model_cards")
CITATION = """@article{deepweightflow,
  title  = {DeepWeightFlow: Re-Basined Flow Matching for Generating Neural Network Weights},
  year   = {2025}
}"""


def _metric(records: list[dict[str, Any]], key: str) -> dict[str, str] | None:
    vals = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    if not vals:
        return None
    std = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    f = lambda v: f"{v:.4f}"  # noqa: E731
    return {
        "name": key,
        "mean": f(statistics.fmean(vals)),
        "std": f(std),
        "min": f(min(vals)),
        "max": f(max(vals)),
    }


def render_zoo_card(
    zoo: WeightZoo,
    records: list[dict[str, Any]],
    repo_id: str = "ORG/dwf-zoo-NAME",
    license: str | None = None,
) -> str:
    """The dataset card: licence (``license``, else the recipe's), the datasets the networks were trained on,
    and for generated or baseline zoos the ``synthetic`` tag and the flow they came from."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from ..formats import METADATA_NAME, WEIGHTS_COLUMN_MAX_PARAMS
    from .repos import source_datasets

    recipe, metric = zoo.recipe.to_dict() if zoo.recipe else {}, zoo.arch.metric
    synthetic = zoo.info.get("source") in ("generated", "baseline")
    tags = [
        "dwf-hub",
        "weight-zoo",
        "model-weights",
        f"arch:{zoo.arch.name}",
        *(["synthetic"] if synthetic else []),
    ]
    data = DatasetCardData(
        license=license or recipe.get("license", "mit"),
        source_datasets=source_datasets(recipe["data"]) if recipe else None,
        pretty_name=f"dwf_hub weight zoo: {recipe.get('name', zoo.arch.name)}",
        tags=tags,
        size_categories=["n<1K"] if len(zoo) < 1000 else ["1K<n<10K"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": METADATA_NAME}]}],
    )
    seeds = sorted({r["seed"] for r in records if "seed" in r})
    inits = sorted({str(r["init"]) for r in records if "init" in r})
    card = DatasetCard.from_template(
        data,
        template_path=str(TEMPLATES / "zoo_card.md"),
        title=recipe.get("name", zoo.arch.name),
        num_models=len(zoo),
        arch_name=zoo.arch.name,
        num_params=f"{zoo.arch.num_params:,}",
        has_weights=zoo.arch.num_params <= WEIGHTS_COLUMN_MAX_PARAMS,
        arch_config=zoo.arch.config,
        recipe_name=recipe.get("name", "n/a"),
        training=recipe.get("training", {}),
        seeds=f"{seeds[0]}…{seeds[-1]}" if seeds else "n/a",
        inits=", ".join(inits) if inits else "n/a",
        canonical=zoo.info.get("canonical", "no"),
        synthetic=synthetic,
        flow=zoo.info.get("flow"),
        license=license or recipe.get("license", "mit"),
        metrics=[m for m in (_metric(records, k) for k in (f"val_{metric}", f"test_{metric}")) if m],
        repo_id=repo_id,
        citation=CITATION,
    )
    return str(card)


def render_flow_card(
    pipe: DeepWeightFlowPipeline,
    repo_id: str = "ORG/dwf-NAME",
    base_zoo: str | None = None,
    evaluation: dict[str, Any] | None = None,
    license: str | None = None,
) -> str:
    """``evaluation``: ``evaluate_zoo(generated, reference=training_zoo)`` output (adds ``model-index``);
    ``license``: default the recipe's."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..configs import FlowConfig

    codec, sched, recipe = pipe.codec.config, pipe.scheduler.config, pipe.recipe
    title = recipe.name if recipe else pipe.arch.name
    results, ev = _evaluation(evaluation, title, base_zoo) if evaluation else (None, None)
    data = ModelCardData(
        license=license or (recipe.license if recipe else "mit"),
        library_name="dwf-hub",
        tags=["dwf-hub", "deepweightflow", "weight-generation", f"arch:{pipe.arch.name}"],
        datasets=[base_zoo] if base_zoo else None,
        base_model=recipe.training.init_from if recipe and recipe.training.init_from else None,
        model_name=f"dwf-{title}",
        eval_results=results,
    )
    flow = FlowConfig.from_flat(pipe.config.flow_config).flat() if pipe.config.flow_config else {}
    card = ModelCard.from_template(
        data,
        template_path=str(TEMPLATES / "flow_card.md"),
        title=title,
        arch_name=pipe.arch.name,
        num_params=f"{pipe.arch.num_params:,}",
        base_zoo=base_zoo,
        needs_calibration=pipe.arch.needs_calibration,
        canonicalization=pipe.config.canonicalization or "none (raw weights)",
        normalization=codec.normalization,
        latent_dim=codec.latent_dim,
        explained=f"{100 * codec.explained_variance:.1f} %" if codec.explained_variance is not None else None,
        flow={
            k: flow.get(k)
            for k in ("hidden_dim", "time_embed_dim", "dropout", "iterations", "batch_size", "lr")
        },
        solver=sched.solver,
        steps=sched.num_inference_steps,
        evaluation=ev,
        repo_id=repo_id,
        citation=CITATION,
        conditions=_conditions(pipe),
        connectivity=pipe.connectivity and pipe.connectivity.describe(),
        quality_check=pipe.quality_check and pipe.quality_check.describe(),
        selection=pipe.selection and pipe.selection.describe(),
    )
    return str(card)


def _conditions(pipe: DeepWeightFlowPipeline) -> list[tuple[str, str, str | None]]:
    """``(label, zoo, architecture)`` per condition; the architecture only in a multi-architecture flow."""
    zoos = (pipe.config.conditions or {}).get("zoos", [])
    multi = pipe.condition_codecs is not None
    return [
        (label, zoo, f"{a.name}, {a.num_params:,} weights" if multi else None)
        for label, zoo, a in zip(
            pipe.labels, zoos, (pipe.codec_of(x).arch for x in pipe.labels), strict=False
        )
    ]


def _evaluation(evaluation: dict[str, Any], title: str, base_zoo: str | None) -> tuple[list, dict[str, Any]]:
    """The card's ``model-index`` results and its evaluation table."""
    from huggingface_hub import EvalResult

    # The results are the generated networks' (on the recipe's data split); the zoo's figure is context in the text.
    common = {"task_type": "weight-generation", "task_name": "Neural network weight generation",
              "dataset_type": base_zoo or title, "dataset_name": f"{title} weight zoo",
              "dataset_split": evaluation.get("split", "test")}  # fmt: skip
    m = evaluation.get("metric", "accuracy")
    scale, dec = (100, 2) if m == "accuracy" else (1, 4)
    results = [
        EvalResult(**common, metric_type=m, metric_name=f"generated {m} (mean)",
                   metric_value=round(scale * evaluation[f"{m}_mean"], dec)),
        EvalResult(**common, metric_type="novelty_ratio", metric_name="novelty ratio",
                   metric_value=round(evaluation["novelty_ratio"], 4)),
    ]  # fmt: skip
    pm = lambda k: f"{scale * evaluation[k + '_mean']:.{dec}f} ± {scale * evaluation[k + '_std']:.{dec}f}"  # noqa: E731
    ev = {"metric": m, "zoo": pm(f"reference_{m}"), "generated": pm(m),
          "novelty": f"{evaluation['novelty_ratio']:.3f}", "num_networks": evaluation["num_networks"],
          "reference_num_networks": evaluation["reference_num_networks"]}  # fmt: skip
    return results, ev
