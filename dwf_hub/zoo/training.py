"""Zoo training: many independent networks trained together in one vectorized pass (``torch.func``).

Adam, AdamW and SGD update every element independently, so one optimizer over the stacked
``[N, ...]`` parameters is exactly ``N`` independent optimizers. Each member has its own seed for
initialisation and for the order of its mini-batches.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub.utils import tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS
from torch import Tensor

from ..archs import ArchSpec
from ..artifacts import check_output, claim_job
from ..configs import TrainingConfig
from ..errors import DWFError, WeightFormatError
from ..formats import JOB_FILE
from ..hub.repos import PRETRAINED_FILES, download
from ..io import read_header, save_tensors
from ..scoring import BatchedForward, score_many
from .data import TaskData
from .init_schemes import initialise
from .optim import lr_factor, make_optimizer
from .recipes import Recipe, load_recipe
from .weight_zoo import RECORD_KEY, WeightZoo, checkpoint_name


def init_member(arch: ArchSpec, scheme: str, seed: int, init_from: str | None = None) -> dict[str, Tensor]:
    """A freshly initialised state dict for ``seed`` under ``scheme``; with ``init_from`` (a pretrained
    checkpoint), its weights, and only what it lacks (e.g. the task head) drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if init_from:
            return arch.pretrained_state(str(download(init_from, "model", allow_patterns=PRETRAINED_FILES)))
        model = arch.build()
        initialise(model, scheme, torch.Generator().manual_seed(seed))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def augment(x: Tensor, generators: list[torch.Generator], padding: int = 4) -> Tensor:
    """Standard image augmentation of per-member batches ``[N, B, C, H, W]``: random crop after zero
    padding by ``padding`` pixels and random horizontal flip, drawn per image from member ``i``'s
    (CPU) ``generators[i]`` — so a member's draws do not depend on which members train with it."""
    n, b, c, h, w = x.shape
    draws = [
        (torch.randint(0, 2 * padding + 1, (2, b), generator=g), torch.rand(b, generator=g) < 0.5)
        for g in generators
    ]
    off = torch.cat([o for o, _ in draws], 1).to(x.device)  # [2, N*B]
    flip = torch.cat([f for _, f in draws]).to(x.device)  # [N*B]
    padded = F.pad(x.reshape(n * b, c, h, w), (padding,) * 4)
    ar = lambda k: torch.arange(k, device=x.device)  # noqa: E731
    rows = (off[0, :, None] + ar(h))[:, None, :, None]  # [N*B, 1, H, 1]
    cols = off[1, :, None] + ar(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]  # [N*B, 1, 1, W]
    return padded[ar(n * b)[:, None, None, None], ar(c)[None, :, None, None], rows, cols].view(n, b, c, h, w)


