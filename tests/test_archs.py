"""Registry-driven tests: every registered architecture gets them through its ``tiny()`` variant."""

from __future__ import annotations

import pytest
import torch

from dwf_hub.archs import available_archs, get_arch, get_arch_class
from dwf_hub.errors import DWFError, UnknownNameError, WeightFormatError
from dwf_hub.matching import weight_matching
from dwf_hub.permutations import apply_permutation, random_permutation

ARCHS = available_archs()


def _tiny(name):
    return get_arch_class(name).tiny()


def _random_state(arch, seed=0):
    """Random weights and random BatchNorm statistics (positive variances), so that every key matters."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in arch.build().state_dict().items():
        if not v.is_floating_point():
            state[k] = v.clone()
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.3
    return state


@pytest.mark.parametrize("name", ARCHS)
def test_spec_covers_every_key(name):
    arch = _tiny(name)
    spec = arch.permutation_spec()
    assert set(spec.axes_to_perm) == {p.key for p in arch.layout}
    sd = _random_state(arch)
    for key, axes in spec.axes_to_perm.items():
        assert len(axes) == sd[key].dim(), key
    spec.perm_sizes(sd)  # raises if two axes of one permutation disagree


@pytest.mark.parametrize("name", ARCHS)
def test_flatten_unflatten_round_trip(name):
    arch = _tiny(name)
    sd = _random_state(arch)
    flat = arch.flatten(sd)
    assert flat.shape == (arch.num_params,)
    back = arch.unflatten(flat)
    assert list(back) == [p.key for p in arch.layout]
    for k, v in back.items():
        assert torch.equal(v, sd[k])
    assert torch.equal(arch.flatten(back), flat)


@pytest.mark.parametrize("name", ARCHS)
def test_random_permutation_preserves_function(name):
    arch = _tiny(name)
    sd = _random_state(arch)
    spec = arch.permutation_spec()
    perm = random_permutation(spec, sd, torch.Generator().manual_seed(1))
    permuted = apply_permutation(spec, perm, sd)
    assert any(not torch.equal(permuted[k], sd[k]) for k in sd)
    x = arch.example_input(16, torch.Generator().manual_seed(2))
    with torch.no_grad():
        out_a, out_b = arch.call(arch.instantiate(sd), x), arch.call(arch.instantiate(permuted), x)
    scale = float(out_a.abs().max())  # random deep nets have large outputs: compare relative to them
    torch.testing.assert_close(out_a, out_b, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize("name", ARCHS)
def test_matching_recovers_permuted_reference(name):
    arch = _tiny(name)
    ref = _random_state(arch)
    spec = arch.permutation_spec()
    perm = random_permutation(spec, ref, torch.Generator().manual_seed(3))
    shuffled = apply_permutation(spec, perm, ref)
    result = weight_matching(spec, ref, shuffled, seed=0)
    aligned = apply_permutation(spec, result.perm, shuffled)
    for k in ref:
        assert torch.equal(aligned[k], ref[k]), k


@pytest.mark.parametrize("name", ARCHS)
def test_validate_names_the_fault(name):
    arch = _tiny(name)
    sd = _random_state(arch)
    key = arch.layout[0].key
    bad_shape = {**sd, key: torch.zeros(3, 3, 3)}
    with pytest.raises(WeightFormatError, match=key):
        arch.validate(bad_shape, source="x.safetensors")
    missing = {k: v for k, v in sd.items() if k != key}
    with pytest.raises(WeightFormatError, match="missing"):
        arch.validate(missing)
    nan = {**sd, key: torch.full_like(sd[key], float("nan"))}
    with pytest.raises(WeightFormatError, match="NaN"):
        arch.validate(nan)
    with pytest.raises(WeightFormatError, match="unexpected"):
        arch.validate({**sd, "extra.weight": torch.zeros(1)})


def test_registry_errors():
    with pytest.raises(UnknownNameError, match="unknown architecture 'nope'"):
        get_arch("nope")
    with pytest.raises(DWFError, match="bad arguments"):
        get_arch("mlp", sizes=[1, 2])
    with pytest.raises(DWFError, match="layer_sizes"):
        get_arch("mlp", layer_sizes=[4])


def test_paper_parameter_counts():
    def n_params(arch):  # learnable parameters; the flat vector also holds BatchNorm running statistics
        return sum(p.numel() for p in arch.build().parameters())

    assert n_params(get_arch("resnet20")) == 272_474  # Table 13
    assert n_params(get_arch("resnet18")) == 11_173_962  # torchvision resnet18 with a 3x3 stem: 11.17M
    assert 11_000 < n_params(get_arch("smallcnn")) < 13_000  # "~12K"
    assert get_arch("resnet20").num_params == 272_474 + 2 * 784  # + running mean and variance of 784 channels


def test_mlp_layout_matches_paper_sizes():
    assert get_arch("mlp", layer_sizes=[4, 16, 3]).num_params == 131
    assert get_arch("mlp", layer_sizes=[784, 32, 32, 10]).num_params == 26_506
    # The paper's Table 13 prints 117,770 here, which no [784, 128, 128, 10] MLP with biases has.
    assert get_arch("mlp", layer_sizes=[784, 128, 128, 10]).num_params == 118_282
