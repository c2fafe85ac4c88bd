"""Regenerate ``iris.safetensors``: what the tiny Iris recipe gives at seed 0 (zoo, canonical zoo, flow
losses, generated weights). ``tests/test_golden.py`` checks that refactors leave these unchanged; rerun
this only for a change that is meant to alter them, and say so in the commit."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import TINY_RECIPE

GOLDEN = Path(__file__).with_name("iris.safetensors")


def compute(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors the golden file holds, computed from scratch in ``folder``."""
    from dwf_hub.flow.fitting import fit_pipeline
    from dwf_hub.zoo.recipes import Recipe
    from dwf_hub.zoo.training import train_zoo

    zoo = train_zoo(Recipe.from_dict(TINY_RECIPE), 8, folder / "zoo", seed=0, progress=False)
    fit = fit_pipeline(zoo, progress=False)
    fit.pipeline.save_pretrained(folder / "pipe")
    generated = fit.pipeline.generate_zoo(4, seed=0, quality_check=False)  # the raw flow
    return {
        "zoo": zoo.to_matrix(),
        "canonical": fit.training_zoo.to_matrix(),
        "losses": torch.tensor(fit.losses),
        "generated": generated.to_matrix(),
    }


if __name__ == "__main__":
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        save_file(compute(Path(tmp)), str(GOLDEN))
    print(f"wrote {GOLDEN}")
