from __future__ import annotations

import json

import pytest
import torch

from dwf_hub.artifacts import write_manifest
from dwf_hub.errors import DWFError, WeightFormatError, ZooFormatError
from dwf_hub.io import save_tensors
from dwf_hub.zoo.weight_zoo import ZOO_FORMAT_VERSION, WeightZoo, checkpoint_name


def _copy(zoo, path):
    return WeightZoo.load(zoo.save(path))


def test_round_trip_weights_and_metadata(tiny_zoo, tmp_path):
    loaded = _copy(tiny_zoo, tmp_path / "z")
    assert len(loaded) == len(tiny_zoo) == 8
    assert torch.equal(loaded.to_matrix(), tiny_zoo.to_matrix())
    assert loaded.arch == tiny_zoo.arch
    assert loaded.recipe == tiny_zoo.recipe
    for a, b in zip(loaded.records, tiny_zoo.records):
        assert a["seed"] == b["seed"] and a["test_accuracy"] == pytest.approx(b["test_accuracy"])
    assert [r["seed"] for r in loaded.records] == list(range(8))
    assert all(
        {"seed", "init", "lr", "epochs", "val_accuracy", "test_accuracy"} <= set(r) for r in loaded.records
    )
    sds = list(loaded)
    assert len(sds) == 8 and set(sds[0]) == {p.key for p in loaded.arch.layout}


def test_zoo_folder_is_a_dataset_repo(tiny_zoo, tmp_path):
    import datasets

    root = tiny_zoo.save(tmp_path / "z")
    card = (root / "README.md").read_text()
    assert card.startswith("---") and "metadata.parquet" in card
    ds = datasets.load_dataset(str(root), split="train")
    assert ds.num_rows == 8
    assert ds["seed"] == list(range(8))
    assert ds["checkpoint"][3] == checkpoint_name(3)
    from huggingface_hub import DatasetCard

    assert "weight-zoo" in DatasetCard.load(root / "README.md").data.tags


def test_from_matrix_and_model(tiny_zoo):
    m = tiny_zoo.to_matrix()
    zoo = WeightZoo.from_matrix(tiny_zoo.arch, m, records=tiny_zoo.records)
    assert torch.equal(zoo.to_matrix(), m)
    x = tiny_zoo.arch.example_input(5)
    with torch.no_grad():
        assert torch.equal(zoo.model(2)(x), tiny_zoo.model(2)(x))
    with pytest.raises(ZooFormatError, match="expected"):
        WeightZoo.from_matrix(tiny_zoo.arch, m[:, :-1])


def test_missing_checkpoint(tiny_zoo, tmp_path):
    root = tiny_zoo.save(tmp_path / "z")
    (root / checkpoint_name(2)).unlink()
    with pytest.raises(ZooFormatError, match="model_00002.safetensors: missing"):
        WeightZoo.load(root)


def test_truncated_and_corrupt_checkpoint(tiny_zoo, tmp_path):
    root = tiny_zoo.save(tmp_path / "z")
    path = root / checkpoint_name(1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooFormatError, match="model_00001.safetensors: does not match manifest.json"):
        WeightZoo.load(root)
    write_manifest(root)  # even when the manifest agrees, the header check refuses it
    with pytest.raises(WeightFormatError, match="model_00001.safetensors: not a valid safetensors"):
        WeightZoo.load(root)
    path.write_bytes(b"\x00" * 64)
    write_manifest(root)
    with pytest.raises(WeightFormatError, match="model_00001.safetensors"):
        WeightZoo.load(root)


def test_checkpoint_of_wrong_architecture(tiny_zoo, tmp_path):
    root = tiny_zoo.save(tmp_path / "z")
    sd = tiny_zoo.state_dict(0)
    save_tensors(root / checkpoint_name(4), {**sd, "layers.0.weight": torch.zeros(7, 4)})
    write_manifest(root)  # a consistent folder of the wrong architecture
    with pytest.raises(ZooFormatError, match=r"model_00004.safetensors: keys/shapes.*layers.0.weight"):
        WeightZoo.load(root)
    save_tensors(root / checkpoint_name(4), {k: v for k, v in sd.items() if k != "layers.1.bias"})
    write_manifest(root)
    with pytest.raises(ZooFormatError, match="layers.1.bias"):
        WeightZoo.load(root)


