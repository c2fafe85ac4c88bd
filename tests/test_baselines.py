"""The trivial generators (zoo + noise, interpolation, zoo mean + noise, a Gaussian) and matching them to a generated set's
novelty."""

from __future__ import annotations

import itertools

import pytest
import torch

from dwf_hub.errors import DWFError
from dwf_hub.evaluation.baselines import ZooBaseline
from dwf_hub.evaluation.frontier import Frontier, _interpolate_knob, compare
from dwf_hub.matching import canonicalize


@pytest.fixture(scope="module")
def canonical(tiny_zoo):
    return canonicalize(tiny_zoo, progress=False).zoo


def test_noise_is_relative_to_each_tensors_spread(canonical):
    w = canonical.to_matrix()
    base = ZooBaseline(canonical, "noise", sigma=0.0)
    copies = base.sample(20, torch.Generator().manual_seed(0))
    assert all((row == w).all(1).any() for row in copies)  # sigma 0: members themselves
    spread = base.tensor_spread
    for p in canonical.arch.layout:
        assert spread[p.offset] == pytest.approx(float(w[:, p.offset : p.offset + p.numel].std()), rel=1e-5)
    big = ZooBaseline(canonical, "noise", sigma=0.5).sample(4000, torch.Generator().manual_seed(1))
    nearest_member = torch.cdist(big, w).argmin(1)
    rel = (big - w[nearest_member]) / spread
    assert rel.std().item() == pytest.approx(0.5, rel=0.05)


def test_interpolation_mixes_distinct_members(canonical):
    w = canonical.to_matrix()
    mids = ZooBaseline(canonical, "interpolation", alpha=0.5, k=2).sample(
        10, torch.Generator().manual_seed(0)
    )
    pairs = torch.stack([(w[i] + w[j]) / 2 for i, j in itertools.combinations(range(len(w)), 2)])
    assert (
        torch.cdist(mids, pairs, compute_mode="donot_use_mm_for_euclid_dist").min(1).values.max() < 1e-5
    )  # every row is the midpoint of two members
    avg3 = ZooBaseline(canonical, "interpolation", alpha=2 / 3, k=3).sample(
        5, torch.Generator().manual_seed(1)
    )
    triples = torch.stack([w[list(t)].mean(0) for t in itertools.combinations(range(len(w)), 3)])
    assert torch.cdist(avg3, triples, compute_mode="donot_use_mm_for_euclid_dist").min(1).values.max() < 1e-5
    same = ZooBaseline(canonical, "interpolation", alpha=0.0).sample(5, torch.Generator().manual_seed(2))
    assert all((row == w).all(1).any() for row in same)


def test_mean_noise_perturbs_the_zoo_mean(canonical):
    w = canonical.to_matrix()
    base = ZooBaseline(canonical, "mean_noise", sigma=0.0)
    assert torch.allclose(base.sample(3, torch.Generator().manual_seed(0)), w.mean(0).expand(3, -1))
    noisy = ZooBaseline(canonical, "mean_noise", sigma=0.4).sample(2000, torch.Generator().manual_seed(1))
    rel = (noisy - w.mean(0)) / base.tensor_spread
    assert rel.std().item() == pytest.approx(0.4, rel=0.05) and base.knob == {"sigma": 0.0}
    # parents for unit recalibration: every member, equally
    mixing = ZooBaseline(canonical, "mean_noise", sigma=0.1)._draw(4, torch.Generator().manual_seed(2))[1]
    assert torch.allclose(mixing, torch.full((4, len(w)), 1 / len(w)))