def train_members(
    arch: ArchSpec,
    task: TaskData,
    cfg: TrainingConfig,
    seeds: list[int],
    inits: list[str],
    progress: bool = True,
    device: str | torch.device | None = None,
    start: list[dict[str, Tensor]] | None = None,
    frozen: frozenset[str] = frozenset(),
    train_mode: bool = True,
) -> list[tuple[dict[str, Tensor], dict[str, Any]]]:
    """Train ``len(seeds)`` networks together on ``device`` (default CPU); returns CPU
    ``(state_dict, record)`` per member. ``start``: initial state dicts (fine-tuning; default: freshly
    initialised from each seed and init scheme); ``frozen``: parameter keys left as they start; ``train_mode``
    False: the forward runs as at inference (BatchNorm statistics kept, no dropout; a linear probe)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds[0] + 2**34)  # dropout masks: reproducible for the same chunk of seeds
        return _train_members(arch, task, cfg, seeds, inits, progress, device, start, frozen, train_mode)


def _member_loss(arch: ArchSpec, out: Tensor, yb: Tensor) -> Tensor:
    """``[N]`` mean loss of every member on its batch: outputs ``[N, B, C]``, targets ``yb [N, B]``."""
    n = out.shape[0]
    if arch.task == "regression":
        return (out[..., 0] - yb).square().mean(1)
    return F.cross_entropy(out.flatten(0, 1), yb.flatten(), reduction="none").view(n, -1).mean(1)


class _BestCheckpoint:
    """``best_val`` selection: per member, the weights of the epoch with the best validation score."""

    def __init__(self, state: dict[str, Tensor], epochs: int) -> None:
        n = len(next(iter(state.values())))
        self.best = {k: v.detach().clone() for k, v in state.items()}
        self.score, self.epoch = torch.full((n,), -math.inf), torch.full((n,), epochs)

    @torch.no_grad()
    def update(self, arch: ArchSpec, state: dict[str, Tensor], task: TaskData, epoch: int) -> None:
        val = score_many(arch, {k: v.detach() for k, v in state.items()}, task.x_val, task.y_val)
        better = val > self.score
        self.score = torch.where(better, val, self.score)
        self.epoch = torch.where(better, torch.full_like(self.epoch, epoch), self.epoch)
        for k, v in state.items():
            mask = better.to(v.device).view(-1, *([1] * (v.dim() - 1)))
            self.best[k] = torch.where(mask, v.detach(), self.best[k])


def _stacked_state(
    arch: ArchSpec,
    cfg: TrainingConfig,
    seeds: list[int],
    inits: list[str],
    device: torch.device,
    start: list[dict[str, Tensor]] | None = None,
    frozen: frozenset[str] = frozenset(),
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(state, params)``: every member's initial state stacked ``key -> [N, ...]`` and its parameters
    (which get gradients); buffers (BatchNorm running statistics) are stacked too and updated in place by
    the vectorized train-mode forward, one set per member."""
    states = start or [init_member(arch, scheme, seed, cfg.init_from) for seed, scheme in zip(seeds, inits)]
    with torch.device("meta"):
        keys = list(arch.build().state_dict())
    state = {k: torch.stack([sd[k] for sd in states]).float().to(device) for k in keys if k in states[0]}
    trained = arch.parameter_keys - frozen
    return state, {k: v.requires_grad_() for k, v in state.items() if k in trained}


def _train_members(
    arch: ArchSpec,
    task: TaskData,
    cfg: TrainingConfig,
    seeds: list[int],
    inits: list[str],
    progress: bool,
    device: str | torch.device | None,
    start: list[dict[str, Tensor]] | None = None,
    frozen: frozenset[str] = frozenset(),
    train_mode: bool = True,
) -> list[tuple[dict[str, Tensor], dict[str, Any]]]:
    n, device = len(seeds), torch.device(device or "cpu")
    state, params = _stacked_state(arch, cfg, seeds, inits, device, start, frozen)
    opt = make_optimizer(list(params.values()), cfg)
    x, y = task.x_train.to(device), task.y_train.to(device)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg, math.ceil(len(x) / cfg.batch_size)))
    data_gens = [torch.Generator().manual_seed(seed + 2**32) for seed in seeds]
    aug_gens = [torch.Generator().manual_seed(seed + 2**33) for seed in seeds]
    forward = BatchedForward(arch, train=train_mode)
    best = _BestCheckpoint(state, cfg.epochs)
    epoch_loss = torch.zeros(n, device=device)
    for epoch in tqdm(range(cfg.epochs), desc=f"training {n} networks", disable=not progress, leave=False):
        order = torch.stack([torch.randperm(len(x), generator=g) for g in data_gens]).to(device)
        epoch_loss.zero_()
        for s in range(0, len(x), cfg.batch_size):
            idx = order[:, s : s + cfg.batch_size]  # [N, B]
            xb = x[idx] if cfg.augment == "none" else augment(x[idx], aug_gens, cfg.crop_padding)
            per_model = _member_loss(arch, forward(state, xb, shared_input=False), y[idx])
            opt.zero_grad(set_to_none=True)
            per_model.sum().backward()
            opt.step()
            sched.step()
            epoch_loss += per_model.detach() * idx.shape[1]
        if cfg.checkpoint == "best_val":
            best.update(arch, state, task, epoch + 1)
    final = best.best if cfg.checkpoint == "best_val" else {k: v.detach() for k, v in state.items()}
    scores = {split: score_many(arch, final, *task.split(split)) for split in ("train", "val", "test")}
    selected = best.epoch if cfg.checkpoint == "best_val" else torch.full((n,), cfg.epochs)
    records = _records(arch, cfg, seeds, inits, scores, selected, epoch_loss.cpu() / len(x))
    final = {k: v.cpu() for k, v in final.items()}
    return [({k: v[i].clone().contiguous() for k, v in final.items()}, r) for i, r in enumerate(records)]


