"""dwf_hub: neural-network weights as a shareable data type (DeepWeightFlow on the Hugging Face Hub).

Heavy libraries are imported on first use, so ``import dwf_hub`` stays light; diffusers learns our pipeline
class (``diffusers.DiffusionPipeline.from_pretrained`` of our repos) as soon as both are imported, in either order.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ArchSpec": "dwf_hub.archs",
    "get_arch": "dwf_hub.archs",
    "available_archs": "dwf_hub.archs",
    "WeightZoo": "dwf_hub.zoo.weight_zoo",
    "read_metadata": "dwf_hub.zoo.weight_zoo",
    "Recipe": "dwf_hub.zoo.recipes",
    "load_recipe": "dwf_hub.zoo.recipes",
    "available_recipes": "dwf_hub.zoo.recipes",
    "TrainingConfig": "dwf_hub.configs",
    "FlowConfig": "dwf_hub.configs",
    "train_zoo": "dwf_hub.zoo.training",
    "canonicalize": "dwf_hub.matching",
    "weight_matching": "dwf_hub.matching",
    "VelocityModel": "dwf_hub.flow.velocity",
    "FlowODEScheduler": "dwf_hub.flow.scheduler",
    "WeightCodec": "dwf_hub.codec",
    "DeepWeightFlowPipeline": "dwf_hub.pipeline",
    "DeepWeightFlowOutput": "dwf_hub.pipeline",
    "ZooBaseline": "dwf_hub.evaluation.baselines",
    "NoveltyScorer": "dwf_hub.evaluation.novelty",
    "fit_pipeline": "dwf_hub.flow.fitting",
    "fit_conditional": "dwf_hub.flow.fitting",
    "load_conditional_recipe": "dwf_hub.flow.conditional",
    "write_packed_zoo": "dwf_hub.zoo.weight_zoo",
    "novelty_ratio": "dwf_hub.evaluation.novelty",
    "recalibrate_batchnorm": "dwf_hub.generation.calibration",
    "evaluate_zoo": "dwf_hub.evaluation.zoo_evaluation",
    "export_networks": "dwf_hub.zoo.export",
    "run_transfer": "dwf_hub.evaluation.transfer",
    "load_transfer_recipe": "dwf_hub.evaluation.transfer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dwf_hub' has no attribute {name!r}")


def _entry():
    return importlib.import_module("dwf_hub.generation.diffusers_entry")


def _pipeline_class():
    return importlib.import_module("dwf_hub.pipeline").DeepWeightFlowPipeline


PIPELINE_MODULE = "diffusers.pipelines.pipeline_utils"  # defines DiffusionPipeline


def _teach_diffusers() -> None:
    """Register the pipeline with diffusers' generic loader now if diffusers' pipeline module is loaded, else right
    after it is imported (a one-shot import hook: ``import dwf_hub`` itself imports neither diffusers nor torch, and
    a process that never loads diffusers' pipelines pays nothing)."""
    import sys

    if PIPELINE_MODULE in sys.modules:
        _entry().teach(_pipeline_class)
        return
    from importlib.abc import MetaPathFinder
    from importlib.util import find_spec

    class _AfterDiffusers(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != PIPELINE_MODULE:
                return None
            sys.meta_path.remove(self)
            spec = find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module) -> None:
                run(module)
                _entry().teach(_pipeline_class)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _AfterDiffusers())


_teach_diffusers()
