"""Shared fixtures: a tiny recipe (Iris, MLP [4, 6, 5, 3]) and a tiny trained zoo."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TINY_RECIPE = {
    "name": "tiny_iris",
    "description": "test recipe",
    "arch": {"name": "mlp", "layer_sizes": [4, 6, 5, 3]},
    "data": {"name": "iris", "test_fraction": 0.2, "val_fraction": 0.2, "split_seed": 0},
    "training": {
        "optimizer": "adam",
        "lr": 0.01,
        "batch_size": 16,
        "epochs": 15,
        "init": "kaiming",
        "start": "independent",
    },
    "flow": {
        "hidden_dim": 32,
        "time_embed_dim": 4,
        "dropout": 0.0,
        "iterations": 60,
        "batch_size": 8,
        "num_inference_steps": 10,
        "checkpoint_every": 20,
    },
}


# TINY_RECIPE as a recipe file (what subprocess tests hand to the CLI); two members per vectorized chunk.
TINY_RECIPE_TOML = """
name = "tiny_iris"
[arch]
name = "mlp"
layer_sizes = [4, 6, 5, 3]
[data]
name = "iris"
test_fraction = 0.2
val_fraction = 0.2
split_seed = 0
[training]
optimizer = "adam"
lr = 0.01
batch_size = 16
epochs = 5
init = "kaiming"
start = "independent"
chunk_size = 2
[flow]
hidden_dim = 16
time_embed_dim = 4
iterations = 40
batch_size = 4
checkpoint_every = 20
"""


@pytest.fixture(scope="session")
def tiny_recipe():
    from dwf_hub.zoo.recipes import Recipe

    return Recipe.from_dict(TINY_RECIPE)


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory, tiny_recipe):
    from dwf_hub.zoo.training import train_zoo

    return train_zoo(tiny_recipe, 8, tmp_path_factory.mktemp("zoo"), seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_fit(tiny_zoo):
    from dwf_hub.flow.fitting import fit_pipeline

    return fit_pipeline(tiny_zoo, progress=False)


def checksums(folder: Path) -> dict[str, str]:
    """Every regular file below ``folder`` (symlinks not followed) with its SHA-256: what must not change."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def refused(argv: list[str], capsys, match: str) -> str:
    """``dwf-hub argv`` exits 2 with one error line containing ``match`` (never a traceback)."""
    from dwf_hub.cli import main

    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert match in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def zoo_dir(tiny_zoo, tmp_path) -> Path:
    """The tiny zoo saved in a folder of its own."""
    return tiny_zoo.save(tmp_path / "zoo")


@pytest.fixture
def pipe_dir(tiny_fit, tmp_path) -> Path:
    """The tiny fit's pipeline saved in a folder of its own."""
    tiny_fit.pipeline.save_pretrained(tmp_path / "pipe")
    return tmp_path / "pipe"
