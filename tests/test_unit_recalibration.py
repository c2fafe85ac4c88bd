"""Unit recalibration (REPAIR) for MLPs: hidden units reset to target pre-activation statistics, targets from
the codec latent for flows and from the parents for baselines."""

from __future__ import annotations

import pytest
import torch

from dwf_hub.archs import arch_from_config
from dwf_hub.cli import main
from dwf_hub.codec import fit_target_map, predict_targets
from dwf_hub.errors import DWFError
from dwf_hub.evaluation.baselines import ZooBaseline
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.generation.postprocess import recipe_calibration_data
from dwf_hub.generation.unit_recalibration import (
    recalibrate_units,
    unit_statistics,
)
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.zoo.weight_zoo import WeightZoo

MLP = arch_from_config({"name": "mlp", "layer_sizes": [4, 6, 5, 3]})


def _random(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, MLP.num_params, generator=torch.Generator().manual_seed(seed))


def test_recalibration_sets_every_hidden_unit_to_its_target():
    w, x = _random(3), torch.randn(64, 4)
    stats = unit_statistics(MLP, w, x)
    assert stats.shape == (3, 2 * (6 + 5))
    torch.testing.assert_close(
        recalibrate_units(MLP, w, stats, x), w, atol=1e-5, rtol=1e-5
    )  # own stats: no-op
    target = stats.clone()
    target[:, :6] += 1.0  # first layer means shifted
    target[:, 6:12] *= 2.0  # first layer stds doubled
    fixed = recalibrate_units(MLP, w, target, x)
    torch.testing.assert_close(unit_statistics(MLP, fixed, x), target, atol=1e-4, rtol=1e-4)
    assert not torch.equal(fixed, w)
    with pytest.raises(DWFError, match=r"targets have shape \(3, 5\), the networks need \(3, 22\)"):
        recalibrate_units(MLP, w, stats[:, :5], x)
    with pytest.raises(DWFError, match=r"names its hidden layers \(mlp, smallcnn, vit\), not resnet20"):
        unit_statistics(arch_from_config({"name": "resnet20"}), w, x)