def test_gaussian_is_fitted_to_each_members_projection_on_the_others(canonical):
    w = canonical.to_matrix().double()
    base = ZooBaseline(canonical, "gaussian", scale=0.0)
    parts = base.in_span_parts  # [M, M]: member j's projection onto the affine span of the others
    assert torch.allclose(parts.diagonal(), torch.zeros(len(w), dtype=parts.dtype), atol=1e-9)
    assert torch.allclose(parts.sum(1), torch.ones(len(w), dtype=parts.dtype))  # affine combinations
    for j in range(len(w)):
        others = torch.cat([w[:j], w[j + 1 :]])
        residual = w[j] - parts[j] @ w  # orthogonal to every direction within the others' span
        assert (residual @ (others[1:] - others[0]).T).abs().max() < 1e-6 * w.norm() ** 2
    centre = (parts.mean(0) @ w).float()
    assert torch.allclose(base.sample(3, torch.Generator().manual_seed(0)), centre.expand(3, -1), atol=1e-5)
    wide = ZooBaseline(canonical, "gaussian", scale=0.5)
    draws = wide.sample(4000, torch.Generator().manual_seed(1)).double()
    fitted = (parts @ w - parts.mean(0) @ w).pow(2).sum(1).sum() / (len(w) - 1)  # trace of its covariance
    assert (draws - centre.double()).pow(2).sum(1).mean().item() == pytest.approx(
        0.25 * fitted.item(), rel=0.05
    )
    assert torch.equal(
        wide.sample(2, torch.Generator().manual_seed(3)), wide.sample(2, torch.Generator().manual_seed(3))
    )
    with pytest.raises(DWFError, match="gaussian baseline: scale must be a finite number >= 0, got -1"):
        ZooBaseline(canonical, "gaussian", scale=-1.0)


def test_baselines_hand_back_networks_like_the_pipeline(tiny_zoo, tmp_path):
    from dwf_hub.zoo.weight_zoo import WeightZoo

    base = ZooBaseline(tiny_zoo, "interpolation", alpha=0.3)  # canonicalizes a raw zoo first
    assert base.zoo.is_canonical
    out = base(3, generator=torch.Generator().manual_seed(0))
    assert len(out.networks) == 3 and not out.networks[0].training
    x = torch.randn(5, 4)
    torch.testing.assert_close(out.networks[1](x), base.arch.instantiate(out.state_dicts[1])(x))
    again = base(3, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert torch.equal(again.weights, out.weights) and again.networks is None  # deterministic
    saved = base.generate_zoo(4, seed=1).save(tmp_path / "interp")
    loaded = WeightZoo.load(saved)
    assert loaded.info["baseline"] == {"kind": "interpolation", "alpha": 0.3, "k": 2} and loaded.is_canonical
    assert torch.equal(loaded.to_matrix(), base.generate_zoo(4, seed=1).to_matrix())


def test_bn_baselines_are_recalibrated():
    from dwf_hub.archs import get_arch_class
    from dwf_hub.generation.calibration import recalibrate_batchnorm
    from dwf_hub.zoo.training import init_member
    from dwf_hub.zoo.weight_zoo import WeightZoo

    arch = get_arch_class("resnet20").tiny()
    members = [init_member(arch, "kaiming", s) for s in range(4)]
    zoo = canonicalize(WeightZoo(arch, members), progress=False).zoo
    x = torch.randn(16, *arch.example_input(1).shape[1:], generator=torch.Generator().manual_seed(0))
    base = ZooBaseline(zoo, "noise", sigma=0.2)
    raw = base(2, generator=torch.Generator().manual_seed(0), calibrate=False)
    out = base(2, generator=torch.Generator().manual_seed(0), calibration_data=x)
    manual = recalibrate_batchnorm(arch.instantiate({k: v.clone() for k, v in raw.state_dicts[0].items()}), x)
    torch.testing.assert_close(out.networks[0].bn1.running_var, manual.bn1.running_var)
    with pytest.raises(DWFError, match="need recalibration"):
        base(1)  # no recipe, no calibration data: refused, not returned uncalibrated


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "blur"}, "unknown baseline 'blur'"),
        ({"kind": "noise", "sigma": -1.0}, "sigma must be a finite number >= 0"),
        ({"kind": "interpolation", "alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"kind": "interpolation", "k": 9}, "k must be between 2 and the zoo size 8"),
    ],
)
def test_bad_baseline_settings(canonical, kwargs, message):
    with pytest.raises(DWFError, match=message):
        ZooBaseline(canonical, **kwargs)
    with pytest.raises(DWFError, match="pipeline call: num_networks must be >= 1, got 0"):
        ZooBaseline(canonical)(0)


