"""Flow-matching training on accelerate, resumable from safetensors checkpoints (no pickle).

Independent coupling (or minibatch optimal transport): ``x0 ~ N(0, source_std^2)``, ``x1`` a training
vector, ``t ~ U(0,1)`` or Beta,
``x_t = (1-t) x0 + t x1 + sigma * eps``, regression of ``v(x_t, t)`` onto ``x1 - x0`` (MSE).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub.utils import tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS
from torch import Tensor

from ..configs import FlowConfig, FlowTrainingConfig
from ..errors import DWFError
from ..io import load_tensors, read_header, save_tensors
from .velocity import VelocityModel

STATE_FILE = "flow_state.safetensors"
STATE_KEY = "dwf_flow_state"  # safetensors header key: iteration, fingerprint, optimizer groups, losses


def flow_fingerprint(
    data: Tensor, cfg: FlowConfig, source_std: float, conditions: FlowConditions | None = None
) -> str:
    """Everything that changes the trained weights: a resumed run must agree on all of it (sampling
    settings and how often checkpoints are written may differ)."""
    h = hashlib.sha256(data.detach().cpu().contiguous().numpy().tobytes())
    if conditions is not None:
        h.update(conditions.labels.cpu().numpy().tobytes())
        if conditions.sources is not None:
            h.update(conditions.sources.cpu().numpy().tobytes())
    config = {
        "velocity": cfg.velocity.to_dict(),
        "training": cfg.training.fingerprint(),
        "source_std": source_std,
    }
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()


def ot_pairing(x0: Tensor, x1: Tensor) -> Tensor:
    """Indices ``[B]`` reordering ``x0 [B, K]`` so that ``sum ||x0[i] - x1[i]||^2`` is minimal (an exact
    assignment: minibatch optimal transport with uniform weights)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x1.detach().double(), x0.detach().double()).square().cpu().numpy()
    return torch.from_numpy(linear_sum_assignment(cost)[1]).to(x0.device)


