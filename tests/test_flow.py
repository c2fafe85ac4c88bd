from __future__ import annotations

import math

import pytest
import torch

from dwf_hub.configs import FlowConfig
from dwf_hub.errors import DWFError
from dwf_hub.flow.scheduler import FlowODEScheduler
from dwf_hub.flow.training import FlowConditions, train_flow
from dwf_hub.flow.velocity import VelocityModel


def _solve(solver: str, steps: int) -> float:
    """Integrate dx/dt = -x from x(0)=1 to t=1; returns |x(1) - e^-1|."""
    s = FlowODEScheduler(solver=solver, num_inference_steps=steps)
    x = torch.ones(1, dtype=torch.float64)
    for t in s.timesteps:
        x = s.step(-x, t, x).prev_sample
    return abs(float(x) - math.exp(-1))


def test_solvers_converge_at_their_order():
    errs = {s: (_solve(s, 10), _solve(s, 20)) for s in ("euler", "heun", "rk4")}
    assert errs["rk4"][0] < errs["heun"][0] < errs["euler"][0]
    assert errs["euler"][0] / errs["euler"][1] == pytest.approx(2, rel=0.1)
    assert errs["heun"][0] / errs["heun"][1] == pytest.approx(4, rel=0.1)
    assert errs["rk4"][0] / errs["rk4"][1] == pytest.approx(16, rel=0.15)
    assert errs["rk4"][1] < 1e-7


def test_scheduler_timesteps_and_config(tmp_path):
    s = FlowODEScheduler(solver="rk4", num_inference_steps=4, source_std=0.3)
    assert s.init_noise_sigma == 0.3
    assert s.order == 4 and len(s.timesteps) == 16
    torch.testing.assert_close(s.timesteps[:4], torch.tensor([0.0, 0.125, 0.125, 0.25]))
    s.set_timesteps(3, solver="euler")
    torch.testing.assert_close(s.timesteps, torch.tensor([0.0, 1 / 3, 2 / 3]))
    s.save_pretrained(tmp_path)
    loaded = FlowODEScheduler.from_pretrained(tmp_path)
    assert loaded.config.solver == "rk4" and loaded.init_noise_sigma == 0.3
    with pytest.raises(DWFError, match="scheduler config: solver='midpoint' is not one of"):
        FlowODEScheduler(solver="midpoint")
    with pytest.raises(DWFError, match="num_inference_steps"):
        s.set_timesteps(0)
    warm = FlowODEScheduler(source_std=0.3, temperature=0.5)
    assert warm.init_noise_sigma == pytest.approx(0.15) and warm.start_sigma(2.0) == pytest.approx(0.6)
    for bad in (0, -1.0, float("nan"), 11.0, True):
        with pytest.raises(DWFError, match="scheduler config: temperature"):
            FlowODEScheduler(temperature=bad)


def test_velocity_starts_at_zero_and_accepts_scalar_time():
    v = VelocityModel(dim=7, hidden_dim=16, time_embed_dim=4)
    x = torch.randn(3, 7)
    assert torch.equal(v(x, 0.5), torch.zeros(3, 7))
    assert v(x, torch.tensor([0.1, 0.2, 0.3])).shape == (3, 7)


def _cfg(**kw) -> FlowConfig:
    base = dict(
        hidden_dim=32,
        time_embed_dim=4,
        dropout=0.1,
        iterations=60,
        batch_size=8,
        checkpoint_every=20,
        lr=1e-3,
    )
    return FlowConfig.from_flat({**base, **kw})


