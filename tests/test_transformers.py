"""ViT and BERT as transformers models: batched forward, TransFusion canonicalization, import, errors."""

from __future__ import annotations

import json

import pytest
import torch

from dwf_hub.archs import get_arch
from dwf_hub.errors import DWFError, WeightFormatError, ZooFormatError
from dwf_hub.matching import canonicalize, matching_spec, weight_matching, weight_matching_many
from dwf_hub.permutations import apply_permutation, random_permutation
from dwf_hub.scoring import BatchedForward, stack_state_dicts
from dwf_hub.zoo.weight_zoo import WeightZoo

TRANSFORMERS = ["vit", "bert"]


def _tiny(name):
    return get_arch(name).tiny()


def _random_state(arch, seed):
    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in arch.build().state_dict().items()}


def _outputs(arch, sd, x):
    with torch.no_grad():
        return arch.call(arch.instantiate(sd), x)


def test_models_are_transformers_classes():
    from transformers import BertForSequenceClassification, ViTForImageClassification

    vit, bert = get_arch("vit_small"), get_arch("bert")
    assert isinstance(vit.empty_model(), ViTForImageClassification)
    assert isinstance(bert.empty_model(), BertForSequenceClassification)
    n_vit = sum(p.numel() for p in vit.empty_model().parameters())
    assert n_vit == 2_693_578  # the paper quotes 2.7M-2.87M for ViT-Small-192 in different tables
    assert 109_000_000 < bert.num_params < 111_000_000  # BERT-Base + a 1-output regression head
    assert bert.task == "regression" and vit.task == "classification"


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_batched_forward_matches_each_model(name):
    arch = _tiny(name)
    sds = [_random_state(arch, s) for s in range(3)]
    x = arch.example_input(5, torch.Generator().manual_seed(0))
    batched = BatchedForward(arch)(stack_state_dicts(arch, sds), x)
    for i, sd in enumerate(sds):
        torch.testing.assert_close(batched[i], _outputs(arch, sd, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", TRANSFORMERS)
@pytest.mark.parametrize("permute_residual", [True, False])
def test_transfusion_alignment_preserves_function(name, permute_residual):
    arch = _tiny(name)
    ref, other = _random_state(arch, 0), _random_state(arch, 1)
    spec = matching_spec(arch, permute_residual)
    result = weight_matching(spec, ref, other, max_iter=10)
    aligned = {**other, **result.aligned}
    assert any(not torch.equal(aligned[k], other[k]) for k in other)
    x = arch.example_input(8, torch.Generator().manual_seed(1))
    torch.testing.assert_close(_outputs(arch, aligned, x), _outputs(arch, other, x), atol=1e-5, rtol=1e-4)
    assert ("P_res" in result.perm) == permute_residual
    unaligned = sum(float((ref[k] * other[k]).sum()) for k in spec.axes_to_perm)
    assert result.objective > unaligned
    for g in spec.head_groups:  # whole heads move, in the same order for Q/K and V/O
        heads = [
            result.perm[p].view(g.num_heads, -1) // (len(result.perm[p]) // g.num_heads) for p in (g.qk, g.vo)
        ]
        assert all(bool((h == h[:, :1]).all()) for h in heads)
        assert torch.equal(heads[0][:, 0], heads[1][:, 0])


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transfusion_pairs_shuffled_noisy_heads(name):
    """Heads reordered and dimensions shuffled, plus noise: the spectral pairing finds the heads again."""
    arch = _tiny(name)
    ref = _random_state(arch, 0)
    spec = arch.permutation_spec()
    perm = random_permutation(spec, ref, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(6)
    noisy = {k: v + 0.002 * torch.randn(v.shape, generator=g) for k, v in ref.items()}  # weights ~ N(0, 0.02)
    shuffled = apply_permutation(spec, perm, noisy)
    result = weight_matching(spec, ref, shuffled, max_iter=10)
    for k in spec.axes_to_perm:
        torch.testing.assert_close(result.aligned[k], noisy[k])


def test_transfusion_matches_many_like_one():
    arch = _tiny("vit")
    ref = _random_state(arch, 0)
    others = [_random_state(arch, s) for s in (1, 2, 3)]
    spec = arch.permutation_spec()
    many = weight_matching_many(spec, ref, others, max_iter=10, workers=2)
    for o, r in zip(others, many):
        one = weight_matching(spec, ref, o, max_iter=10)
        assert all(torch.equal(one.perm[p], r.perm[p]) for p in one.perm)


def test_canonicalize_records_transfusion():
    arch = _tiny("bert")
    zoo = WeightZoo(arch, [_random_state(arch, s) for s in range(3)])
    result = canonicalize(zoo, progress=False, permute_residual=False)
    canonical = result.zoo.info["canonical"]
    assert canonical["method"] == "transfusion" and canonical["max_iter"] == 10
    assert canonical["permute_residual"] is False
    assert all("P_res" not in p for p in result.perms)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_heads_must_divide_hidden_size(name):
    with pytest.raises(DWFError, match="num_attention_heads=3 does not divide hidden_size=32"):
        get_arch(name, hidden_size=32, num_attention_heads=3)


def test_matching_rejects_a_head_layout_that_does_not_split():
    arch = _tiny("vit")
    ref = _random_state(arch, 0)
    spec = arch.permutation_spec()
    g = spec.head_groups[0]
    bad = type(spec)(spec.axes_to_perm, (type(g)(g.qk, g.vo, 3, g.spectral_keys),))
    with pytest.raises(WeightFormatError, match="do not split into 3 heads"):
        weight_matching(bad, ref, _random_state(arch, 1))


def _save_hf(arch, folder, seed, **config_changes):
    torch.manual_seed(seed)
    config = arch.hf_config()
    for k, v in config_changes.items():
        setattr(config, k, v)
    model = arch.model_class()(config)
    model.save_pretrained(folder)
    return model


def test_zoo_from_transformers_folders(tmp_path):
    arch = _tiny("vit")
    models = [_save_hf(arch, tmp_path / f"m{i}", i) for i in range(2)]
    zoo = WeightZoo.from_transformers([tmp_path / "m0", tmp_path / "m1"])
    assert zoo.arch == arch and len(zoo) == 2
    for i, m in enumerate(models):
        assert torch.equal(zoo.flat(i), arch.flatten(m.state_dict()))


def test_cli_zoo_import(tmp_path, capsys):
    from dwf_hub.cli import main

    arch = _tiny("vit")
    for i in range(2):
        _save_hf(arch, tmp_path / f"m{i}", i)
    models = [str(tmp_path / "m0"), str(tmp_path / "m1")]
    assert main(["-q", "zoo", "import", *models, "--out", str(tmp_path / "zoo")]) == 0
    assert "2 vit networks" in capsys.readouterr().out
    assert len(WeightZoo.load(tmp_path / "zoo")) == 2
    assert (
        main(["-q", "zoo", "import", *models, "--out", str(tmp_path / "z2"), "--recipe", "digits_vit"]) == 2
    )
    assert "recipe 'digits_vit' is for ViTSpec(hidden_size=32" in capsys.readouterr().err


def test_zoo_from_transformers_rejects_mismatched_heads(tmp_path):
    arch = _tiny("bert")
    _save_hf(arch, tmp_path / "a", 0)
    _save_hf(arch, tmp_path / "b", 1, num_attention_heads=4)
    with pytest.raises(ZooFormatError, match="num_attention_heads: 2 in .* vs 4"):
        WeightZoo.from_transformers([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(DWFError, match="model_type 'gpt2' is not supported"):
        WeightZoo.from_transformers([tmp_path / "c"])
    _save_hf(arch, tmp_path / "d", 2)
    (tmp_path / "d" / "model.safetensors").unlink()
    with pytest.raises(ZooFormatError, match="only safetensors"):
        WeightZoo.from_transformers([tmp_path / "d"])


def test_members_start_from_a_pretrained_checkpoint(tmp_path):
    from transformers import BertModel

    from dwf_hub.zoo.training import init_member

    arch = _tiny("bert")
    torch.manual_seed(0)
    encoder = BertModel(arch.hf_config())  # a pretrained encoder without the regression head
    encoder.save_pretrained(tmp_path / "pretrained")
    a = init_member(arch, "default", 1, init_from=str(tmp_path / "pretrained"))
    b = init_member(arch, "default", 2, init_from=str(tmp_path / "pretrained"))
    for k, v in encoder.state_dict().items():
        assert torch.equal(a[f"bert.{k}"], v) and torch.equal(b[f"bert.{k}"], v)
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])  # heads drawn per seed
    assert torch.equal(
        a["classifier.weight"],
        init_member(arch, "default", 1, str(tmp_path / "pretrained"))["classifier.weight"],
    )
    with pytest.raises(DWFError, match="needs a transformers architecture"):
        init_member(get_arch("mlp", layer_sizes=[2, 2]), "default", 0, init_from=str(tmp_path / "pretrained"))


def _small_recipe(name, **training):
    from dwf_hub.zoo.recipes import Recipe, load_recipe

    d = load_recipe(name).to_dict()
    d["training"].update(training)
    d["flow"].update(iterations=30, hidden_dim=32, num_inference_steps=4)
    return Recipe.from_dict(d)


def test_bert_regression_zoo_trains_deterministically(tmp_path):
    from dwf_hub.evaluation.zoo_evaluation import evaluate_zoo
    from dwf_hub.zoo.training import train_zoo

    recipe = _small_recipe("synthetic_bert", epochs=2)
    recipe_dict = recipe.to_dict()
    recipe_dict["data"].update(num_train=256, num_val=64, num_test=64)
    from dwf_hub.zoo.recipes import Recipe

    recipe = Recipe.from_dict(recipe_dict)
    a = train_zoo(recipe, 3, tmp_path / "a", progress=False)
    b = train_zoo(recipe, 3, tmp_path / "b", progress=False)
    assert torch.equal(a.to_matrix(), b.to_matrix())
    scores = [r["test_spearman"] for r in a.records]
    assert all(s > 0.3 for s in scores), scores  # learns the sentiment count
    summary = evaluate_zoo(a)
    assert summary["metric"] == "spearman" and summary["spearman_mean"] == pytest.approx(
        sum(scores) / 3, abs=1e-6
    )
    _check_regression_report(a, tmp_path / "report")


def _check_regression_report(zoo, out):
    """A report on a regression zoo scores with Spearman's rho (not argmax accuracy) and leaves out mIoU."""
    from scipy.stats import spearmanr

    from dwf_hub.evaluation.baselines import ZooBaseline
    from dwf_hub.evaluation.report import build_report
    from dwf_hub.scoring import outputs_many

    generated = ZooBaseline(zoo, "noise", sigma=0.1).generate_zoo(3, seed=0)
    summary = build_report(generated, zoo, out, baselines=False)
    assert summary["metric"] == "spearman"
    x, y = zoo.recipe.split("test")
    preds = outputs_many(zoo.arch, generated.to_matrix(), x)[..., 0]
    rho = [spearmanr(p.double().numpy(), y.double().numpy())[0] for p in preds]
    assert summary["accuracy"]["generated"]["mean"] == pytest.approx(sum(rho) / 3, abs=1e-5)
    assert summary["table17"]["gen→orig"]["miou_mean"] is None
    text = (out / "report.md").read_text()
    assert "| set | spearman |" in text and "(%)" not in text and "mIoU" not in summary["verdict"]


def test_vit_pipeline_end_to_end(tmp_path):
    """Tiny ViT zoo -> TransFusion -> PCA flow -> generated transformers models."""
    from transformers import ViTForImageClassification

    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
    from dwf_hub.pipeline import DeepWeightFlowPipeline
    from dwf_hub.zoo.training import train_zoo

    recipe = _small_recipe("digits_vit", epochs=2, spawn_epochs=1)  # the recipe spawns its members
    zoo = train_zoo(recipe, 4, tmp_path / "zoo", progress=False)
    cfg = default_flow_config(zoo, normalization="whiten", n_components=3, num_inference_steps=4)
    result = fit_pipeline(zoo, cfg, progress=False)
    assert result.training_zoo.info["canonical"]["method"] == "transfusion"
    result.pipeline.save_pretrained(tmp_path / "pipe")
    pipe = DeepWeightFlowPipeline.from_pretrained(tmp_path / "pipe")
    out = pipe(num_networks=2, generator=torch.Generator().manual_seed(0))
    assert all(isinstance(m, ViTForImageClassification) for m in out.networks)
    x = zoo.arch.example_input(4)
    with torch.no_grad():
        logits = out.networks[0](pixel_values=x).logits
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    again = pipe(num_networks=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert torch.equal(again.weights, torch.stack([zoo.arch.flatten(m.state_dict()) for m in out.networks]))
    assert not pipe.codec.has_unit_targets  # a ViT's fc1 units are recalibrated on request only


def test_vit_fc1_units_recalibrated_on_request(tmp_path):
    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
    from dwf_hub.generation.postprocess import recipe_calibration_data
    from dwf_hub.generation.unit_recalibration import unit_statistics
    from dwf_hub.zoo.training import train_zoo

    zoo = train_zoo(
        _small_recipe("digits_vit", epochs=2, spawn_epochs=1), 4, tmp_path / "zoo", progress=False
    )
    cfg = default_flow_config(
        zoo, normalization="none", unit_recalibration="on", num_inference_steps=4, select="off"
    )
    pipe = fit_pipeline(zoo, cfg, progress=False).pipeline
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    raw = pipe(num_networks=3, generator=gen(), output_type="pt").weights
    out = pipe(num_networks=3, generator=gen(), output_type="state_dict", quality_check=False).weights
    x = recipe_calibration_data(pipe.arch, pipe.recipe)
    targets = pipe.codec.unit_targets(pipe.codec.encode(raw))
    torch.testing.assert_close(unit_statistics(pipe.arch, out, x), targets, atol=1e-3, rtol=1e-3)
    assert not torch.allclose(out, raw)
