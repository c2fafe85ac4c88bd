"""Two CPU processes (torchrun --nproc_per_node 2, gloo): zoo training shards whole chunks across
ranks and gives the one-process bytes; fitting under DDP writes one pipeline."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import TINY_RECIPE_TOML

from dwf_hub.zoo.weight_zoo import WeightZoo, checkpoint_name

# torchrun: `accelerate launch --cpu` starts one process whatever --num_processes says (its simple launcher)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
LAUNCH = [*TORCHRUN, "-m", "dwf_hub.cli", "-q"]


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_the_launch_forms_two_ranks(tmp_path):
    """The launcher the tests use really starts two ranks that see each other (gloo on CPUs)."""
    script = tmp_path / "who.py"
    script.write_text(
        "import sys\nfrom dwf_hub.distributed import process_state\ns = process_state()\n"
        "open(f'{sys.argv[1]}/rank{s.process_index}of{s.num_processes}', 'w').close()\n"
    )
    _run([*TORCHRUN, str(script), str(tmp_path)])
    assert sorted(p.name for p in tmp_path.glob("rank*")) == ["rank0of2", "rank1of2"]


@pytest.mark.slow
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


@pytest.mark.slow
def test_two_rank_dual_pca_agrees_with_one_rank(tmp_path):
    """Each rank reads its column slice; the all-reduced Gram matrix gives the one-process basis."""
    from scipy.linalg import subspace_angles

    from dwf_hub.pipeline import DeepWeightFlowPipeline

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE_TOML)
    _run([sys.executable, "-m", "dwf_hub.cli", "-q", "zoo", "train", str(recipe), "--num-models", "8",
          "--out", str(tmp_path / "zoo")])  # fmt: skip
    _run([sys.executable, "-m", "dwf_hub.cli", "-q", "canonicalize", str(tmp_path / "zoo"), "--out",
          str(tmp_path / "canon")])  # fmt: skip
    fit = ["fit", str(tmp_path / "canon"), "--pca-solver", "dual", "--normalization", "whiten",
           "--n-components", "5", "--iterations", "5"]  # fmt: skip
    _run([sys.executable, "-m", "dwf_hub.cli", "-q", *fit, "--out", str(tmp_path / "one")])
    _run([*LAUNCH, *fit, "--out", str(tmp_path / "two")])
    one, two = (DeepWeightFlowPipeline.from_pretrained(tmp_path / n).codec for n in ("one", "two"))
    assert torch.allclose(one.mean, two.mean, atol=1e-6)
    angles = subspace_angles(one.components.T.double().numpy(), two.components.T.double().numpy())
    assert angles.max() < 1e-3, angles
    zoo = WeightZoo.load(tmp_path / "canon").to_matrix()
    errors = [float((zoo - c.decode(c.encode(zoo))).norm()) for c in (one, two)]
    assert abs(errors[0] - errors[1]) < 1e-4 * errors[0], errors
    assert errors[0] < 0.9 * float((zoo - zoo.mean(0)).norm())  # 5 of 7 components hold most of it
