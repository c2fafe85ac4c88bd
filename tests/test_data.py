"""Task data: the scikit-learn sets, and the Hub image loader on a local stand-in in the Hub's format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dwf_hub.errors import DWFError, UnknownNameError
from dwf_hub.zoo.data import load_task


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


def _rgb_standin(root, name, image_column, size, n_train=24, n_test=8, label_column="label"):
    """A folder in the layout of the Hub's ``uoft-cs/cifar10`` / ``tanganke/stl10``: RGB images + label."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(1)
    features = datasets.Features(
        {image_column: datasets.Image(), label_column: datasets.ClassLabel(num_classes=10)}
    )
    (root / name).mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
        ds = datasets.Dataset.from_dict(
            {image_column: images, label_column: [i % 10 for i in range(n)]}, features=features
        )
        ds.to_parquet(str(root / name / f"{split}-00000-of-00001.parquet"))
    return root / name


@pytest.mark.parametrize(
    "recipe", ["cifar10_smallcnn", "cifar10_resnet20", "cifar10_resnet18", "stl10_smallcnn", "stl10_resnet18"]
)
def test_image_recipes_load_standins_in_the_hub_format(tmp_path, recipe):
    from dwf_hub.zoo.recipes import load_recipe

    r = load_recipe(recipe)
    arch = r.arch_spec
    size = arch.image_size
    path = _rgb_standin(tmp_path, r.data["name"], "img" if r.data["name"] == "cifar10" else "image", size)
    task = load_task({**r.data, "path": str(path), "val_size": 4})
    assert task.x_train.shape == (20, 3, size, size) and task.x_test.shape == (8, 3, size, size)
    assert tuple(task.x_train.shape[1:]) == tuple(arch.example_input(1).shape[1:])
    # per-channel standardisation with training-split statistics
    torch.testing.assert_close(task.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(task.x_train.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert r.training.augment == "crop_flip"


@pytest.mark.parametrize(
    "name, image, label", [("cifar100", "img", "fine_label"), ("svhn", "image", "label")]
)
def test_transfer_target_loaders_read_standins(tmp_path, name, image, label):
    """The loaders of the paper's transfer targets (CIFAR-100's ``fine_label``, SVHN's cropped digits)."""
    path = _rgb_standin(tmp_path, name, image, 32, label_column=label)
    task = load_task({"name": name, "path": str(path), "val_size": 4})
    assert task.x_train.shape == (20, 3, 32, 32) and task.num_classes == 10 and len(task.labels) == 10


def test_image_loader_names_a_missing_column(tmp_path):
    path = _rgb_standin(tmp_path, "cifar10", "picture", 32)
    with pytest.raises(DWFError, match="has no 'img' column"):
        load_task({"name": "cifar10", "path": str(path), "val_size": 4})


def test_cifar_recipe_trains_end_to_end_on_a_standin(tmp_path):
    from dwf_hub.zoo.recipes import Recipe, load_recipe
    from dwf_hub.zoo.training import train_zoo

    base = load_recipe("cifar10_smallcnn").to_dict()
    path = _rgb_standin(tmp_path, "cifar10", "img", 32)
    recipe = Recipe.from_dict(
        {
            **base,
            "arch": {**base["arch"], "channels": [3, 4, 5], "hidden": 6},
            "data": {**base["data"], "path": str(path), "val_size": 4},
            "training": {**base["training"], "epochs": 2, "batch_size": 8, "chunk_size": 2},
        }
    )
    zoo = train_zoo(recipe, 3, tmp_path / "zoo", progress=False)
    assert len(zoo) == 3 and zoo.records[0]["test_accuracy"] >= 0
    again = train_zoo(recipe, 3, tmp_path / "zoo2", progress=False)
    assert torch.equal(zoo.to_matrix(), again.to_matrix())  # augmentation is seeded


def _yelp_standin(root, n_train=30, n_test=10):
    """A folder in the layout of the Hub's ``Yelp/yelp_review_full`` (text + label 0-4) and a WordPiece
    tokenizer built here from its words (no download)."""
    import datasets
    from transformers import BertTokenizerFast

    words = ["good", "great", "bad", "awful", "food", "service", "the", "was", "very", "not"]
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        texts = [" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(n)]
        ds = datasets.Dataset.from_dict({"label": [i % 5 for i in range(n)], "text": texts})
        (root / "yelp" / "yelp_review_full").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / "yelp" / "yelp_review_full" / f"{split}-00000-of-00001.parquet"))
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(root / "tokenizer")
    return root


def test_yelp_loader_on_a_standin_with_a_local_tokenizer(tmp_path):
    root = _yelp_standin(tmp_path)
    cfg = {"name": "yelp_review_full", "path": str(root / "yelp"), "tokenizer": str(root / "tokenizer"),
           "max_length": 16, "val_size": 5}  # fmt: skip
    task = load_task(cfg)
    assert task.is_regression and task.num_classes == 1
    assert task.x_train.shape == (25, 2, 16) and task.x_train.dtype == torch.int64
    assert task.x_test.shape == (10, 2, 16)
    assert int(task.x_train[0, 0, 0]) == 2  # [CLS]
    mask = task.x_train[:, 1]
    assert bool(((task.x_train[:, 0] == 0) == (mask == 0)).all())  # padding exactly where the mask is 0
    assert abs(float(task.y_train.mean())) < 1e-5  # standardised with the training split's statistics
    with pytest.raises(DWFError, match="cannot load tokenizer"):
        load_task({**cfg, "tokenizer": str(tmp_path / "nope")})


def test_synthetic_sentiment_is_learnable_and_fixed():
    a = load_task({"name": "synthetic_sentiment", "num_train": 50, "num_val": 10, "num_test": 10})
    b = load_task({"name": "synthetic_sentiment", "num_train": 50, "num_val": 10, "num_test": 10, "seed": 0})
    assert torch.equal(a.x_train, b.x_train) and a.is_regression
    ids, mask = a.x_train[:, 0], a.x_train[:, 1]
    count = ((ids >= 2) & (ids <= 6)).sum(1) - ((ids >= 7) & (ids <= 11)).sum(1)
    assert torch.corrcoef(torch.stack([count.float(), a.y_train]))[0, 1] > 0.6  # signal plus unit noise
    assert bool((mask[:, 0] == 1).all()) and bool((ids[:, 0] == 1).all())


def test_mnist1d_is_generated_offline_and_leaves_global_generators_alone():
    import random

    import numpy as np

    from dwf_hub.zoo.data import load_task

    load_task({"name": "mnist1d", "num_samples": 500})  # first imports may draw from `random`
    random.seed(5)
    np.random.seed(5)
    task = load_task({"name": "mnist1d", "num_samples": 1000, "val_fraction": 0.1})
    assert (random.random(), np.random.rand()) == (
        random.Random(5).random(),
        np.random.RandomState(5).rand(),
    )  # make_dataset's reseeding was undone
    x, y = task.split("train")
    assert (
        x.shape == (720, 40)
        and task.split("val")[0].shape == (80, 40)
        and task.split("test")[0].shape == (200, 40)
    )
    assert task.num_classes == 10 and set(y.tolist()) == set(range(10))
    assert (
        abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    )  # standardized on the training split


DIGIT_IMAGES = {"name": "digits", "standardize": "global", "shape": [1, 8, 8], "split_seed": 0}


def test_a_shifted_domain_keeps_labels_and_the_source_preprocessing():
    """``domain``: an identity warp changes nothing; a real one is seeded, keeps labels, renders at ``size``."""
    plain = load_task(DIGIT_IMAGES)
    same = load_task({**DIGIT_IMAGES, "domain": {}})
    assert torch.allclose(same.x_test, plain.x_test, atol=1e-5)
    warp = {"rotate": 25, "translate": 1.0, "scale": 0.1, "noise": 0.3, "size": [16, 16]}
    a, b = (
        load_task({**DIGIT_IMAGES, "domain": warp}),
        load_task({**DIGIT_IMAGES, "domain": {**warp, "seed": 0}}),
    )
    c = load_task({**DIGIT_IMAGES, "domain": {**warp, "seed": 1}})
    assert a.x_test.shape == (len(plain.x_test), 1, 16, 16) and torch.equal(a.y_test, plain.y_test)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert (a.input_mean, a.input_std) == (plain.input_mean, plain.input_std)
    blank = (0 - plain.input_mean[0]) / plain.input_std[
        0
    ]  # outside the warped digit: a blank pixel, plus noise
    assert abs(float(a.x_test[:, :, 0, 0].mean()) - blank) < 0.1


@pytest.mark.parametrize(
    "config, match",
    [({"name": "digits", "domain": {"rotate": 5}}, r"domain: needs images \[N, C, H, W\], got samples of shape \(64,\)"),
     ({**DIGIT_IMAGES, "standardize": "feature", "domain": {"size": [16, 16]}}, "size cannot change images standardised per feature"),
     ({**DIGIT_IMAGES, "domain": {"spin": 5}}, "bad domain options"),
     ({**DIGIT_IMAGES, "domain": 5}, "domain must be a table")],
)  # fmt: skip
def test_bad_domains_are_one_line(config, match):
    with pytest.raises(DWFError, match=match):
        load_task(config)
