"""Generated (or zoo) networks as first-class Hub models: one loadable folder per network.

transformers architectures save with ``save_pretrained`` (safetensors), their class names as ``id2label`` /
``label2id`` and, for images, an image processor that prepares new images the way the zoo's data was (so
``transformers.pipeline("image-classification", model=folder)`` runs on them); the plain torch architectures
save through ``huggingface_hub.PyTorchModelHubMixin`` (``config.json`` + ``model.safetensors``), so
``MLP.from_pretrained(folder_or_repo_id)`` loads them back, with ``preprocessing.json`` (the standardisation,
input shape and class names of the zoo's data) that ``preprocess(folder, raw)`` applies. Every folder gets a card
that says what the network is, where it came from, what it scores and how to call it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..archs import ArchSpec
from ..artifacts import write_folder
from ..errors import DWFError
from .recipes import Recipe


def network_folder(index: int) -> str:
    return f"network_{index:05d}"


PREPROCESSING_NAME = "preprocessing.json"


def export_networks(
    arch: ArchSpec,
    networks: list[nn.Module],
    folder: str | os.PathLike,
    recipe: Recipe | None = None,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write ``networks`` (built by ``arch``) into ``folder/network_XXXXX/``, whole or not at all; ``provenance``
    (``source``, ``generator``, ``scores`` — one per network) goes into each card."""
    task = _task(recipe)
    with write_folder(folder, "exported networks", overwrite) as stage:
        for i, net in enumerate(networks):
            _save_one(arch, net, stage / network_folder(i), task)
            _write_card(net, stage / network_folder(i), recipe, task, provenance or {}, i)
    return Path(folder)


def preprocessing(task, arch: ArchSpec) -> dict[str, Any]:
    """What raw inputs need before an exported network sees them: ``x = (raw - mean) / std`` (one value, one
    per channel or one per feature), then reshaped to ``input_shape``; ``labels`` name the outputs."""
    shape = list(task.x_train.shape[1:])
    return {"mean": list(task.input_mean or [0.0]), "std": list(task.input_std or [1.0]), "input_shape": shape,
            "pixel_max": task.pixel_max, "labels": list(task.labels) if task.labels else None,
            "task": arch.task}  # fmt: skip


def preprocess(folder: str | os.PathLike, raw: Tensor | Any) -> Tensor:
    """``raw`` inputs ``[B, ...]`` (as the dataset holds them: features, or images with values up to
    ``pixel_max``) prepared the way the exported network in ``folder`` was trained: ``[B, *input_shape]``."""
    path = Path(folder) / PREPROCESSING_NAME
    if not path.is_file():
        raise DWFError(f"{path}: missing (export the network with its recipe to record its preprocessing)")
    p = json.loads(path.read_text())
    x = torch.as_tensor(raw, dtype=torch.float32)
    shape = p["input_shape"]
    x = x.reshape(len(x), -1) if len(shape) == 1 else x.reshape(len(x), *shape)
    mean, std = torch.tensor(p["mean"]), torch.tensor(p["std"])
    if len(shape) > 1 and len(mean) == shape[0] > 1:  # per channel of [C, H, W]
        mean, std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
    return (x - mean) / std


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
        if task is not None:
            (out / PREPROCESSING_NAME).write_text(json.dumps(preprocessing(task, arch), indent=2))
        return
    arch, net = arch.for_export(net)
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


def _write_card(
    net: nn.Module, out: Path, recipe: Recipe | None, task, provenance: dict[str, Any], i: int
) -> None:
    """A card that says what the network is, where it came from, what it scores and how to call it (it replaces
    the mixin's stub, "More Information Needed")."""
    cls, folder = type(net), out.name
    transformers_model = cls.__module__.startswith("transformers")
    if transformers_model:
        kind = "image" if "Image" in cls.__name__ else "text"
        call = f'from transformers import pipeline\n\nclassify = pipeline("{kind}-classification", model="{folder}")'
    else:
        call = (f"from {cls.__module__} import {cls.__name__}\nfrom dwf_hub.zoo.export import preprocess\n\n"
                f'model = {cls.__name__}.from_pretrained("{folder}")\nlogits = model(preprocess("{folder}", raw_inputs))')  # fmt: skip
    scores = provenance.get("scores")
    score = "not measured at export" if scores is None else f"{100 * scores[i]:.2f} % (test split)"
    source = provenance.get("source", "exported")
    generator = f" by the flow `{provenance['generator']}`" if provenance.get("generator") else ""
    inputs = ("the saved processor prepares them" if transformers_model else
              "standardised as `preprocessing.json` records; `preprocess(folder, raw)` applies it" if task else
              "unknown: exported without its recipe")  # fmt: skip
    lines = ["---", "library_name: dwf-hub", "tags: [dwf-hub, weight-zoo-member]", "---", "",
             f"# {cls.__name__} {i}", "",
             f"A network {source}{generator}" + (f" for the zoo recipe `{recipe.name}`." if recipe else "."), "",
             f"- Score: {score}", f"- Inputs: {inputs}",
             f"- Classes: {', '.join(task.labels) if task is not None and task.labels else 'unnamed'}", "",
             "```python", call, "```", ""]  # fmt: skip
    (out / "README.md").write_text("\n".join(lines))
