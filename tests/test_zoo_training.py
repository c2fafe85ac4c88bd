from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from dwf_hub.configs import TrainingConfig
from dwf_hub.errors import DWFError, UnknownNameError
from dwf_hub.zoo.data import TaskData, load_task
from dwf_hub.zoo.recipes import Recipe, available_recipes, load_recipe
from dwf_hub.zoo.training import init_member, train_members, train_zoo
from dwf_hub.zoo.weight_zoo import WeightZoo, checkpoint_name


def test_shipped_recipes_load():
    names = available_recipes()
    assert {"iris_mlp", "iris_mlp_mixed_init", "digits_mlp", "mnist_mlp", "fashion_mnist_mlp"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name
        recipe.flow_config()
    iris = load_recipe("iris_mlp")
    assert iris.arch_spec.num_params == 131
    paper = iris.flow_config("paper")  # the authors' Table 14 values
    paper = paper.flat()
    assert (paper["normalization"], paper["iterations"], paper["batch_size"], paper["lr"]) == (
        "none",
        30000,
        8,
        5e-4,
    )
    assert (paper["time_embed_dim"], paper["dropout"], paper["source_std"], paper["num_inference_steps"]) == (
        4,
        0.4,
        0.01,
        99,
    )
    assert iris.flow_config("paper", iterations=7).training.iterations == 7
    with pytest.raises(UnknownNameError, match="flow preset"):
        iris.flow_config("fast")
    assert (iris.training.optimizer, iris.training.lr, iris.training.batch_size, iris.training.epochs) == (
        "adam",
        1e-3,
        16,
        300,  # trained to convergence (issue: the 100-epoch zoo stopped at 92 % training accuracy)
    )


def test_recipe_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown recipe 'nope'"):
        load_recipe("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\n[arch]\nname = "mlp"\nlayer_sizes = [4, 3]\n[data]\nname = "iris"\n[training]\nlrr = 1\n'
    )
    with pytest.raises(DWFError, match=r"unknown key\(s\) \['lrr'\]"):
        load_recipe(bad)
    with pytest.raises(DWFError, match="init='bogus'"):
        TrainingConfig(init="bogus")
    with pytest.raises(DWFError, match="not found"):
        load_recipe(tmp_path / "missing.toml")


def test_init_schemes_differ_and_are_seeded():
    arch = load_recipe("iris_mlp").arch_spec
    sds = {
        s: init_member(arch, s, seed=1)
        for s in ("default", "kaiming", "kaiming_zero_bias", "xavier", "normal", "uniform")
    }
    assert torch.all(sds["kaiming_zero_bias"]["layers.0.bias"] == 0)
    assert torch.all(sds["uniform"]["layers.0.weight"].abs() <= 0.1)
    flat = {s: arch.flatten(sd) for s, sd in sds.items()}
    names = list(flat)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.equal(flat[a], flat[b]), (a, b)
    assert torch.equal(arch.flatten(init_member(arch, "xavier", 1)), flat["xavier"])
    assert not torch.equal(arch.flatten(init_member(arch, "xavier", 2)), flat["xavier"])


def test_batched_training_equals_one_by_one(tiny_recipe):
    task = load_task(tiny_recipe.data)
    arch, cfg = tiny_recipe.arch_spec, tiny_recipe.training
    together = train_members(arch, task, cfg, [0, 1, 2], ["kaiming", "xavier", "normal"], progress=False)
    for i, (seed, scheme) in enumerate([(0, "kaiming"), (1, "xavier"), (2, "normal")]):
        ((alone, rec),) = train_members(arch, task, cfg, [seed], [scheme], progress=False)
        for k, v in alone.items():
            torch.testing.assert_close(together[i][0][k], v, atol=1e-5, rtol=1e-4)
        assert rec["seed"] == seed and rec["init"] == scheme


def test_training_learns(tiny_zoo):
    accs = [r["test_accuracy"] for r in tiny_zoo.records]
    assert sum(accs) / len(accs) > 0.6  # iris chance level is 1/3
    assert len({r["seed"] for r in tiny_zoo.records}) == len(tiny_zoo)


def test_checkpoint_selection_never_sees_test_split(tiny_recipe):
    task = load_task(tiny_recipe.data)
    scrambled = dataclasses.replace(
        task, x_test=torch.randn_like(task.x_test), y_test=torch.flip(task.y_test, [0])
    )
    cfg = dataclasses.replace(tiny_recipe.training, checkpoint="best_val")
    arch = tiny_recipe.arch_spec
    a = train_members(arch, task, cfg, [0, 1], ["kaiming"] * 2, progress=False)
    b = train_members(arch, scrambled, cfg, [0, 1], ["kaiming"] * 2, progress=False)
    for (sa, ra), (sb, rb) in zip(a, b):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert ra["selected_epoch"] == rb["selected_epoch"] and ra["val_accuracy"] == rb["val_accuracy"]
        assert 1 <= ra["selected_epoch"] <= cfg.epochs
    assert isinstance(task, TaskData)


def test_zoo_training_is_deterministic_and_resumes(tiny_recipe, tmp_path):
    first = train_zoo(tiny_recipe, 4, tmp_path / "a", seed=5, progress=False).to_matrix()
    again = train_zoo(tiny_recipe, 4, tmp_path / "b", seed=5, progress=False).to_matrix()
    assert torch.equal(first, again)
    # Simulate an interruption: one checkpoint never written, the final files missing (the job record and
    # the finished checkpoints are what a killed run leaves).
    root = tmp_path / "a"
    (root / checkpoint_name(2)).unlink()
    for name in ("zoo.json", "metadata.parquet", "manifest.json", "README.md"):
        (root / name).unlink()
    mtime = (root / checkpoint_name(0)).stat().st_mtime_ns
    resumed = train_zoo(tiny_recipe, 4, root, seed=5, progress=False)
    assert (root / checkpoint_name(0)).stat().st_mtime_ns == mtime  # finished work is not redone
    assert torch.allclose(resumed.to_matrix(), first, atol=1e-5)
    assert len(WeightZoo.load(root)) == 4


def test_zoo_job_mismatch_is_refused(tiny_recipe, tmp_path):
    train_zoo(tiny_recipe, 2, tmp_path / "a", seed=0, progress=False)
    with pytest.raises(DWFError, match="another recipe, size or seed"):
        train_zoo(tiny_recipe, 3, tmp_path / "a", seed=0, progress=False)
    with pytest.raises(DWFError, match="num_models"):
        train_zoo(tiny_recipe, 0, tmp_path / "c")


def test_mixed_init_recipe_cycles_schemes(tmp_path):
    recipe = load_recipe("iris_mlp_mixed_init").to_dict()
    recipe["training"]["epochs"] = 2
    zoo = train_zoo(Recipe.from_dict(recipe), 6, tmp_path / "m", progress=False)
    assert [r["init"] for r in zoo.records] == recipe["training"]["init"]
    json.dumps(zoo.recipe.to_dict())
    assert WeightZoo.load(tmp_path / "m").recipe == zoo.recipe


def test_augmentation_crops_and_flips_per_image():
    from dwf_hub.zoo.training import augment

    x = torch.arange(2 * 3 * 1 * 4 * 4, dtype=torch.float32).view(2, 3, 1, 4, 4)  # [N, B, C, H, W]
    out = augment(x, [torch.Generator().manual_seed(i) for i in range(2)], padding=1)
    assert out.shape == x.shape
    again = augment(x, [torch.Generator().manual_seed(i) for i in range(2)], padding=1)
    assert torch.equal(out, again)  # deterministic for a seed
    # padding 0: every image is itself or its mirror image
    plain = augment(x, [torch.Generator().manual_seed(3 + i) for i in range(2)], padding=0).view(-1, 4, 4)
    for a, b in zip(plain, x.view(-1, 4, 4)):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))
    # padding 1: each output is a shifted window of the zero-padded image (maybe mirrored)
    padded = torch.nn.functional.pad(x.view(-1, 1, 4, 4), (1, 1, 1, 1)).view(-1, 6, 6)
    for a, p in zip(out.view(-1, 4, 4), padded):
        windows = [p[i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
        assert any(torch.equal(a, w) or torch.equal(a, w.flip(-1)) for w in windows)
    many = x[:1].expand(8, 3, 1, 4, 4).contiguous()
    flips = augment(many, [torch.Generator().manual_seed(i) for i in range(8)], padding=0).view(-1, 4, 4)
    mirrored = sum(not torch.equal(f, o) for f, o in zip(flips, many.view(-1, 4, 4)))
    assert 0 < mirrored < 24  # some flipped, some not
    alone = augment(x[1:], [torch.Generator().manual_seed(1)], padding=1)
    assert torch.equal(alone, out[1:])  # member 1's draws do not depend on member 0


def test_members_start_spawned_by_default_where_one_parent_can_stand_for_all():
    from dwf_hub.configs import TrainingConfig

    auto = TrainingConfig(epochs=30)  # recorded resolved, so a zoo says what its members did
    assert (auto.start, auto.spawn_epochs) == ("spawned", 10)
    assert TrainingConfig(epochs=30, spawn_epochs=2).spawn_epochs == 2
    assert (TrainingConfig(epochs=2).start, TrainingConfig(epochs=2).spawn_epochs) == ("spawned", 0)
    mixed = TrainingConfig(epochs=30, init=["kaiming", "xavier"])  # one parent cannot have several inits
    assert (mixed.start, mixed.spawn_epochs) == ("independent", 0)
    assert TrainingConfig(epochs=30, init_from="some/checkpoint").start == "independent"
    assert TrainingConfig(epochs=30, start="independent").spawn_epochs == 0
    with pytest.raises(DWFError, match='spawn_epochs needs start = "spawned"'):
        TrainingConfig(epochs=30, start="independent", spawn_epochs=3)


def test_a_spawned_zoo_shares_its_first_epochs_then_diverges(tmp_path):
    from conftest import TINY_RECIPE

    from dwf_hub.zoo.recipes import Recipe

    spawned = {**TINY_RECIPE, "training": {**TINY_RECIPE["training"], "start": "spawned", "spawn_epochs": 5}}
    a = train_zoo(Recipe.from_dict(spawned), 4, tmp_path / "a", progress=False).to_matrix()
    assert torch.equal(a, train_zoo(Recipe.from_dict(spawned), 4, tmp_path / "b", progress=False).to_matrix())
    independent = train_zoo(Recipe.from_dict(TINY_RECIPE), 4, tmp_path / "c", progress=False).to_matrix()
    assert len({tuple(row.tolist()) for row in a}) == 4  # the members diverge by their own data order
    assert torch.pdist(a).mean() < 0.5 * torch.pdist(independent).mean()  # yet stay near their parent
    bad = {**TINY_RECIPE, "training": {**TINY_RECIPE["training"], "start": "spawned", "spawn_epochs": 15}}
    with pytest.raises(DWFError, match="spawn_epochs must be fewer than epochs"):
        Recipe.from_dict(bad)
