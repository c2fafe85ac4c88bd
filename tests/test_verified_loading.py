"""Loading reads what was verified and only that (every loader x every tampering), from one snapshot; no path
hands back a network with NaN or Inf weights; bad values are one line, before any work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dwf_hub.artifacts import write_manifest
from dwf_hub.cli import main
from dwf_hub.errors import DWFError
from dwf_hub.evaluation.baselines import ZooBaseline
from dwf_hub.io import load_tensors, save_tensors
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.zoo.weight_zoo import WeightZoo, checkpoint_name


def _velocity_file(pipe_dir: Path) -> Path:
    return next((pipe_dir / "velocity").glob("diffusion_pytorch_model*.safetensors"))


# -- a pipeline folder holds exactly its manifest -----------------------------------------------------
def _unlisted_shards(pipe_dir: Path, other: Path) -> None:
    """diffusers prefers a sharded index to the single file: another flow's weights, unlisted."""
    shutil.copy(
        _velocity_file(other), pipe_dir / "velocity" / "diffusion_pytorch_model-00001-of-00001.safetensors"
    )
    index = {"metadata": {}, "weight_map": {k: "diffusion_pytorch_model-00001-of-00001.safetensors"
                                            for k in load_tensors(_velocity_file(other))}}  # fmt: skip
    (pipe_dir / "velocity" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))


def _drop_entry(pipe_dir: Path, other: Path) -> None:
    manifest = json.loads((pipe_dir / "manifest.json").read_text())
    manifest["files"].pop("scheduler/scheduler_config.json")
    (pipe_dir / "manifest.json").write_text(json.dumps(manifest))


def _same_size_change(pipe_dir: Path, other: Path) -> None:
    path = _velocity_file(pipe_dir)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight, in place
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "tamper, match",
    [
        (_unlisted_shards, "not part of this pipeline"),
        (_drop_entry, "not part of this pipeline"),
        (_same_size_change, "does not match manifest.json"),
    ],
)
def test_a_tampered_pipeline_is_refused(tamper, match, pipe_dir, tiny_fit, tmp_path):
    other = tmp_path / "other"
    pipe = DeepWeightFlowPipeline.from_pretrained(pipe_dir)
    with torch.no_grad():
        next(pipe.velocity.parameters()).add_(1.0)
    pipe.save_pretrained(other)
    tamper(pipe_dir, other)
    with pytest.raises(DWFError, match=match):
        DeepWeightFlowPipeline.from_pretrained(pipe_dir)


def test_edited_cards_still_load(pipe_dir, zoo_dir):
    for folder in (pipe_dir, zoo_dir):
        with open(folder / "README.md", "a") as f:
            f.write("\nA line added on the Hub.\n")
    assert DeepWeightFlowPipeline.from_pretrained(pipe_dir) is not None
    assert len(WeightZoo.load(zoo_dir)) == 8


def test_a_checkpoint_changed_in_place_is_never_scored(zoo_dir):
    zoo = WeightZoo.load(zoo_dir)
    zoo.flat(1)  # verified and read
    path = zoo_dir / checkpoint_name(1)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # same size: a size check alone cannot tell
    path.write_bytes(bytes(data))
    with pytest.raises(DWFError, match="model_00001.safetensors: does not match manifest.json"):
        WeightZoo.load(zoo_dir).flat(1)
    with pytest.raises(DWFError, match="does not match manifest.json"):
        zoo.flat(1)  # the zoo opened before the change notices it too


@pytest.mark.parametrize(
    "text", ['{"format_version": true, "arch": {}}', '{"format_version": 2, "format_version": 1}']
)
def test_zoo_configs_that_only_look_valid_are_refused(zoo_dir, text):
    config = json.loads((zoo_dir / "zoo.json").read_text())
    (zoo_dir / "zoo.json").write_text(text.replace('"arch": {}', f'"arch": {json.dumps(config["arch"])}'))
    write_manifest(zoo_dir)
    with pytest.raises(DWFError, match="zoo.json"):
        WeightZoo.load(zoo_dir)