def _records(
    arch: ArchSpec,
    cfg: TrainingConfig,
    seeds: list[int],
    inits: list[str],
    scores: dict[str, Tensor],
    selected_epoch: Tensor,
    final_loss: Tensor,
) -> list[dict[str, Any]]:
    """One metadata row per member: how it was trained and its scores on every split."""
    common = {"source": "trained", "optimizer": cfg.optimizer, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
              "batch_size": cfg.batch_size, "epochs": cfg.epochs, "schedule": cfg.schedule,
              "checkpoint_selection": cfg.checkpoint}  # fmt: skip
    return [
        {
            "seed": seed,
            "init": scheme,
            **common,
            "selected_epoch": int(selected_epoch[i]),
            "final_train_loss": float(final_loss[i]),
            **{f"{split}_{arch.metric}": float(v[i]) for split, v in scores.items()},
        }
        for i, (seed, scheme) in enumerate(zip(seeds, inits))
    ]


def spawn_start(
    arch: ArchSpec, task: TaskData, cfg: TrainingConfig, device: str | torch.device | None = None
) -> tuple[TrainingConfig, dict[str, Tensor] | None]:
    """How ``cfg``'s members start: ``(their training, None)`` for independent seeds, or for a spawned zoo
    ``(the remaining epochs, the parent)`` — ``cfg.spawn_seed``'s initialisation trained ``cfg.spawn_epochs``
    epochs (0: the initialisation itself), which every member continues with a fresh optimizer and schedule."""
    if cfg.start != "spawned":
        return cfg, None
    children = replace(cfg, epochs=cfg.epochs - cfg.spawn_epochs, start="independent", spawn_epochs=0)
    if cfg.spawn_epochs == 0:
        return children, init_member(arch, cfg.init_for(0), cfg.spawn_seed, cfg.init_from)
    parent = replace(children, epochs=cfg.spawn_epochs, checkpoint="last")
    return children, train_members(arch, task, parent, [cfg.spawn_seed], [cfg.init_for(0)], False, device)[0][
        0
    ]


def _check_inputs(arch: ArchSpec, task: TaskData, recipe: str) -> None:
    """The data's inputs have the shape the architecture takes (before any training starts)."""
    expected, got = tuple(arch.example_input(1).shape[1:]), tuple(task.x_train.shape[1:])
    if expected != got:
        raise DWFError(f"recipe {recipe!r}: {arch!r} takes inputs of shape {expected}, the data has {got}")


def _train_chunks(
    recipe: Recipe, chunks: list[list[int]], seeds: list[int], paths: list[Path], progress: bool, device
) -> None:
    """Train the members of ``chunks`` (one vectorized pass per chunk), each checkpoint written atomically."""
    arch, cfg = recipe.arch_spec, recipe.training
    task = recipe.task
    _check_inputs(arch, task, recipe.name)
    bar = tqdm(total=sum(map(len, chunks)), desc=f"zoo {recipe.name}", disable=not progress)
    members, parent = spawn_start(arch, task, cfg, device)
    for chunk in chunks:
        trained = train_members(
            arch, task, members, [seeds[i] for i in chunk], [cfg.init_for(i) for i in chunk], progress, device,
            start=None if parent is None else [parent] * len(chunk),
        )  # fmt: skip
        for i, (sd, rec) in zip(chunk, trained):
            rec = {**rec, "model_id": i, "checkpoint": checkpoint_name(i)}
            save_tensors(paths[i], sd, metadata={RECORD_KEY: json.dumps(rec, sort_keys=True)})
        bar.update(len(chunk))
    bar.close()


def _claim_job(root: Path, job: dict[str, Any], write: bool = True) -> None:
    """Mark ``root`` as this job's folder (when ``write``), or refuse if it holds another job (recipe, size
    or seeds)."""
    refusal = (
        f"{root} holds a zoo job with another recipe, size or seed; use a new --out folder to train this one"
    )
    claim_job(root, job, refusal, write)


