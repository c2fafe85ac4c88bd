"""Flow-matching training on accelerate, resumable from safetensors checkpoints (no pickle).

Independent coupling (or minibatch optimal transport): ``x0 ~ N(0, source_std^2)``, ``x1`` a training
vector, ``t ~ U(0,1)`` or Beta,
``x_t = (1-t) x0 + t x1 + sigma * eps``, regression of ``v(x_t, t)`` onto ``x1 - x0`` (MSE).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..configs import FlowConfig
from ..errors import DWFError
from ..io import load_tensors, save_tensors, write_json
from .velocity import VelocityModel

STATE_TENSORS = "flow_state.safetensors"
STATE_JSON = "flow_state.json"


def _fingerprint(data: Tensor, cfg: FlowConfig, source_std: float) -> str:
    h = hashlib.sha256(data.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps({**cfg.to_dict(), "source_std": source_std}, sort_keys=True, default=str).encode())
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
    save_tensors(folder / STATE_TENSORS, tensors)
    meta = {
        "iteration": it,
        "fingerprint": fingerprint,
        "param_groups": opt_state["param_groups"],
        "scheduler": sched.state_dict(),
        "losses": losses,
        "loss_window": list(window),
    }
    write_json(folder / STATE_JSON, meta)  # written last: its presence marks a complete checkpoint


def _load_state(
    folder: Path, model, opt, sched, fingerprint: str, ema=None
) -> tuple[int, list[float], tuple[float, int]] | None:
    meta_path = folder / STATE_JSON
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("fingerprint") != fingerprint:
        raise DWFError(
            f"{folder} holds a flow checkpoint for other data or another configuration; "
            "remove it or choose another output folder"
        )
    tensors = load_tensors(folder / STATE_TENSORS)
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


def train_flow(
    data: Tensor,
    cfg: FlowConfig,
    source_std: float,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> tuple[VelocityModel, list[float]]:
    """Train a velocity model on ``data [N, K]``; returns it (eval mode, CPU) and the loss curve.

    With ``checkpoint_dir``, state is saved every ``cfg.checkpoint_every`` iterations and a rerun with
    the same data and config resumes from the last checkpoint. ``callback(iteration, loss)`` runs after
    every step (for logging; an exception it raises stops training).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if data.dim() != 2 or data.shape[0] < 1:
        raise DWFError(f"flow training data must be [N, K] with N >= 1, got shape {tuple(data.shape)}")
    if not torch.isfinite(data).all():
        raise DWFError("flow training data contains NaN or Inf values")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    set_seed(cfg.seed)
    model = VelocityModel(
        dim=data.shape[1], hidden_dim=cfg.hidden_dim, time_embed_dim=cfg.time_embed_dim, dropout=cfg.dropout
    )
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=True
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.iterations, eta_min=cfg.min_lr)
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = _fingerprint(data, cfg, source_std)
    start, losses, (running, count) = 0, [], (0.0, 0)  # losses: mean over each window of 100 iterations
    if folder is not None:
        resumed = _load_state(folder, model, opt, sched, fingerprint, ema)
        if resumed is not None:
            start, losses, (running, count) = resumed
    model.train()
    model, opt, sched = accelerator.prepare(model, opt, sched)
    device = accelerator.device
    if ema is not None:
        ema.to(device)
    x_all = data.to(device, torch.float32)
    n, b = x_all.shape[0], cfg.batch_size
    beta = torch.distributions.Beta(*(torch.tensor(float(v), device=device) for v in cfg.beta))
    bar = tqdm(
        range(start, cfg.iterations),
        desc="flow training",
        disable=not progress,
        initial=start,
        total=cfg.iterations,
    )
    for it in bar:
        x1 = x_all[torch.randint(0, n, (b,), device=device)]
        x0 = torch.randn_like(x1) * source_std
        if cfg.coupling == "ot":
            x0 = x0[ot_pairing(x0, x1)]
        t = torch.rand(b, device=device) if cfg.time_distribution == "uniform" else beta.sample((b,))
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1 + cfg.sigma * torch.randn_like(x1)
        with accelerator.autocast():
            pred = model(xt, t)
        loss = F.mse_loss(pred.float(), x1 - x0)
        accelerator.backward(loss)
        # AcceleratedOptimizer.step looks up an optional package on every call (~0.3 ms here); without a
        # grad scaler or distributed setup it would only forward to the wrapped optimizer.
        plain = accelerator.scaler is None and accelerator.num_processes == 1
        (opt.optimizer if plain else opt).step()
        if ema is not None:
            ema.update_parameters(model)
        sched.step()
        opt.zero_grad(set_to_none=True)
        running, count = running + loss.item(), count + 1
        if callback is not None:
            callback(it + 1, loss.item())
        if (it + 1) % 100 == 0 or it + 1 == cfg.iterations:
            losses.append(running / count)
            running, count = 0.0, 0
            bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
        if (
            folder is not None
            and accelerator.is_main_process
            and ((it + 1) % cfg.checkpoint_every == 0 and it + 1 < cfg.iterations)
        ):
            _save_state(
                folder,
                it + 1,
                accelerator.unwrap_model(model),
                opt,
                sched,
                losses,
                (running, count),
                fingerprint,
                ema,
            )
    velocity = (ema.module if ema is not None else accelerator.unwrap_model(model)).to("cpu").eval()
    accelerator.free_memory()
    return velocity, losses
