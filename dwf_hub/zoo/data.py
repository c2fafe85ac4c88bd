"""Task data for zoo training and evaluation: fixed train / validation / test splits as tensors.

Iris and the 8x8 digits come from scikit-learn; MNIST, Fashion-MNIST, CIFAR-10, STL-10 and Yelp reviews
load through ``datasets.load_dataset`` (a Hub id or a local folder in the same format). The split seed is
part of the recipe, so every member of a zoo and every evaluation sees the same split.

Classification targets are int64 labels; regression targets (text tasks) are float32, standardised with
the training split's statistics. Text inputs are ``[N, 2, seq_len]`` int64: token ids and attention mask.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DWFError
from ..hub.repos import HUB_DATASETS
from ..registry import Registry


@dataclass(frozen=True)
class TaskData:
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    labels: tuple[str, ...] | None = None
    """Class names, index by index (classification)."""
    input_mean: tuple[float, ...] | None = None
    """The standardisation applied to raw inputs, one value (``global``), one per channel (``channel``) or one
    per feature (``feature``); an image processor or ``export.preprocess`` rebuilt from it prepares new inputs
    the way the networks were trained on."""
    input_std: tuple[float, ...] | None = None
    pixel_max: float = 1.0
    """The raw input value of a white pixel (8x8 digits: 16; images read from the Hub: 1 after / 255)."""
    tokenizer: str | None = None
    """Text tasks: the tokenizer (Hub id or folder) the inputs were made with."""

    @property
    def is_regression(self) -> bool:
        return self.y_train.is_floating_point()

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        if name not in ("train", "val", "test"):
            raise DWFError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, val_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_tr, x_val, y_tr, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction, random_state=seed, stratify=y_rest
    )
    return x_tr, y_tr, x_val, y_val, x_test, y_test


def _to_task(
    x_tr, y_tr, x_val, y_val, x_te, y_te, standardize: str, labels=None, pixel_max: float = 1.0
) -> TaskData:
    """Standardise with statistics of the training split only (``channel``: per channel of ``[N, C, H, W]``)."""
    x_tr, x_val, x_te = (np.asarray(a, dtype=np.float32) for a in (x_tr, x_val, x_te))
    if standardize == "feature":
        mean, std = x_tr.mean(0), x_tr.std(0) + 1e-8
    elif standardize == "global":
        mean, std = x_tr.mean(), x_tr.std() + 1e-8
    elif standardize == "channel":
        if x_tr.ndim != 4:
            raise DWFError(f"standardize='channel' needs images [N, C, H, W], got shape {x_tr.shape}")
        mean, std = x_tr.mean((0, 2, 3), keepdims=True)[0], x_tr.std((0, 2, 3), keepdims=True)[0] + 1e-8
    elif standardize == "none":
        mean, std = 0.0, 1.0
    else:
        raise DWFError(f"standardize must be feature, global, channel or none, got {standardize!r}")
    t = lambda a: torch.from_numpy(((a - mean) / std).astype(np.float32))  # noqa: E731
    lab = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))  # noqa: E731
    num_classes = int(max(np.max(y_tr), np.max(y_val), np.max(y_te))) + 1
    stats = (
        tuple(float(v) for v in np.ravel(mean)) if standardize != "none" else None,
        tuple(float(v) for v in np.ravel(std)) if standardize != "none" else None,
    )  # one value (global), one per channel, or one per feature: what raw inputs need before a network sees them
    labels = tuple(str(v) for v in labels) if labels is not None and len(labels) == num_classes else None
    return TaskData(
        t(x_tr), lab(y_tr), t(x_val), lab(y_val), t(x_te), lab(y_te), num_classes, labels, *stats, pixel_max
    )


def _sklearn(loader: str) -> Callable[..., TaskData]:
    def load(
        test_fraction: float = 0.2,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        standardize: str = "feature",
        shape: list[int] | None = None,
    ):
        """``shape`` reshapes each sample, e.g. ``[1, 8, 8]`` turns the digits into images."""
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader)()
        x, y, labels = bunch.data, bunch.target, [str(n) for n in bunch.target_names]
        parts = _split(x, y, test_fraction, val_fraction, split_seed)
        task = _to_task(
            *parts, standardize, labels, pixel_max=float(x.max()) if loader == "load_digits" else 1.0
        )
        return task if shape is None else _reshape(task, shape)

    return load


def _image_arrays(ds, split: str, path: str, image_column: str, label_column: str, flatten: bool):
    """``(images [N, C, H, W] or [N, C*H*W] scaled to [0, 1], labels [N])`` of one split."""
    if split not in ds:
        raise DWFError(f"dataset {path!r} has no {split!r} split (has {list(ds)})")
    rows = ds[split]
    for column in (image_column, label_column):
        if column not in rows.column_names:
            raise DWFError(f"dataset {path!r} split {split!r} has no {column!r} column ({rows.column_names})")
    x = np.stack([np.asarray(img, dtype=np.float32) for img in rows[image_column]]) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # [N, C, H, W]
    return (x.reshape(len(x), -1) if flatten else x), np.asarray(rows[label_column])


def _hf_images(
    default_path: str,
    image_column: str = "image",
    flatten: bool = True,
    standardize: str = "global",
    label_column: str = "label",
    config_name: str | None = None,
) -> Callable[..., TaskData]:
    """Image classification datasets on the Hub (``image_column`` + ``label_column``, train/test splits).

    Samples are ``[C * H * W]`` (``flatten``, for MLPs) or ``[C, H, W]`` images scaled to [0, 1] and
    then standardised; the validation set is ``val_size`` images held out of the training split.
    """
    default_standardize = standardize

    def load(
        path: str = default_path,
        val_size: int = 5000,
        split_seed: int = 0,
        standardize: str = default_standardize,
        max_train: int | None = None,
        max_test: int | None = None,
        flatten: bool = flatten,
    ) -> TaskData:
        import datasets

        try:
            local = Path(path).is_dir()  # a local copy in the Hub's layout has no named configs
            ds = (
                datasets.load_dataset(path, config_name)
                if config_name and not local
                else datasets.load_dataset(path)
            )
        except Exception as e:
            raise DWFError(f"could not load dataset {path!r} ({type(e).__name__}: {e})") from e

        def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
            return _image_arrays(ds, split, path, image_column, label_column, flatten)

        x, y = arrays("train")
        x_te, y_te = arrays("test")
        if not 0 < val_size < len(x):
            raise DWFError(f"dataset {path!r}: val_size={val_size} must be between 1 and {len(x) - 1}")
        order = np.random.default_rng(split_seed).permutation(len(x))
        val_idx, tr_idx = order[:val_size], order[val_size:]
        if max_train is not None:
            tr_idx = tr_idx[:max_train]
        if max_test is not None:
            x_te, y_te = x_te[:max_test], y_te[:max_test]
        feature = ds["train"].features.get(label_column)
        labels = getattr(feature, "names", None)
        return _to_task(x[tr_idx], y[tr_idx], x[val_idx], y[val_idx], x_te, y_te, standardize, labels)

    return load


def _regression_task(x_tr, y_tr, x_val, y_val, x_te, y_te) -> TaskData:
    """Token tensors and float targets standardised with the training split's mean and std."""
    y_tr, y_val, y_te = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (y_tr, y_val, y_te))
    mean, std = y_tr.mean(), y_tr.std() + 1e-8
    return TaskData(x_tr, (y_tr - mean) / std, x_val, (y_val - mean) / std, x_te, (y_te - mean) / std, 1)


