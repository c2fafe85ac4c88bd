"""One output policy for every command that writes: a folder is replaced only when its *contents* parse as an
artifact of ours of the same kind holding only files we wrote; an input is never an output; stale job state
never blocks a rerun. Parametrized over the CLI's commands, so that a new command cannot forget it."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from conftest import TINY_RECIPE_TOML, checksums, refused

from dwf_hub.artifacts import job_folder, resumable_job, write_manifest
from dwf_hub.cli import build_parser, main
from dwf_hub.errors import DWFError
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.zoo.weight_zoo import WeightZoo


@pytest.fixture(scope="module")
def artifacts(tiny_zoo, tiny_fit, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    (root / "tiny.toml").write_text(TINY_RECIPE_TOML)
    tiny_zoo.save(root / "zoo")
    tiny_fit.pipeline.save_pretrained(root / "pipe")
    return {"root": root, "zoo": root / "zoo", "pipe": root / "pipe", "recipe": root / "tiny.toml"}


# Every CLI command that writes, as (its words, the kind it writes, its arguments before --out). Refusals
# come before any work, so the inputs only need to exist where the command would read them.
WRITERS = {
    "zoo train": ("trained zoo", lambda a: ["zoo", "train", str(a["recipe"]), "--num-models", "2"]),
    "zoo import": ("imported zoo", lambda a: ["zoo", "import", str(a["root"] / "no_model")]),
    "canonicalize": ("canonical zoo", lambda a: ["canonicalize", str(a["zoo"])]),
    "fit": ("pipeline", lambda a: ["fit", str(a["zoo"])]),
    "generate": ("generated zoo", lambda a: ["generate", str(a["pipe"]), "--num-networks", "2"]),
    "baseline": ("baseline zoo", lambda a: ["baseline", "noise", str(a["zoo"]), "--num-networks", "2"]),
    "evaluate": ("report", lambda a: ["evaluate", str(a["zoo"]), "--reference", str(a["zoo"])]),
    "finetune": ("transfer results", lambda a: ["finetune", "digits04_to_59_mlp", "--zoo", str(a["zoo"])]),
    "demo": ("demo", lambda a: ["demo", "--num-models", "4"]),
}


def _writing_commands() -> dict[str, argparse.ArgumentParser]:
    """``"zoo train" -> parser`` for every (sub)command with an ``--out`` option."""
    found = {}

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])
        if any("--out" in a.option_strings for a in parser._actions):
            found[" ".join(words)] = parser

    walk(build_parser(), [])
    return found


def test_every_writing_command_declares_its_output_and_is_tested_here():
    commands = _writing_commands()
    assert set(commands) == set(WRITERS), (
        "a command writes --out but is not in WRITERS (or gone from the CLI)"
    )
    for words, parser in commands.items():
        kind, _ = parser.get_default("output")
        assert kind == WRITERS[words][0], words
        assert any("--overwrite" in a.option_strings for a in parser._actions), f"{words} has no --overwrite"


def _occupy(kind: str, folder: Path, artifacts: dict[str, Path]) -> None:
    """Fill ``folder`` with something that is not ours to replace."""
    if kind == "user folder":
        folder.mkdir()
        (folder / "NOTES.txt").write_text("my notes")
    elif kind == "diffusers lookalike":  # a Stable Diffusion folder: model_index.json proves nothing
        (folder / "unet").mkdir(parents=True)
        (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
        (folder / "unet" / "config.json").write_text("{}")
        (folder / "NOTES.txt").write_text("mine")
    elif kind == "zoo lookalike":
        folder.mkdir()
        (folder / "zoo.json").write_text('{"format_version": true, "arch": {}}')
        (folder / "data.csv").write_text("1,2,3")
    elif kind == "forged manifest":  # our manifest format over files that parse as nothing of ours
        folder.mkdir()
        (folder / "zoo.json").write_text("{}")
        (folder / "data.csv").write_text("1,2,3")
        write_manifest(folder)
    elif kind == "our zoo plus a user file":
        shutil.copytree(artifacts["zoo"], folder)
        (folder / "NOTES.txt").write_text("keep me")
    elif kind == "our pipeline plus a user file":
        shutil.copytree(artifacts["pipe"], folder)
        (folder / "velocity" / "NOTES.txt").write_text("keep me")


OCCUPIED = ["user folder", "diffusers lookalike", "zoo lookalike", "forged manifest",
            "our zoo plus a user file", "our pipeline plus a user file"]  # fmt: skip


@pytest.mark.parametrize("occupied", OCCUPIED)
@pytest.mark.parametrize("command", list(WRITERS))
def test_every_writer_refuses_a_folder_that_is_not_ours(command, occupied, artifacts, tmp_path, capsys):
    out = tmp_path / "out"
    _occupy(occupied, out, artifacts)
    before = checksums(out)
    refused(["-q", *WRITERS[command][1](artifacts), "--out", str(out)], capsys, "not a dwf_hub artifact")
    assert checksums(out) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no lock, job or staging left


@pytest.mark.parametrize("command", list(WRITERS))
def test_every_writer_refuses_an_artifact_of_another_kind(command, artifacts, tmp_path, capsys):
    other = "pipe" if WRITERS[command][0] != "pipeline" else "zoo"
    out = tmp_path / "out"
    shutil.copytree(artifacts[other], out)
    before = checksums(out)
    found = "pipeline" if other == "pipe" else "trained zoo"
    refused(["-q", *WRITERS[command][1](artifacts), "--out", str(out)], capsys, f"is a {found}; refusing")
    assert checksums(out) == before


@pytest.mark.parametrize("where", ["the input", "inside the input", "holding the input"])
@pytest.mark.parametrize("command", [c for c in WRITERS if c not in ("demo", "zoo import")])
def test_an_input_is_never_an_output_even_with_overwrite(command, where, artifacts, tmp_path, capsys):
    copy = dict(artifacts)
    for name in ("zoo", "pipe"):
        copy[name] = tmp_path / "outer" / name
        shutil.copytree(artifacts[name], copy[name])
    if command == "zoo train":  # its input is the recipe file
        shutil.copy(artifacts["recipe"], copy["zoo"] / "tiny.toml")
        copy["recipe"] = copy["zoo"] / "tiny.toml"
    source = {"generate": copy["pipe"], "zoo train": copy["recipe"]}.get(command, copy["zoo"])
    out = {"the input": source, "inside the input": source / "sub", "holding the input": tmp_path / "outer"}[
        where
    ]
    before = checksums(tmp_path / "outer")
    argv = ["-q", *WRITERS[command][1](copy), "--out", str(out), "--overwrite"]
    refused(argv, capsys, "the input")
    assert checksums(tmp_path / "outer") == before


def test_a_generated_set_never_replaces_a_trained_zoo(artifacts, tmp_path, capsys):
    """Tried as a new user: `generate flows/iris --out zoos/iris` replaced a trained zoo."""
    zoos = tmp_path / "zoos" / "iris"
    shutil.copytree(artifacts["zoo"], zoos)
    refused(["-q", "generate", str(artifacts["pipe"]), "--out", str(zoos)], capsys, "is a trained zoo")
    assert len(WeightZoo.load(zoos)) == 8
    assert main(["-q", "generate", str(artifacts["pipe"]), "--num-networks", "2", "--out", str(zoos),
                 "--overwrite"]) == 0  # fmt: skip
    assert len(WeightZoo.load(zoos)) == 2


def test_the_same_kind_is_replaced_and_cards_may_be_edited(artifacts, tmp_path):
    out = tmp_path / "gen"
    argv = ["-q", "generate", str(artifacts["pipe"]), "--num-networks", "2", "--out", str(out)]
    assert main(argv) == 0
    with open(out / "README.md", "a") as f:
        f.write("\nedited on the Hub\n")
    assert main([*argv[:-3], "3", "--out", str(out)]) == 0
    assert len(WeightZoo.load(out)) == 3


@pytest.mark.parametrize(
    "writer", ["save", "save_pretrained", "export", "train_zoo", "generate_to_disk", "report"]
)
def test_python_writers_refuse_a_lookalike(writer, artifacts, tiny_zoo, tiny_fit, tmp_path):
    from dwf_hub.evaluation.report import build_report
    from dwf_hub.zoo.export import export_networks
    from dwf_hub.zoo.training import train_zoo

    out = tmp_path / "sd"
    _occupy("diffusers lookalike", out, artifacts)
    before = checksums(out)
    calls = {
        "save": lambda: tiny_zoo.save(out),
        "save_pretrained": lambda: tiny_fit.pipeline.save_pretrained(out),
        "export": lambda: export_networks(tiny_zoo.arch, [tiny_zoo.model(0)], out),
        "train_zoo": lambda: train_zoo(tiny_zoo.recipe, 2, out, progress=False),
        "generate_to_disk": lambda: tiny_fit.pipeline.generate_to_disk(out, 2, progress=False),
        "report": lambda: build_report(tiny_zoo, tiny_zoo, out),
    }
    with pytest.raises(DWFError, match="not a dwf_hub artifact"):
        calls[writer]()
    assert checksums(out) == before


def test_an_interrupted_fit_never_blocks_a_rerun(artifacts, tmp_path, capsys):
    out = tmp_path / "pipe"
    with pytest.raises(RuntimeError), resumable_job(out, {"fit": "other settings"}):
        raise RuntimeError("killed")  # what a killed fit with other settings leaves beside its --out
    argv = ["-q", "fit", str(artifacts["zoo"]), "--out", str(out), "--iterations", "20"]
    refused(argv, capsys, "interrupted job with other settings")
    assert main([*argv, "--overwrite"]) == 0  # starts over cleanly
    assert DeepWeightFlowPipeline.from_pretrained(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no job folder, no lock file
    assert main(argv) == 0  # a pipeline of ours, same kind: replaced
    assert not job_folder(out).exists()


def test_jobs_are_identified_by_contents_not_by_how_inputs_are_spelled(artifacts, tmp_path, monkeypatch):
    monkeypatch.chdir(artifacts["root"])
    relative = DeepWeightFlowPipeline.from_pretrained(Path("..") / artifacts["root"].name / "pipe")
    absolute = DeepWeightFlowPipeline.from_pretrained(artifacts["pipe"].absolute())
    assert relative.fingerprint() == absolute.fingerprint()
    assert WeightZoo.load("zoo").fingerprint() == WeightZoo.load(artifacts["zoo"].absolute()).fingerprint()
    assert WeightZoo.load("zoo", members=3).fingerprint() != WeightZoo.load("zoo").fingerprint()


def test_an_out_that_is_a_file_or_json_that_exists_is_refused(artifacts, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(["-q", "fit", str(artifacts["zoo"]), "--out", str(tmp_path / "file")], capsys, "not a folder")
    (tmp_path / "summary.json").write_text("{}")
    argv = ["-q", "evaluate", str(artifacts["zoo"]), "--json", str(tmp_path / "summary.json")]
    refused(argv, capsys, "exists; refusing to replace it")
    assert (tmp_path / "summary.json").read_text() == "{}"
    refused(["-q", "generate", str(artifacts["pipe"]), "--out", str(tmp_path / "e"), "--export",
             str(artifacts["zoo"])], capsys, "is a trained zoo")  # fmt: skip


def test_long_names_leave_nothing_behind(tiny_zoo, tmp_path):
    out = tmp_path / ("z" * 250)
    tiny_zoo.save(out)
    tiny_zoo.save(out)  # replaced: its lock and staging names fit the file system
    assert len(WeightZoo.load(out)) == 8
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    from dwf_hub.artifacts import sibling

    twin = tmp_path / ("z" * 249 + "y")  # same first 249 characters: its staging, lock and job are its own
    assert sibling(out, "") != sibling(twin, "") and not sibling(out, "").name.startswith(
        sibling(twin, "").name
    )


def test_an_unwritable_place_is_one_line(artifacts, tmp_path, capsys):
    (tmp_path / "file").write_text(
        "x"
    )  # a parent that is a file: the file system refuses, as a full disk would
    refused(
        ["-q", "canonicalize", str(artifacts["zoo"]), "--out", str(tmp_path / "file" / "c")], capsys, "file"
    )
    assert (tmp_path / "file").read_text() == "x"


def test_only_staging_folders_that_prove_ours_are_cleaned(tiny_zoo, tmp_path):
    from dwf_hub.artifacts import STAGING_MARKER, sibling

    out = tmp_path / "zoo"
    prefix = sibling(out, "").name
    lookalike = tmp_path / f"{prefix}mine.staging"  # a user's folder whose name matches: kept
    lookalike.mkdir()
    (lookalike / "thesis.tex").write_text("chapter 1")
    killed = tmp_path / f"{prefix}abcd1234.staging"  # what a writer killed mid-save leaves: removed
    killed.mkdir()
    (killed / STAGING_MARKER).touch()
    (killed / "zoo.json").write_text("{}")
    tiny_zoo.save(out)
    assert (lookalike / "thesis.tex").read_text() == "chapter 1"
    assert not killed.exists()
    assert not (out / STAGING_MARKER).exists() and len(WeightZoo.load(out)) == 8