def test_a_lazy_zoo_notices_its_folder_was_replaced(zoo_dir, tiny_zoo):
    zoo = WeightZoo.load(zoo_dir)
    tiny_zoo.subset(range(4)).save(zoo_dir, overwrite=True)
    with pytest.raises(DWFError, match="replaced after it was opened"):
        zoo.flat(0)


WRITER = """
import sys
from dwf_hub.pipeline import DeepWeightFlowPipeline
a, b = (DeepWeightFlowPipeline.from_pretrained(p) for p in sys.argv[1:3])
for i in range(10_000):
    (a if i % 2 else b).save_pretrained(sys.argv[3], overwrite=True)
"""


def test_readers_never_see_a_mixture_of_two_saves(pipe_dir, tmp_path):
    """One process alternates two pipelines into one folder; every load is one of them, whole."""
    other = tmp_path / "other"
    pipe = DeepWeightFlowPipeline.from_pretrained(pipe_dir)
    with torch.no_grad():
        next(pipe.velocity.parameters()).add_(1.0)
    pipe.save_pretrained(other)
    expected = {DeepWeightFlowPipeline.from_pretrained(p).fingerprint() for p in (pipe_dir, other)}
    target = tmp_path / "swapped"
    shutil.copytree(pipe_dir, target)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(pipe_dir), str(other), str(target)])
    loads, start = 0, time.monotonic()
    try:
        while time.monotonic() - start < 6:
            try:
                loaded = DeepWeightFlowPipeline.from_pretrained(target)
            except DWFError as e:  # only ever "try again", never a wrong pipeline
                assert "keeps changing" in str(e) or "missing" in str(e) or "incomplete" in str(e), e
                continue
            assert loaded.fingerprint() in expected
            loads += 1
    finally:
        writer.kill()
        writer.wait()
    assert loads > 5


# -- never a broken network ---------------------------------------------------------------------------
def test_a_diverging_or_nan_flow_is_refused(tiny_fit):
    pipe = tiny_fit.pipeline
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    weight = next(pipe.velocity.parameters())
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.fill_(float("nan"))
        with pytest.raises(DWFError, match="NaN or Inf"):
            pipe(num_networks=2, generator=gen())
        with torch.no_grad():
            weight.fill_(1e30)  # diverges to Inf
        with pytest.raises(DWFError, match="NaN or Inf"):
            pipe(num_networks=2, generator=gen(), output_type="pt")
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    mean = pipe.codec.mean.clone()
    try:
        pipe.codec.mean[0] = float("nan")
        with pytest.raises(DWFError, match="NaN or Inf"):
            pipe(num_networks=2, generator=gen(), output_type="state_dict")
    finally:
        pipe.codec.mean.copy_(mean)
    assert all(
        torch.isfinite(w).all() for w in pipe(num_networks=2, generator=gen(), output_type="pt").weights
    )


def test_nan_weights_never_reach_a_packed_shard(tiny_fit, tmp_path):
    pipe = tiny_fit.pipeline
    mean = pipe.codec.mean.clone()
    try:
        pipe.codec.mean[0] = float("nan")
        with pytest.raises(DWFError, match="NaN or Inf"):
            pipe.generate_to_disk(tmp_path / "gen", 4, networks_per_shard=2, progress=False)
    finally:
        pipe.codec.mean.copy_(mean)
    assert not (tmp_path / "gen").exists()


