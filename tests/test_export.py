"""Every generated network as a first-class Hub model: plain torch ones through PyTorchModelHubMixin,
transformers ones with real labels and an image processor that prepares images as the zoo's data was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dwf_hub.archs import get_arch
from dwf_hub.cli import main
from dwf_hub.zoo.export import export_networks, network_folder


def test_generated_mlps_export_and_reload_through_the_mixin(tiny_fit, tmp_path):
    from dwf_hub.archs.mlp import MLP

    out = tiny_fit.pipeline(num_networks=3, generator=torch.Generator().manual_seed(0))
    export_networks(tiny_fit.pipeline.arch, out.networks, tmp_path / "nets", tiny_fit.pipeline.recipe)
    assert sorted(p.name for p in (tmp_path / "nets").iterdir() if p.is_dir()) == [
        network_folder(i) for i in range(3)
    ]
    again = MLP.from_pretrained(tmp_path / "nets" / network_folder(1))
    x = torch.randn(5, 4)
    torch.testing.assert_close(again.eval()(x), out.networks[1](x))
    assert "dwf-hub" in (tmp_path / "nets" / network_folder(1) / "README.md").read_text()


def test_each_generated_network_owns_its_tensors(tiny_fit, tmp_path):
    from safetensors.torch import save_file

    out = tiny_fit.pipeline(
        num_networks=50, generator=torch.Generator().manual_seed(0), output_type="state_dict"
    )
    save_file(out.state_dicts[0], str(tmp_path / "one.safetensors"))
    assert (tmp_path / "one.safetensors").stat().st_size < 4 * tiny_fit.pipeline.arch.num_params + 2000
    assert out.state_dicts[0]["layers.0.weight"].untyped_storage().data_ptr() != (
        out.state_dicts[1]["layers.0.weight"].untyped_storage().data_ptr()
    )


def test_a_generated_vit_runs_in_the_transformers_pipeline(tmp_path):
    from PIL import Image
    from transformers import pipeline

    arch = get_arch("vit", hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                    patch_size=4, image_size=8, num_channels=3, num_labels=4)  # fmt: skip
    nets = [arch.instantiate(arch.build().state_dict()) for _ in range(2)]
    export_networks(arch, nets, tmp_path / "vits")
    classify = pipeline("image-classification", model=str(tmp_path / "vits" / network_folder(0)))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8))
    scores = classify(image, top_k=4)
    assert len(scores) == 4 and abs(sum(s["score"] for s in scores) - 1) < 1e-4


def test_digits_vit_export_carries_labels_and_the_zoos_preprocessing(tmp_path):
    """A 1-channel digits ViT exports as the same function of RGB images, so transformers' image pipeline (which
    converts every image to RGB) runs it on a PIL image and gives the 1-channel network's prediction."""
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor, pipeline

    from dwf_hub.zoo.recipes import load_recipe

    recipe = load_recipe("digits_vit")
    arch = recipe.arch_spec
    net = arch.instantiate(arch.build().state_dict())
    export_networks(arch, [net], tmp_path / "d", recipe)
    folder = tmp_path / "d" / network_folder(0)
    assert AutoConfig.from_pretrained(folder).id2label == {i: str(i) for i in range(10)}
    processor = AutoImageProcessor.from_pretrained(folder)
    import sklearn.datasets

    raw = sklearn.datasets.load_digits().images[0]  # 8x8, values 0..16
    image = Image.fromarray(np.round(raw * 255 / 16).astype(np.uint8)).convert("RGB")  # what a user hands in
    got = processor(images=image, return_tensors="pt")["pixel_values"]
    task = recipe.task
    expected = (torch.from_numpy(raw).float() - task.input_mean[0]) / task.input_std[0]
    for c in range(3):
        torch.testing.assert_close(got[0, c], expected, atol=0.02, rtol=0)  # 8-bit rounding only
    with torch.no_grad():
        one_channel = torch.softmax(net(pixel_values=got[:, :1]).logits, -1)[0]
    scores = pipeline("image-classification", model=str(folder))(image, top_k=10)
    best = max(scores, key=lambda s: s["score"])
    assert (
        best["label"] == str(int(one_channel.argmax()))
        and abs(best["score"] - float(one_channel.max())) < 1e-4
    )


