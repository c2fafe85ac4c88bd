"""Hub round trips through the real huggingface_hub code paths, offline (HF_HUB_OFFLINE=1, see conftest).

Uploads are captured at ``HfApi.create_commit`` (what ``upload_folder`` would send, file by file); the
captured files are then placed in a Hugging Face cache laid out as ``snapshot_download`` leaves it, and
loaded back by repo id.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from dwf_hub.errors import DWFError, PipelineFormatError, ZooFormatError
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.zoo.weight_zoo import WeightZoo, read_metadata


@pytest.fixture
def hub(monkeypatch):
    """Captures create_repo / create_commit (and the card check the Hub server would do);
    ``hub["commits"]``: one dict per commit."""
    import huggingface_hub.hf_api
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoUrl

    state = {"repos": [], "commits": [], "remote": {}}

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, **kw):
        state["repos"].append({"repo_id": repo_id, "repo_type": repo_type, "private": private})
        prefix = "datasets/" if repo_type == "dataset" else ""
        return RepoUrl(f"https://huggingface.co/{prefix}{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, create_pr=None, **kw):
        from huggingface_hub import CommitOperationDelete

        files, deleted = {}, []
        for op in operations:
            if isinstance(op, CommitOperationDelete):
                deleted.append(op.path_in_repo)
                continue
            src = op.path_or_fileobj
            files[op.path_in_repo] = Path(src).read_bytes() if isinstance(src, (str, Path)) else bytes(src)
        state["commits"].append({"repo_id": repo_id, "repo_type": repo_type, "message": commit_message,
                                 "files": files, "deleted": deleted, "create_pr": bool(create_pr)})  # fmt: skip
        remote = state["remote"].setdefault(repo_id, {".gitattributes"})
        remote.difference_update(deleted)
        remote.update(files)

    def list_repo_files(self, repo_id, *, revision=None, repo_type=None, token=None, **kw):
        return sorted(state["remote"].get(repo_id, {".gitattributes"}))

    def validate_yaml(self, content, *, repo_type=None, token=None):  # the Hub's server-side check
        from huggingface_hub import RepoCard

        state["validated"].append((repo_type, RepoCard(content).data.to_dict()))

    state["validated"] = []
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(HfApi, "_validate_yaml", validate_yaml)
    # with hf_xet installed, upload_folder streams through its batched pipeline; capture the one-commit path
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
    return state


def put_in_cache(files: dict[str, bytes], repo_id: str, repo_type: str, cache_dir: Path) -> None:
    """Lay out ``files`` as the Hub cache holds a downloaded snapshot of ``repo_id`` at ``main``."""
    commit = hashlib.sha1(b"".join(sorted(files.values()))).hexdigest()
    repo_dir = cache_dir / f"{repo_type}s--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        target = repo_dir / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(blob)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)


def test_zoo_push_then_load_by_repo_id(tiny_zoo, hub, tmp_path, monkeypatch):
    url = tiny_zoo.push_to_hub("org/dwf-zoo-tiny", private=True, commit_message="zoo v1")
    assert url == "https://huggingface.co/datasets/org/dwf-zoo-tiny"
    assert hub["repos"] == [{"repo_id": "org/dwf-zoo-tiny", "repo_type": "dataset", "private": True}]
    (commit,) = hub["commits"]
    assert commit["repo_type"] == "dataset" and commit["message"] == "zoo v1"
    names = set(commit["files"])
    checkpoints = {f"checkpoints/model_{i:05d}.safetensors" for i in range(len(tiny_zoo))}
    assert names == {"README.md", "zoo.json", "metadata.parquet", "manifest.json", *checkpoints}
    assert json.loads(commit["files"]["zoo.json"])["num_models"] == len(tiny_zoo)

    from huggingface_hub import DatasetCard

    card = DatasetCard(commit["files"]["README.md"].decode())
    assert "weight-zoo" in card.data.tags and card.data.license == "mit"
    assert card.data.configs[0]["data_files"][0]["path"] == "metadata.parquet"
    assert 'WeightZoo.from_pretrained("org/dwf-zoo-tiny")' in card.text

    cache = tmp_path / "cache"
    put_in_cache(commit["files"], "org/dwf-zoo-tiny", "dataset", cache)
    import huggingface_hub

    asked = []
    real = huggingface_hub.snapshot_download
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda *a, **k: asked.append(k) or real(*a, **k)
    )
    loaded = WeightZoo.from_pretrained("org/dwf-zoo-tiny", cache_dir=cache)
    assert torch.equal(loaded.to_matrix(), tiny_zoo.to_matrix())
    assert [r["test_accuracy"] for r in loaded.records] == [r["test_accuracy"] for r in tiny_zoo.records]
    assert loaded.recipe == tiny_zoo.recipe

    asked.clear()
    first = WeightZoo.from_pretrained("org/dwf-zoo-tiny", cache_dir=cache, members=2)
    assert len(first) == 2 and torch.equal(first.to_matrix(), tiny_zoo.to_matrix()[:2])
    assert asked[-1]["allow_patterns"] == ["zoo.json", "metadata.parquet", "README.md", "manifest.json",
                                           "checkpoints/model_00000.safetensors", "checkpoints/model_00001.safetensors"]  # fmt: skip
    picked = WeightZoo.from_pretrained("org/dwf-zoo-tiny", cache_dir=cache, members=[3, 1])
    assert torch.equal(picked.to_matrix(), tiny_zoo.to_matrix()[[3, 1]])
    rows = read_metadata("org/dwf-zoo-tiny", cache_dir=cache)
    assert len(rows) == len(tiny_zoo) and "weights" not in rows[0]


def test_small_zoo_weights_stream_through_datasets(tiny_zoo, tmp_path):
    import datasets

    tiny_zoo.save(tmp_path / "zoo")
    ds = datasets.load_dataset(str(tmp_path / "zoo"), split="train", streaming=True)
    rows = list(ds)
    assert len(rows) == len(tiny_zoo)
    assert torch.allclose(torch.tensor(rows[2]["weights"]), tiny_zoo.to_matrix()[2])
    assert rows[2]["seed"] == tiny_zoo.records[2]["seed"]


def test_pipeline_push_then_load_by_repo_id(tiny_fit, hub, tmp_path):
    from dwf_hub.evaluation.zoo_evaluation import evaluate_zoo

    pipe = tiny_fit.pipeline
    evaluation = evaluate_zoo(pipe.generate_zoo(16, seed=0), reference=tiny_fit.training_zoo)
    pipe.push_to_hub("org/dwf-tiny", base_zoo="org/dwf-zoo-tiny", evaluation=evaluation)
    (commit,) = hub["commits"]
    assert commit["repo_type"] is None or commit["repo_type"] == "model"
    names = set(commit["files"])
    assert {"model_index.json", "README.md", "card.json", "scheduler/scheduler_config.json"} <= names
    assert any(n.startswith("velocity/") and n.endswith(".safetensors") for n in names)
    assert any(n.startswith("codec/") and n.endswith(".safetensors") for n in names)
    assert not any(n.endswith((".bin", ".pkl", ".pt")) for n in names)

    from huggingface_hub import ModelCard

    card = ModelCard(commit["files"]["README.md"].decode())
    assert card.data.datasets == ["org/dwf-zoo-tiny"] and card.data.library_name == "dwf-hub"
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values["novelty ratio"] == pytest.approx(evaluation["novelty_ratio"], abs=1e-4)
    assert values["generated accuracy (mean)"] == pytest.approx(100 * evaluation["accuracy_mean"], abs=0.01)
    assert 'DeepWeightFlowPipeline.from_pretrained("org/dwf-tiny")' in card.text

    cache = tmp_path / "cache"
    put_in_cache(commit["files"], "org/dwf-tiny", "model", cache)
    loaded = DeepWeightFlowPipeline.from_pretrained("org/dwf-tiny", cache_dir=cache)
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    a = pipe(num_networks=5, generator=gen(), output_type="pt").weights
    b = loaded(num_networks=5, generator=gen(), output_type="pt").weights
    assert torch.equal(a, b)
    from diffusers import DiffusionPipeline  # diffusers' generic loader, by repo id: handed to ours

    generic = DiffusionPipeline.from_pretrained("org/dwf-tiny", cache_dir=cache)
    assert type(generic) is DeepWeightFlowPipeline
    assert torch.equal(generic(num_networks=5, generator=gen(), output_type="pt").weights, a)
    assert loaded.card_info["base_zoo"] == "org/dwf-zoo-tiny"


def test_hub_errors_are_clear(tmp_path, tiny_zoo, hub):
    with pytest.raises(
        DWFError, match=r"not in the local Hugging Face cache.*hf download org/missing --repo-type dataset"
    ):
        WeightZoo.from_pretrained("org/missing", cache_dir=tmp_path)
    with pytest.raises(DWFError, match=r"not in the local Hugging Face cache.*hf download org/nothing$"):
        DeepWeightFlowPipeline.from_pretrained("org/nothing", cache_dir=tmp_path)
    with pytest.raises(DWFError, match="not a Hub repo id"):
        WeightZoo.from_pretrained("no-such-folder")

    put_in_cache(
        {"README.md": b"# some dataset\n", "data.csv": b"a,b\n1,2\n"}, "org/not-a-zoo", "dataset", tmp_path
    )
    with pytest.raises(ZooFormatError, match="not a dwf_hub zoo"):
        WeightZoo.from_pretrained("org/not-a-zoo", cache_dir=tmp_path)

    other = {"model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline"}).encode()}
    put_in_cache(other, "org/not-a-flow", "model", tmp_path)
    with pytest.raises(PipelineFormatError, match="StableDiffusionPipeline"):
        DeepWeightFlowPipeline.from_pretrained("org/not-a-flow", cache_dir=tmp_path)

    tiny_zoo.push_to_hub("org/future-zoo")
    files = dict(hub["commits"][-1]["files"])
    config = json.loads(files["zoo.json"])
    files["zoo.json"] = json.dumps({**config, "format_version": config["format_version"] + 1}).encode()
    put_in_cache(files, "org/future-zoo", "dataset", tmp_path)
    with pytest.raises(ZooFormatError, match="newer than this dwf_hub supports"):
        WeightZoo.from_pretrained("org/future-zoo", cache_dir=tmp_path)


def test_too_many_files_in_one_folder_is_refused(tmp_path, monkeypatch):
    import dwf_hub.hub.repos as hub_module

    monkeypatch.setattr(hub_module, "MAX_FILES_PER_FOLDER", 3)
    for i in range(4):
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        (tmp_path / "checkpoints" / f"m{i}").write_text("x")
    with pytest.raises(DWFError, match="4 files in one folder; the Hub allows at most 3"):
        hub_module.upload(tmp_path, "org/x", "dataset")


def test_cli_push_and_use_repo_ids(tiny_zoo, tiny_fit, hub, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    from dwf_hub.cli import main

    tiny_zoo.save(tmp_path / "zoo")
    assert main(["-q", "zoo", "push", str(tmp_path / "zoo"), "org/dwf-zoo-cli", "--private"]) == 0
    tiny_fit.pipeline.save_pretrained(tmp_path / "flow", base_zoo="org/dwf-zoo-cli")
    assert main(["-q", "push", str(tmp_path / "flow"), "org/dwf-cli", "--message", "first flow"]) == 0
    zoo_commit, flow_commit = hub["commits"]
    assert zoo_commit["repo_type"] == "dataset" and hub["repos"][0]["private"] is True
    assert flow_commit["message"] == "first flow" and "model_index.json" in flow_commit["files"]
    assert "org/dwf-zoo-cli" in flow_commit["files"]["README.md"].decode()

    cache = tmp_path / "cache"
    put_in_cache(zoo_commit["files"], "org/dwf-zoo-cli", "dataset", cache)
    put_in_cache(flow_commit["files"], "org/dwf-cli", "model", cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    capsys.readouterr()
    assert main(["-q", "evaluate", "org/dwf-zoo-cli"]) == 0
    assert f"{len(tiny_zoo)} networks, test accuracy" in capsys.readouterr().out
    assert main(["-q", "generate", "org/dwf-cli", "--num-networks", "3", "--out", str(tmp_path / "gen")]) == 0
    expected = tiny_fit.pipeline.generate_zoo(3, seed=0).to_matrix()
    assert torch.equal(WeightZoo.load(tmp_path / "gen").to_matrix(), expected)
    assert main(["-q", "evaluate", "org/not-cached"]) == 2
    assert "not in the local Hugging Face cache" in capsys.readouterr().err


def test_cli_fit_writes_an_evaluated_model_card(tiny_zoo, tmp_path):
    from huggingface_hub import ModelCard

    from dwf_hub.cli import main

    tiny_zoo.save(tmp_path / "zoo")
    argv = ["-q", "fit", str(tmp_path / "zoo"), "--out", str(tmp_path / "flow"), "--iterations", "5"]
    assert main([*argv, "--evaluate", "4"]) == 0
    card = ModelCard.load(tmp_path / "flow" / "README.md")
    assert {r.metric_name for r in card.data.eval_results} >= {"novelty ratio", "generated accuracy (mean)"}
    assert "## Evaluation" in card.text and "generated (4 networks)" in card.text
    info = json.loads((tmp_path / "flow" / "card.json").read_text())
    assert info["evaluation"]["num_networks"] == 4 and "base_zoo" not in info  # a local zoo: nothing to link


def test_a_smaller_repush_deletes_stale_checkpoints(tiny_zoo, hub):
    tiny_zoo.push_to_hub("org/zoo")
    smaller = tiny_zoo.subset(range(3))
    smaller.push_to_hub("org/zoo", create_pr=True)
    first, second = hub["commits"]
    assert not first["deleted"] and not first["create_pr"]
    stale = {f"checkpoints/model_{i:05d}.safetensors" for i in range(3, len(tiny_zoo))}
    assert set(second["deleted"]) == stale and second["create_pr"]  # .gitattributes kept
    assert hub["remote"]["org/zoo"] == {".gitattributes", *second["files"]}


def test_save_pretrained_push_to_hub_carries_our_card(tiny_fit, hub, tmp_path):
    tiny_fit.pipeline.save_pretrained(tmp_path / "p", push_to_hub=True, repo_id="org/flow", private=True)
    (commit,) = hub["commits"]
    assert hub["repos"] == [{"repo_id": "org/flow", "repo_type": "model", "private": True}]
    card = commit["files"]["README.md"].decode()
    assert 'DeepWeightFlowPipeline.from_pretrained("org/flow")' in card
    local = {p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*") if p.is_file()}
    assert set(commit["files"]) == local - {".dwf_verified.json"}  # this machine's record stays here
    assert ".dwf_verified.json" in local


def test_zoo_cards_carry_licence_sources_and_synthetic_provenance(tiny_zoo, tiny_fit, tmp_path):
    from huggingface_hub import DatasetCard

    from dwf_hub.zoo.recipes import Recipe

    d = tiny_zoo.recipe.to_dict()
    d.update(license="other", data={"name": "mnist", "val_size": 8})
    zoo = WeightZoo(
        tiny_zoo.arch, list(tiny_zoo), tiny_zoo.records, recipe=Recipe.from_dict(d), info=tiny_zoo.info
    )
    card = DatasetCard((zoo.save(tmp_path / "z") / "README.md").read_text())
    assert card.data.license == "other" and card.data.source_datasets == ["ylecun/mnist"]
    assert "synthetic" not in card.data.tags and "terms of the source dataset" in card.text
    assert (
        DatasetCard(
            (tiny_zoo.save(tmp_path / "t", license="apache-2.0") / "README.md").read_text()
        ).data.license
        == "apache-2.0"
    )

    pipe = tiny_fit.pipeline
    pipe.hub_repo_id = "org/dwf-tiny"
    try:
        generated = pipe.generate_zoo(3)
    finally:
        pipe.hub_repo_id = None
    card = DatasetCard((generated.save(tmp_path / "g") / "README.md").read_text())
    assert "synthetic" in card.data.tags and "https://huggingface.co/org/dwf-tiny" in card.text
    assert card.data.source_datasets == []  # Iris comes from scikit-learn, not the Hub


def test_flow_card_reports_only_the_generated_networks(tiny_fit, tmp_path):
    from huggingface_hub import ModelCard

    evaluation = {"metric": "accuracy", "accuracy_mean": 0.9, "accuracy_std": 0.01, "reference_accuracy_mean": 0.95,
                  "reference_accuracy_std": 0.01, "novelty_ratio": 0.7, "num_networks": 5,
                  "reference_num_networks": 8, "split": "test"}  # fmt: skip
    tiny_fit.pipeline.save_pretrained(
        tmp_path / "p", base_zoo="org/zoo", evaluation=evaluation, license="cc-by-4.0"
    )
    card = ModelCard((tmp_path / "p" / "README.md").read_text())
    assert card.data.license == "cc-by-4.0" and card.data.datasets == ["org/zoo"]
    names = {r.metric_name for r in card.data.eval_results}
    assert names == {
        "generated accuracy (mean)",
        "novelty ratio",
    }  # the zoo's accuracy is context, not a result
    assert {(r.dataset_type, r.dataset_split) for r in card.data.eval_results} == {("org/zoo", "test")}
    assert "95.00" in card.text  # the zoo's figure, in the text


def test_hub_failures_say_which_it_is(tmp_path, tiny_zoo, monkeypatch):
    import huggingface_hub.constants as constants

    from dwf_hub.hub.repos import upload

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DWFError, match=r"not a folder here.*downloading is off \(HF_HUB_OFFLINE=1\)"):
        DeepWeightFlowPipeline.from_pretrained("flows/irs", cache_dir=tmp_path)  # a mistyped local folder
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(DWFError, match=r"downloading is off \(local_files_only=True\)"):
        WeightZoo.from_pretrained("org/missing", cache_dir=tmp_path, local_files_only=True)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 2)
    with pytest.raises(DWFError, match=r"not in the local Hugging Face cache; the Hub could not be reached"):
        WeightZoo.from_pretrained("org/missing", cache_dir=tmp_path)
    folder = tiny_zoo.save_pretrained(tmp_path / "zoo")
    with pytest.raises(DWFError, match=r"push to 'org/x' failed, nothing was committed: \w+"):
        upload(folder, "org/x", "dataset", token="hf_fake")