def test_nan_in_a_saved_pipeline_or_packed_zoo_is_refused_on_load(pipe_dir, tiny_fit, tmp_path):
    path = _velocity_file(pipe_dir)
    tensors = load_tensors(path)
    key = next(iter(tensors))
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_tensors(path, tensors)
    write_manifest(pipe_dir)
    with pytest.raises(DWFError, match="NaN or Inf"):
        DeepWeightFlowPipeline.from_pretrained(pipe_dir)
    packed = tiny_fit.pipeline.generate_to_disk(tmp_path / "packed", 4, networks_per_shard=2, progress=False)
    shard = next((packed / "checkpoints").glob("*.safetensors"))
    tensors = load_tensors(shard)
    key = next(iter(tensors))
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_tensors(
        shard,
        tensors,
        metadata=__import__("dwf_hub.io", fromlist=["read_header"]).read_header(shard).metadata,
    )
    write_manifest(packed)
    with pytest.raises(DWFError, match="NaN or Inf"):
        WeightZoo.load(packed).to_matrix()


@pytest.mark.parametrize(
    "data, match",
    [
        (torch.empty(0, 4), "0 sample"),
        (torch.full((8, 4), float("nan")), "NaN or Inf"),
        (torch.ones(8, 4), "constant"),
        (np.ones((8, 4), dtype=np.float32), "ndarray"),
        (torch.ones(8, 4, dtype=torch.int64), "int64"),
        (torch.randn(8, 5), r"\(8, 5\)"),
    ],
)
def test_calibration_data_is_validated(tiny_fit, data, match):
    with pytest.raises(DWFError, match=match):
        tiny_fit.pipeline(num_networks=2, generator=torch.Generator().manual_seed(0), calibration_data=data)


# -- bad values: one line, before any work ------------------------------------------------------------
def _refused(argv: list[str], capsys, match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "Traceback" not in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("device, match", [("bogus", "not a torch device"), ("meta", "holds no data"),
                                           ("cuda:7", "device(s)")])  # fmt: skip
def test_bad_devices_are_one_line(tmp_path, capsys, device, match):
    from conftest import TINY_RECIPE_TOML

    (tmp_path / "r.toml").write_text(TINY_RECIPE_TOML)
    _refused(["-q", "zoo", "train", str(tmp_path / "r.toml"), "--num-models", "2", "--out", str(tmp_path / "z"),
              "--device", device], capsys, match)  # fmt: skip


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda p: (p / "model_index.json").write_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
        (lambda p: (p / "model_index.json").write_bytes(b'{"_class_name": "\xff"}'), "invalid JSON"),
        (lambda p: _edit_index(p, recipe=5), "'recipe' must be a JSON object"),
        (lambda p: _edit_velocity(p, drop=True), "missing"),
        (lambda p: _edit_velocity(p, drop=False), "unexpected"),
    ],
)
def test_malformed_pipelines_are_one_line(pipe_dir, tmp_path, capsys, edit, match):
    edit(pipe_dir)
    write_manifest(pipe_dir)
    _refused(["-q", "generate", str(pipe_dir), "--out", str(tmp_path / "g")], capsys, match)


def _edit_index(pipe_dir: Path, **changes) -> None:
    index = json.loads((pipe_dir / "model_index.json").read_text())
    (pipe_dir / "model_index.json").write_text(json.dumps({**index, **changes}))


def _edit_velocity(pipe_dir: Path, drop: bool) -> None:
    path = _velocity_file(pipe_dir)
    tensors = load_tensors(path)
    if drop:
        tensors.pop(sorted(tensors)[-1])
    else:
        tensors["extra.weight"] = torch.zeros(2)
    save_tensors(path, tensors)


