"""Conditional generation (paper Appendix K): one flow for several zoos, of one architecture or (experimental)
several."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_RECIPE

from dwf_hub.cli import main
from dwf_hub.errors import DWFError
from dwf_hub.flow.conditional import load_conditional_recipe
from dwf_hub.flow.fitting import fit_conditional
from dwf_hub.flow.velocity import VelocityModel
from dwf_hub.generation.pipeline_folder import check_codec_collection
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.zoo.recipes import Recipe
from dwf_hub.zoo.training import train_zoo
from dwf_hub.zoo.weight_zoo import WeightZoo


def _recipe(name: str, **arch) -> Recipe:
    d = copy.deepcopy(TINY_RECIPE)
    d["name"] = name
    d["arch"].update(arch)
    return Recipe.from_dict(d)


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    a = train_zoo(_recipe("iris_a"), 6, root / "a", seed=0, progress=False)
    b = train_zoo(_recipe("iris_b"), 6, root / "b", seed=50, progress=False)
    return root, a, b


@pytest.fixture(scope="module")
def fitted(zoos):
    _, a, b = zoos
    cfg = a.recipe.flow_config(label_dropout=0.2, holdout=1)
    return fit_conditional([a, b], ["a", "b"], cfg, progress=False)


def _gen(pipe, n=4, seed=0, output_type="pt", **kw):
    return pipe(
        num_networks=n, generator=torch.Generator().manual_seed(seed), output_type=output_type, **kw
    ).weights


def test_label_embedding_conditions_the_field():
    torch.manual_seed(0)
    v = VelocityModel(5, hidden_dim=16, time_embed_dim=4, num_labels=2).eval()
    torch.nn.init.normal_(v.net[-1].weight)
    x, t = torch.randn(3, 5), torch.rand(3)
    a, b = v(x, t, torch.tensor([0, 0, 0])), v(x, t, torch.tensor([1, 1, 1]))
    assert not torch.allclose(a, b)
    assert torch.equal(v(x, t), v(x, t, torch.tensor([2, 2, 2])))  # no label = index num_labels
    with pytest.raises(ValueError, match="unconditional"):
        VelocityModel(5, hidden_dim=16, time_embed_dim=4)(x, t, torch.tensor([0, 0, 0]))


def test_conditional_flow_generates_per_condition_and_round_trips(fitted, zoos, tmp_path):
    pipe = fitted.pipeline
    assert pipe.labels == ["a", "b"]
    conditions = [r["condition"] for r in fitted.training_zoo.records]
    assert conditions == ["a"] * 5 + ["b"] * 5 and len(fitted.heldout_zoo) == 2
    _, a, b = zoos  # each zoo aligned to its own reference member: both references unchanged
    assert torch.equal(fitted.training_zoo.flat(0), a.flat(0)) and torch.equal(
        fitted.training_zoo.flat(5), b.flat(0)
    )
    wa, wb = _gen(pipe, condition="a"), _gen(pipe, condition="b")
    assert wa.shape == (4, pipe.arch.num_params) and not torch.allclose(wa, wb)
    mixed = _gen(pipe, n=3, condition=["b", "a", "b"])
    assert torch.isfinite(mixed).all()
    out = pipe(num_networks=3, condition=["b", "a", "b"], generator=torch.Generator().manual_seed(0))
    ready = _gen(pipe, n=3, condition=["b", "a", "b"], output_type="state_dict")  # units recalibrated
    assert len(out.networks) == 3 and torch.equal(out.weights, ready) and not torch.allclose(ready, mixed)
    assert pipe.codec.has_unit_targets  # one map over both zoos, each zoo's statistics on its own data
    pipe.save_pretrained(tmp_path / "flow")
    loaded = DeepWeightFlowPipeline.from_pretrained(tmp_path / "flow")
    assert loaded.labels == ["a", "b"] and loaded.config.conditions["zoos"][0] == "iris_a"
    assert torch.equal(_gen(loaded, condition="b"), wb)
    zoo = loaded.generate_zoo(3, seed=1, condition="b")
    assert zoo.recipe.name == "iris_b" and zoo.info["condition"] == "b"
    guided = _gen(loaded, condition="a", guidance_scale=2.0)
    assert torch.isfinite(guided).all() and not torch.allclose(guided, wa)


def test_conditional_bad_input(fitted, zoos, tiny_fit):
    pipe = fitted.pipeline
    with pytest.raises(DWFError, match=r"unknown condition 'c'; this flow knows \['a', 'b'\]"):
        _gen(pipe, condition="c")
    with pytest.raises(DWFError, match=r"conditional: give condition= one of \['a', 'b'\]"):
        _gen(pipe)
    with pytest.raises(DWFError, match="2 conditions for 4 networks"):
        _gen(pipe, condition=["a", "b"])
    with pytest.raises(DWFError, match="unconditional"):
        _gen(tiny_fit.pipeline, condition="a")
    with pytest.raises(DWFError, match="label_dropout"):
        _gen(tiny_fit.pipeline, guidance_scale=3.0)
    root, a, b = zoos
    other = train_zoo(
        _recipe("iris_wide", layer_sizes=[4, 8, 5, 3]), 4, root / "wide", seed=0, progress=False
    )
    raw = a.recipe.flow_config(normalization="none")
    with pytest.raises(DWFError, match=r"zoo 'wide' is .*different architectures need a PCA latent"):
        fit_conditional([a, other], ["a", "wide"], raw, progress=False)
    with pytest.raises(DWFError, match="one label per zoo"):
        fit_conditional([a, b], ["a"], progress=False)
    with pytest.raises(DWFError, match="distinct"):
        fit_conditional([a, b], ["a", "a"], progress=False)


def test_conditional_cli(zoos, capsys):
    root = zoos[0]
    fit = ["-q", "fit", str(root / "a"), str(root / "b"), "--iterations", "20", "--hidden-dim", "16"]
    assert main([*fit, "--labels", "first,second", "--out", str(root / "flow")]) == 0
    gen = ["-q", "generate", str(root / "flow"), "--num-networks", "3"]
    assert main([*gen, "--condition", "second", "--out", str(root / "g")]) == 0
    generated = WeightZoo.load(root / "g")
    assert len(generated) == 3 and generated.recipe.name == "iris_b"
    assert main([*gen, "--condition", "third", "--out", str(root / "g2")]) == 2
    assert "unknown condition 'third'; this flow knows ['first', 'second']" in capsys.readouterr().err
    assert main([*fit, "--out", str(root / "f2")]) == 2
    assert "--labels needs one name per zoo" in capsys.readouterr().err
    assert main([*fit, "--labels", "x", "--out", str(root / "f3")]) == 2
    assert not (root / "g2").exists() and not (root / "f2").exists() and not (root / "f3").exists()


def test_conditional_recipes_ship_and_agree_on_the_architecture(tmp_path):
    for name, archs in (("digits_halves_mlp", 1), ("digits_halves_smallcnn", 1), ("mnist_fashion_mlp", 1),
                        ("digits_halves_mlp_smallcnn", 2)):  # fmt: skip
        recipe = load_conditional_recipe(name)
        specs = {r.arch_spec for r in recipe.recipes().values()}
        assert len(specs) == archs and len(recipe.conditions) == 2
        assert recipe.flow_config().training.iterations >= 8000
    bad = tmp_path / "bad.toml"
    two = '[conditions]\nx = "digits04_mlp"\ny = "digits04_smallcnn"\n'
    bad.write_text(f'name = "bad"\n{two}[flow]\nnormalization = "none"\n')
    with pytest.raises(DWFError, match="several architectures need a PCA latent"):
        load_conditional_recipe(bad).recipes()
    bad.write_text('name = "bad"\n[conditions]\nx = "digits04_mlp"\n')
    with pytest.raises(DWFError, match="at least two labels"):
        load_conditional_recipe(bad)


def test_condition_coordinates_are_each_conditions_whitened_pca():
    from dwf_hub.flow.fitting import condition_coordinates

    g = torch.Generator().manual_seed(0)
    latents = torch.cat([torch.randn(12, 6, generator=g) * 3 + 5, torch.randn(8, 6, generator=g)])
    latents[12:, 4:] = 0.0  # condition 1 spans fewer directions
    ids = torch.tensor([0] * 12 + [1] * 8)
    offsets, maps, coords = condition_coordinates(latents, ids, 2)
    back = offsets[ids] + torch.bmm(coords[:, None, :], maps[ids])[:, 0]
    torch.testing.assert_close(back, latents, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(coords[:12].std(0), torch.ones(6), atol=1e-4, rtol=1e-4)
    assert coords.shape == (20, 6) and torch.all(coords[12:, 4:] == 0)  # rank 4, padded


def test_multi_architecture_flow_decodes_each_condition_with_its_own_codec(zoos, tmp_path, capsys):
    root, a, _ = zoos
    wide = train_zoo(
        _recipe("iris_wide", layer_sizes=[4, 8, 5, 3]), 6, root / "wide6", seed=7, progress=False
    )
    fit = fit_conditional([a, wide], ["a", "wide"], a.recipe.flow_config(holdout=1), progress=False)
    pipe = fit.pipeline
    assert fit.training_zoo is None and len(fit.condition_zoos["wide"][0]) == 5
    assert pipe.codec_of("wide").arch == wide.arch and pipe.codec_of("a").arch == a.arch
    wa, ww = _gen(pipe, condition="a"), _gen(pipe, n=3, condition="wide")
    assert wa.shape == (4, a.arch.num_params) and ww.shape == (3, wide.arch.num_params)
    # each condition lands on its own zoo: closer to its fitted members than their spread
    for w, zoo in ((wa, fit.condition_zoos["a"][0]), (ww, fit.condition_zoos["wide"][0])):
        m = zoo.to_matrix()
        assert torch.cdist(w, m).min(1).values.max() < torch.cdist(m, m).max()
    with pytest.raises(DWFError, match=r"conditions \['a', 'wide'\] have their own architectures"):
        _gen(pipe, n=2, condition=["a", "wide"])
    generated = pipe.generate_zoo(2, seed=1, condition="wide")
    assert generated.arch == wide.arch and generated.recipe.name == "iris_wide"
    aligned = pipe.canonicalize(wide.state_dict(3), condition="wide")
    assert aligned.keys() == wide.state_dict(3).keys()
    with pytest.raises(DWFError, match="unknown condition 'x'"):
        pipe.canonicalize(wide.state_dict(3), condition="x")
    pipe.save_pretrained(tmp_path / "multi")
    assert "`wide`: zoo `iris_wide` (mlp, 103 weights" in (tmp_path / "multi" / "README.md").read_text()
    loaded = DeepWeightFlowPipeline.from_pretrained(tmp_path / "multi")
    assert torch.equal(_gen(loaded, n=3, condition="wide"), ww)
    packed = loaded.generate_to_disk(tmp_path / "packed", 3, seed=1, condition="wide", progress=False)
    assert WeightZoo.load(packed).arch == wide.arch
    gen = ["-q", "generate", str(tmp_path / "multi"), "--num-networks", "2", "--out", str(tmp_path / "g")]
    assert main([*gen, "--condition", "wide"]) == 0 and WeightZoo.load(tmp_path / "g").arch == wide.arch
    # a codec collection whose saved buffers do not match its architectures is refused (headers only)
    cfg = tmp_path / "multi" / "condition_codecs" / "config.json"
    cfg.write_text(cfg.read_text().replace("8,", "7,", 1))
    with pytest.raises(DWFError, match=r"codec 0 is .*\(93 weights\), but .* holds \(103,\)"):
        check_codec_collection(tmp_path / "multi", ["dwf_hub.codec", "CodecCollection"])
    with pytest.raises(DWFError, match="component 'condition_codecs' is"):
        check_codec_collection(tmp_path / "multi", ["os", "system"])


def test_a_conditional_fit_selects_its_length_on_every_zoo(fitted):
    selection = fitted.pipeline.selection
    assert selection is not None and selection == fitted.selection
    assert set(selection.floors) == {"a", "b"}
    kept = {s.condition for s in selection.kept}
    assert kept == {"a", "b"} and len(selection.scores) == 2 * len({s.iteration for s in selection.scores})
    # the kept snapshot's label maps are the fitted ones (not the zeros training starts from)
    assert fitted.pipeline.velocity.label_maps.abs().sum() > 0
    assert "a: " in selection.describe() and "b: " in selection.describe()