def test_knob_is_interpolated_between_bracketing_settings():
    sweep = [
        {"knob": {"sigma": 0.0}, "novelty_ratio": 0.0},
        {"knob": {"sigma": 0.1}, "novelty_ratio": 0.2},
        {"knob": {"sigma": 0.3}, "novelty_ratio": 0.6},
    ]
    assert _interpolate_knob(sweep, 0.4)["sigma"] == pytest.approx(0.2)
    assert _interpolate_knob(sweep, 0.9) == {"sigma": 0.3}  # out of reach: the most novel setting
    mixed = [
        {"knob": {"alpha": 0.5, "k": 2}, "novelty_ratio": 0.7},
        {"knob": {"alpha": 2 / 3, "k": 3}, "novelty_ratio": 0.75},
    ]
    assert _interpolate_knob(mixed, 0.74) == {"alpha": 2 / 3, "k": 3}  # never a blend of two k
    gen = {"mean": 0.9}
    assert compare(gen, {"mean": 0.8, "reached": True})["beats"]
    spread = {"mean": 0.9, "std": 0.05}  # se of the difference over 100 + 100 networks: 0.0071
    assert compare(spread, {"mean": 0.89, "std": 0.05, "reached": True})["significant"] is False
    assert compare(spread, {"mean": 0.88, "std": 0.05, "reached": True})["significant"] is True
    # three verdicts: only a significant win counts as beating; a difference within the noise is a tie
    verdicts = [compare(spread, {"mean": m, "std": 0.05, "reached": True}) for m in (0.88, 0.89, 0.91, 0.92)]
    assert [v["verdict"] for v in verdicts] == ["ahead", "tie", "tie", "behind"]
    assert [v["beats"] for v in verdicts] == [True, False, False, False]
    assert compare(spread, {"mean": 0.895, "std": 0.05, "reached": False})["verdict"] == "ahead"  # dominates
    assert not compare(gen, {"mean": 0.95, "reached": True})["beats"]
    assert not compare(gen, {"mean": 0.95, "reached": False})["beats"]
    # a baseline more novel at every setting: never beaten; comparable only when it dominates
    more_novel_worse = compare(gen, {"mean": 0.8, "reached": True, "too_novel": True})
    assert not more_novel_worse["beats"] and not more_novel_worse["comparable"]
    dominating = compare(gen, {"mean": 0.95, "reached": True, "too_novel": True})
    assert not dominating["beats"] and dominating["comparable"]
    below = [{"knob": {"sigma": 0.0}, "novelty_ratio": 0.5}, {"knob": {"sigma": 0.2}, "novelty_ratio": 0.9}]
    assert _interpolate_knob(below, 0.1) == {"sigma": 0.0}  # below every setting: the least novel one


def test_matched_baselines_land_on_the_target_novelty(canonical):

    x, y = canonical.recipe.task.split("val")
    seen, heldout = canonical.split_holdout(2)
    frontier = Frontier(seen, x, y, heldout, num_networks=40)
    mean_noise = frontier.matched("mean_noise", 0.0)  # nothing but a copy is this close to the zoo
    assert mean_noise["too_novel"] and mean_noise["knob"] == {"sigma": 0.0}
    assert not frontier.matched("noise", 0.0)["too_novel"]
    for kind in ("noise", "interpolation"):
        row = frontier.matched(kind, 0.3)
        assert row["reached"] and abs(row["novelty_ratio"] - 0.3) < 0.1, row
        assert {"mean", "std", "diversity_ratio", "heldout_ratio", "function_novelty_ratio"} <= set(row)
        target = row["function_novelty_ratio"] / 2  # a function novelty this baseline's sweep brackets
        by_function = frontier.matched(kind, target, key="function_novelty_ratio")
        assert by_function["reached"] and abs(by_function["function_novelty_ratio"] - target) < 0.25 * target