def load_tokenizer(name: str):
    """``AutoTokenizer`` for a Hub id or a local folder, with a clear error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise DWFError(f"cannot load tokenizer {name!r} ({type(e).__name__}: {e})") from e


def tokenize(texts: list[str], tokenizer, max_length: int) -> Tensor:
    """``[N, 2, max_length]`` int64 token ids and attention masks (padded and truncated)."""
    enc = tokenizer(texts, max_length=max_length, padding="max_length", truncation=True, return_tensors="pt")
    return torch.stack([enc["input_ids"], enc["attention_mask"]], 1).long()


def _hf_text_regression(default_path: str, text_column: str = "text", label_column: str = "label"):
    """Text datasets on the Hub with a numeric ``label_column`` treated as a regression target
    (Yelp review-full: stars 1–5 as labels 0–4). The validation set is held out of the training split."""

    def load(
        path: str = default_path,
        tokenizer: str = "google-bert/bert-base-uncased",
        max_length: int = 128,
        val_size: int = 5000,
        split_seed: int = 0,
        max_train: int | None = None,
        max_test: int | None = None,
    ) -> TaskData:
        import datasets

        tok = load_tokenizer(tokenizer)
        try:
            ds = datasets.load_dataset(path)
        except Exception as e:
            raise DWFError(f"could not load dataset {path!r} ({type(e).__name__}: {e})") from e
        for split in ("train", "test"):
            if split not in ds:
                raise DWFError(f"dataset {path!r} has no {split!r} split (has {list(ds)})")
            for column in (text_column, label_column):
                if column not in ds[split].column_names:
                    raise DWFError(f"dataset {path!r} split {split!r} has no {column!r} column")
        train, test = ds["train"], ds["test"]
        if not 0 < val_size < len(train):
            raise DWFError(f"dataset {path!r}: val_size={val_size} must be between 1 and {len(train) - 1}")
        order = np.random.default_rng(split_seed).permutation(len(train))
        val_idx, tr_idx = order[:val_size], order[val_size:][:max_train]
        te_idx = np.arange(len(test))[:max_test]

        def part(rows, idx):
            rows = rows.select(idx)
            return tokenize(list(rows[text_column]), tok, max_length), rows[label_column]

        return dataclasses.replace(
            _regression_task(*part(train, tr_idx), *part(train, val_idx), *part(test, te_idx)),
            tokenizer=tokenizer,
        )

    return load


def synthetic_sentiment(
    num_train: int = 2000,
    num_val: int = 500,
    num_test: int = 500,
    seq_len: int = 16,
    vocab_size: int = 40,
    seed: int = 0,
) -> TaskData:
    """A text regression task made here (no download): sentences of random words; the target is the
    number of "positive" words minus the number of "negative" words, plus Gaussian noise (std 1, so no
    network ranks the samples perfectly). Token 0 is padding, 1 is [CLS], 2–6 positive, 7–11 negative,
    the rest neutral."""
    if vocab_size < 13 or seq_len < 3:
        raise DWFError("synthetic_sentiment needs vocab_size >= 13 and seq_len >= 3")
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[Tensor, Tensor]:
        lengths = torch.randint(2, seq_len + 1, (n, 1), generator=g)
        mask = (torch.arange(seq_len) < lengths).long()
        ids = torch.randint(2, vocab_size, (n, seq_len), generator=g) * mask
        ids[:, 0] = 1
        score = ((ids >= 2) & (ids <= 6)).sum(1) - ((ids >= 7) & (ids <= 11)).sum(1)
        return torch.stack([ids, mask], 1), score.float() + torch.randn(n, generator=g)

    return _regression_task(*make(num_train), *make(num_val), *make(num_test))


def _reshape(task: TaskData, shape: list[int]) -> TaskData:
    if math.prod(shape) != task.x_train.shape[1]:
        raise DWFError(f"cannot reshape samples of {task.x_train.shape[1]} features to {shape}")
    return dataclasses.replace(
        task, **{f"x_{s}": getattr(task, f"x_{s}").reshape(-1, *shape) for s in ("train", "val", "test")}
    )


def mnist1d(
    num_samples: int = 5000, val_fraction: float = 0.1, split_seed: int = 0, seed: int = 42,
    standardize: str = "global",
) -> TaskData:  # fmt: skip
    """MNIST-1D (Greydanus 2020): ``num_samples`` signals of 40 values drawn from 10 digit templates, generated by
    the ``mnist1d`` package from ``seed`` (nothing downloaded or unpickled); its own 80/20 train/test split, the
    validation set (``val_fraction``) held out of the training part."""
    import random

    import numpy as np
    from sklearn.model_selection import train_test_split

    states = random.getstate(), np.random.get_state()
    try:  # make_dataset (and importing its plotting helpers) seeds the global generators: ours are left as they were
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.seed = num_samples, seed
        d = make_dataset(args)
    except ImportError as e:
        raise DWFError("dataset 'mnist1d' needs the mnist1d package (pip install mnist1d)") from e
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    x_tr, x_val, y_tr, y_val = train_test_split(
        d["x"], d["y"], test_size=val_fraction, random_state=split_seed, stratify=d["y"]
    )
    return _to_task(
        x_tr, y_tr, x_val, y_val, d["x_test"], d["y_test"], standardize, [str(i) for i in range(10)]
    )


LOADERS: Registry[Callable[..., TaskData]] = Registry(
    "dataset",
    {
        "iris": _sklearn("load_iris"),
        "digits": _sklearn("load_digits"),
        "mnist": _hf_images(HUB_DATASETS["mnist"]),
        "fashion_mnist": _hf_images(HUB_DATASETS["fashion_mnist"]),
        "cifar10": _hf_images(
            HUB_DATASETS["cifar10"], image_column="img", flatten=False, standardize="channel"
        ),
        "stl10": _hf_images(HUB_DATASETS["stl10"], flatten=False, standardize="channel"),
        "cifar100": _hf_images(HUB_DATASETS["cifar100"], "img", False, "channel", label_column="fine_label"),
        "svhn": _hf_images(
            HUB_DATASETS["svhn"], flatten=False, standardize="channel", config_name="cropped_digits"
        ),
        "yelp_review_full": _hf_text_regression(HUB_DATASETS["yelp_review_full"]),
        "synthetic_sentiment": synthetic_sentiment,
        "mnist1d": mnist1d,
    },
)


def select_classes(task: TaskData, classes: list[int]) -> TaskData:
    """Only the samples of ``classes``, relabelled ``0 .. len(classes) - 1`` in that order (data config key
    ``classes``: e.g. digits 0–4 for a source zoo, 5–9 for a transfer target)."""
    if task.is_regression:
        raise DWFError("classes: a regression task has no classes to select")
    bad = [c for c in classes if not isinstance(c, int) or not 0 <= c < task.num_classes]
    if bad or len(set(classes)) != len(classes) or len(classes) < 2:
        raise DWFError(f"classes={classes}: need 2 or more distinct labels in [0, {task.num_classes})")
    relabel = torch.full((task.num_classes,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    parts = {}
    for split in ("train", "val", "test"):
        x, y = task.split(split)
        keep = relabel[y] >= 0
        parts[f"x_{split}"], parts[f"y_{split}"] = x[keep], relabel[y[keep]]
    labels = tuple(task.labels[c] for c in classes) if task.labels else None
    return dataclasses.replace(task, **parts, num_classes=len(classes), labels=labels)


def shift_domain(
    task: TaskData, rotate: float = 0.0, translate: float = 0.0, scale: float = 0.0, noise: float = 0.0,
    size: list[int] | None = None, seed: int = 0,
) -> TaskData:  # fmt: skip
    """Another domain with the same labels (data config key ``domain = {...}``): every image ``[N, C, H, W]``
    of every split rotated by up to ``rotate`` degrees, shifted by up to ``translate`` pixels, rescaled by a
    factor within ``1 ± scale`` (each drawn per image, seeded), rendered at ``size`` ``[H', W']`` (default: as
    it is), and given Gaussian noise of std ``noise`` in standardised units. The transform acts on raw pixels
    (blank outside the image) and the task's own standardisation is applied again, so a network trained on the
    original domain sees the new one through its own preprocessing."""
    import torch.nn.functional as F

    x = task.x_train
    if x.dim() != 4:
        raise DWFError(
            f"domain: needs images [N, C, H, W], got samples of shape {tuple(x.shape[1:])} (set shape)"
        )
    mean, std = (torch.tensor(v if v is not None else (0.0,)) for v in (task.input_mean, task.input_std))
    out_size = tuple(size) if size is not None else tuple(x.shape[2:])
    if len(out_size) != 2 or min(out_size) < 1:
        raise DWFError(f"domain: size={size} must be [height, width]")
    per_pixel = mean.numel() not in (1, x.shape[1])
    if per_pixel and out_size != tuple(x.shape[2:]):
        raise DWFError(
            "domain: size cannot change images standardised per feature (use standardize = global)"
        )
    mean, std = (t.reshape(x.shape[1:]) if per_pixel else t.reshape(-1, 1, 1) for t in (mean, std))
    parts = {}
    for i, split in enumerate(("train", "val", "test")):
        xs = getattr(task, f"x_{split}")
        gen = torch.Generator().manual_seed(seed * 3 + i)
        u = 2 * torch.rand(4, len(xs), generator=gen) - 1  # [4, N] in [-1, 1]: angle, scale, shift x, y
        angle, factor = u[0] * math.radians(rotate), 1 + u[1] * scale
        shift = torch.stack([u[2] * 2 * translate / xs.shape[3], u[3] * 2 * translate / xs.shape[2]], 1)
        cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor  # sampling grid: the inverse map
        theta = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # [N, 2, 2]
        theta = torch.cat([theta, shift[:, :, None]], 2)
        grid = F.affine_grid(theta, [len(xs), xs.shape[1], *out_size], align_corners=False)
        raw = F.grid_sample(xs * std + mean, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        parts[f"x_{split}"] = (raw - mean) / std + noise * torch.randn(raw.shape, generator=gen)
    return dataclasses.replace(task, **parts)


def load_task(data_config: dict[str, Any]) -> TaskData:
    """``{"name": loader, **loader kwargs}`` -> TaskData (cached per config; ``classes`` selects classes and
    ``domain`` shifts the images: ``select_classes``, ``shift_domain``)."""
    return _load_cached(json.dumps(data_config, sort_keys=True))


@lru_cache(maxsize=8)
def _load_cached(key: str) -> TaskData:
    cfg = json.loads(key)
    name = cfg.pop("name", None)
    classes, domain = cfg.pop("classes", None), cfg.pop("domain", None)
    loader = LOADERS[name]  # an unknown name: one line listing the known ones
    try:
        task = loader(**cfg)
    except TypeError as e:
        raise DWFError(f"dataset {name!r}: bad options {cfg!r} ({e})") from e
    task = task if classes is None else select_classes(task, classes)
    if domain is None:
        return task
    if not isinstance(domain, dict):
        raise DWFError(
            f"dataset {name!r}: domain must be a table of rotate, translate, scale, noise, size, seed"
        )
    try:
        return shift_domain(task, **domain)
    except TypeError as e:
        raise DWFError(f"dataset {name!r}: bad domain options {domain!r} ({e})") from e
