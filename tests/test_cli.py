"""The CLI end to end on a tiny recipe, in process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from dwf_hub.cli import main
from dwf_hub.configs import FlowConfig
from dwf_hub.zoo.weight_zoo import WeightZoo

TOML = """
name = "tiny_iris"
description = "cli test"
[arch]
name = "mlp"
layer_sizes = [4, 6, 3]
[data]
name = "iris"
[training]
lr = 0.01
batch_size = 16
epochs = 10
[flow]
hidden_dim = 32
time_embed_dim = 4
iterations = 40
num_inference_steps = 8
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.toml").write_text(TOML)
    argv = ["-q", "zoo", "train", str(root / "tiny.toml"), "--num-models", "6", "--out", str(root / "zoo")]
    assert main([*argv, "--seed", "3"]) == 0
    return root


def test_full_cli_loop(workdir, capsys):
    r = workdir / "tiny.toml"
    assert (
        main(
            ["-q", "zoo", "train", str(r), "--num-models", "6", "--out", str(workdir / "zoo"), "--seed", "3"]
        )
        == 0
    )
    zoo = WeightZoo.load(workdir / "zoo")
    assert len(zoo) == 6 and zoo.records[0]["seed"] == 3
    assert main(["-q", "canonicalize", str(workdir / "zoo"), "--out", str(workdir / "canon")]) == 0
    assert (workdir / "canon" / "permutations.safetensors").is_file()
    assert WeightZoo.load(workdir / "canon").is_canonical
    assert (
        main(
            [
                "-q",
                "fit",
                str(workdir / "canon"),
                "--out",
                str(workdir / "pipe"),
                "--iterations",
                "30",
                "--hidden-dim",
                "16",
            ]
        )
        == 0
    )
    assert not (workdir / "pipe" / ".flow_checkpoint").exists()
    assert "flow selection: kept the flow after" in capsys.readouterr().out  # said, even with -q
    flow = json.loads((workdir / "pipe" / "model_index.json").read_text())["flow_config"]
    assert flow["training"]["iterations"] == 30 and flow["velocity"]["hidden_dim"] == 16
    assert (
        main(
            [
                "-q",
                "generate",
                str(workdir / "pipe"),
                "--num-networks",
                "5",
                "--out",
                str(workdir / "gen"),
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert len(WeightZoo.load(workdir / "gen")) == 5
    report = workdir / "eval.json"
    assert (
        main(
            [
                "-q",
                "evaluate",
                str(workdir / "gen"),
                "--reference",
                str(workdir / "zoo"),
                "--json",
                str(report),
            ]
        )
        == 0
    )
    summary = json.loads(report.read_text())
    assert 0 <= summary["accuracy_mean"] <= 1 and summary["novelty_ratio"] >= 0
    assert len(summary["scores"]) == 5
    assert "novelty ratio" in capsys.readouterr().out


def test_fit_without_canonicalization_cli(workdir):
    assert (
        main(
            [
                "-q",
                "fit",
                str(workdir / "zoo"),
                "--out",
                str(workdir / "pipe_raw"),
                "--no-canonicalize",
                "--iterations",
                "5",
            ]
        )
        == 0
    )
    cfg = json.loads((workdir / "pipe_raw" / "model_index.json").read_text())
    assert cfg["canonicalization"] is None and cfg["flow_config"]["canonicalization"]["canonicalize"] is False


@pytest.mark.parametrize(
    "argv, message",
    [
        (["zoo", "train", "no_such_recipe", "--out", "x"], "unknown recipe 'no_such_recipe'"),
        (["evaluate", "/nonexistent/zoo"], "no such folder, and not a Hub repo id"),
        (["generate", "/nonexistent", "--out", "x"], "missing model_index.json"),
        (["fit", "/nonexistent", "--out", "x"], "not a dwf_hub zoo (missing zoo.json)"),
    ],
)
def test_cli_errors_are_clear(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nonexistent").mkdir(exist_ok=True)
    argv = [a.replace("/nonexistent", str(tmp_path / "nonexistent")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_generate_rejects_zero_networks(workdir, capsys):
    assert main(["generate", str(workdir / "pipe"), "--num-networks", "0", "--out", str(workdir / "g0")]) == 2
    assert "pipeline call: num_networks must be >= 1, got 0" in capsys.readouterr().err


def test_generate_temperature(workdir, capsys):
    assert main(["generate", str(workdir / "pipe"), "--temperature", "-1", "--out", str(workdir / "t")]) == 2
    assert "pipeline call: temperature must be > 0, got -1.0" in capsys.readouterr().err
    gen = ["-q", "generate", str(workdir / "pipe"), "--num-networks", "3", "--out"]
    assert main([*gen, str(workdir / "cold"), "--temperature", "0.5"]) == 0
    assert main([*gen, str(workdir / "warm")]) == 0
    cold, warm = (WeightZoo.load(workdir / name).to_matrix() for name in ("cold", "warm"))
    assert not torch.equal(cold, warm)


def test_generate_packed_shards(workdir, capsys):
    pipe, out = str(workdir / "pipe"), str(workdir / "packed")
    assert (
        main(["-q", "generate", pipe, "--num-networks", "7", "--networks-per-shard", "3", "--out", out]) == 0
    )
    assert len(WeightZoo.load(out)) == 7 and len(list((workdir / "packed" / "checkpoints").iterdir())) == 3
    assert main(["generate", pipe, "--networks-per-shard", "0", "--out", str(workdir / "p0")]) == 2
    assert "networks_per_shard=0 must be a positive integer" in capsys.readouterr().err
    bad = [
        "generate",
        pipe,
        "--networks-per-shard",
        "2",
        "--export",
        str(workdir / "e"),
        "--out",
        str(workdir / "p1"),
    ]
    assert main(bad) == 2 and "--export" in capsys.readouterr().err
    assert not (workdir / "p0").exists() and not (workdir / "p1").exists()


def test_console_script_help_is_light():
    out = subprocess.run(
        [sys.executable, "-m", "dwf_hub.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "zoo" in out.stdout and "demo" in out.stdout
    code = "import sys, dwf_hub.cli; dwf_hub.cli.build_parser(); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


def test_demo_small(tmp_path):
    from dwf_hub.demo import run_demo

    summary = run_demo(
        tmp_path / "demo", num_models=6, num_generated=5, progress=False, iterations=20, hidden_dim=16
    )
    for key in (
        "zoo_accuracy_mean",
        "zoo_accuracy_std",
        "generated_accuracy_mean",
        "generated_accuracy_std",
        "novelty_ratio",
        "function_novelty_ratio",
    ):
        assert isinstance(summary[key], float)
    assert all(
        isinstance(b["function_novelty_ratio"], float) and isinstance(b["diversity_ratio"], float)
        for b in summary["baselines"].values()
    )
    assert summary["heldout_members"] is None  # 6 members: too few to hold any out
    for ratio in ("novelty", "diversity", "function_novelty"):
        lo, hi = summary[f"{ratio}_interval"]
        assert lo <= summary[f"{ratio}_ratio"] <= hi
    assert f"Novelty ratio {summary['novelty_ratio']:.3f} (" in (tmp_path / "demo" / "report.md").read_text()
    assert set(summary["baselines_diversity"]) == {
        "mean_noise",
        "gaussian",
    }  # the two that cannot copy the zoo
    assert all(
        b["outcome"]
        in ("generator dominates", "baseline dominates", "generator more accurate", "baseline more accurate")
        for b in summary["baselines_diversity"].values()
    )
    assert (
        set(summary["beats"])
        <= set(summary["baselines"])
        == {"noise", "interpolation", "mean_noise", "gaussian"}
    )
    for kind, won in summary["beats"].items():
        rows = [
            s[kind] for s in (summary["baselines"], summary["baselines_function"]) if s[kind]["comparable"]
        ]
        assert rows and won == all(r["beats"] for r in rows)
    assert {"zoo_training", "canonicalization", "flow_training", "generation", "evaluation", "total"} <= set(
        summary["timings"]
    )
    on_disk = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert on_disk["novelty_ratio"] == summary["novelty_ratio"]
    assert "Novelty ratio" in (tmp_path / "demo" / "report.md").read_text()
    evaluation = json.loads((tmp_path / "demo" / "evaluation" / "summary.json").read_text())
    assert evaluation["novelty_ratio"]["generated"] == summary["novelty_ratio"]
    assert (tmp_path / "demo" / "evaluation" / "accuracy_vs_novelty.png").is_file()
    generated = WeightZoo.load(tmp_path / "demo" / "generated").to_matrix()
    assert len(generated) == 5
    assert not (tmp_path / "demo" / "flow_checkpoint").exists()
    # Rerunning the same job redoes nothing (the folder is untouched); --overwrite redoes it, to the same weights.
    stamp = (tmp_path / "demo" / "summary.json").stat().st_mtime_ns
    again = run_demo(
        tmp_path / "demo", num_models=6, num_generated=5, progress=False, iterations=20, hidden_dim=16
    )
    assert again == on_disk and (tmp_path / "demo" / "summary.json").stat().st_mtime_ns == stamp
    redone = run_demo(
        tmp_path / "demo", num_models=6, num_generated=5, progress=False, iterations=20, hidden_dim=16,
        overwrite=True,
    )  # fmt: skip
    assert redone["novelty_ratio"] == summary["novelty_ratio"]
    assert torch.equal(WeightZoo.load(tmp_path / "demo" / "generated").to_matrix(), generated)
    other = run_demo(
        tmp_path / "demo", num_models=6, num_generated=4, progress=False, iterations=20, hidden_dim=16
    )
    assert other["num_generated"] == 4  # another job in the same folder is run, not reused


def test_fit_with_paper_preset_cli(workdir):
    argv = ["-q", "fit", str(workdir / "zoo"), "--out", str(workdir / "pipe_paper"), "--preset", "paper"]
    assert main([*argv, "--iterations", "5"]) == 0
    cfg = FlowConfig.from_flat(
        json.loads((workdir / "pipe_paper" / "model_index.json").read_text())["flow_config"]
    ).flat()
    assert (cfg["normalization"], cfg["batch_size"], cfg["source_std"], cfg["iterations"]) == (
        "none",
        8,
        0.01,
        5,
    )
    sched = json.loads((workdir / "pipe_paper" / "scheduler" / "scheduler_config.json").read_text())
    assert sched["num_inference_steps"] == 99 and sched["source_std"] == 0.01


def test_global_options_anywhere_version_and_defaults_in_help(capsys):
    from dwf_hub.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["generate", "p", "--out", "o", "-q"]).quiet  # after the command too
    assert parser.parse_args(["-q", "generate", "p", "--out", "o"]).quiet
    assert not parser.parse_args(["generate", "p", "--out", "o"]).quiet
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("dwf-hub ")
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    assert (
        "networks to generate (default: 100)" in text and "seed of the Gaussian source (default: 0)" in text
    )


def test_under_a_launcher_rank_zero_speaks_for_the_job(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    assert main(["recipes"]) == 0
    assert "iris_mlp" in capsys.readouterr().out
    monkeypatch.setenv("RANK", "1")  # torchrun's other ranks: no summary lines, no logs
    assert main(["recipes"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["evaluate", "no-such-folder"]) == 2
    assert "dwf-hub: error:" in capsys.readouterr().err  # errors still say what went wrong, on every rank


def test_progress_bars_honour_the_hub_switch(monkeypatch, tmp_path, capsys):
    from conftest import TINY_RECIPE_TOML
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (tmp_path / "r.toml").write_text(TINY_RECIPE_TOML)
    disable_progress_bars()  # what HF_HUB_DISABLE_PROGRESS_BARS=1 does
    try:
        assert (
            main(
                ["zoo", "train", str(tmp_path / "r.toml"), "--num-models", "2", "--out", str(tmp_path / "z")]
            )
            == 0
        )
    finally:
        enable_progress_bars()
    assert "it/s" not in capsys.readouterr().err  # no bar, though progress was not turned off with -q


def _options(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {where}", a) for where, a in _options(sub))
        elif action.option_strings:
            yield action.option_strings[0], action


def test_every_option_has_help_and_one_name_per_concept():
    import argparse

    from dwf_hub.cli import SOLVER_NAMES, build_parser
    from dwf_hub.flow.solvers import SOLVERS

    options = list(_options(build_parser()))
    listed = [(where, a) for where, a in options if a.help is not argparse.SUPPRESS]
    assert [where for where, a in listed if not a.help] == []  # every listed option says what it does
    assert SOLVERS.names() == SOLVER_NAMES  # the literal choices are the registry's
    solver = [a for where, a in listed if "--solver" in a.option_strings]
    assert solver and all(tuple(a.choices) == SOLVER_NAMES for a in solver)
    names = {s for _, a in listed for s in a.option_strings}
    assert not names & {"--num-models", "--num-generated", "--steps"}  # old spellings: accepted, not listed
    assert {"--num-networks", "--num-inference-steps", "--zoo-size"} <= names


def test_push_takes_a_zoo_too(tiny_zoo, tmp_path, monkeypatch, capsys):
    from dwf_hub.zoo.weight_zoo import WeightZoo

    pushed = []
    monkeypatch.setattr(
        WeightZoo, "push_to_hub", lambda self, repo, **kw: pushed.append((len(self), repo)) or repo
    )
    folder = tiny_zoo.save_pretrained(tmp_path / "zoo")
    assert main(["push", str(folder), "org/zoo"]) == 0 and pushed == [(len(tiny_zoo), "org/zoo")]
    assert main(["push", str(folder), "org/zoo", "--base-zoo", "org/other"]) == 2
    assert "--base-zoo" in capsys.readouterr().err


def test_fit_says_which_settings_its_recipe_and_options_changed(workdir, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="dwf_hub")
    argv = ["fit", str(workdir / "zoo"), "--out", str(workdir / "pipe_said"), "--iterations", "6"]
    assert main(argv) == 0
    line = next(r.getMessage() for r in caplog.records if "beyond the global defaults" in r.getMessage())
    assert "iterations=6 (option)" in line  # from the command line
    assert "hidden_dim=32," in line  # from the zoo's recipe, not marked as an option
