"""Hostile-user probe of the CLI's safety guarantees (not a benchmark of speed: a count of failures).

Builds a tiny Iris zoo and pipeline, then runs every case below through ``dwf-hub``'s entry point. Each case
says what must happen: ``refused`` (exit 2, one line, no traceback, every file that existed before unchanged)
or ``works`` (exit 0, and every file outside ``--out`` unchanged). Prints one row per case and the counts of
data lost, tracebacks and silent acceptances.

    python benchmarks/probe_safety.py
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from dwf_hub.cli import main


def snapshot(root: Path) -> dict[str, str]:
    """Every regular file below ``root`` (symlinks not followed) with its SHA-256."""
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            p = Path(folder) / f
            if not p.is_symlink():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["-q", *argv])
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 2
        except BaseException as e:  # a traceback a user would see
            return 1, f"Traceback: {type(e).__name__}: {e}"
    return code, err.getvalue().strip()


def cases(w: Path) -> list[tuple[str, str, list[str]]]:
    """``(what, expected, argv)``; folders are prepared by ``prepare``."""
    z, p = str(w / "zoo"), str(w / "pipe")
    return [
        ("generate into the parent of its pipeline", "refused", ["generate", p, "--out", str(w)]),
        ("fit into the zoo's checkpoints folder", "refused", ["fit", z, "--out", f"{z}/checkpoints"]),
        ("canonicalize into the zoo spelled with ..", "refused", ["canonicalize", z, "--out", f"{z}/../zoo"]),
        ("baseline into a symlink to the zoo", "refused", ["baseline", "noise", z, "--out", str(w / "link")]),
        ("evaluate --out into the reference zoo", "refused", ["evaluate", str(w / "gen"), "--reference", z, "--out", z]),
        ("evaluate --json over the zoo's zoo.json", "refused", ["evaluate", z, "--json", f"{z}/zoo.json"]),
        ("finetune into the pipeline", "refused", ["finetune", "digits04_to_59_mlp", "--pipeline", p, "--out", p]),
        ("demo into a trained zoo", "refused", ["demo", "--out", z]),
        ("generate into a home folder (dotfiles only)", "refused", ["generate", p, "--out", str(w / "home")]),
        ("fit into a git work tree", "refused", ["fit", z, "--out", str(w / "repo")]),
        ("train into a user project holding a zoo of ours", "refused", ["zoo", "train", "iris_mlp", "--num-models", "2", "--out", str(w / "project")]),
        ("generate into a folder whose manifest.json links to a user file", "refused", ["generate", p, "--out", str(w / "evil_manifest")]),
        ("generate into a zoo of ours with a user file in checkpoints/", "refused", ["generate", p, "--out", str(w / "zoo_plus")]),
        ("generate into a pipeline of ours", "refused", ["generate", p, "--out", str(w / "pipe_copy")]),
        ("baseline into a generated zoo", "refused", ["baseline", "noise", z, "--out", str(w / "gen_copy")]),
        ("fit next to a job folder that is a symlink to user data", "refused", ["fit", z, "--out", str(w / "jobbed")]),
        ("generate --export into the pipeline", "refused", ["generate", p, "--out", str(w / "g2"), "--export", p]),
        ("generate --export equal to --out", "refused", ["generate", p, "--out", str(w / "g3"), "--export", str(w / "g3")]),
        ("generate with --out an existing file", "refused", ["generate", p, "--out", str(w / "notes.txt")]),
        ("load a pipeline with an unlisted file in scheduler/", "refused", ["generate", str(w / "pipe_extra"), "--out", str(w / "g4")]),
        ("load a pipeline whose card.json is not UTF-8", "refused", ["generate", str(w / "pipe_card"), "--out", str(w / "g5")]),
        ("load a zoo whose metadata row holds NaN", "refused", ["evaluate", str(w / "zoo_nan")]),
        ("generate 0 networks", "refused", ["generate", p, "--num-networks", "0", "--out", str(w / "g6")]),
        ("generate with a negative temperature", "refused", ["generate", p, "--temperature", "-1", "--out", str(w / "g7")]),
        ("evaluate --holdout -1", "refused", ["evaluate", str(w / "gen"), "--reference", z, "--holdout", "-1"]),
        ("train on a missing device index", "refused", ["zoo", "train", "iris_mlp", "--num-models", "2", "--out", str(w / "t1"), "--device", "cpu:x"]),
        ("generate into an empty folder", "works", ["generate", p, "--num-networks", "2", "--out", str(w / "empty")]),
        ("generate again into the same generated zoo", "works", ["generate", p, "--num-networks", "3", "--out", str(w / "gen")]),
        ("fit again into its own pipeline folder", "works", ["fit", z, "--iterations", "5", "--out", str(w / "pipe_copy2")]),
    ]  # fmt: skip


def prepare(w: Path) -> None:
    assert run(["zoo", "train", "iris_mlp", "--num-models", "6", "--out", str(w / "zoo")])[0] == 0
    assert run(["fit", str(w / "zoo"), "--iterations", "50", "--out", str(w / "pipe")])[0] == 0
    assert run(["generate", str(w / "pipe"), "--num-networks", "3", "--out", str(w / "gen")])[0] == 0
    (w / "link").symlink_to(w / "zoo")
    (w / "home").mkdir()
    (w / "home" / ".bashrc").write_text("export PATH")
    (w / "repo" / ".git").mkdir(parents=True)
    (w / "repo" / ".git" / "HEAD").write_text("ref: refs/heads/main")
    shutil.copytree(w / "zoo", w / "project" / "zoo")
    (w / "project" / "NOTES.md").write_text("mine")
    (w / "evil_manifest").mkdir()
    (w / "secret.txt").write_text("user data")
    (w / "evil_manifest" / "manifest.json").symlink_to(w / "secret.txt")
    shutil.copytree(w / "zoo", w / "zoo_plus")
    (w / "zoo_plus" / "checkpoints" / "mine.safetensors").write_bytes(b"user")
    shutil.copytree(w / "pipe", w / "pipe_copy")
    shutil.copytree(w / "pipe", w / "pipe_copy2")
    shutil.copytree(w / "gen", w / "gen_copy")
    (w / "userdata").mkdir()
    (w / "userdata" / "thesis.tex").write_text("chapter 1")
    (w / ".jobbed.job").symlink_to(w / "userdata")
    (w / "notes.txt").write_text("notes")
    shutil.copytree(w / "pipe", w / "pipe_extra")
    (w / "pipe_extra" / "scheduler" / "extra.json").write_text("{}")
    shutil.copytree(w / "pipe", w / "pipe_card")
    (w / "pipe_card" / "card.json").write_bytes(b'{"x": "\xff"}')
    from dwf_hub.artifacts import write_manifest

    write_manifest(w / "pipe_card")
    shutil.copytree(w / "zoo", w / "zoo_nan")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(w / "zoo_nan" / "metadata.parquet")
    column = table.column_names.index("test_accuracy")
    table = table.set_column(column, "test_accuracy", pa.array([float("nan")] * len(table)))
    pq.write_table(table, w / "zoo_nan" / "metadata.parquet")
    write_manifest(w / "zoo_nan")
    (w / "empty").mkdir()


def main_probe() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        prepare(w)
        counts = {"data lost": 0, "traceback": 0, "silently accepted": 0, "wrongly refused": 0}
        print("| case | expected | exit | outcome |\n|---|---|---|---|")
        for what, expected, argv in cases(w):
            out = next((argv[i + 1] for i, a in enumerate(argv) if a == "--out"), None)
            before = snapshot(w)
            code, err = run(argv)
            after = snapshot(w)
            lost = [f for f, h in before.items() if after.get(f) != h and not (
                expected == "works" and out and Path(f).is_relative_to(Path(out)))]  # fmt: skip
            outcome = "ok"
            if lost:
                counts["data lost"] += 1
                outcome = f"DATA LOST: {lost[0]}"
            elif err.startswith("Traceback") or len(err.splitlines()) > 1:
                counts["traceback"] += 1
                outcome = f"TRACEBACK: {err.splitlines()[-1][:100]}"
            elif expected == "refused" and code != 2:
                counts["silently accepted"] += 1
                outcome = "SILENTLY ACCEPTED"
            elif expected == "works" and code != 0:
                counts["wrongly refused"] += 1
                outcome = f"REFUSED: {err[:100]}"
            elif expected == "refused":
                outcome = "refused: " + err.removeprefix("dwf-hub: error: ").replace(tmp, "…")[:90]
            print(f"| {what} | {expected} | {code} | {outcome} |")
        print("\n" + json.dumps({"cases": len(cases(w)), **counts}))
        return 0 if not any(counts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main_probe())
