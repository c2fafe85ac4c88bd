"""Transfer learning from generated networks (paper Section 5.2, Appendix J): fine-tune K generated, K
pretrained (zoo) and K randomly initialised networks on a target task for each epoch budget (0 = zero-shot),
and tabulate the target test metric per method and budget (``transfer_table``).

The protocol is the paper's — AdamW, cosine schedule, cross-entropy (MSE for regression heads), generated
BatchNorm networks recalibrated on the *source* training split, a new Kaiming-initialised head when the target
has another label set, optional few-shot subsampling (``shots`` per class, seeded), inputs resized to the
source's shape — made fair: every method gets its own learning rate per budget, the best of ``lr_grid`` on a
validation part carved from the target's (few-shot) training samples, never its test split. ``mode`` says what
is trained: every weight (``full``), the head alone on a frozen body run as at inference (``linear_probe``), or
all but the leading ``detach_ratio`` of the weight tensors (``detach``, the paper's detach ratio).
A transfer recipe (``zoo_recipes/transfer/*.toml``) names the source zoo recipe, the target data and these settings.
Every (method, budget) cell is saved as soon as it is done; a rerun picks up where an interrupted one stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..archs import ArchSpec
from ..configs import Config, TrainingConfig, build_dataclass, option
from ..errors import DWFError, unknown
from ..io import write_json
from ..resources import shipped
from ..zoo.data import TaskData, load_task
from ..zoo.recipes import Recipe, load_recipe, read_toml
from .transfer_table import write_table

METHODS = ("generated", "pretrained", "random")
MODES = ("full", "linear_probe", "detach")
RESULTS_NAME = "results.json"


@dataclass
class TransferConfig(Config):
    """How the networks are fine-tuned (defaults: the paper's Appendix J protocol, scaled to CPU)."""

    section: ClassVar[str] = "transfer config"
    methods: list[str] = option(
        factory=lambda: list(METHODS), help="initialisations compared", choices=METHODS
    )
    num_networks: int = option(5, "networks per method (K)", low=1, high=10_000)
    budgets: list[int] = option(
        factory=lambda: [0, 1, 5], help="fine-tuning epochs (0: zero-shot)", low=0, high=10_000
    )
    mode: str = option(
        "full", "what is trained: every weight, the head alone (linear_probe) or all but the leading "
        "detach_ratio of the weight tensors (detach)", choices=MODES,
    )  # fmt: skip
    detach_ratio: float = option(0.4, "detach mode: share of leading weight tensors frozen", low=0, high=1)
    lr_grid: list[float] = option(
        factory=lambda: [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        help="AdamW learning rates; each method and budget keeps the best on the validation shots",
        low=0, open_low=True, high=10,
    )  # fmt: skip
    val_fraction: float = option(
        0.2, "share of the training samples of each class held out to choose the rate (none for one rate)",
        low=0, open_low=True, high=0.9,
    )  # fmt: skip
    weight_decay: float = option(1e-4, "AdamW weight decay", low=0, high=10)
    batch_size: int = option(64, "mini-batch size", low=1, high=1 << 20)
    shots: int | None = option(
        None, "training samples per class, validation included (few-shot; default: all)", low=1, high=1 << 20
    )
    new_head: bool | None = option(
        None, "re-initialise the head (default: when the number of outputs changes)"
    )
    seed: int = option(0, "seed of the draws, subsampling and data order", low=0, high=2**62)

    def validate(self) -> None:
        self.check(bool(self.methods) and bool(self.budgets), "methods and budgets must not be empty")
        self.check(bool(self.lr_grid), "lr_grid must name at least one learning rate")


@dataclass
class TransferRecipe:
    """``source``: the zoo recipe the generator and the pretrained networks come from; ``target``: a data
    config like a recipe's ``[data]`` (``classes = [...]`` selects and relabels classes)."""

    name: str
    source: str | Recipe
    target: dict[str, Any]
    transfer: TransferConfig = field(default_factory=TransferConfig)
    description: str = ""

    @property
    def source_recipe(self) -> Recipe:
        return load_recipe(self.source)


def load_transfer_recipe(name_or_path: str | os.PathLike) -> TransferRecipe:
    """A shipped transfer recipe by name (``zoo_recipes/transfer/NAME.toml``) or a TOML file."""
    path, data = read_toml(name_or_path, shipped("zoo_recipes") / "transfer", "transfer recipe")
    known = {f.name for f in dataclasses.fields(TransferRecipe)}
    if not isinstance(data, dict) or data.keys() - known or not {"name", "source", "target"} <= data.keys():
        raise DWFError(f"{path}: a transfer recipe has keys {sorted(known)} (name, source, target required)")
    data["transfer"] = build_dataclass(TransferConfig, data.get("transfer"), f"{path} [transfer]")
    return TransferRecipe(**data)


def map_inputs(x: Tensor, shape: tuple[int, ...], source: str = "target data") -> Tensor:
    """Target inputs ``[B, ...]`` in the source's input ``shape``: images are resized (bilinear) and a single
    channel repeated to three; a flat source of ``n`` features takes one-channel images resized to √n × √n and
    flattened; anything else must match exactly."""
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    side = math.isqrt(shape[0]) if len(shape) == 1 else 0
    if x.dim() == 4 and x.shape[1] == 1 and side * side == shape[0] > 0:
        return map_inputs(x, (1, side, side), source).flatten(1)
    if x.dim() == 4 and len(shape) == 3 and x.shape[1] in (1, shape[0]):
        x = F.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False)
        return x.expand(-1, shape[0], -1, -1).contiguous()
    raise DWFError(
        f"{source}: inputs of shape {tuple(x.shape[1:])} cannot be mapped to the source's {tuple(shape)}"
    )


def _per_class(y: Tensor, count, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(picked, rest)`` indices into labels ``y [N]``: ``count(n, c)`` random samples of each class ``c`` of
    ``n`` (regression targets: one group)."""
    y = torch.zeros(len(y), dtype=torch.long) if y.is_floating_point() else y
    picked, rest = [], []
    for c in y.unique().tolist():
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        picked.append(idx[: count(len(idx), c)])
        rest.append(idx[count(len(idx), c) :])
    return torch.cat(picked).sort().values, torch.cat(rest).sort().values


def few_shot(task: TaskData, shots: int | None, seed: int) -> TaskData:
    """``shots`` training samples per class, drawn with ``seed`` (all of them when ``None``)."""
    if shots is None:
        return task
    if task.is_regression:
        raise DWFError("shots: a regression target has no classes to draw shots of")

    def count(n: int, c: int) -> int:
        if n < shots:
            raise DWFError(f"few-shot: class {c} has {n} training samples, fewer than shots={shots}")
        return shots

    keep, _ = _per_class(task.y_train, count, torch.Generator().manual_seed(seed))
    return dataclasses.replace(task, x_train=task.x_train[keep], y_train=task.y_train[keep])


def carve_validation(task: TaskData, fraction: float, seed: int) -> TaskData:
    """The validation split replaced by ``fraction`` of each class's training samples (at least one), which
    leave the training split: what a few-shot user has to choose settings on (the target's own validation
    split would be more labelled data than the few shots)."""
    count = lambda n, c: min(n - 1, max(1, round(fraction * n)))  # noqa: E731
    val, train = _per_class(task.y_train, count, torch.Generator().manual_seed(seed + 1))
    x, y = task.x_train, task.y_train
    return dataclasses.replace(task, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val])


def target_task(recipe: TransferRecipe, source_arch: ArchSpec) -> TaskData:
    """The target data, few-shot subsampled (a validation part carved out when several rates compete) and
    mapped to the source's input shape."""
    cfg = recipe.transfer
    task = few_shot(load_task(recipe.target), cfg.shots, cfg.seed)
    task = carve_validation(task, cfg.val_fraction, cfg.seed) if len(cfg.lr_grid) > 1 else task
    shape = tuple(source_arch.example_input(1).shape[1:])
    mapped = {
        f"x_{s}": map_inputs(task.split(s)[0], shape, f"target {s} split") for s in ("train", "val", "test")
    }
    return dataclasses.replace(task, **mapped)


def initial_networks(method: str, arch: ArchSpec, source: Recipe, k: int, seed: int, pipeline=None, zoo=None):
    """``k`` state dicts of the source architecture: ``generated`` by ``pipeline`` (BatchNorm recalibrated on
    the source training split), ``pretrained`` members of ``zoo`` (a seeded draw), or ``random`` inits."""
    if method == "generated":
        if pipeline is None:
            raise DWFError("method 'generated' needs a pipeline (--pipeline)")
        gen = torch.Generator().manual_seed(seed)
        return pipeline(
            num_networks=k, generator=gen, output_type="state_dict", quality_check=False
        ).state_dicts  # raw flow
    if method == "pretrained":
        if zoo is None:
            raise DWFError("method 'pretrained' needs the source zoo (--zoo)")
        if len(zoo) < k:
            raise DWFError(f"method 'pretrained': the zoo has {len(zoo)} networks, fewer than K={k}")
        order = torch.randperm(len(zoo), generator=torch.Generator().manual_seed(seed))[:k]
        return [zoo.state_dict(int(i)) for i in order]
    if method == "random":
        from ..zoo.training import init_member

        return [init_member(arch, source.training.init_for(i), seed + 1_000_003 + i) for i in range(k)]
    raise unknown("transfer method", method, list(METHODS))


def with_new_head(arch: ArchSpec, target: ArchSpec, states: list[dict[str, Tensor]], seed: int):
    """``states`` with ``target``'s head, Kaiming-initialised per network (bias zero)."""
    out = []
    for i, sd in enumerate(states):
        gen = torch.Generator().manual_seed(seed + 7919 * (i + 1))
        weight_key, bias_key = target.head_keys
        shape = dict((p.key, p.shape) for p in target.layout)[weight_key]
        weight = torch.empty(shape)
        torch.nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=gen)
        out.append({**{k: v for k, v in sd.items() if k not in arch.head_keys}, weight_key: weight,
                    bias_key: torch.zeros(shape[0])})  # fmt: skip
    return out


def _cell(target: ArchSpec, task: TaskData, states, budget: int, cfg: TransferConfig, frozen, progress: bool):
    """``{"test": [K]}`` target test metric of ``states`` after ``budget`` epochs of fine-tuning at each rate
    of ``cfg.lr_grid``, the rate with the best mean validation metric kept (``lr``; ``val`` per rate)."""
    from ..scoring import score_many, stack_state_dicts
    from ..zoo.training import train_members

    if budget == 0:
        return {
            "test": score_many(target, stack_state_dicts(target, states), task.x_test, task.y_test).tolist()
        }
    runs = {}
    for lr in cfg.lr_grid:
        training = TrainingConfig(optimizer="adamw", lr=lr, weight_decay=cfg.weight_decay, schedule="cosine",
                                  batch_size=cfg.batch_size, epochs=budget, init="default", chunk_size=len(states))  # fmt: skip
        seeds = [cfg.seed + i for i in range(len(states))]
        trained = train_members(target, task, training, seeds, ["default"] * len(states), progress, start=states,
                                frozen=frozen, train_mode=cfg.mode != "linear_probe")  # fmt: skip
        runs[lr] = {split: [r[f"{split}_{target.metric}"] for _, r in trained] for split in ("val", "test")}
    # a nan validation score (a constant regression output) never wins; ties keep the first rate of the grid
    best = max(cfg.lr_grid, key=lambda lr: torch.tensor(runs[lr]["val"]).nan_to_num(-math.inf).mean().item())
    val = {f"{lr:g}": sum(r["val"]) / len(r["val"]) for lr, r in runs.items()} if len(runs) > 1 else None
    return {"test": runs[best]["test"], "lr": best, "val": val}


def frozen_keys(arch: ArchSpec, cfg: TransferConfig) -> frozenset[str]:
    """Parameter keys ``cfg.mode`` keeps fixed: none, all but the head, or the leading ``detach_ratio`` of the
    weight tensors (buffers such as BatchNorm statistics are not counted)."""
    body = [p.key for p in arch.layout if p.key in arch.parameter_keys and p.key not in arch.head_keys]
    share = {"full": 0.0, "linear_probe": 1.0, "detach": cfg.detach_ratio}[cfg.mode]
    return frozenset(body[: math.floor(share * len(body))])


def run_transfer(
    recipe: TransferRecipe,
    out: str | os.PathLike,
    pipeline=None,
    zoo=None,
    progress: bool = True,
    overwrite: bool = False,
):
    """Every (method, budget) cell, then ``results.json``, the table and the figure, written whole into ``out``
    (a transfer-results artifact; another folder is refused unless ``overwrite``). Finished cells wait in a job
    folder beside ``out`` (one atomic file each), so a rerun of the same job — same recipe, same source flow and
    zoo contents — computes only the rest; ``overwrite`` starts over. Under ``accelerate launch`` the cells are
    split between the processes (each is seeded on its own, so the table does not depend on the split)."""
    from ..artifacts import check_output, resumable_job, write_folder
    from ..distributed import process_state

    check_output(out, "transfer results", overwrite)
    cfg, source = recipe.transfer, recipe.source_recipe
    arch = pipeline.arch if pipeline is not None else source.arch_spec
    task = target_task(recipe, arch)
    outputs = 1 if task.is_regression else task.num_classes
    new_head = cfg.new_head if cfg.new_head is not None else outputs != arch.num_outputs
    target = arch.with_outputs(outputs) if new_head else arch
    frozen = frozen_keys(arch, cfg)
    state = process_state()
    fingerprint = json.loads(json.dumps(dataclasses.asdict(recipe), sort_keys=True, default=str))
    sources = {"pipeline": pipeline.fingerprint() if pipeline is not None else None,
               "zoo": zoo.fingerprint() if zoo is not None else None}  # fmt: skip
    with resumable_job(
        out, {"transfer": fingerprint, **sources}, overwrite, main=state.is_main_process
    ) as work:
        state.wait_for_everyone()  # the main process has claimed the job folder
        todo = [(m, b) for m in cfg.methods for b in cfg.budgets if not (work / _cell_name(m, b)).is_file()]
        with state.split_between_processes(todo) as mine:
            states: dict[str, list] = {}
            for method, budget in mine:
                if method not in states:
                    drawn = initial_networks(method, arch, source, cfg.num_networks, cfg.seed, pipeline, zoo)
                    states[method] = with_new_head(arch, target, drawn, cfg.seed) if new_head else drawn
                scores = _cell(target, task, states[method], budget, cfg, frozen, progress)
                write_json(work / _cell_name(method, budget), scores)  # an interruption loses one cell
        state.wait_for_everyone()
        results: dict[str, Any] = {"recipe": fingerprint, "cells": {}}
        for method in cfg.methods:
            for budget in cfg.budgets:
                cell = work / _cell_name(method, budget)
                results["cells"].setdefault(method, {})[str(budget)] = json.loads(cell.read_text())
        if state.is_main_process:
            with write_folder(out, "transfer results", overwrite) as stage:
                write_json(stage / RESULTS_NAME, results)
                summary = write_table(stage, results, target.metric, cfg.mode)
        state.wait_for_everyone()
    return summary if state.is_main_process else json.loads((Path(out) / "summary.json").read_text())


def _cell_name(method: str, budget: int) -> str:
    return f"cell_{method}_{budget}.json"