def _save_state(
    folder: Path,
    it: int,
    model,
    opt,
    sched,
    losses: list[float],
    window: tuple[float, int],
    fingerprint: str,
    ema=None,
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for name, v in st.items():
            tensors[f"optim.{idx}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = {
        "iteration": it,
        "fingerprint": fingerprint,
        "param_groups": opt_state["param_groups"],
        "scheduler": sched.state_dict(),
        "losses": losses,
        "loss_window": list(window),
    }
    # One file, written atomically: tensors and their bookkeeping cannot come from two different saves.
    save_tensors(folder / STATE_FILE, tensors, metadata={STATE_KEY: json.dumps(meta)})


def _load_state(
    folder: Path, model, opt, sched, fingerprint: str, ema=None
) -> tuple[int, list[float], tuple[float, int]] | None:
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(read_header(path).metadata[STATE_KEY])
    except (KeyError, json.JSONDecodeError) as e:
        raise DWFError(
            f"{path}: not a dwf_hub flow checkpoint; remove it or choose another output folder"
        ) from e
    if meta.get("fingerprint") != fingerprint:
        raise DWFError(
            f"{folder} holds a flow checkpoint for other data or another configuration; "
            "remove it or choose another output folder"
        )
    tensors = load_tensors(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    sched.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_states = [
        tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors
    ]
    if cuda_states:
        torch.cuda.set_rng_state_all(cuda_states)
    running, count = meta["loss_window"]
    return meta["iteration"], meta["losses"], (running, int(count))


@dataclass
class _Run:
    """What one training run holds: the model, its optimizer, schedule and EMA, and the loss log."""

    model: VelocityModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    ema: torch.nn.Module | None
    losses: list[float] = field(default_factory=list)  # mean over each window of 100 iterations
    window: tuple[float, int] = (0.0, 0)
    start: int = 0

    def finite_losses(self) -> list[float]:
        if not all(math.isfinite(v) for v in self.losses):
            raise DWFError("flow training diverged (the loss became NaN or Inf): lower lr or source_std")
        return self.losses

    def log(self, loss: float, done: int, total: int, bar) -> None:
        """Add ``loss`` to the current window; close the window every 100 iterations and at the end."""
        self.window = (self.window[0] + loss, self.window[1] + 1)
        if done % 100 == 0 or done == total:
            self.losses.append(self.window[0] / self.window[1])
            self.window = (0.0, 0)
            bar.set_postfix(loss=f"{self.losses[-1]:.4g}", refresh=False)


def _new_run(dim: int, cfg: FlowConfig, conditions: FlowConditions | None = None) -> _Run:
    from ..resources import require_memory

    t, v = cfg.training, cfg.velocity
    build = lambda: VelocityModel(  # noqa: E731
        dim=dim, hidden_dim=v.hidden_dim, time_embed_dim=v.time_embed_dim, dropout=v.dropout,
        num_labels=conditions.num_labels if conditions else 0,
        label_latent_dim=conditions.latent_dim if conditions else None,
    )  # fmt: skip
    with torch.device("meta"):  # sized before anything is allocated
        params = sum(p.numel() for p in build().parameters())
    copies = 5 if t.ema_decay > 0 else 4  # weights, gradients, Adam's two moments, the EMA copy
    require_memory(4 * copies * params, f"a velocity model of {params:,} parameters (hidden_dim {v.hidden_dim})",
                   "lower hidden_dim")  # fmt: skip
    model = build()
    opt = torch.optim.AdamW(
        model.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, fused=True
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.iterations, eta_min=t.min_lr)
    ema = None
    if t.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
    return _Run(model, opt, sched, ema)


def _loss(model, data: _Data, t: FlowTrainingConfig, source_std: float, beta, accelerator) -> Tensor:
    """The flow-matching loss of one random batch (conditional: with the members' labels, a
    ``label_dropout`` fraction of them replaced by "no label")."""
    x_all = data.x
    n, b, device = x_all.shape[0], t.batch_size, x_all.device
    idx = torch.randint(0, n, (b,), device=device)
    x1 = x_all[idx]
    labels, shift, c = None, 0.0, data.conditions
    if c is not None:
        labels = c.labels[idx]
        shift = c.sources[labels] if c.sources is not None else 0.0
        if t.label_dropout > 0:
            labels = torch.where(torch.rand(b, device=device) < t.label_dropout, c.num_labels, labels)
    x0 = torch.randn_like(x1) * source_std + shift
    x1 = x1 + shift
    if t.coupling == "ot":
        x0 = x0[ot_pairing(x0, x1)]
    time = torch.rand(b, device=device) if t.time_distribution == "uniform" else beta.sample((b,))
    xt = (1 - time[:, None]) * x0 + time[:, None] * x1 + t.sigma * torch.randn_like(x1)
    with accelerator.autocast():
        pred = model(xt, time, labels)
    return F.mse_loss(pred.float(), x1 - x0)


@dataclass
class FlowConditions:
    """What makes a flow conditional: each training row's label ``[N]`` in ``[0, num_labels)``, the codec's
    latent size the velocity model's label maps lead to (when the data are per-condition coordinates), and each
    condition's source mean ``[L, D]`` (its source samples and targets are shifted by it)."""

    labels: Tensor
    num_labels: int
    latent_dim: int | None = None
    sources: Tensor | None = None

    def to(self, device) -> FlowConditions:
        sources = None if self.sources is None else self.sources.to(device, torch.float32)
        return FlowConditions(self.labels.to(device), self.num_labels, self.latent_dim, sources)


@dataclass
class _Data:
    """Training latents ``x [N, K]`` and, for a conditional flow, its conditions."""

    x: Tensor
    conditions: FlowConditions | None = None


def _accumulated_loss(model, data: _Data, t, source_std, beta, accelerator) -> Tensor:
    """Back-propagates ``gradient_accumulation_steps`` batches (``accelerator.backward`` scales each; DDP
    all-reduces only on the last) and returns their mean loss."""
    from contextlib import nullcontext

    steps = accelerator.gradient_accumulation_steps
    total = 0.0
    for micro in range(steps):
        with accelerator.no_sync(model) if micro < steps - 1 else nullcontext():
            loss = _loss(model, data, t, source_std, beta, accelerator)
            accelerator.backward(loss)
        total = total + loss.detach()
    return total / steps


def _accelerator(t: FlowTrainingConfig):
    """The run's ``Accelerator``, seeded per process (under DDP each rank draws its own batches; rank 0 uses
    the seed as is). A launcher's mixed precision (``accelerate launch --mixed_precision bf16``) applies unless
    the config sets one; the same for gradient accumulation."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from ..distributed import use_cpu

    precision = (
        t.mixed_precision if t.mixed_precision != "no" else os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    )
    # gradient_accumulation_steps=1 lets accelerate take the launcher's --gradient_accumulation_steps
    accelerator = Accelerator(
        mixed_precision=precision, gradient_accumulation_steps=t.gradient_accumulation, cpu=use_cpu()
    )
    set_seed(t.seed, device_specific=True)
    return accelerator


def _check_data(data: Tensor, conditions: FlowConditions | None) -> None:
    if data.dim() != 2 or data.shape[0] < 1:
        raise DWFError(f"flow training data must be [N, K] with N >= 1, got shape {tuple(data.shape)}")
    if not torch.isfinite(data).all():
        raise DWFError("flow training data contains NaN or Inf values")
    if conditions is not None:
        labels, n = conditions.labels, conditions.num_labels
        if (
            labels.shape != (len(data),)
            or labels.dtype != torch.long
            or not 0 <= int(labels.min()) <= int(labels.max()) < n
        ):
            raise DWFError(
                f"flow labels must be [N] integers in [0, {n}), got {tuple(labels.shape)} {labels.dtype}"
            )


def train_flow(
    data: Tensor,
    cfg: FlowConfig,
    source_std: float,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    conditions: FlowConditions | None = None,
    snapshots: Any = None,
) -> tuple[VelocityModel, list[float]]:
    """Train a velocity model on ``data [N, K]``; returns it (eval mode, CPU) and the loss curve.
    ``conditions`` make it a conditional flow.

    With ``checkpoint_dir``, state is saved every ``cfg.training.checkpoint_every`` iterations and a rerun
    with the same data and weight-changing settings resumes from the last checkpoint. ``callback(iteration,
    loss)`` runs after every step (an exception it raises stops training); ``snapshots(iteration, model)`` after
    each of ``snapshots.iterations``, with the velocity model (its EMA if any; ``selection.SnapshotSelector``).
    """
    _check_data(data, conditions)
    t = cfg.training
    accelerator = _accelerator(t)
    run = _new_run(data.shape[1], cfg, conditions)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = flow_fingerprint(data, cfg, source_std, conditions)
    resumed = _load_state(folder, run.model, run.opt, run.sched, fingerprint, run.ema) if folder else None
    if resumed is not None:
        run.start, run.losses, run.window = resumed
    run.model.train()
    model, opt, sched = accelerator.prepare(run.model, run.opt, run.sched)
    device = accelerator.device
    run.ema = run.ema.to(device) if run.ema is not None else None
    train = _Data(data.to(device, torch.float32), conditions.to(device) if conditions else None)
    beta = torch.distributions.Beta(*(torch.tensor(float(v), device=device) for v in t.beta))
    bar = tqdm(range(run.start, t.iterations), desc="flow training", disable=not progress,
               initial=run.start, total=t.iterations)  # fmt: skip
    # AcceleratedOptimizer.step costs ~0.3 ms a call here and only forwards when nothing is scaled/distributed
    step_opt = opt.optimizer if accelerator.scaler is None and accelerator.num_processes == 1 else opt
    for it in bar:
        loss = _accumulated_loss(model, train, t, source_std, beta, accelerator)
        step_opt.step()
        if run.ema is not None:
            run.ema.update_parameters(model)
        sched.step()
        opt.zero_grad(set_to_none=True)
        done = it + 1
        run.log(loss.item(), done, t.iterations, bar)
        if callback is not None:
            callback(done, loss.item())
        if snapshots is not None and done in snapshots.iterations:
            snapshots(done, run.ema.module if run.ema is not None else accelerator.unwrap_model(model))
        if (
            folder is not None
            and accelerator.is_main_process
            and done % t.checkpoint_every == 0
            and done < t.iterations
        ):
            _save_state(folder, done, accelerator.unwrap_model(model), opt, sched, run.losses, run.window, fingerprint, run.ema)  # fmt: skip
    velocity = (run.ema.module if run.ema is not None else accelerator.unwrap_model(model)).to("cpu").eval()
    accelerator.free_memory()
    return velocity, run.finite_losses()
