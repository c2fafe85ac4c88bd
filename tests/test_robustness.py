"""Hostile inputs: every one is refused with one line (exit 2 in the CLI), nothing outside the folder a
user named is read, changed or deleted, and no artifact is ever half-written."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import stat
import time
from pathlib import Path

import pytest
import torch
from conftest import checksums, refused

from dwf_hub.artifacts import write_manifest
from dwf_hub.cli import main
from dwf_hub.errors import DWFError
from dwf_hub.io import save_tensors
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.zoo.weight_zoo import WeightZoo, checkpoint_name


# -- 1. saving never destroys what is not ours -------------------------------------------------------
def test_saving_over_a_foreign_folder_is_refused_and_leaves_it_unchanged(pipe_dir, tmp_path, capsys):
    project = tmp_path / "project"
    (project / "checkpoints").mkdir(parents=True)
    (project / "README.md").write_text("my notes")
    (project / "checkpoints" / "model_00099.safetensors").write_bytes(b"mine")
    before = checksums(project)
    argv = ["-q", "generate", str(pipe_dir), "--num-networks", "3", "--out", str(project)]
    refused(argv, capsys, "not a dwf_hub artifact")
    assert checksums(project) == before
    assert main([*argv, "--overwrite"]) == 0  # asked for explicitly
    assert len(WeightZoo.load(project)) == 3


def test_a_zoo_holding_a_file_we_did_not_write_is_not_replaced(zoo_dir, pipe_dir, capsys):
    (zoo_dir / "notes.txt").write_text("keep me")
    refused(
        ["-q", "generate", str(pipe_dir), "--num-networks", "2", "--out", str(zoo_dir)], capsys, "notes.txt"
    )
    assert (zoo_dir / "notes.txt").read_text() == "keep me" and len(WeightZoo.load(zoo_dir)) == 8


def test_a_symlinked_checkpoints_folder_is_never_written_through(zoo_dir, pipe_dir, tmp_path, capsys):
    outside = tmp_path / "outside"
    shutil.move(zoo_dir / "checkpoints", outside)
    (zoo_dir / "checkpoints").symlink_to(outside)
    before = checksums(outside)
    refused(
        ["-q", "generate", str(pipe_dir), "--num-networks", "2", "--out", str(zoo_dir)], capsys, "checkpoints"
    )
    assert checksums(outside) == before
    with pytest.raises(DWFError, match="outside the zoo folder|symbolic link"):
        WeightZoo.load(zoo_dir)


def test_out_naming_a_symlink_or_a_file_is_refused(pipe_dir, tmp_path, capsys):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    refused(["-q", "generate", str(pipe_dir), "--out", str(tmp_path / "link")], capsys, "symbolic link")
    (tmp_path / "file").write_text("x")
    refused(["-q", "generate", str(pipe_dir), "--out", str(tmp_path / "file")], capsys, "not a folder")


def test_saved_files_get_ordinary_modes(zoo_dir, pipe_dir):
    mask = os.umask(0)
    os.umask(mask)
    for path in [zoo_dir / "zoo.json", zoo_dir / checkpoint_name(0), pipe_dir / "model_index.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def test_resaved_pipeline_records_no_local_path(pipe_dir, tmp_path):
    DeepWeightFlowPipeline.from_pretrained(pipe_dir).save_pretrained(tmp_path / "again")
    assert str(tmp_path) not in (tmp_path / "again" / "model_index.json").read_text()


# -- 2. half-written artifacts never load --------------------------------------------------------------
def _save_forever(kind: str, a: Path, b: Path, target: Path, ready) -> None:
    """In a forked child: save ``a`` over ``target``, say so, then alternate ``b`` and ``a`` until killed."""
    if kind == "zoo":
        first, second = (WeightZoo.load(p) for p in (a, b))
        first, second = (
            WeightZoo(z.arch, list(z), z.records, recipe=z.recipe, info=z.info) for z in (first, second)
        )
        save = lambda x: x.save(target)  # noqa: E731
    else:
        first, second = (DeepWeightFlowPipeline.from_pretrained(p) for p in (a, b))
        save = lambda x: x.save_pretrained(target)  # noqa: E731
    save(first)
    ready.set()
    for i in itertools.count():
        save(second if i % 2 == 0 else first)


def _kill_loop(kind: str, a: Path, b: Path, target: Path, trials: int) -> list[str]:
    """Save ``a`` / ``b`` over ``target`` in a loop in a real child process, ``kill -9`` it at a random time;
    after each kill, which one ``target`` holds (or the error loading it)."""
    import multiprocessing

    ctx, rng, outcomes = multiprocessing.get_context("fork"), random.Random(0), []
    for _ in range(trials):
        ready = ctx.Event()
        child = ctx.Process(target=_save_forever, args=(kind, a, b, target, ready))
        child.start()
        assert ready.wait(60)
        time.sleep(rng.uniform(0.01, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        outcomes.append(_which(kind, a, b, target))
    return outcomes


def _which(kind: str, a: Path, b: Path, target: Path) -> str:
    try:
        if kind == "zoo":
            got = WeightZoo.load(target).to_matrix()
            return next(n for n, p in (("a", a), ("b", b)) if torch.equal(got, WeightZoo.load(p).to_matrix()))
        got = DeepWeightFlowPipeline.from_pretrained(target).velocity.state_dict()
        for name, path in (("a", a), ("b", b)):
            ref = DeepWeightFlowPipeline.from_pretrained(path)
            if all(torch.equal(v, ref.velocity.state_dict()[k]) for k, v in got.items()):
                codec = DeepWeightFlowPipeline.from_pretrained(target).codec.state_dict()
                assert all(torch.equal(v, ref.codec.state_dict()[k]) for k, v in codec.items()), "a mixture"
                return name
        return "neither"
    except (DWFError, StopIteration) as e:
        return f"error: {e}"


@pytest.mark.slow
def test_killed_zoo_saves_leave_the_old_or_the_new_zoo(tiny_zoo, tmp_path):
    a = tiny_zoo.save(tmp_path / "a")
    WeightZoo.from_matrix(tiny_zoo.arch, tiny_zoo.to_matrix()[:5] + 1, recipe=tiny_zoo.recipe).save(
        tmp_path / "b"
    )
    outcomes = _kill_loop("zoo", a, tmp_path / "b", tmp_path / "target", trials=12)
    assert set(outcomes) <= {"a", "b"}, outcomes


@pytest.mark.slow
def test_killed_pipeline_saves_leave_the_old_or_the_new_pipeline(tiny_zoo, tiny_fit, tmp_path):
    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline

    tiny_fit.pipeline.save_pretrained(tmp_path / "a")
    other = fit_pipeline(tiny_zoo, default_flow_config(tiny_zoo, iterations=5, seed=1), progress=False)
    other.pipeline.save_pretrained(tmp_path / "b")
    outcomes = _kill_loop("pipe", tmp_path / "a", tmp_path / "b", tmp_path / "target", trials=12)
    assert set(outcomes) <= {"a", "b"}, outcomes


def test_a_mixture_of_two_pipelines_is_refused(pipe_dir, tiny_zoo, tmp_path):
    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline

    other = fit_pipeline(tiny_zoo, default_flow_config(tiny_zoo, iterations=5, seed=1), progress=False)
    other.pipeline.save_pretrained(tmp_path / "other")
    shutil.rmtree(pipe_dir / "velocity")
    shutil.copytree(tmp_path / "other" / "velocity", pipe_dir / "velocity")
    with pytest.raises(DWFError, match="velocity.*does not match manifest.json"):
        DeepWeightFlowPipeline.from_pretrained(pipe_dir)


def test_a_zoo_without_its_manifest_is_incomplete(zoo_dir):
    (zoo_dir / "manifest.json").unlink()
    with pytest.raises(DWFError, match="incomplete zoo"):
        WeightZoo.load(zoo_dir)


def test_flow_checkpoint_is_one_atomic_file(tmp_path):
    """Tensors and their bookkeeping are one file, so no kill can pair one save's tensors with another's."""
    from dwf_hub.configs import FlowConfig
    from dwf_hub.flow.training import train_flow

    def crash(it, _):
        if it == 45:
            raise KeyboardInterrupt

    cfg = FlowConfig.from_flat(
        hidden_dim=8, time_embed_dim=4, iterations=60, batch_size=4, checkpoint_every=20
    )
    with pytest.raises(KeyboardInterrupt):
        train_flow(torch.randn(6, 3), cfg, 1.0, checkpoint_dir=tmp_path, progress=False, callback=crash)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow_state.safetensors"]


# -- 3. nothing outside the zoo is read ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "checkpoints/../../x.safetensors"])
def test_table_rows_naming_paths_outside_are_refused(zoo_dir, name):
    import pyarrow.parquet as pq

    table = pq.read_table(zoo_dir / "metadata.parquet").to_pylist()
    table[1]["checkpoint"] = name
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table), zoo_dir / "metadata.parquet")
    write_manifest(zoo_dir)
    with pytest.raises(DWFError, match="not a file name under checkpoints/"):
        WeightZoo.load(zoo_dir)


def test_a_symlinked_checkpoint_is_refused(zoo_dir, tmp_path):
    outside = tmp_path / "outside.safetensors"
    shutil.copy(zoo_dir / checkpoint_name(2), outside)
    (zoo_dir / checkpoint_name(2)).unlink()
    (zoo_dir / checkpoint_name(2)).symlink_to(outside)
    with pytest.raises(DWFError, match="symbolic link"):
        WeightZoo.load(zoo_dir)


# -- 4. safetensors only, our classes only ------------------------------------------------------------
def test_a_pickle_beside_safetensors_is_refused_unread(pipe_dir, monkeypatch):
    import pickle

    def never(*_, **__):
        raise AssertionError("a pickle was read")

    monkeypatch.setattr(pickle, "Unpickler", never)
    monkeypatch.setattr(pickle, "load", never)
    monkeypatch.setattr(torch, "load", never)
    (pipe_dir / "velocity" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DWFError, match=r"diffusion_pytorch_model.bin: .*safetensors only"):
        DeepWeightFlowPipeline.from_pretrained(pipe_dir)


def test_code_shipped_in_a_pipeline_and_remote_code_are_refused(pipe_dir):
    with pytest.raises(DWFError, match="trust_remote_code"):
        DeepWeightFlowPipeline.from_pretrained(pipe_dir, trust_remote_code=True)
    (pipe_dir / "pipeline.py").write_text("import os; os.system('echo pwned')")
    with pytest.raises(DWFError, match="pipeline.py"):
        DeepWeightFlowPipeline.from_pretrained(pipe_dir)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: {**d, "velocity": ["diffusers", "UNet2DModel"]}, "component 'velocity'"),
        (lambda d: {**d, "scheduler": ["diffusers", "DDPMScheduler"]}, "component 'scheduler'"),
        (lambda d: {**d, "codec": ["os", "system"]}, "component 'codec'"),
        (lambda d: {**d, "velocity": d["codec"], "codec": d["velocity"]}, "component 'velocity'"),
        (lambda d: {**d, "velocity": None}, "component 'velocity'"),
        (lambda d: ["builtins", "eval"], "pipeline class"),
        (lambda d: None, "pipeline class"),
        (lambda d: "DeepWeightFlowPipeline", "pipeline class"),
        (lambda d: {**d, "evil": ["builtins", "eval"]}, "unexpected entries"),
    ],
)
def test_malformed_model_index_is_one_line(pipe_dir, capsys, edit, match):
    index = pipe_dir / "model_index.json"
    index.write_text(json.dumps(edit(json.loads(index.read_text()))))
    write_manifest(pipe_dir)  # consistent, but not ours
    refused(["-q", "generate", str(pipe_dir), "--out", str(pipe_dir.parent / "g")], capsys, match)


# -- 5.-8. bad values: refused before any work, one line ----------------------------------------------
def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    write_manifest(
        path.parent.parent if path.parent.name in ("codec", "scheduler", "velocity") else path.parent
    )


@pytest.mark.parametrize(
    "part, changes, match",
    [
        ("scheduler/scheduler_config.json", {"source_std": float("nan")}, "source_std"),
        ("scheduler/scheduler_config.json", {"num_inference_steps": 10**9}, "num_inference_steps"),
        ("codec/config.json", {"latent_dim": 10**9}, "latent_dim"),
        ("codec/config.json", {"latent_dim": -3}, "latent_dim"),
        ("codec/config.json", {"arch": {"name": "mlp", "layer_sizes": [4, 900, 3]}}, "codec"),
        ("card.json", None, "card.json"),
    ],
)
def test_bad_component_configs_are_one_line(pipe_dir, capsys, part, changes, match):
    path = pipe_dir / part
    if changes is None:
        path.write_text("{garbage")
        write_manifest(pipe_dir)
    else:
        _edit_json(path, **changes)
    refused(
        ["-q", "generate", str(pipe_dir), "--num-networks", "2", "--out", str(pipe_dir.parent / "g")],
        capsys,
        match,
    )


def test_truncated_velocity_is_refused(pipe_dir, capsys):
    (weights,) = (pipe_dir / "velocity").glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
    refused(["-q", "generate", str(pipe_dir), "--out", str(pipe_dir.parent / "g")], capsys, "does not match")


@pytest.mark.parametrize(
    "args, match",
    [
        (["canonicalize", "{zoo}", "--out", "{tmp}/c", "--max-iter", "-5"], "max_iter"),
        (["canonicalize", "{zoo}", "--out", "{tmp}/c", "--max-iter", "0"], "max_iter"),
        (["fit", "{zoo}", "--out", "{tmp}/p", "--lr", "inf"], "lr=inf must be finite"),
        (["fit", "{zoo}", "--out", "{tmp}/p", "--source-std", "inf"], "source_std"),
        (["fit", "{zoo}", "--out", "{tmp}/p", "--checkpoint-every", "0"], "checkpoint_every"),
        (["fit", "{zoo}", "--out", "{tmp}/p", "--weight-decay", "nan"], "weight_decay"),
        (["fit", "{zoo}", "--out", "{tmp}/p", "--time-embed-dim", "100000000"], "time_embed_dim"),
        (["fit", "{zoo}", "--out", "{tmp}/p", "--holdout", "7"], "holdout"),
        (["generate", "{pipe}", "--out", "{tmp}/g", "--num-networks", "100000000000"], "GiB"),
        (["generate", "{pipe}", "--out", "{tmp}/g", "--steps", "1000000000"], "num_inference_steps"),
        (["zoo", "train", "iris_mlp", "--out", "{tmp}/z", "--num-models", "1000000000"], "num_models"),
        (["evaluate", "{zoo}", "--noise", "abc", "--reference", "{zoo}", "--out", "{tmp}/r"], "--noise"),
        (["evaluate", "{zoo}", "--json", "{tmp}"], "is a folder"),
        (
            ["evaluate", "{zoo}", "--reference", "{zoo}", "--out", "{tmp}/r", "--sweep-networks", "0"],
            "0 is not",
        ),
    ],
)
def test_bad_cli_values_are_one_line(zoo_dir, pipe_dir, tmp_path, capsys, args, match):
    fill = {"zoo": str(zoo_dir), "pipe": str(pipe_dir), "tmp": str(tmp_path)}
    refused(["-q", *[a.format(**fill) for a in args]], capsys, match)
    assert not (tmp_path / "p").exists() and not (tmp_path / "g").exists()  # nothing was written


@pytest.mark.parametrize("args", [["--seed", str(10**23)], ["--seed", "-1"], ["--num-networks", "abc"]])
def test_argument_errors_exit_2(pipe_dir, tmp_path, args):
    with pytest.raises(SystemExit) as e:
        main(["-q", "generate", str(pipe_dir), "--out", str(tmp_path / "g"), *args])
    assert e.value.code == 2


@pytest.mark.parametrize(
    "training, match",
    [
        ({"epochs": 2.5}, "epochs=2.5"),
        ({"epochs": "100"}, "epochs='100'"),
        ({"epochs": 10**12}, "epochs must be <="),
        ({"weight_decay": float("nan")}, "weight_decay=nan"),
        ({"weight_decay": -1.0}, "weight_decay must be >="),
        ({"lr": float("inf")}, "lr=inf"),
        ({"init": []}, "init must name"),
    ],
)
def test_bad_recipe_values_are_refused_before_work(tmp_path, training, match):
    from conftest import TINY_RECIPE

    from dwf_hub.zoo.recipes import Recipe
    from dwf_hub.zoo.training import train_zoo

    bad = {**TINY_RECIPE, "training": {**TINY_RECIPE["training"], **training}}
    with pytest.raises(DWFError, match=match):
        train_zoo(Recipe.from_dict(bad), 2, tmp_path / "z", progress=False)
    assert not (tmp_path / "z").exists()


def test_input_size_the_data_does_not_have(tmp_path):
    from conftest import TINY_RECIPE

    from dwf_hub.zoo.recipes import Recipe
    from dwf_hub.zoo.training import train_zoo

    bad = {**TINY_RECIPE, "arch": {"name": "mlp", "layer_sizes": [5, 6, 3]}}
    with pytest.raises(DWFError, match=r"takes inputs of shape \(5,\), the data has \(4,\)"):
        train_zoo(Recipe.from_dict(bad), 2, tmp_path / "z", progress=False)


def test_inconsistent_zoos_are_refused(zoo_dir, tiny_zoo):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(zoo_dir / "metadata.parquet").to_pylist()

    def write(table_rows):
        pq.write_table(pa.Table.from_pylist(table_rows), zoo_dir / "metadata.parquet")
        write_manifest(zoo_dir)

    write(rows[:-1])
    with pytest.raises(DWFError, match="7 rows, but zoo.json says num_models = 8"):
        WeightZoo.load(zoo_dir)
    write([*rows[:-1], rows[0]])
    with pytest.raises(DWFError, match="repeats checkpoint"):
        WeightZoo.load(zoo_dir)
    write(rows)
    sd = {k: v.half() for k, v in tiny_zoo.state_dict(3).items()}
    save_tensors(zoo_dir / checkpoint_name(3), sd, metadata={"dwf_record": json.dumps(rows[3])})
    write_manifest(zoo_dir)
    with pytest.raises(DWFError, match="dtype float16, but the zoo is float32"):
        WeightZoo.load(zoo_dir)


def test_zoo_config_that_is_not_an_object(zoo_dir, capsys):
    (zoo_dir / "zoo.json").write_text("[1, 2]")
    refused(["-q", "evaluate", str(zoo_dir)], capsys, "not a dwf_hub zoo config")


def test_huge_finite_weights_are_one_line(tiny_zoo, tmp_path, capsys):
    scaled = WeightZoo.from_matrix(tiny_zoo.arch, tiny_zoo.to_matrix() * 1e38, recipe=tiny_zoo.recipe)
    scaled.save(tmp_path / "big")
    refused(["-q", "canonicalize", str(tmp_path / "big"), "--out", str(tmp_path / "c")], capsys, "magnitude")


def test_a_second_writer_to_the_same_folder_fails_clearly(tiny_zoo, tmp_path):
    import fcntl

    target = tmp_path / "zoo"
    with open(tmp_path / ".zoo.lock", "w") as held:  # what a first writer holds while it writes
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DWFError, match="another process is writing it"):
            tiny_zoo.save(target)
    assert not target.exists()
    tiny_zoo.save(target)  # the lock is gone with its holder
    assert len(WeightZoo.load(target)) == len(tiny_zoo)