def test_python_values_are_refused_in_one_clear_error(tiny_fit, tiny_zoo, zoo_dir):
    from dwf_hub.zoo.training import train_zoo

    pipe = tiny_fit.pipeline
    with pytest.raises(DWFError, match="torch.Generator"):
        pipe(num_networks=2, generator="seed")
    with pytest.raises(DWFError, match="meta"):
        pipe.to("meta")
    assert len(WeightZoo.load(zoo_dir, members=np.int64(2))) == 2
    for members in ([1.5], "3", True, [True]):
        with pytest.raises(DWFError, match="members"):
            WeightZoo.load(zoo_dir, members=members)
    with pytest.raises(DWFError, match="sigma must be a number"):
        ZooBaseline(tiny_zoo, "noise", sigma=True)
    with pytest.raises(DWFError, match="at least 2 networks"):
        ZooBaseline(tiny_zoo.subset([0]), "gaussian")
    with pytest.raises(DWFError, match="holdout"):
        tiny_zoo.split_holdout(-3)
    with pytest.raises(DWFError, match="seed must be"):
        train_zoo(tiny_zoo.recipe, 2, zoo_dir.parent / "z", seed=2**63, progress=False)


def test_a_head_that_does_not_fit_the_data_is_refused(tmp_path, capsys):
    from conftest import TINY_RECIPE_TOML

    (tmp_path / "r.toml").write_text(TINY_RECIPE_TOML.replace("[4, 6, 5, 3]", "[4, 6, 5, 7]"))
    _refused(["-q", "zoo", "train", str(tmp_path / "r.toml"), "--num-models", "2", "--out", str(tmp_path / "z")],
             capsys, "7 outputs, its data 3 classes")  # fmt: skip


def test_sizes_are_bounded_before_anything_is_allocated(zoo_dir, tmp_path, capsys, monkeypatch):
    from conftest import TINY_RECIPE_TOML

    monkeypatch.setattr("dwf_hub.resources.available_memory", lambda: 2**30)
    _refused(["-q", "fit", str(zoo_dir), "--out", str(tmp_path / "p"), "--hidden-dim", "40000"], capsys,
             "velocity model of")  # fmt: skip
    (tmp_path / "r.toml").write_text(TINY_RECIPE_TOML.replace("[4, 6, 5, 3]", "[4, 100000000, 3]"))
    _refused(["-q", "zoo", "train", str(tmp_path / "r.toml"), "--num-models", "2", "--out", str(tmp_path / "z")],
             capsys, "GiB of memory")  # fmt: skip


def test_evaluate_holdout_out_of_range_is_one_line(zoo_dir, capsys):
    _refused(
        ["-q", "evaluate", str(zoo_dir), "--reference", str(zoo_dir), "--holdout", "8"], capsys, "holdout"
    )


def test_ctrl_c_and_odd_paths_are_one_line(zoo_dir, tmp_path, capsys, monkeypatch):
    def interrupted(a):
        raise KeyboardInterrupt

    monkeypatch.setattr("dwf_hub.cli._canonicalize", interrupted)
    parser_default = ["-q", "canonicalize", str(zoo_dir), "--out", str(tmp_path / "c")]
    from dwf_hub import cli

    monkeypatch.setattr(cli, "build_parser", _patched_parser(cli.build_parser, interrupted))
    assert main(parser_default) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.undo()
    odd = str(tmp_path).encode() + b"/\xff\xfe"
    _refused(["-q", "evaluate", odd.decode("utf-8", "surrogateescape")], capsys, "no such folder")


def _patched_parser(build, func):
    def build_patched():
        parser = build()
        for action in parser._actions:
            if (
                hasattr(action, "choices")
                and isinstance(action.choices, dict)
                and "canonicalize" in action.choices
            ):
                action.choices["canonicalize"].set_defaults(func=func)
        return parser

    return build_patched