@pytest.mark.parametrize("name", ["smallcnn", "vit"])
def test_convolutional_channels_and_token_features_are_recalibrated_too(name):
    from dwf_hub.archs.smallcnn import SmallCNNSpec
    from dwf_hub.archs.transformer import ViTSpec

    arch = {"smallcnn": SmallCNNSpec, "vit": ViTSpec}[name].tiny()
    w = torch.randn(2, arch.num_params, generator=torch.Generator().manual_seed(1)) * 0.5
    x = arch.example_input(32, torch.Generator().manual_seed(2))
    stats = unit_statistics(arch, w, x)
    units = {"smallcnn": 3 + 4 + 5 + 6, "vit": 2 * 24}[name]  # conv channels and fc1 units; a ViT's fc1 units
    assert stats.shape == (2, 2 * units)
    # one network's first unit layer by hand: a unit is a channel (dim 1) or a token feature (last dim)
    model, seen = arch.build().eval(), []
    model.load_state_dict(arch.unflatten(w[1]))
    dict(model.named_modules())[arch.unit_layers[0]].register_forward_hook(lambda _m, _i, o: seen.append(o))
    arch.call(model, x)
    out = seen[0].movedim(1 if name == "smallcnn" else -1, 0).flatten(1)
    first = out.shape[0]
    torch.testing.assert_close(stats[1, :first], out.mean(1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stats[1, first : 2 * first], out.std(1), atol=1e-5, rtol=1e-4)
    target = stats * 1.5 + 0.1
    torch.testing.assert_close(
        unit_statistics(arch, recalibrate_units(arch, w, target, x), x), target, atol=1e-4, rtol=1e-4
    )


def test_target_map_is_exact_on_members_and_mixes_their_statistics():
    coords, stats = torch.randn(6, 5), torch.randn(6, 22)
    m = fit_target_map(coords, stats)
    assert m.shape == (6, 22)
    torch.testing.assert_close(predict_targets(m, coords.double()), stats.double(), atol=1e-6, rtol=1e-6)
    mid = predict_targets(m, 0.3 * coords[:1].double() + 0.7 * coords[1:2].double())
    torch.testing.assert_close(
        mid, 0.3 * stats[:1].double() + 0.7 * stats[1:2].double(), atol=1e-6, rtol=1e-6
    )


def test_flow_samples_get_the_statistics_their_latent_predicts(tiny_fit, tmp_path):
    pipe = tiny_fit.pipeline
    assert pipe.codec.has_unit_targets  # auto: an MLP with a whitened codec and a recipe
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    raw = pipe(num_networks=5, generator=gen(), output_type="pt").weights
    out = pipe(num_networks=5, generator=gen(), output_type="state_dict", quality_check=False).weights
    x = recipe_calibration_data(pipe.arch, pipe.recipe)
    targets = pipe.codec.unit_targets(pipe.codec.encode(raw))  # a predicted std below 0 is clamped to 0
    torch.testing.assert_close(unit_statistics(pipe.arch, out, x), targets, atol=1e-2, rtol=1e-3)
    assert not torch.allclose(out, raw)
    # the map is exact on the fitted members: their own statistics come back
    members = tiny_fit.training_zoo.to_matrix()
    torch.testing.assert_close(
        pipe.codec.unit_targets(pipe.codec.encode(members)), unit_statistics(pipe.arch, members, x), atol=1e-3,
        rtol=1e-3,
    )  # fmt: skip
    pipe.save_pretrained(tmp_path / "p")
    loaded = DeepWeightFlowPipeline.from_pretrained(tmp_path / "p")
    assert torch.equal(
        loaded(num_networks=5, generator=gen(), output_type="state_dict", quality_check=False).weights, out
    )
    zoo = loaded.generate_zoo(3, seed=1)
    assert zoo.info["unit_recalibration"] is True
    assert "unit_recalibration" not in loaded.generate_zoo(3, seed=1, calibrate=False).info


def test_unit_recalibration_modes(tiny_zoo, monkeypatch):
    from dwf_hub.archs.transformer import ViTSpec

    off = fit_pipeline(
        tiny_zoo, tiny_zoo.recipe.flow_config(unit_recalibration="off", iterations=5), progress=False
    )
    assert not off.pipeline.codec.has_unit_targets
    raw = tiny_zoo.recipe.flow_config(unit_recalibration="on", normalization="standardize", iterations=5)
    assert fit_pipeline(tiny_zoo, raw, progress=False).pipeline.codec.has_unit_targets  # a small map: allowed
    monkeypatch.setattr("dwf_hub.flow.fitting.MAX_TARGET_MAP", 10)
    with pytest.raises(DWFError, match="unit_recalibration='on' does not apply: a 'standardize' codec"):
        fit_pipeline(tiny_zoo, raw, progress=False)
    vit = ViTSpec.tiny()  # a ViT's fc1 units are opt-in: auto leaves them
    assert not vit.units_recalibrated_by_default and MLP.units_recalibrated_by_default
    auto = tiny_zoo.recipe.flow_config(normalization="standardize", iterations=5)
    assert not fit_pipeline(tiny_zoo, auto, progress=False).pipeline.codec.has_unit_targets


def test_baselines_take_their_parents_statistics(tiny_zoo, tmp_path):
    x = recipe_calibration_data(tiny_zoo.arch, tiny_zoo.recipe)
    copies = ZooBaseline(tiny_zoo, "noise", sigma=0.0, recalibrate_units=True)
    w = copies(6, torch.Generator().manual_seed(0), output_type="state_dict").weights
    members = copies._matrix
    assert all(
        torch.isclose(members, row, atol=1e-4).all(1).any() for row in w
    )  # a copy keeps its statistics
    mid = ZooBaseline(tiny_zoo, "interpolation", alpha=0.5, recalibrate_units=True)
    raw, mixing = mid._draw(4, torch.Generator().manual_seed(1))
    fixed = mid(4, torch.Generator().manual_seed(1), output_type="state_dict").weights
    parents = mixing @ unit_statistics(tiny_zoo.arch, members, x)
    torch.testing.assert_close(unit_statistics(tiny_zoo.arch, fixed, x), parents, atol=1e-3, rtol=1e-3)
    plain = ZooBaseline(tiny_zoo, "interpolation", alpha=0.5)(
        4, torch.Generator().manual_seed(1), output_type="pt"
    )
    assert torch.equal(plain.weights, raw) and not torch.allclose(fixed, raw)
    tiny_zoo.save(tmp_path / "zoo")
    out = tmp_path / "b"
    assert main(["-q", "baseline", "interpolation", str(tmp_path / "zoo"), "--out", str(out), "--num-networks", "2",
                 "--recalibrate-units"]) == 0  # fmt: skip
    assert WeightZoo.load(out).info["unit_recalibration"] is True
