"""Task data: the scikit-learn sets, and the Hub image loader on a local stand-in in the Hub's format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dwf_hub.data import load_task
from dwf_hub.errors import DWFError, UnknownNameError


def test_iris_split_is_fixed_and_disjoint():
    a = load_task({"name": "iris", "test_fraction": 0.2, "val_fraction": 0.2, "split_seed": 0})
    assert (len(a.x_train), len(a.x_val), len(a.x_test)) == (96, 24, 30)
    assert a.num_classes == 3
    rows = torch.cat([a.x_train, a.x_val, a.x_test])
    assert len(torch.unique(rows, dim=0)) >= 145  # iris has a few duplicate rows
    torch.testing.assert_close(a.x_train.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    b = load_task({"name": "iris", "test_fraction": 0.2, "val_fraction": 0.2, "split_seed": 1})
    assert not torch.equal(a.y_test, b.y_test)


def test_digits():
    d = load_task({"name": "digits", "test_fraction": 0.2, "val_fraction": 0.1, "standardize": "global"})
    assert d.x_train.shape[1] == 64 and d.num_classes == 10
    assert len(d.x_test) == 360


def test_unknown_dataset_and_option():
    with pytest.raises(UnknownNameError, match="unknown dataset 'cifar1000'"):
        load_task({"name": "cifar1000"})
    with pytest.raises(DWFError, match="bad options"):
        load_task({"name": "iris", "colour": "blue"})


def _mnist_standin(root, n_train=40, n_test=10):
    """A folder in the layout of the Hub's ``ylecun/mnist``: parquet shards with image + label."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    for split, n in (("train", n_train), ("test", n_test)):
        images = [Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)) for _ in range(n)]
        labels = [int(i % 10) for i in range(n)]
        ds = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
        (root / "mnist").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / "mnist" / f"{split}-00000-of-00001.parquet"))
    return root


def test_hub_image_loader_on_local_standin(tmp_path):
    root = _mnist_standin(tmp_path)
    task = load_task({"name": "mnist", "path": str(root), "val_size": 8})
    assert task.x_train.shape == (32, 784) and task.x_val.shape == (8, 784) and task.x_test.shape == (10, 784)
    assert task.num_classes == 10
    fashion = load_task({"name": "fashion_mnist", "path": str(root), "val_size": 8, "max_train": 16})
    assert fashion.x_train.shape == (16, 784)


def test_hub_loader_failure_is_clear(tmp_path):
    with pytest.raises(DWFError, match="could not load dataset"):
        load_task({"name": "mnist", "path": str(tmp_path / "nothing-here")})
