"""Generating to disk as a resumable job (``DeepWeightFlowPipeline.generate_to_disk``): shards sampled, decoded,
post-processed and checked chunk by chunk into one reused buffer, each kept in the job folder with the generator's
state after it, then written as one packed zoo."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from torch import Tensor

from ..configs import CallConfig
from ..errors import DWFError


def generate_to_disk(pipe, path: str | os.PathLike, num_networks: int, seed: int, networks_per_shard: int,
                     overwrite: bool, progress: bool, **kwargs: Any) -> Path:  # fmt: skip
    """``pipe.generate_to_disk`` (its docstring says what it does)."""
    from ..artifacts import check_disk, check_output, resumable_job
    from ..zoo.weight_zoo import check_shard_size, write_packed_zoo, zoo_bytes

    CallConfig(num_networks, seed)
    check_shard_size(networks_per_shard)
    condition = kwargs.pop("condition", None)
    if condition is not None and not isinstance(condition, str):
        raise DWFError("generate_to_disk: condition must be one label (a str)")
    pipe.label_ids(condition, 1)  # an unknown or missing label is refused before any work
    check_output(path, "generated zoo", overwrite)
    codec = pipe.codec_of(condition)
    arch = codec.arch
    check_disk(path, 4 * num_networks * arch.num_params + zoo_bytes(arch, num_networks))  # job + zoo
    wanted = kwargs.pop("calibrate", True)
    check = pipe._check_for(
        kwargs.pop("quality_check", None), "state_dict", wanted, pipe.label_ids(condition, 1)
    )
    calibrate = wanted and (arch.needs_calibration or codec.has_unit_targets)
    data = kwargs.pop("calibration_data", None)
    if calibrate and data is None:
        data = pipe._postprocessor_of(condition).calibration_data()
    make = _shard_maker(
        pipe, condition, min(networks_per_shard, num_networks), calibrate, data, check, kwargs
    )

    settings = {"seed": seed, "num_networks": num_networks, "networks_per_shard": networks_per_shard,
                "condition": condition, "calibrate": calibrate, "options": job_value(kwargs),
                "quality_check": check and check.to_dict()}  # fmt: skip
    job = {"generate": {**settings, "calibration_data": job_value(data), "pipeline": pipe.fingerprint()}}
    info = pipe._generated_info(seed, condition, calibrate and codec.has_unit_targets)
    tally = {"drawn": 0, "rejected": 0}  # every shard's, resumed ones included
    if check is not None:  # filled while the shards are written, before the zoo's info is
        info["quality_check"] = {**check.to_dict(), "counts": tally}
    with without_solver_bars(pipe), resumable_job(path, job, overwrite) as folder:
        chunks = job_shards(folder, num_networks, networks_per_shard, seed, make, progress, tally)
        return write_packed_zoo(path, arch, chunks, pipe._recipe_of(condition), info, overwrite)


def _shard_maker(pipe, condition, most: int, calibrate: bool, data, check, kwargs: dict[str, Any]):
    """``make(generator, n) -> (weights [n, D], networks drawn)`` for ``generate_to_disk``'s shards: sampled,
    decoded into one buffer of ``most`` rows, post-processed, and through ``check`` when there is one."""
    codec = pipe.codec_of(condition)
    basis = codec.basis()[0][2] if codec.normalization.pca else codec.mean
    # one decode buffer reused by every chunk: fresh memory's first touch costs more than the multiply
    buffer = torch.empty((most, codec.arch.num_params), dtype=basis.dtype, device=basis.device)

    def raw(gen: torch.Generator, n: int) -> Tensor:
        latents = pipe.sample_latents(n, gen, labels=pipe.label_ids(condition, n), **kwargs)
        latents = latents[:, : codec.latent_dim]
        weights = codec.decode(latents, out=buffer[:n]).float()  # no copy when float32
        if calibrate:
            post = pipe._postprocessor_of(condition)
            weights = post.postprocess(weights, "state_dict", data, True, codec.unit_targets(latents)).weights
        return weights.clone() if check is not None else weights  # the buffer is reused by redraws

    def make(gen: torch.Generator, n: int) -> tuple[Tensor, int]:
        if check is None:
            return raw(gen, n), n
        from .quality_check import draw_checked

        passes = lambda w: check.passes(codec.arch, w, pipe.recipe)  # noqa: E731
        weights, drawn, _ = draw_checked(lambda slots: raw(gen, len(slots)), passes, n)
        return weights, drawn

    return make


@contextlib.contextmanager
def without_solver_bars(pipe: DiffusionPipeline):
    """No progress bar per ODE solve inside (a chunked loop shows one bar over its chunks)."""
    bars = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(**{**bars, "disable": True})
    try:
        yield
    finally:
        pipe.set_progress_bar_config(**bars)


def tensor_bytes(t: Tensor) -> bytes:
    """A tensor's raw bytes (any dtype), for hashing."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()  # 0-d: as 1-d


def job_value(value: Any) -> Any:
    """``value`` as it identifies a generation job in JSON: tensors by their SHA-256, containers item by item."""
    if isinstance(value, Tensor):
        digest = hashlib.sha256(tensor_bytes(value)).hexdigest()
        return f"tensor {tuple(value.shape)} {value.dtype} sha256 {digest}"
    if isinstance(value, dict):
        return {str(k): job_value(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [job_value(v) for v in value]
    return value if value is None or isinstance(value, bool | int | float | str) else repr(value)


def job_shards(
    folder: Path, total: int, per_shard: int, seed: int, make, progress: bool, tally: dict[str, int]
):
    """``(weights [n, D], rows)`` per shard of a generation job: the shards an interrupted run finished in
    ``folder`` (read back), then the rest, made by ``make(generator, n) -> (weights, networks drawn)`` from the
    generator's state after the last finished one and kept in ``folder`` before they are handed on; ``tally``
    adds up the networks drawn and rejected."""
    from huggingface_hub.utils import tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS
    from safetensors import safe_open

    from ..io import save_tensors

    gen, starts = torch.Generator().manual_seed(seed), range(0, total, per_shard)
    paths = [folder / f"shard_{i:05d}.safetensors" for i in range(len(starts))]
    done = 0
    while done < len(paths) and paths[done].is_file():  # written atomically: present means complete
        done += 1
    if done:
        with safe_open(paths[done - 1], "pt") as f:
            gen.set_state(f.get_tensor("generator_state"))
    bar = tqdm(
        total=len(starts), initial=done, desc="generating", unit="shard", disable=not progress, leave=False
    )
    for i, start in enumerate(starts):
        n = min(per_shard, total - start)
        if i < done:
            with safe_open(paths[i], "pt") as f:
                weights, count = f.get_tensor("weights"), int(f.get_tensor("drawn"))
        else:
            weights, count = make(gen, n)
            save_tensors(paths[i], {"weights": weights, "generator_state": gen.get_state(),
                                    "drawn": torch.tensor(count)})  # fmt: skip
            bar.update()
        tally["drawn"] += count
        tally["rejected"] += count - n
        yield weights, [{"source": "generated", "seed": seed, "index": start + j} for j in range(n)]
    bar.close()