def test_generate_export_cli(tiny_fit, tmp_path):
    tiny_fit.pipeline.save_pretrained(tmp_path / "p")
    argv = ["-q", "generate", str(tmp_path / "p"), "--num-networks", "2", "--out", str(tmp_path / "g")]
    assert main([*argv, "--export", str(tmp_path / "nets")]) == 0
    assert sorted(p.name for p in (tmp_path / "nets").iterdir() if p.is_dir()) == [
        network_folder(0),
        network_folder(1),
    ]


@pytest.mark.parametrize("name", ["smallcnn", "resnet20", "resnet18"])
def test_plain_torch_architectures_have_hub_io(name, tmp_path):
    from dwf_hub.archs import get_arch_class

    arch = get_arch_class(name).tiny()
    model = arch.instantiate(arch.build().state_dict())
    model.save_pretrained(tmp_path / name)
    again = type(model).from_pretrained(tmp_path / name).eval()
    x = arch.example_input(2)
    torch.testing.assert_close(again(x), model(x))


def test_a_generated_bert_runs_in_the_transformers_text_pipeline(tmp_path):
    """A text model's folder carries the tokenizer its inputs were made with."""
    import sys
    from pathlib import Path

    from transformers import pipeline

    sys.path.insert(0, str(Path(__file__).parent))
    from test_data import _yelp_standin

    from dwf_hub.zoo.recipes import Recipe, load_recipe

    root = _yelp_standin(tmp_path)
    d = load_recipe("yelp_bert").to_dict()
    d["arch"] = {"name": "bert", **get_arch("bert").__class__.tiny().kwargs}
    d["data"] = {"name": "yelp_review_full", "path": str(root / "yelp"), "tokenizer": str(root / "tokenizer"),
                 "max_length": 12, "val_size": 5}  # fmt: skip
    recipe = Recipe.from_dict(d)
    arch = recipe.arch_spec
    export_networks(arch, [arch.instantiate(arch.build().state_dict())], tmp_path / "b", recipe)
    rate = pipeline(
        "text-classification", model=str(tmp_path / "b" / network_folder(0)), function_to_apply="none"
    )
    (result,) = rate("good food very good")
    assert isinstance(result["score"], float)


def test_an_exported_network_carries_its_preprocessing_and_a_real_card(tiny_fit, tmp_path):
    """Raw Iris features are not what the networks were trained on: the folder says how to get there."""
    from dwf_hub.archs.mlp import MLP
    from dwf_hub.scoring import score_many
    from dwf_hub.zoo.export import preprocess
    from dwf_hub.zoo.weight_zoo import WeightZoo

    tiny_fit.pipeline.save_pretrained(tmp_path / "pipe")
    assert main(["-q", "generate", str(tmp_path / "pipe"), "--num-networks", "2", "--out", str(tmp_path / "g"),
                 "--export", str(tmp_path / "nets")]) == 0  # fmt: skip
    zoo, folder = WeightZoo.load(tmp_path / "g"), tmp_path / "nets" / network_folder(0)
    task = zoo.recipe.task
    import sklearn.datasets

    raw = torch.tensor(sklearn.datasets.load_iris().data, dtype=torch.float32)
    labels = torch.tensor(sklearn.datasets.load_iris().target)
    model = MLP.from_pretrained(folder).eval()
    with torch.no_grad():
        on_raw = (model(raw).argmax(-1) == labels).float().mean()
        prepared = (model(preprocess(folder, raw)).argmax(-1) == labels).float().mean()
    assert prepared > on_raw + 0.2, (prepared, on_raw)  # the recorded standardisation is what it needs
    torch.testing.assert_close(
        preprocess(folder, raw)[:1], (raw[:1] - torch.tensor(task.input_mean)) / torch.tensor(task.input_std)
    )
    card = (folder / "README.md").read_text()
    expected = float(score_many(zoo.arch, zoo.to_matrix()[:1], *task.split("test"))[0])
    assert "More Information Needed" not in card and f"{100 * expected:.2f} % (test split)" in card
    assert "preprocess(" in card and "setosa" in card and str(tmp_path / "pipe") in card
    code = card.split("```python\n")[1].split("```")[0].replace("raw_inputs", "raw")
    scope = {"raw": raw}
    exec(code.replace(f'"{folder.name}"', repr(str(folder))), scope)
    assert scope["logits"].shape == (150, 3)
