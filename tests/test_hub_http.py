"""Zoos and pipelines pushed to and loaded from a Hub served over HTTP on 127.0.0.1 (``hub_server.FakeHub``),
through huggingface_hub's real client code: round trips, stale files deleted, private repos, pull requests,
revisions, diffusers' generic loader and ``datasets`` by repo id, and a network failure mid-push."""

from __future__ import annotations

import pytest
import torch
from hub_server import FakeHub

from dwf_hub.errors import DWFError
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.zoo.weight_zoo import WeightZoo


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    server = FakeHub()
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    yield server
    server.close()


@pytest.fixture
def datasets(hub, monkeypatch, tmp_path):
    """``datasets`` pointed at the test Hub, online (it keeps its own offline switch and endpoint)."""
    datasets = pytest.importorskip("datasets")
    online = {"HF_DATASETS_OFFLINE": False, "HF_HUB_OFFLINE": False, "HF_ENDPOINT": hub.endpoint}
    for key, value in {**online, "HF_DATASETS_CACHE": tmp_path / "datasets_cache"}.items():
        monkeypatch.setattr(datasets.config, key, value)
    return datasets


def test_a_zoo_round_trips_and_a_smaller_push_deletes_stale_files(hub, tiny_zoo):
    tiny_zoo.push_to_hub("org/zoo", private=True)
    assert hub.repos[("dataset", "org/zoo")].private
    loaded = WeightZoo.from_pretrained("org/zoo")
    assert torch.equal(loaded.to_matrix(), tiny_zoo.to_matrix())
    before = set(hub.files("dataset", "org/zoo"))
    tiny_zoo.subset(range(3)).push_to_hub("org/zoo", commit_message="three")
    after = set(hub.files("dataset", "org/zoo"))
    assert {p for p in before - after if p.startswith("checkpoints/")} and len(
        WeightZoo.from_pretrained("org/zoo")
    ) == 3
    first = hub.repos[("dataset", "org/zoo")].messages  # every push is one commit
    assert list(first.values())[-1] == "three"


def test_a_pipeline_round_trips_by_repo_id_and_through_diffusers(hub, tiny_fit):
    from diffusers import DiffusionPipeline

    pipe = tiny_fit.pipeline
    pipe.push_to_hub("org/flow")
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    expected = pipe(num_networks=4, generator=gen(), output_type="pt").weights
    for loader in (DeepWeightFlowPipeline, DiffusionPipeline):
        loaded = loader.from_pretrained("org/flow")
        assert type(loaded) is DeepWeightFlowPipeline
        assert torch.equal(loaded(num_networks=4, generator=gen(), output_type="pt").weights, expected)
    assert not any(p.endswith((".bin", ".py")) for p in hub.files("model", "org/flow"))


def test_pull_requests_and_revisions(hub, tiny_zoo):
    tiny_zoo.push_to_hub("org/zoo")
    main = hub.repos[("dataset", "org/zoo")].branches["main"]
    tiny_zoo.subset(range(2)).push_to_hub("org/zoo", create_pr=True)
    assert hub.repos[("dataset", "org/zoo")].branches["main"] == main  # main untouched
    assert len(WeightZoo.from_pretrained("org/zoo", revision="refs/pr/1")) == 2
    assert len(WeightZoo.from_pretrained("org/zoo", revision=main)) == len(tiny_zoo)


def test_datasets_reads_a_zoo_by_repo_id(hub, datasets, tiny_zoo):
    tiny_zoo.push_to_hub("org/zoo")
    rows = datasets.load_dataset("org/zoo", split="train")
    assert len(rows) == len(tiny_zoo)
    streamed = list(datasets.load_dataset("org/zoo", split="train", streaming=True))
    assert len(streamed) == len(tiny_zoo)


def test_a_network_failure_mid_push_is_one_line_and_leaves_the_repo_as_it_was(hub, tiny_zoo):
    tiny_zoo.push_to_hub("org/zoo")
    repo = hub.repos[("dataset", "org/zoo")]
    before = (repo.branches["main"], len(repo.commits))
    hub.fail_commits = 10
    with pytest.raises(DWFError, match=r"push to 'org/zoo' failed, nothing was committed"):
        tiny_zoo.subset(range(2)).push_to_hub("org/zoo")
    assert (repo.branches["main"], len(repo.commits)) == before


def test_the_cards_usage_snippets_run_as_written(hub, datasets, tiny_zoo, tiny_fit):
    import re

    tiny_zoo.push_to_hub("org/dwf-zoo-tiny")
    tiny_fit.pipeline.push_to_hub("org/dwf-tiny", base_zoo="org/dwf-zoo-tiny")
    for kind, repo_id in (("dataset", "org/dwf-zoo-tiny"), ("model", "org/dwf-tiny")):
        card = hub.files(kind, repo_id)["README.md"].decode()
        (code,) = re.findall(r"```python\n(.*?)```", card, re.S)
        assert repo_id in code
        scope: dict = {}
        exec(code, scope)
        assert isinstance(scope["model"], torch.nn.Module)  # both snippets end with a ready network
        assert kind == "model" or len(scope["table"]) == len(tiny_zoo)
