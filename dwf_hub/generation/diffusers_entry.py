"""diffusers' generic loader made ours for our pipelines: ``DiffusionPipeline.from_pretrained(folder_or_repo_id)``
of a folder or repo whose ``model_index.json`` names ``DeepWeightFlowPipeline`` goes through
``DeepWeightFlowPipeline.from_pretrained`` (download, folder checks, no remote code) — by repo id too, where
diffusers alone would look for our components' code in the repo. ``import dwf_hub`` arranges it as soon as
diffusers is imported; this module imports nothing heavy until it is asked to."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLASS_NAME = "DeepWeightFlowPipeline"


def names_our_pipeline(repo_id_or_path: Any, kwargs: dict[str, Any]) -> bool:
    """Whether the folder or Hub repo's ``model_index.json`` names our class (``False`` when it cannot be read:
    diffusers then says what is wrong in its own words)."""
    path = Path(repo_id_or_path)
    try:
        if not path.is_dir():
            from huggingface_hub import hf_hub_download

            hub = ("revision", "cache_dir", "local_files_only", "token")
            path = Path(hf_hub_download(str(repo_id_or_path), "model_index.json",
                                        **{k: kwargs[k] for k in hub if k in kwargs})).parent  # fmt: skip
        return json.loads((path / "model_index.json").read_text()).get("_class_name") == CLASS_NAME
    except Exception:  # any failure to read it: not ours to decide
        return False


def teach(pipeline_class: Callable[[], Any]) -> None:
    """Wrap ``DiffusionPipeline.from_pretrained`` (once) so that it dispatches our folders and repos to
    ``pipeline_class()`` (a callable, so that the pipeline module is imported only when it is needed)."""
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline  # its module, loaded whole by now

    generic = DiffusionPipeline.__dict__["from_pretrained"].__func__
    if getattr(generic, "dwf_hub_dispatch", False):
        return

    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        if cls is DiffusionPipeline and names_our_pipeline(pretrained_model_name_or_path, kwargs):
            return pipeline_class().from_pretrained(pretrained_model_name_or_path, **kwargs)
        return generic(cls, pretrained_model_name_or_path, **kwargs)

    from_pretrained.__doc__, from_pretrained.dwf_hub_dispatch = generic.__doc__, True
    DiffusionPipeline.from_pretrained = classmethod(from_pretrained)
