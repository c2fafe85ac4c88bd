"""Transfer learning from generated networks: heads, few-shot draws, input mapping, resume, bad input."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import torch
from conftest import TINY_RECIPE_TOML

from dwf_hub.archs import get_arch
from dwf_hub.artifacts import job_folder
from dwf_hub.cli import main
from dwf_hub.errors import DWFError
from dwf_hub.evaluation.transfer import (
    TransferConfig,
    TransferRecipe,
    carve_validation,
    few_shot,
    load_transfer_recipe,
    map_inputs,
    run_transfer,
    with_new_head,
)
from dwf_hub.zoo.data import load_task

TARGET = {"name": "iris", "test_fraction": 0.2, "val_fraction": 0.2, "split_seed": 0, "classes": [1, 2]}


@pytest.fixture
def recipe(tiny_recipe) -> TransferRecipe:
    cfg = TransferConfig(num_networks=3, budgets=[0, 2], batch_size=16, lr_grid=[1e-2])
    return TransferRecipe("tiny", tiny_recipe, TARGET, cfg)


def test_new_head_replaces_only_the_head():
    arch = get_arch("mlp", layer_sizes=[4, 6, 3])
    target = arch.with_outputs(2)
    states = [arch.build().state_dict() for _ in range(2)]
    new = with_new_head(arch, target, states, seed=0)
    assert new[0]["layers.1.weight"].shape == (2, 6) and torch.equal(new[0]["layers.1.bias"], torch.zeros(2))
    assert torch.equal(new[1]["layers.0.weight"], states[1]["layers.0.weight"])  # the body is kept
    assert not torch.equal(new[0]["layers.1.weight"], new[1]["layers.1.weight"])  # one draw per network
    target.validate(new[0])


def test_few_shot_draws_are_per_class_and_seeded():
    task = load_task({"name": "digits", "classes": [5, 6, 7, 8, 9]})
    a, b, c = few_shot(task, 7, 0), few_shot(task, 7, 0), few_shot(task, 7, 1)
    assert torch.equal(torch.bincount(a.y_train), torch.full((5,), 7))
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_test, task.x_test)  # the test split is never subsampled
    with pytest.raises(DWFError, match="fewer than shots=1000"):
        few_shot(task, 1000, 0)


def test_inputs_are_resized_to_the_source_shape():
    x = torch.rand(2, 1, 8, 8)
    assert map_inputs(x, (3, 16, 16)).shape == (2, 3, 16, 16)
    assert map_inputs(x, (1, 8, 8)) is x
    with pytest.raises(DWFError, match=r"inputs of shape \(4,\) cannot be mapped to the source's \(64,\)"):
        map_inputs(torch.rand(2, 4), (64,))


def test_transfer_table_and_resume(recipe, tiny_fit, tiny_zoo, tmp_path, monkeypatch):
    import dwf_hub.evaluation.transfer as transfer

    calls, original = [], transfer._cell

    def failing(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 3:
            raise KeyboardInterrupt  # interrupted in the middle of the run
        return original(*args, **kwargs)

    monkeypatch.setattr(transfer, "_cell", failing)
    with pytest.raises(KeyboardInterrupt):
        run_transfer(recipe, tmp_path / "t", pipeline=tiny_fit.pipeline, zoo=tiny_zoo, progress=False)
    cells = job_folder(tmp_path / "t")  # finished cells wait beside the output, which is not written yet
    assert not (tmp_path / "t").exists()
    assert sorted(p.name for p in cells.glob("cell_*")) == ["cell_generated_0.json", "cell_generated_2.json"]
    before = (cells / "cell_generated_2.json").read_text()
    monkeypatch.setattr(transfer, "_cell", lambda *a, **k: calls.append(a[3]) or original(*a, **k))
    calls.clear()
    summary = run_transfer(recipe, tmp_path / "t", pipeline=tiny_fit.pipeline, zoo=tiny_zoo, progress=False)
    assert sorted(calls) == [0, 0, 2, 2]  # only the four missing cells ran
    assert json.loads((tmp_path / "t" / "results.json").read_text())["cells"]["generated"]["2"] == json.loads(
        before
    )
    assert not cells.exists()  # the job is done: nothing left beside the output
    assert set(summary["table"]) == {"generated", "pretrained", "random"}
    for cells in summary["table"].values():
        assert set(cells) == {"0", "2"} and all(c["k"] == 3 and 0 <= c["mean"] <= 1 for c in cells.values())
        assert cells["0"]["lr"] is None and cells["2"]["lr"] == 1e-2
    assert {"table.md", "table.csv", "summary.json", "transfer.png"} <= {
        p.name for p in (tmp_path / "t").iterdir()
    }
    table = (tmp_path / "t" / "table.md").read_text()
    assert "mean ± 95 % interval over K = 3 networks per method; mode: full" in table
    assert f"**Verdict** (Welch's t-test, p < 0.05): {summary['verdict']}" in table
    other = dataclasses.replace(recipe, transfer=dataclasses.replace(recipe.transfer, lr_grid=[1e-3]))
    monkeypatch.setattr(transfer, "_cell", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # another setting, interrupted: its job waits beside the results
        run_transfer(other, tmp_path / "t", pipeline=tiny_fit.pipeline, zoo=tiny_zoo, progress=False)
    with pytest.raises(DWFError, match="interrupted job with other settings"):
        run_transfer(recipe, tmp_path / "t", pipeline=tiny_fit.pipeline, zoo=tiny_zoo, progress=False)
    assert json.loads((tmp_path / "t" / "results.json").read_text())["cells"]["generated"]["2"] == json.loads(
        before
    )


def test_fine_tuning_improves_on_zero_shot_with_a_new_head(recipe, tiny_zoo, tmp_path):
    cfg = dataclasses.replace(recipe.transfer, methods=["pretrained"], budgets=[0, 20])
    summary = run_transfer(
        dataclasses.replace(recipe, transfer=cfg), tmp_path / "t", zoo=tiny_zoo, progress=False
    )
    cells = summary["table"]["pretrained"]
    assert cells["20"]["mean"] > cells["0"]["mean"]


@pytest.mark.parametrize(
    "settings, match",
    [({"methods": ["magic"]}, "methods='magic'"), ({"num_networks": 0}, "num_networks must be >= 1"),
     ({"budgets": []}, "must not be empty")],
)  # fmt: skip
def test_bad_transfer_settings(settings, match):
    with pytest.raises(DWFError, match=match):
        TransferConfig(**settings)


def test_missing_initialisations_are_one_line(recipe, tmp_path):
    with pytest.raises(DWFError, match="'generated' needs a pipeline"):
        run_transfer(recipe, tmp_path / "t", progress=False)


def test_finetune_cli(tiny_fit, tiny_zoo, tmp_path, capsys):
    tiny_fit.pipeline.save_pretrained(tmp_path / "flow")
    zoo = tiny_zoo.save(tmp_path / "zoo")
    argv = [
        "-q",
        "finetune",
        "digits04_to_59_mlp",
        "--out",
        str(tmp_path / "t"),
        "--pipeline",
        str(tmp_path / "flow"),
    ]
    assert main([*argv, "--methods", "magic"]) == 2
    assert "methods='magic'" in capsys.readouterr().err
    assert main([*argv, "--budgets", "0,x"]) == 2
    assert "--budgets: '0,x' is not a comma-separated list of ints" in capsys.readouterr().err
    assert main([*argv, "--mode", "probe"]) == 2
    assert "mode='probe'" in capsys.readouterr().err
    assert main([*argv, "--lr-grid", "1e-3,fast"]) == 2
    assert "--lr-grid: '1e-3,fast' is not a comma-separated list of floats" in capsys.readouterr().err
    assert main([*argv, "--lr-grid", "-1"]) == 2
    assert "lr_grid" in capsys.readouterr().err
    assert main([*argv, "--zoo", str(zoo)]) == 2  # an Iris flow cannot start networks for digits
    assert "inputs of shape (64,) cannot be mapped to the source's (4,)" in capsys.readouterr().err
    assert load_transfer_recipe("cifar10_to_cifar100_fewshot").transfer.shots == 50


@pytest.mark.slow
def test_accelerate_launch_on_two_processes_gives_the_one_process_table(tiny_fit, tiny_zoo, tmp_path):
    """``accelerate launch --num_processes 2 --cpu examples/transfer.py`` splits the cells between processes."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tiny_fit.pipeline.save_pretrained(tmp_path / "flow")
    tiny_zoo.save(tmp_path / "zoo")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_TRANSFER_TOML.format(source=tmp_path / "source.toml"))
    (tmp_path / "source.toml").write_text(TINY_RECIPE_TOML)
    args = [str(root / "examples" / "transfer.py"), str(recipe), "--pipeline", str(tmp_path / "flow"),
            "--zoo", str(tmp_path / "zoo")]  # fmt: skip
    one = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-2000:]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    two = subprocess.run([*launcher, *args, "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "summary.json").read_text())
    b = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert a["table"].keys() == b["table"].keys()
    for method, cells in a["table"].items():
        for budget, cell in cells.items():
            assert abs(cell["mean"] - b["table"][method][budget]["mean"]) < 1e-6, (method, budget)


TINY_TRANSFER_TOML = """
name = "tiny_transfer"
source = "{source}"
[target]
name = "iris"
test_fraction = 0.2
val_fraction = 0.2
split_seed = 0
classes = [1, 2]
[transfer]
num_networks = 3
budgets = [0, 2]
batch_size = 16
lr_grid = [0.01]
"""


@pytest.mark.parametrize("family", ["smallcnn", "resnet20", "resnet18", "vit", "bert"])
def test_every_family_fine_tunes(family, tmp_path):
    """Random starts of each family's tiny variant through one fine-tuning epoch (images: digits 5-9 as 1x8x8;
    BERT: the synthetic regression task, scored by Spearman)."""
    from dwf_hub.archs import get_arch_class
    from dwf_hub.zoo.recipes import Recipe

    arch = get_arch_class(family).tiny()
    if family == "bert":
        data = {"name": "synthetic_sentiment", "num_train": 64, "num_val": 16, "num_test": 32, "seq_len": 12,
                "vocab_size": 40}  # fmt: skip
        target = data
    else:
        data = {"name": "digits", "standardize": "global", "shape": [1, 8, 8], "classes": [0, 1, 2]}
        target = {**data, "classes": [5, 6, 7, 8, 9]}
    source = Recipe.from_dict({"name": f"tiny_{family}", "arch": arch.config, "data": data,
                               "training": {"init": "default"}})  # fmt: skip
    cfg = TransferConfig(
        methods=["random"], num_networks=2, budgets=[0, 1], batch_size=32, lr_grid=[1e-3, 1e-2]
    )
    summary = run_transfer(TransferRecipe("t", source, target, cfg), tmp_path / "t", progress=False)
    cells = summary["table"]["random"]
    assert summary["metric"] == arch.metric and set(cells) == {"0", "1"}
    assert all(-1 <= c["mean"] <= 1 for c in cells.values())


def test_validation_is_carved_from_the_shots_per_class():
    task = few_shot(load_task({"name": "digits", "classes": [5, 6, 7, 8, 9]}), 10, 0)
    carved = carve_validation(task, 0.2, 0)
    assert torch.equal(torch.bincount(carved.y_val), torch.full((5,), 2))
    assert torch.equal(torch.bincount(carved.y_train), torch.full((5,), 8))
    pooled = torch.cat([carved.x_train, carved.x_val])  # a partition of the shots: nothing added or lost
    assert torch.allclose(pooled.sum(0), task.x_train.sum(0), atol=1e-4) and len(pooled) == len(task.x_train)
    assert torch.equal(carved.x_test, task.x_test)  # the test split is never touched


def test_each_budget_keeps_the_rate_best_on_validation(recipe, tiny_zoo, tmp_path):
    """A rate too small to move the new head loses to a working one on the carved validation shots."""
    cfg = dataclasses.replace(recipe.transfer, methods=["pretrained"], budgets=[0, 5], lr_grid=[1e-7, 3e-2])
    run_transfer(dataclasses.replace(recipe, transfer=cfg), tmp_path / "t", zoo=tiny_zoo, progress=False)
    cell = json.loads((tmp_path / "t" / "results.json").read_text())["cells"]["pretrained"]["5"]
    assert cell["lr"] == 3e-2 and cell["val"]["0.03"] > cell["val"]["1e-07"]
    assert "(3e-02)" in (tmp_path / "t" / "table.md").read_text()


@pytest.mark.parametrize("mode", ["full", "linear_probe", "detach"])
def test_modes_train_what_they_name(mode):
    """linear_probe: the head alone, on a body run as at inference (BatchNorm statistics kept); detach: all but
    the leading detach_ratio of the weight tensors."""
    from dwf_hub.archs import get_arch_class
    from dwf_hub.configs import TrainingConfig
    from dwf_hub.evaluation.transfer import frozen_keys
    from dwf_hub.zoo.training import train_members

    arch = get_arch_class("resnet20").tiny().with_outputs(3)
    frozen = frozen_keys(arch, TransferConfig(mode=mode, detach_ratio=0.5))
    task = load_task({"name": "digits", "standardize": "global", "shape": [1, 8, 8], "classes": [0, 1, 2]})
    shape = tuple(arch.example_input(1).shape[1:])
    task = dataclasses.replace(task, x_train=map_inputs(task.x_train, shape), x_val=map_inputs(task.x_val, shape),
                               x_test=map_inputs(task.x_test, shape))  # fmt: skip
    start = [arch.build().state_dict() for _ in range(2)]
    training = TrainingConfig(
        optimizer="adamw", lr=1e-2, epochs=1, batch_size=64, init="default", chunk_size=2
    )
    out = train_members(arch, task, training, [0, 1], ["default"] * 2, False, start=[dict(s) for s in start],
                        frozen=frozen, train_mode=mode != "linear_probe")  # fmt: skip
    changed = {k for k, v in out[0][0].items() if v.is_floating_point() and not torch.equal(v, start[0][k])}
    params = {k for k, _ in arch.build().named_parameters()}
    expected = {"full": params, "linear_probe": set(arch.head_keys), "detach": params - frozen}[mode]
    assert changed & params == expected and not changed & frozen and frozen <= params
    assert 0 < len(frozen) < len(params) - 2 if mode == "detach" else True
    assert any("running" in k for k in changed) == (
        mode != "linear_probe"
    )  # statistics move only in train mode


def test_flat_sources_take_square_images():
    x = torch.rand(3, 1, 16, 16)
    assert map_inputs(x, (64,)).shape == (3, 64)
    small = torch.rand(3, 1, 8, 8)
    assert torch.equal(map_inputs(small, (64,)), small.flatten(1))  # the source's own size: flattened
    with pytest.raises(
        DWFError, match=r"inputs of shape \(1, 16, 16\) cannot be mapped to the source's \(60,\)"
    ):
        map_inputs(x, (60,))


def test_the_verdict_follows_the_intervals():
    from dwf_hub.evaluation.transfer_table import compare, summarize_cells

    trained, untrained = [0.80, 0.82, 0.81, 0.79, 0.83], [0.10, 0.12, 0.11, 0.09, 0.13]
    assert (
        compare(trained, untrained)["outcome"] == "ahead"
        and compare(untrained, trained)["outcome"] == "behind"
    )
    assert compare(trained, [0.81, 0.80, 0.82, 0.83, 0.79])["outcome"] == "tie"
    assert compare([0.2] * 3, [0.2] * 3) == {"difference": 0.0, "p": 1.0, "outcome": "tie"}
    cells = {"generated": {"0": {"test": trained}, "1": {"test": untrained}},
             "pretrained": {"0": {"test": trained[::-1]}, "1": {"test": trained}},
             "random": {"0": {"test": untrained}, "1": {"test": untrained}}}  # fmt: skip
    s = summarize_cells({"cells": cells})
    assert s["verdict"] == (
        "0 epochs: generated ties pretrained, both beat random; "
        "1 epoch: generated trails pretrained, generated ties random, pretrained beats random"
    )
    half = s["table"]["generated"]["0"]["ci95"]  # t(0.975, 4) = 2.776 times the standard error
    assert abs(half - 2.776 * torch.tensor(trained).std().item() / 5**0.5) < 1e-3
