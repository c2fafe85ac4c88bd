"""Generated (or zoo) networks as first-class Hub models: one loadable folder per network.

transformers architectures save with ``save_pretrained`` (safetensors), their class names as ``id2label`` /
``label2id`` and, for images, an image processor that prepares new images the way the zoo's data was (so
``transformers.pipeline("image-classification", model=folder)`` runs on them); the plain torch architectures
save through ``huggingface_hub.PyTorchModelHubMixin`` (``config.json`` + ``model.safetensors`` + card), so
``MLP.from_pretrained(folder_or_repo_id)`` loads them back.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..archs import ArchSpec
from ..artifacts import write_folder
from ..errors import DWFError
from .recipes import Recipe


def network_folder(index: int) -> str:
    return f"network_{index:05d}"


def export_networks(
    arch: ArchSpec,
    networks: list[nn.Module],
    folder: str | os.PathLike,
    recipe: Recipe | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``networks`` (built by ``arch``) into ``folder/network_XXXXX/``, whole or not at all."""
    task = _task(recipe)
    with write_folder(folder, "exported networks", overwrite) as stage:
        for i, net in enumerate(networks):
            _save_one(arch, net, stage / network_folder(i), task)
    return Path(folder)


def _task(recipe: Recipe | None):
    if recipe is None:
        return None
    try:
        return recipe.task
    except DWFError:  # data not available here: no labels or processor, the weights still export
        return None


def _save_one(arch: ArchSpec, net: nn.Module, out: Path, task) -> None:
    from transformers import PreTrainedModel

    if not isinstance(net, PreTrainedModel):
        if not hasattr(net, "save_pretrained"):
            raise DWFError(f"{arch.name} networks have no Hub export")
        net.save_pretrained(out)
        return
    labels = task.labels if task is not None else None
    if labels is not None and arch.task == "classification":
        net.config.id2label = dict(enumerate(labels))
        net.config.label2id = {name: i for i, name in enumerate(labels)}
    net.save_pretrained(out, safe_serialization=True)
    processor = arch.input_processor(task)
    if processor is not None:
        processor.save_pretrained(out)
    if task is not None and task.tokenizer:  # text models: the tokenizer their inputs were made with
        from .data import load_tokenizer

        load_tokenizer(task.tokenizer).save_pretrained(out)
