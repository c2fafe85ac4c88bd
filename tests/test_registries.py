"""Contract tests that every registered strategy inherits: adding a solver, init scheme, optimizer,
schedule, normalization or PCA solver to its registry is enough to have it tested here."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dwf_hub.archs import get_arch
from dwf_hub.cli import build_parser
from dwf_hub.codec import WeightCodec
from dwf_hub.compression.normalizations import NORMALIZATIONS
from dwf_hub.compression.pca_solvers import PCA_SOLVERS
from dwf_hub.configs import PHASES, FlowConfig, TrainingConfig
from dwf_hub.errors import DWFError, UnknownNameError
from dwf_hub.flow.scheduler import FlowODEScheduler
from dwf_hub.flow.solvers import SOLVERS
from dwf_hub.registry import Registry
from dwf_hub.zoo.init_schemes import INIT_SCHEMES, initialise
from dwf_hub.zoo.optim import LR_SCHEDULES, OPTIMIZERS, lr_factor, make_optimizer
from dwf_hub.zoo.weight_zoo import WeightZoo


def test_registry_refuses_unknown_and_duplicate_names():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    assert reg["a"] == 1 and "a" in reg and reg.names() == ("a",)
    with pytest.raises(UnknownNameError, match="unknown widget 'b'; known: a"):
        reg["b"]
    with pytest.raises(ValueError, match="twice"):
        reg.add("a", 2)


@pytest.mark.parametrize("name", SOLVERS.names())
def test_solver_integrates_a_linear_ode(name):
    """dx/dt = -x from x(0) = 1: every solver converges to exp(-1), higher orders faster."""
    sched = FlowODEScheduler(solver=name, num_inference_steps=50)
    x = torch.ones(3, 2)
    for t in sched.timesteps:
        x = sched.step(-x, t, x).prev_sample
    order = {1: 1e-2, 2: 1e-4, 4: 1e-8}[sched.order]
    assert torch.allclose(x, torch.full_like(x, torch.e**-1), atol=order)


@pytest.mark.parametrize("name", INIT_SCHEMES.names())
def test_init_scheme_is_seeded_and_finite(name):
    model = get_arch("mlp", layer_sizes=[4, 8, 3]).build()
    a, b = model, get_arch("mlp", layer_sizes=[4, 8, 3]).build()
    b.load_state_dict(a.state_dict())
    initialise(a, name, torch.Generator().manual_seed(0))
    initialise(b, name, torch.Generator().manual_seed(0))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.isfinite(va).all() and torch.equal(va, vb), k


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_reduces_a_quadratic(name):
    w = torch.ones(5, requires_grad=True)
    opt = make_optimizer([w], TrainingConfig(optimizer=name, lr=0.1))
    for _ in range(20):
        opt.zero_grad()
        w.square().sum().backward()
        opt.step()
    assert float(w.detach().square().sum()) < 5.0


@pytest.mark.parametrize("name", LR_SCHEDULES.names())
def test_schedule_stays_in_unit_interval(name):
    factor = lr_factor(TrainingConfig(schedule=name, epochs=10, warmup_epochs=2), steps_per_epoch=5)
    values = [factor(step) for step in range(50)]
    assert all(0.0 <= v <= 1.0 for v in values) and max(values) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name", NORMALIZATIONS.names())
def test_normalization_round_trips(name):
    arch = get_arch("mlp", layer_sizes=[3, 4, 2])
    weights = torch.randn(12, arch.num_params, generator=torch.Generator().manual_seed(0))
    codec = WeightCodec.fit(arch, weights, name, n_components=None)
    latents = codec.encode(weights)
    assert latents.shape[1] == codec.latent_dim
    assert torch.allclose(
        codec.decode(latents), weights, atol=1e-4
    )  # every component kept: lossless on the zoo


@pytest.mark.parametrize("name", PCA_SOLVERS.names())
def test_pca_solver_agrees_with_exact(name):
    arch = get_arch("mlp", layer_sizes=[3, 4, 2])
    weights = torch.randn(10, arch.num_params, generator=torch.Generator().manual_seed(1))
    zoo = WeightZoo.from_matrix(arch, weights)
    exact = PCA_SOLVERS["exact"](zoo, arch.num_params, 3, 10, 0, False)
    got = PCA_SOLVERS[name](zoo, arch.num_params, 3, 10, 0, False)
    assert got.explained_variance == pytest.approx(exact.explained_variance, rel=1e-3)
    assert torch.allclose(got.std, exact.std, rtol=1e-3)


def test_configs_and_cli_take_their_choices_from_the_registries():
    with pytest.raises(DWFError, match="euler"):
        FlowConfig.from_flat(solver="midpoint")
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["fit"]._actions}
    assert actions["solver"].choices == list(SOLVERS.names())
    assert actions["normalization"].choices == list(NORMALIZATIONS.names())
    fields = {f.name for cls in PHASES.values() for f in dataclasses.fields(cls)} - {"seed"}
    assert fields <= actions.keys()  # every flow setting has a generated option
