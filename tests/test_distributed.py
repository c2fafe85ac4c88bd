"""Two CPU processes (accelerate launch --num_processes 2 --cpu, gloo): zoo training shards whole chunks across
ranks and gives the one-process bytes; fitting under DDP writes one pipeline."""

from __future__ import annotations

import subprocess
import sys

import torch
from conftest import TINY_RECIPE_TOML

from dwf_hub.zoo import WeightZoo, checkpoint_name

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dwf_hub.cli", "-q"]  # fmt: skip


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_sharded_zoo_training_and_ddp_fit(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE_TOML)
    train = ["zoo", "train", str(recipe), "--num-models", "5", "--seed", "3"]
    _run([sys.executable, "-m", "dwf_hub.cli", "-q", *train, "--out", str(tmp_path / "one")])
    _run([*LAUNCH, *train, "--out", str(tmp_path / "two")])
    for i in range(5):  # no duplicates, no gaps, the same bytes
        one, two = (tmp_path / z / checkpoint_name(i) for z in ("one", "two"))
        assert one.read_bytes() == two.read_bytes(), i
    assert len(WeightZoo.load(tmp_path / "two")) == 5
    assert not list(tmp_path.glob(".two.*.staging*"))  # assembled once, by the main process

    canon = ["canonicalize", str(tmp_path / "one")]
    _run([sys.executable, "-m", "dwf_hub.cli", "-q", *canon, "--out", str(tmp_path / "c1")])
    _run([*LAUNCH, *canon, "--out", str(tmp_path / "c2")])
    assert torch.equal(
        WeightZoo.load(tmp_path / "c1").to_matrix(), WeightZoo.load(tmp_path / "c2").to_matrix()
    )
    assert (tmp_path / "c1" / "permutations.safetensors").read_bytes() == (
        tmp_path / "c2" / "permutations.safetensors"
    ).read_bytes()

    _run([*LAUNCH, "fit", str(tmp_path / "two"), "--out", str(tmp_path / "flow")])
    from dwf_hub.pipeline import DeepWeightFlowPipeline

    pipe = DeepWeightFlowPipeline.from_pretrained(tmp_path / "flow")
    out = pipe(num_networks=3, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.weights.shape == (3, pipe.arch.num_params) and torch.isfinite(out.weights).all()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".flow")) in ([], [".flow.lock"])