logger = logging.getLogger(__name__)
MAX_MODELS = 1_000_000  # a zoo larger than this is a typo, not a plan (every member is a file)


def _finished(path: Path) -> dict[str, Any] | None:
    """The record of a complete checkpoint, or None if it is missing or unreadable."""
    try:
        return json.loads(read_header(path).metadata[RECORD_KEY])
    except (WeightFormatError, KeyError, json.JSONDecodeError):
        return None


def _check_trainable(recipe: Recipe, num_models: int) -> None:
    """Refuse, before any training, a zoo whose chunk would not fit in memory or whose classifier head does
    not have one output per class of its data."""
    from ..resources import require_memory

    arch, chunk = recipe.arch_spec, min(recipe.training.chunk_size, num_models)
    # weights, gradients, Adam's two moments, the best state so far, a spare: per member of a chunk
    require_memory(6 * 4 * arch.num_params * chunk, f"training {chunk} {arch!r} at once",
                   "lower [training] chunk_size or the architecture's widths")  # fmt: skip
    if arch.task == "classification":
        outputs, classes = arch.num_outputs, recipe.task.num_classes
        if outputs != classes:
            raise DWFError(
                f"recipe {recipe.name!r}: the architecture has {outputs} outputs, its data {classes} classes"
            )


def train_zoo(
    recipe: Recipe | str | os.PathLike,
    num_models: int,
    out: str | os.PathLike,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    overwrite: bool = False,
) -> WeightZoo:
    """Train a zoo of ``num_models`` networks with seeds ``seed, seed+1, ...`` into folder ``out``.

    Every finished checkpoint is written atomically as soon as its chunk finishes; rerunning the same
    call resumes and trains only what is missing. A folder that is neither empty nor a zoo (or zoo job)
    of ours is refused before any training, unless ``overwrite``.
    """
    from ..distributed import check_device, process_state

    recipe = load_recipe(recipe if not isinstance(recipe, os.PathLike) else str(recipe))
    if isinstance(num_models, bool) or not isinstance(num_models, int) or not 1 <= num_models <= MAX_MODELS:
        raise DWFError(f"num_models must be an integer in [1, {MAX_MODELS}], got {num_models!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**63 - num_models:
        raise DWFError(f"seed must be an integer in [0, 2**63 - num_models], got {seed!r}")
    device = check_device(device)
    _check_trainable(recipe, num_models)
    root, state = Path(out), process_state()
    seeds = [seed + i for i in range(num_models)]
    job = {"recipe": recipe.to_dict(), "seeds": seeds}
    check_output(root, "trained zoo", overwrite)  # every rank: errors raised everywhere
    state.wait_for_everyone()  # every rank has looked at the folder before the main process writes into it
    if state.is_main_process:
        if overwrite and root.is_dir() and not (root / JOB_FILE).is_file():
            shutil.rmtree(root)  # asked for: start from an empty folder
        _claim_job(root, job)
    state.wait_for_everyone()
    _claim_job(root, job, write=False)  # every rank checks the job it joins
    paths = [root / checkpoint_name(i) for i in range(num_models)]
    pending = [i for i, p in enumerate(paths) if _finished(p) is None]
    if len(pending) < num_models:
        logger.info(
            "%s: resuming, %d of %d members already trained", root, num_models - len(pending), num_models
        )
    chunks = [
        pending[c : c + recipe.training.chunk_size]
        for c in range(0, len(pending), recipe.training.chunk_size)
    ]
    # Under accelerate launch / torchrun each process trains whole chunks (the same chunks as one process, so
    # the same bytes); the main process assembles the zoo once all are written.
    with state.split_between_processes(chunks) as mine:
        if mine:
            _train_chunks(recipe, mine, seeds, paths, progress and state.is_main_process, device)
    state.wait_for_everyone()
    if state.is_main_process:
        records = [_finished(p) for p in paths]
        WeightZoo(recipe.arch_spec, paths, records, recipe=recipe, info={"source": "trained"}).save(root)
    state.wait_for_everyone()
    return WeightZoo.load(root)