def test_nan_weights_named_on_read(tiny_zoo, tmp_path):
    root = tiny_zoo.save(tmp_path / "z")
    sd = dict(tiny_zoo.state_dict(0))
    sd["layers.2.weight"] = sd["layers.2.weight"].clone()
    sd["layers.2.weight"][0, 0] = float("inf")
    save_tensors(root / checkpoint_name(5), sd)
    write_manifest(root)
    zoo = WeightZoo.load(root)
    with pytest.raises(
        WeightFormatError, match=r"model_00005.safetensors: key 'layers.2.weight' contains NaN or Inf"
    ):
        zoo.to_matrix()


def test_empty_zoo(tiny_zoo, tmp_path):
    with pytest.raises(ZooFormatError, match="empty zoo"):
        WeightZoo(tiny_zoo.arch, [])
    root = tiny_zoo.save(tmp_path / "z")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"checkpoint": pa.array([], pa.string())}), root / "metadata.parquet")
    write_manifest(root)
    with pytest.raises(ZooFormatError, match="empty zoo"):
        WeightZoo.load(root)


def test_not_a_zoo_and_future_version(tiny_zoo, tmp_path):
    with pytest.raises(ZooFormatError, match="no such zoo directory"):
        WeightZoo.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooFormatError, match="missing zoo.json"):
        WeightZoo.load(tmp_path / "empty")
    root = tiny_zoo.save(tmp_path / "z")
    cfg = json.loads((root / "zoo.json").read_text())
    cfg["format_version"] = ZOO_FORMAT_VERSION + 1
    (root / "zoo.json").write_text(json.dumps(cfg))
    with pytest.raises(ZooFormatError, match="newer than this dwf_hub supports"):
        WeightZoo.load(root)
    (root / "zoo.json").write_text("{not json")
    with pytest.raises(ZooFormatError, match="invalid JSON"):
        WeightZoo.load(root)


def test_unknown_architecture_in_zoo(tiny_zoo, tmp_path):
    from dwf_hub.errors import UnknownNameError

    root = tiny_zoo.save(tmp_path / "z")
    cfg = json.loads((root / "zoo.json").read_text())
    cfg["arch"] = {"name": "transformer9000"}
    (root / "zoo.json").write_text(json.dumps(cfg))
    write_manifest(root)
    with pytest.raises(UnknownNameError, match="transformer9000"):
        WeightZoo.load(root)


def test_saving_a_loaded_zoo_reuses_its_checkpoint_files(tiny_zoo, tmp_path, monkeypatch):
    """Pushing or copying a zoo links (or copies) its checkpoints instead of deserializing and rewriting them."""
    import dwf_hub.zoo.weight_zoo as zoo_module

    root = tiny_zoo.save(tmp_path / "z")
    loaded = WeightZoo.load(root)
    monkeypatch.setattr(zoo_module, "save_tensors", lambda *a, **k: pytest.fail("a checkpoint was rewritten"))
    copy = loaded.save(tmp_path / "copy")
    for i in range(len(loaded)):
        assert (copy / checkpoint_name(i)).read_bytes() == (root / checkpoint_name(i)).read_bytes()
    assert torch.equal(WeightZoo.load(copy).to_matrix(), tiny_zoo.to_matrix())


def test_save_pretrained_is_the_zoos_save(tiny_zoo, tmp_path):
    root = tiny_zoo.save_pretrained(tmp_path / "a")  # the name every Hub class uses; save is the same method
    assert WeightZoo.save is WeightZoo.save_pretrained
    assert torch.equal(WeightZoo.from_pretrained(root).to_matrix(), tiny_zoo.to_matrix())
    with pytest.raises(DWFError, match="push_to_hub=True needs repo_id"):
        tiny_zoo.save_pretrained(tmp_path / "b", push_to_hub=True)
    assert not (tmp_path / "b").exists()