def test_nan_rows_and_nan_packed_zoos_and_huge_paths_are_one_line(zoo_dir, tiny_fit, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(zoo_dir / "metadata.parquet")
    column = table.column_names.index("test_accuracy")
    table = table.set_column(column, "test_accuracy", pa.array([float("nan")] * len(table)))
    pq.write_table(table, zoo_dir / "metadata.parquet")
    write_manifest(zoo_dir)
    _refused(["-q", "evaluate", str(zoo_dir)], capsys, "test_accuracy = nan")
    packed = tiny_fit.pipeline.generate_to_disk(tmp_path / "packed", 4, networks_per_shard=4, progress=False)
    shard = next((packed / "checkpoints").glob("*.safetensors"))
    from dwf_hub.io import read_header

    tensors, metadata = load_tensors(shard), read_header(shard).metadata
    tensors = {k: torch.full_like(v, float("nan")) for k, v in tensors.items()}
    save_tensors(shard, tensors, metadata=metadata)
    write_manifest(packed)
    _refused(["-q", "fit", str(packed), "--out", str(tmp_path / "p")], capsys, "NaN or Inf")
    _refused(["-q", "generate", "x" * 5000, "--out", str(tmp_path / "g")], capsys, "error")


# -- a file is hashed once per machine: on save or at its first load --------------------------------------
def _hashes(monkeypatch) -> list[str]:
    """The files fully hashed from now on (every process-level cache forgotten: as a fresh process)."""
    import dwf_hub.artifacts as artifacts

    calls, original = [], artifacts.sha256
    monkeypatch.setattr(artifacts, "_VERIFIED", {})
    monkeypatch.setattr(artifacts, "sha256", lambda p: calls.append(Path(p).name) or original(p))
    return calls


def test_a_saved_pipeline_loads_without_hashing_again(pipe_dir, monkeypatch):
    calls = _hashes(monkeypatch)
    assert DeepWeightFlowPipeline.from_pretrained(pipe_dir) is not None
    assert (
        "diffusion_pytorch_model.safetensors" not in calls
    )  # its record says: hashed on save, unchanged since
    manifest = json.loads((pipe_dir / "manifest.json").read_text())["files"]
    assert set(json.loads((pipe_dir / ".dwf_verified.json").read_text())["files"]) == set(manifest)


def test_a_file_changed_after_verification_is_refused(pipe_dir, monkeypatch):
    """Same size, same modification time: the change time moves, so the file is hashed again and refused."""
    import os

    path = _velocity_file(pipe_dir)
    st = path.stat()
    _same_size_change(pipe_dir, pipe_dir)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    calls = _hashes(monkeypatch)
    with pytest.raises(DWFError, match="does not match manifest.json"):
        DeepWeightFlowPipeline.from_pretrained(pipe_dir)
    assert path.name in calls


def test_a_copied_pipeline_is_hashed_once_then_trusted(pipe_dir, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(pipe_dir, copy)  # the record travels but names other files (other inodes)
    calls = _hashes(monkeypatch)
    DeepWeightFlowPipeline.from_pretrained(copy)
    assert "diffusion_pytorch_model.safetensors" in calls
    calls.clear()
    monkeypatch.setattr("dwf_hub.artifacts._VERIFIED", {})
    DeepWeightFlowPipeline.from_pretrained(copy)
    assert calls == []
    (copy / ".dwf_verified.json").write_text(
        "{not json"
    )  # a broken record is no record, and not ours to replace
    DeepWeightFlowPipeline.from_pretrained(copy)
    assert "diffusion_pytorch_model.safetensors" in calls
    assert (copy / ".dwf_verified.json").read_text() == "{not json"


def test_the_record_is_not_part_of_the_artifact(pipe_dir, tmp_path):
    """The manifest never lists it, the output policy still sees our pipeline, and a new save drops the old one."""
    from dwf_hub.artifacts import artifact_kind

    assert ".dwf_verified.json" not in json.loads((pipe_dir / "manifest.json").read_text())["files"]
    (pipe_dir / "..dwf_verified.json.x1y2.tmp").write_text(
        "{"
    )  # a concurrent load rewriting it (or one killed)
    assert artifact_kind(pipe_dir) == "pipeline"
    assert DeepWeightFlowPipeline.from_pretrained(pipe_dir) is not None
    DeepWeightFlowPipeline.from_pretrained(pipe_dir).save_pretrained(pipe_dir)
    assert DeepWeightFlowPipeline.from_pretrained(pipe_dir) is not None