def test_flow_learns_a_shifted_gaussian():
    data = torch.randn(64, 6) * 0.2 + 2.0
    v, losses = train_flow(
        data, _cfg(iterations=400, batch_size=32, lr=3e-3, dropout=0.0), 1.0, progress=False
    )
    assert losses[-1] < losses[0]
    s = FlowODEScheduler(num_inference_steps=20)
    x = torch.randn(256, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in s.timesteps:
            x = s.step(v(x, t), t, x).prev_sample
    assert abs(float(x.mean()) - 2.0) < 0.3


def test_flow_training_is_deterministic():
    data = torch.randn(10, 5)
    a, la = train_flow(data, _cfg(), 1.0, progress=False)
    b, lb = train_flow(data, _cfg(), 1.0, progress=False)
    assert la == lb
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_ot_pairing_is_the_cheapest_assignment():
    import itertools

    from dwf_hub.flow.training import ot_pairing

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    cost = lambda idx: float(((x0[list(idx)] - x1) ** 2).sum())  # noqa: E731
    best = min(itertools.permutations(range(5)), key=cost)
    assert cost(ot_pairing(x0, x1).tolist()) == pytest.approx(cost(best))
    assert cost(ot_pairing(x0, x1).tolist()) < cost(range(5))


def _crash_at(iteration: int):
    """A training callback that interrupts the run at ``iteration`` (as a user's Ctrl-C would)."""

    def crash(it, loss):
        if it == iteration:
            raise KeyboardInterrupt

    return crash


@pytest.mark.parametrize("extra", [{}, {"coupling": "ot", "ema_decay": 0.9}])
def test_flow_training_resumes_after_interruption(tmp_path, extra):
    data = torch.randn(10, 5)

    def cfg(**kw) -> FlowConfig:
        return _cfg(**{**extra, **kw})

    ref, ref_losses = train_flow(data, cfg(), 1.0, progress=False)
    if extra:  # the EMA is what comes back: not the last iterate
        raw, _ = train_flow(data, cfg(ema_decay=0.0), 1.0, progress=False)
        assert not torch.equal(raw.net[0].weight, ref.net[0].weight)

    with pytest.raises(KeyboardInterrupt):
        train_flow(data, cfg(), 1.0, checkpoint_dir=tmp_path, progress=False, callback=_crash_at(47))
    seen = []
    resumed, losses = train_flow(
        data, cfg(), 1.0, checkpoint_dir=tmp_path, progress=False, callback=lambda it, loss: seen.append(it)
    )
    assert seen[0] == 41  # restarted after the checkpoint at iteration 40, not from scratch
    assert all(torch.equal(p, q) for p, q in zip(ref.state_dict().values(), resumed.state_dict().values()))
    assert losses == pytest.approx(ref_losses)
    with pytest.raises(DWFError, match="another configuration"):
        train_flow(data, cfg(lr=5e-3), 1.0, checkpoint_dir=tmp_path, progress=False)


def test_resume_accepts_other_sampling_and_checkpoint_settings(tmp_path):
    """Only what changes the trained weights is fingerprinted: a rerun with another solver, step count or
    checkpoint interval resumes (after iteration 40) and gives the uninterrupted run's weights."""
    data = torch.randn(10, 5)
    ref, _ = train_flow(data, _cfg(), 1.0, progress=False)
    other = _cfg(solver="euler", num_inference_steps=3, checkpoint_every=7)
    with pytest.raises(KeyboardInterrupt):
        train_flow(data, _cfg(), 1.0, checkpoint_dir=tmp_path, progress=False, callback=_crash_at(47))
    seen = []
    resumed, _ = train_flow(
        data, other, 1.0, checkpoint_dir=tmp_path, progress=False, callback=lambda i, _: seen.append(i)
    )
    assert seen[0] == 41
    assert all(torch.equal(p, q) for p, q in zip(ref.state_dict().values(), resumed.state_dict().values()))


def test_diverging_flow_training_is_refused():
    with pytest.raises(DWFError, match="diverged"):
        train_flow(torch.randn(10, 5) * 1e30, _cfg(lr=10.0), 1e30, progress=False)


def test_flow_config_validation():
    with pytest.raises(DWFError, match="normalization='zca'"):
        FlowConfig.from_flat(normalization="zca")
    with pytest.raises(DWFError, match="source_std"):
        FlowConfig.from_flat(source_std=-1.0)
    with pytest.raises(DWFError, match="NaN"):
        train_flow(torch.tensor([[float("nan"), 1.0]]), _cfg(), 1.0, progress=False)


def test_gradient_accumulation_averages_batches_and_labels_are_checked():
    """Two accumulated batches per step: a different (seeded, finite) run from one batch per step; the
    launcher's setting is read when the config leaves it at 1."""
    data = torch.randn(32, 4) + 2.0
    cfg = FlowConfig.from_flat({"hidden_dim": 16, "time_embed_dim": 4, "iterations": 30, "batch_size": 8})
    acc = cfg.replace(gradient_accumulation=2)
    one, _ = train_flow(data, cfg, 1.0, progress=False)
    two, l2 = train_flow(data, acc, 1.0, progress=False)
    again, _ = train_flow(data, acc, 1.0, progress=False)
    assert all(math.isfinite(v) for v in l2)
    w = lambda m: torch.cat([p.flatten() for p in m.parameters()])  # noqa: E731
    assert not torch.equal(w(one), w(two)) and torch.equal(w(two), w(again))
    with pytest.raises(DWFError, match="flow labels"):
        train_flow(
            data,
            cfg,
            1.0,
            progress=False,
            conditions=FlowConditions(torch.zeros(32, dtype=torch.long) + 3, 2),
        )
