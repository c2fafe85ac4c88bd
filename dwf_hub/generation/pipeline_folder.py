"""A pipeline folder checked before diffusers reads anything: one complete save of ours (every file in its manifest,
no pickle or code file, our components, codec shapes that fit their architecture), then loaded with every tensor
finite (``DeepWeightFlowPipeline.from_pretrained``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..codec import LEGACY_BUFFERS, CodecCollection, WeightCodec
from ..errors import PipelineFormatError
from ..flow.scheduler import FlowODEScheduler
from ..flow.velocity import VelocityModel
from .diffusers_entry import CLASS_NAME

COMPONENTS = {"velocity": VelocityModel, "codec": WeightCodec, "scheduler": FlowODEScheduler}
CARD_INFO_NAME = "card.json"
PROVENANCE = ("recipe", "canonicalization", "flow_config", "conditions")


def check_codec(folder: Path) -> None:
    """The codec's architecture and its saved buffers agree (checked on the config and headers only)."""
    from ..archs import arch_from_config
    from ..io import read_header

    config = folder / WeightCodec.config_name
    try:
        arch = arch_from_config(json.loads(config.read_text()).get("arch"))
    except (json.JSONDecodeError, AttributeError) as e:
        raise PipelineFormatError(f"{config}: not a codec config ({e})") from e
    for weights in folder.glob("diffusion_pytorch_model*.safetensors"):
        mean = read_header(weights).shapes.get("mean")
        if mean != (arch.num_params,):
            raise PipelineFormatError(
                f"{config}: architecture {arch!r} has {arch.num_params} weights, but {weights.name} holds {mean}"
            )


def check_codec_collection(path: Path, entry: Any) -> None:
    """A multi-architecture flow's ``condition_codecs`` component (absent: ``[null, null]``): our class, and
    each codec's architecture agreeing with its saved buffers (config and headers only)."""
    from ..archs import arch_from_config
    from ..io import read_header

    if entry in (None, [None, None]):
        return
    expected = [CodecCollection.__module__, CodecCollection.__name__]
    if entry != expected:
        raise PipelineFormatError(f"{path}: component 'condition_codecs' is {entry!r}, expected {expected}")
    config = path / "condition_codecs" / CodecCollection.config_name
    try:
        codecs = json.loads(config.read_text())["codecs"]
        archs = [arch_from_config(c["arch"]) for c in codecs]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise PipelineFormatError(f"{config}: not a codec collection config ({e})") from e
    for weights in (path / "condition_codecs").glob("diffusion_pytorch_model*.safetensors"):
        shapes = read_header(weights).shapes
        for i, arch in enumerate(archs):
            mean = shapes.get(f"members.{i}.mean")
            if mean is not None and mean != (arch.num_params,):
                raise PipelineFormatError(
                    f"{config}: codec {i} is {arch!r} ({arch.num_params} weights), but {weights.name} holds {mean}"
                )


def check_loaded(pipe: Any, path: Path) -> Any:
    """``pipe``, loaded by diffusers from ``path`` after ``check_pipeline_dir``, with every component's tensors
    the ones its files hold and finite, and the card's record attached."""
    from ..io import read_header

    for name in ("velocity", "codec", "condition_codecs"):
        module = getattr(pipe, name, None)
        state = module.state_dict() if module is not None else {}
        stored = set()
        for weights in (path / name).glob("diffusion_pytorch_model*.safetensors"):  # not a sharded basis
            stored |= set(read_header(weights).shapes)
        stored = {k for k in stored if k in state or k.rsplit(".", 1)[-1] not in LEGACY_BUFFERS}
        if module is not None and stored != set(state):
            odd = sorted(stored ^ set(state))
            raise PipelineFormatError(
                f"{path / name}: tensors do not match its config ({'unexpected' if odd[0] in stored else 'missing'} {odd[0]!r})"
            )
        for key, t in state.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise PipelineFormatError(f"{path / name}: tensor {key!r} contains NaN or Inf values")
    pipe.card_info = read_card_info(path / CARD_INFO_NAME)
    return pipe


def read_card_info(path: Path) -> dict[str, Any]:
    from ..io import read_json

    if not path.is_file():
        return {}
    info = read_json(path, PipelineFormatError)
    if not isinstance(info, dict):
        raise PipelineFormatError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


def check_pipeline_dir(path: Path) -> None:
    """Refuse, naming the part, a folder that is not one complete save of this pipeline class: its
    manifest must list every file unchanged, no pickle or code file may be present, and
    ``model_index.json`` must name exactly our components — all before diffusers reads anything."""
    from ..artifacts import refuse_pickles, verify_files
    from ..io import read_json

    index = path / "model_index.json"
    if not index.is_file():
        raise PipelineFormatError(f"{path}: not a pipeline folder (missing model_index.json)")
    spec = read_json(index, PipelineFormatError)
    if not isinstance(spec, dict) or spec.get("_class_name") != CLASS_NAME:
        got = spec.get("_class_name") if isinstance(spec, dict) else type(spec).__name__
        raise PipelineFormatError(f"{index}: pipeline class is {got!r}, not {CLASS_NAME!r}")
    refuse_pickles(path, "pipeline")
    verify_files(path, None, "pipeline", error=PipelineFormatError, exact=True)  # every file, by content
    for name, cls in COMPONENTS.items():
        expected = [cls.__module__, cls.__name__]
        if spec.get(name) != expected:
            raise PipelineFormatError(
                f"{index}: component {name!r} is {spec.get(name)!r}, expected {expected}"
            )
        config = path / name / cls.config_name
        if not config.is_file():
            raise PipelineFormatError(f"{path}: component {name!r} is missing ({config} not found)")
        if name != "scheduler" and not any((path / name).glob("*.safetensors")):
            raise PipelineFormatError(
                f"{path}: component {name!r} has no safetensors weights in {path / name}"
            )
    check_codec(path / "codec")
    check_codec_collection(path, spec.get("condition_codecs"))
    known = {*COMPONENTS, *PROVENANCE, "condition_codecs"}
    extra = sorted(k for k in spec if not k.startswith("_") and k not in known)
    if extra:
        raise PipelineFormatError(f"{index}: unexpected entries {extra}")
    for name in PROVENANCE:
        if not isinstance(spec.get(name), (dict, type(None))):
            raise PipelineFormatError(f"{index}: {name!r} must be a JSON object or null, got {spec[name]!r}")
