from __future__ import annotations

import pytest
import torch

from dwf_hub.errors import DWFError
from dwf_hub.evaluation.metrics import canonical_novelty_ratio, nearest_distances


def test_nearest_distances_hand_built():
    train = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    torch.testing.assert_close(
        nearest_distances(train, train, exclude_self=True), torch.tensor([3.0, 3.0, 4.0])
    )
    torch.testing.assert_close(nearest_distances(torch.tensor([[1.0, 0.0]]), train), torch.tensor([1.0]))
    with pytest.raises(DWFError):
        nearest_distances(train[:1], train[:1], exclude_self=True)


def test_canonical_novelty_ratio_known_answers():
    train = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # median nearest-other distance: 3
    assert canonical_novelty_ratio(train.clone(), train) == 0.0  # exact copies
    gen = torch.tensor([[1.5, 0.0], [0.0, 5.5], [9.0, 0.0]])  # nearest distances 1.5, 1.5, 6 -> median 1.5
    assert canonical_novelty_ratio(gen, train) == pytest.approx(0.5)


def test_the_exported_novelty_ratio_sees_through_permutations():
    import dwf_hub
    from dwf_hub.archs import arch_from_config
    from dwf_hub.permutations import apply_permutation

    arch = arch_from_config({"name": "mlp", "layer_sizes": [4, 8, 3]})
    train = torch.randn(4, arch.num_params, generator=torch.Generator().manual_seed(0))
    perm = {"P_0": torch.randperm(8, generator=torch.Generator().manual_seed(1))}
    shuffled = arch.flatten(apply_permutation(arch.permutation_spec(), perm, arch.unflatten(train[0])))[None]
    assert canonical_novelty_ratio(shuffled, train) > 0.5  # the same network, hidden units reordered
    assert dwf_hub.novelty_ratio(arch, shuffled, train) == pytest.approx(0.0, abs=1e-6)