def test_a_missed_match_is_refined_with_the_drawn_set(canonical, monkeypatch):
    """A sweep that misreads the knob (a steep or curved curve, or too few networks per setting): the first
    interpolated setting misses the target; re-interpolating with the drawn set as one more point lands on it."""
    from dwf_hub.evaluation import frontier as fr

    x, y = canonical.recipe.task.split("val")
    seen, heldout = canonical.split_holdout(2)
    wrong = [{"knob": {"sigma": 0.1}, "novelty_ratio": 0.05}, {"knob": {"sigma": 1.0}, "novelty_ratio": 0.35}]
    row = Frontier(seen, x, y, heldout, num_networks=40).matched("noise", 0.3, wrong)
    assert abs(row["novelty_ratio"] - 0.3) <= fr.MATCH_TOLERANCE and row["reached"], row
    monkeypatch.setattr(fr, "REFINE_STEPS", 0)
    first = Frontier(seen, x, y, heldout, num_networks=40).matched("noise", 0.3, wrong)
    assert abs(first["novelty_ratio"] - 0.3) > 0.2  # without refinement: far off


def test_fewer_networks_per_sweep_setting_find_the_same_match(canonical):
    """``sweep_networks`` (a conv net's report on a CPU is mostly its sweeps) only locates the setting: the
    matched set is drawn at full size and lands on the target novelty within the matching tolerance."""
    from dwf_hub.evaluation.frontier import MATCH_TOLERANCE

    x, y = canonical.recipe.task.split("val")
    seen, heldout = canonical.split_holdout(2)
    cheap = Frontier(seen, x, y, heldout, num_networks=40, sweep_networks=10)
    for kind in ("noise", "interpolation"):
        assert all(len(cheap.baseline_weights(kind, r["knob"], 10)) == 10 for r in cheap.sweep(kind))
        for target in (0.2, 0.4):
            row = cheap.matched(kind, target)
            assert row["reached"] and abs(row["novelty_ratio"] - target) <= MATCH_TOLERANCE, (kind, row)
            assert len(cheap.baseline_weights(kind, row["knob"])) == 40
    assert {n for _, n, *_ in cheap._baselines} == {10, 40}


def test_cli_baseline(tiny_zoo, tmp_path, capsys):
    from dwf_hub.cli import main
    from dwf_hub.zoo.weight_zoo import WeightZoo

    tiny_zoo.save(tmp_path / "zoo")
    args = ["-q", "baseline", "noise", str(tmp_path / "zoo"), "--num-networks", "5", "--sigma", "0.2"]
    assert main([*args, "--out", str(tmp_path / "noise")]) == 0
    assert (
        len(WeightZoo.load(tmp_path / "noise")) == 5
        and "5 noise baseline networks" in capsys.readouterr().out
    )
    assert (
        main(
            [
                "-q",
                "baseline",
                "interpolation",
                str(tmp_path / "zoo"),
                "--k",
                "20",
                "--out",
                str(tmp_path / "i"),
            ]
        )
        == 2
    )
    assert "k must be between 2 and the zoo size 8" in capsys.readouterr().err
    mean = ["-q", "baseline", "mean_noise", str(tmp_path / "zoo"), "--num-networks", "4", "--sigma", "0.1"]
    assert main([*mean, "--out", str(tmp_path / "mean")]) == 0
    assert WeightZoo.load(tmp_path / "mean").info["baseline"] == {"kind": "mean_noise", "sigma": 0.1}
    gauss = ["-q", "baseline", "gaussian", str(tmp_path / "zoo"), "--num-networks", "4", "--scale", "0.5"]
    assert main([*gauss, "--out", str(tmp_path / "gauss")]) == 0
    assert WeightZoo.load(tmp_path / "gauss").info["baseline"] == {"kind": "gaussian", "scale": 0.5}


def test_cli_knows_every_baseline():
    from dwf_hub.cli import build_parser
    from dwf_hub.evaluation.baselines import BASELINES

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    kind = next(a for a in sub.choices["baseline"]._actions if a.dest == "kind")
    assert tuple(kind.choices) == BASELINES
