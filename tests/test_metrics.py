from __future__ import annotations

import pytest
import torch

from dwf_hub.errors import DWFError
from dwf_hub.metrics import nearest_distances, novelty_ratio


def test_nearest_distances_hand_built():
    train = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    torch.testing.assert_close(
        nearest_distances(train, train, exclude_self=True), torch.tensor([3.0, 3.0, 4.0])
    )
    torch.testing.assert_close(nearest_distances(torch.tensor([[1.0, 0.0]]), train), torch.tensor([1.0]))
    with pytest.raises(DWFError):
        nearest_distances(train[:1], train[:1], exclude_self=True)


def test_novelty_ratio_known_answers():
    train = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # median nearest-other distance: 3
    assert novelty_ratio(train.clone(), train) == 0.0  # exact copies
    gen = torch.tensor([[1.5, 0.0], [0.0, 5.5], [9.0, 0.0]])  # nearest distances 1.5, 1.5, 6 -> median 1.5
    assert novelty_ratio(gen, train) == pytest.approx(0.5)
