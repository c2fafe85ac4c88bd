from __future__ import annotations

import pytest
import torch

from dwf_hub.evaluation.metrics import nearest_distances
from dwf_hub.matching import canonicalize
from dwf_hub.matching.reference import plain_weight_matching
from dwf_hub.matching.weight_matching import objective
from dwf_hub.permutations import apply_permutation, identity_permutation
from dwf_hub.scoring import score_many


def test_canonical_zoo_is_functionally_identical(tiny_zoo):
    result = canonicalize(tiny_zoo, reference=0, progress=False)
    canon = result.zoo
    assert canon.info["canonical"]["reference"] == 0
    assert len(result.perms) == len(tiny_zoo)
    x = tiny_zoo.arch.example_input(64, torch.Generator().manual_seed(0))
    for i in range(len(tiny_zoo)):
        with torch.no_grad():
            a, b = tiny_zoo.model(i)(x), canon.model(i)(x)
        assert (a - b).abs().max() <= 1e-5
    # the reference does not move
    for k, v in tiny_zoo.state_dict(0).items():
        assert torch.equal(canon.state_dict(0)[k], v)
    task = tiny_zoo.recipe.task
    acc_raw = score_many(tiny_zoo.arch, tiny_zoo.to_matrix(), task.x_test, task.y_test)
    acc_can = score_many(canon.arch, canon.to_matrix(), task.x_test, task.y_test)
    assert torch.equal(acc_raw, acc_can)


def test_matching_improves_objective_and_distances(tiny_zoo):
    result = canonicalize(tiny_zoo, progress=False)
    spec = tiny_zoo.arch.permutation_spec()
    ref = tiny_zoo.state_dict(0)
    for i in range(1, len(tiny_zoo)):
        sd = tiny_zoo.state_dict(i)
        before = objective(spec, ref, apply_permutation(spec, identity_permutation(spec, sd), sd))
        assert result.objectives[i] >= before - 1e-9
    raw, can = tiny_zoo.to_matrix(), result.zoo.to_matrix()
    assert (can[1:] - can[0]).norm(dim=1).sum() <= (raw[1:] - raw[0]).norm(dim=1).sum() + 1e-6
    assert nearest_distances(can, can, True).median() <= nearest_distances(raw, raw, True).median() + 1e-6


def test_canonicalization_is_deterministic(tiny_zoo):
    a = canonicalize(tiny_zoo, progress=False).zoo.to_matrix()
    b = canonicalize(tiny_zoo, progress=False).zoo.to_matrix()
    assert torch.equal(a, b)


def _random_resnets(n: int):
    from dwf_hub.archs import get_arch

    arch = get_arch("resnet20", in_channels=1, num_classes=4, image_size=8)
    gen = torch.Generator().manual_seed(0)
    sds = []
    for _ in range(n):
        sd = arch.unflatten(torch.randn(arch.num_params, generator=gen) * 0.3)
        sds.append({k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in sd.items()})
    return arch, sds


def _random_mlps(n: int):
    from dwf_hub.archs import get_arch

    arch = get_arch("mlp", layer_sizes=[4, 16, 3])  # one permutation, which depends on no other
    gen = torch.Generator().manual_seed(0)
    return arch, [arch.unflatten(torch.randn(arch.num_params, generator=gen)) for _ in range(n)]


@pytest.mark.parametrize("make", [_random_resnets, _random_mlps])
def test_batched_matching_equals_plain_coordinate_descent(make):
    from dwf_hub.matching.weight_matching import weight_matching_many

    arch, sds = make(5)
    spec = arch.permutation_spec()
    results = weight_matching_many(spec, sds[0], sds[1:], seed=3, workers=1)
    for sd, result in zip(sds[1:], results):
        expected = plain_weight_matching(spec, sds[0], sd, seed=3)
        assert any(not torch.equal(v, torch.arange(len(v))) for v in expected.values())  # something to find
        for p in expected:
            assert torch.equal(result.perm[p], expected[p]), p
        aligned = apply_permutation(spec, result.perm, sd)
        for k in spec.axes_to_perm:
            assert torch.equal(result.aligned[k], aligned[k]), k
        assert abs(result.objective - objective(spec, sds[0], aligned)) <= 1e-4 * abs(result.objective)
    threaded = weight_matching_many(spec, sds[0], sds[1:], seed=3, workers=2)
    for a, b in zip(results, threaded):
        assert all(torch.equal(a.perm[p], b.perm[p]) for p in a.perm)


def test_matching_rejects_nan_naming_network_and_key():
    import pytest

    from dwf_hub.errors import WeightFormatError
    from dwf_hub.matching.weight_matching import weight_matching_many

    arch, sds = _random_resnets(3)
    key = next(iter(arch.permutation_spec().axes_to_perm))
    sds[2][key] = sds[2][key].clone().fill_(float("nan"))
    with pytest.raises(WeightFormatError, match=rf"network 1: key '{key}'"):
        weight_matching_many(arch.permutation_spec(), sds[0], sds[1:])


def test_canonical_zoo_saves_and_reloads_exactly(tiny_zoo, tmp_path):
    from dwf_hub.zoo.weight_zoo import WeightZoo

    canon = canonicalize(tiny_zoo, progress=False).zoo  # members are views into the matcher's stacked tensors
    canon.save(tmp_path / "canon")
    assert torch.equal(WeightZoo.load(tmp_path / "canon").to_matrix(), canon.to_matrix())


def test_one_rule_says_when_a_zoo_is_already_aligned():
    from dwf_hub.provenance import CanonicalizationRecord

    a = CanonicalizationRecord("weight_matching", reference=0, max_iter=100, seed=0)
    assert a.same_alignment(CanonicalizationRecord("weight_matching", 0, 5, seed=3))  # how well, not to what
    assert not a.same_alignment(CanonicalizationRecord("weight_matching", 1, 100))
    assert not a.same_alignment(CanonicalizationRecord("transfusion", 0, 100, permute_residual=False))
    assert not a.same_alignment(None) and a.aligned_to(0, True) and not a.aligned_to(0, False)
