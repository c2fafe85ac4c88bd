"""Transfer learning from generated networks (paper Section 5.2, Appendix J): fine-tune K generated, K
pretrained (zoo) and K randomly initialised networks on a target task for each epoch budget (0 = zero-shot),
and tabulate the target test metric per method and budget.

The protocol is the paper's: AdamW, cosine schedule, cross-entropy (MSE for regression heads), generated
BatchNorm networks recalibrated on the *source* training split before transfer, a new Kaiming-initialised head
when the target has another label set, optional few-shot subsampling (``shots`` per class, seeded), inputs
resized to the source's shape, and optionally the first layers frozen (``freeze``, the paper's "detach ratio").
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
from ..io import write_json, write_text
from ..resources import shipped
from ..zoo.data import TaskData, load_task
from ..zoo.recipes import Recipe, load_recipe, read_toml

METHODS = ("generated", "pretrained", "random")
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
    lr: float = option(1e-3, "AdamW learning rate", low=0, open_low=True, high=10)
    weight_decay: float = option(1e-4, "AdamW weight decay", low=0, high=10)
    batch_size: int = option(64, "mini-batch size", low=1, high=1 << 20)
    shots: int | None = option(
        None, "training samples per class (few-shot; default: all)", low=1, high=1 << 20
    )
    freeze: float = option(0.0, "fraction of the leading weight tensors kept frozen", low=0, high=1)
    new_head: bool | None = option(
        None, "re-initialise the head (default: when the number of outputs changes)"
    )
    seed: int = option(0, "seed of the draws, subsampling and data order", low=0, high=2**62)

    def validate(self) -> None:
        self.check(bool(self.methods) and bool(self.budgets), "methods and budgets must not be empty")


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
    channel repeated to three; anything else must match exactly."""
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    if x.dim() == 4 and len(shape) == 3 and x.shape[1] in (1, shape[0]):
        x = F.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False)
        return x.expand(-1, shape[0], -1, -1).contiguous()
    raise DWFError(
        f"{source}: inputs of shape {tuple(x.shape[1:])} cannot be mapped to the source's {tuple(shape)}"
    )


def few_shot(task: TaskData, shots: int | None, seed: int) -> TaskData:
    """``shots`` training samples per class, drawn with ``seed`` (all of them when ``None``)."""
    if shots is None:
        return task
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(task.num_classes):
        idx = (task.y_train == c).nonzero().flatten()
        if len(idx) < shots:
            raise DWFError(f"few-shot: class {c} has {len(idx)} training samples, fewer than shots={shots}")
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:shots]])
    keep = torch.cat(keep).sort().values
    return dataclasses.replace(task, x_train=task.x_train[keep], y_train=task.y_train[keep])


def target_task(recipe: TransferRecipe, source_arch: ArchSpec) -> TaskData:
    """The target data, few-shot subsampled and mapped to the source's input shape."""
    task = few_shot(load_task(recipe.target), recipe.transfer.shots, recipe.transfer.seed)
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
    """Target test metric ``[K]`` of ``states`` after ``budget`` epochs of fine-tuning."""
    from ..scoring import score_many, stack_state_dicts
    from ..zoo.training import train_members

    if budget == 0:
        return score_many(target, stack_state_dicts(target, states), task.x_test, task.y_test).tolist()
    training = TrainingConfig(optimizer="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, schedule="cosine",
                              batch_size=cfg.batch_size, epochs=budget, init="default", chunk_size=len(states))  # fmt: skip
    seeds = [cfg.seed + i for i in range(len(states))]
    trained = train_members(target, task, training, seeds, ["default"] * len(states), progress, start=states,
                            frozen=frozen)  # fmt: skip
    return [record[f"test_{target.metric}"] for _, record in trained]


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
    leading = [p.key for p in arch.layout if p.key not in arch.head_keys]
    frozen = frozenset(leading[: math.floor(cfg.freeze * len(leading))])
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
                summary = write_table(stage, results, target.metric)
        state.wait_for_everyone()
    return summary if state.is_main_process else json.loads((Path(out) / "summary.json").read_text())


def _cell_name(method: str, budget: int) -> str:
    return f"cell_{method}_{budget}.json"


def write_table(root: Path, results: dict[str, Any], metric: str) -> dict[str, Any]:
    """``table.md``, ``table.csv``, ``summary.json`` (mean ± std per method and budget) and ``transfer.png``."""
    rows = {m: {int(b): _mean_std_n(v) for b, v in cells.items()} for m, cells in results["cells"].items()}
    budgets = sorted({b for cells in rows.values() for b in cells})
    scale, unit = (100.0, " (%)") if metric == "accuracy" else (1.0, "")
    head = f"| method | {' | '.join(f'{b} epochs' for b in budgets)} |"
    lines = [
        f"Target test {metric}{unit}, mean ± std over K = "
        f"{'/'.join(sorted({str(n) for cells in rows.values() for _, _, n in cells.values()}))} networks per method",
        "",
        head,
        "|---" * (len(budgets) + 1) + "|",
    ]
    for m, cells in rows.items():
        entries = [
            f"{scale * cells[b][0]:.2f} ± {scale * cells[b][1]:.2f}" if b in cells else "–" for b in budgets
        ]
        lines.append(f"| {m} | {' | '.join(entries)} |")
    write_text(root / "table.md", "\n".join(lines) + "\n")
    csv = ["method,epochs,mean,std,k"] + [
        f"{m},{b},{v[0]:.6f},{v[1]:.6f},{v[2]}" for m, c in rows.items() for b, v in sorted(c.items())
    ]
    write_text(root / "table.csv", "\n".join(csv) + "\n")
    summary = {
        "metric": metric,
        "table": {
            m: {str(b): {"mean": v[0], "std": v[1], "k": v[2]} for b, v in c.items()} for m, c in rows.items()
        },
    }
    write_json(root / "summary.json", summary)
    _plot(root, rows, metric, scale, unit)
    return summary


def _mean_std_n(values: list[float]) -> tuple[float, float, int]:
    from .metrics import summarize

    s = summarize(torch.tensor(values, dtype=torch.float64))
    return s["mean"], s["std"], len(values)


def _plot(root: Path, rows, metric: str, scale: float, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m, cells in rows.items():
        b = sorted(cells)
        ax.errorbar(
            b,
            [scale * cells[x][0] for x in b],
            yerr=[scale * cells[x][1] for x in b],
            marker="o",
            capsize=3,
            label=m,
        )
    ax.set(xlabel="fine-tuning epochs", ylabel=f"target test {metric}{unit}", title="Transfer")
    ax.legend()
    with atomic_path(root / "transfer.png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
