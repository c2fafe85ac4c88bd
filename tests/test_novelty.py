"""Permutation-invariant novelty, diversity and held-out ratios (``dwf_hub.evaluation.novelty``)."""

from __future__ import annotations

import pytest
import torch

from dwf_hub.archs import get_arch_class
from dwf_hub.errors import DWFError
from dwf_hub.evaluation.metrics import nearest
from dwf_hub.evaluation.novelty import NoveltyScorer, invariant_distances, median_ratio_interval
from dwf_hub.matching import canonicalize, weight_matching_many
from dwf_hub.matching.weight_matching import matched_inner_products, weight_matching_pairs
from dwf_hub.permutations import apply_permutation, random_permutation


def _permuted(arch, weights: torch.Tensor, seed: int) -> torch.Tensor:
    """Every row of ``weights [N, D]`` under its own random permutation (the same functions)."""
    spec, g = arch.permutation_spec(), torch.Generator().manual_seed(seed)
    rows = []
    for w in weights:
        sd = arch.unflatten(w)
        rows.append(arch.flatten(apply_permutation(spec, random_permutation(spec, sd, g), sd)))
    return torch.stack(rows)


@pytest.fixture(scope="module")
def one_hidden():
    """An Iris-sized MLP [4, 16, 3] (one hidden layer: the alignment is exact) and 10 random networks."""
    arch = get_arch_class("mlp")(layer_sizes=[4, 16, 3])
    return arch, torch.randn(10, arch.num_params, generator=torch.Generator().manual_seed(0))


def test_a_permuted_copy_of_a_training_network_has_novelty_zero(one_hidden, tiny_zoo):
    arch, w = one_hidden
    copies = _permuted(arch, w[:4], seed=1)
    assert torch.cdist(copies, w[:4]).diagonal().min() > 1  # far apart in plain weight space
    d = invariant_distances(arch, copies, w)
    assert d.diagonal().max() < 1e-3 and nearest(d).max() < 1e-3
    scorer = NoveltyScorer(arch, w)
    assert scorer.score(copies)["novelty_ratio"] < 1e-4
    # Deeper (coordinate descent): permuted copies of a trained zoo are still recognised.
    deep = tiny_zoo.to_matrix()
    assert NoveltyScorer(tiny_zoo.arch, deep).score(_permuted(tiny_zoo.arch, deep, 2))["novelty_ratio"] < 1e-3


def test_distances_ignore_how_a_set_was_aligned(one_hidden):
    arch, w = one_hidden
    queries = torch.randn(6, arch.num_params, generator=torch.Generator().manual_seed(3))
    before = invariant_distances(arch, queries, w)
    after = invariant_distances(arch, _permuted(arch, queries, seed=4), w)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-5)
    assert (before <= torch.cdist(queries, w) + 1e-4).all()  # never above the plain distance


def test_pairs_equal_one_reference_at_a_time(tiny_zoo):
    spec = tiny_zoo.arch.permutation_spec()
    sds = [tiny_zoo.state_dict(i) for i in range(len(tiny_zoo))]
    refs, others = [sds[i % 3] for i in range(8)], sds
    pairs = weight_matching_pairs(spec, refs, others, seed=1)
    for i, r in enumerate(pairs):
        one = weight_matching_many(spec, refs[i], [others[i]], seed=1, workers=1)[0]
        assert all(torch.equal(r.perm[p], one.perm[p]) for p in r.perm)
        assert r.objective == pytest.approx(one.objective, rel=1e-6)
    stacked = [
        {k: torch.stack([sd[k] for sd in group]) for k in spec.axes_to_perm} for group in (refs, others)
    ]
    inner = matched_inner_products(spec, *stacked, seed=1)  # the same descent without per-pair results
    torch.testing.assert_close(inner, torch.tensor([r.objective for r in pairs], dtype=torch.float64))
    with pytest.raises(ValueError, match="3 references for 8 networks"):
        weight_matching_pairs(spec, refs[:3], others)


def test_nearest_candidates_agree_with_all_pairs(tiny_zoo):
    canonical = canonicalize(tiny_zoo, progress=False).zoo.to_matrix()
    queries = canonical[:4] + 0.05 * torch.randn(
        4, canonical.shape[1], generator=torch.Generator().manual_seed(5)
    )
    full = nearest(invariant_distances(tiny_zoo.arch, queries, canonical, candidates=None))
    quick = nearest(invariant_distances(tiny_zoo.arch, queries, canonical, candidates=2))
    torch.testing.assert_close(quick, full, rtol=1e-4, atol=1e-5)


def test_heldout_ratio_separates_copies_from_fresh_networks(one_hidden):
    arch, _ = one_hidden
    g = torch.Generator().manual_seed(7)
    seen, heldout, fresh = (torch.randn(n, arch.num_params, generator=g) for n in (30, 15, 90))
    scorer = NoveltyScorer(arch, seen, heldout)
    copies = scorer.score(seen[:20] + 0.01 * torch.randn(20, arch.num_params, generator=g))
    new = scorer.score(fresh)
    assert copies["novelty_ratio"] < 0.05 and copies["heldout_ratio"] < 0.05
    assert 0.85 < new["heldout_ratio"] < 1.15 and new["novelty_ratio"] > 0.8
    mids = scorer.score((seen[:20] + seen[10:30]) / 2)  # interpolations of seen members: in between
    assert 0.3 < mids["heldout_ratio"] < 0.85
    assert new["diversity_ratio"] > 0.8 and copies["diversity_ratio"] > 0.8  # copies of distinct members


def test_ratio_intervals_bracket_the_ratio_and_widen_for_a_split_set():
    g = torch.Generator().manual_seed(0)
    tight = 1 + 0.01 * torch.randn(100, generator=g)
    split = torch.cat([torch.full((50,), 0.3), torch.full((50,), 0.9)]) + 0.01 * torch.randn(100, generator=g)
    lo, hi = median_ratio_interval(tight, 2.0)
    assert lo < float(tight.median()) / 2 < hi and hi - lo < 0.01
    assert median_ratio_interval(tight, 2.0) == [lo, hi]  # seeded: the same interval every time
    lo, hi = median_ratio_interval(split, 1.0)  # near-copies and blends: the median can fall on either side
    assert lo < 0.35 and hi > 0.85
    assert median_ratio_interval(2 * tight, tight) == pytest.approx([2.0, 2.0])  # paired resampling
    assert median_ratio_interval(torch.full((10,), 0.5), 1.0) == pytest.approx([0.5, 0.5])
    assert median_ratio_interval(torch.tensor([0.6]), 2.0) == pytest.approx(
        [0.3, 0.3]
    )  # one network: nothing to resample
    assert median_ratio_interval(torch.tensor([0.6]), torch.tensor([0.3])) == pytest.approx([2.0, 2.0])


def test_scores_carry_intervals_around_their_ratios(one_hidden):
    arch, _ = one_hidden
    g = torch.Generator().manual_seed(3)
    seen, heldout, fresh = (torch.randn(n, arch.num_params, generator=g) for n in (30, 10, 40))
    s = NoveltyScorer(arch, seen, heldout).score(fresh)
    for ratio in ("novelty", "diversity", "heldout"):
        lo, hi = s[f"{ratio}_interval"]
        assert lo <= s[f"{ratio}_ratio"] <= hi and hi - lo < 0.5 * s[f"{ratio}_ratio"]


def test_scorer_refuses_degenerate_input(one_hidden):
    arch, w = one_hidden
    with pytest.raises(DWFError, match="at least two networks"):
        NoveltyScorer(arch, w[:1])
    with pytest.raises(DWFError, match="only copies"):
        NoveltyScorer(arch, w[:1].repeat(3, 1))
    with pytest.raises(DWFError, match="at least two held-out networks"):
        NoveltyScorer(arch, w, w[:1])
    with pytest.raises(DWFError, match=r"weights must be \[N, 131\]"):
        invariant_distances(arch, w[:, :10], w)


def test_fit_holdout_flows_into_evaluation(tiny_zoo):
    from dwf_hub.evaluation.zoo_evaluation import evaluate_zoo
    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline

    fit = fit_pipeline(tiny_zoo, default_flow_config(tiny_zoo, holdout=2), progress=False)
    assert len(fit.training_zoo) == 6 and len(fit.heldout_zoo) == 2
    plain = fit_pipeline(tiny_zoo.subset(range(6)), default_flow_config(tiny_zoo), progress=False)
    gen = fit.pipeline.generate_zoo(10, seed=0)
    assert torch.equal(gen.to_matrix(), plain.pipeline.generate_zoo(10, seed=0).to_matrix())  # never saw 6, 7
    assert gen.info["holdout"] == 2
    ev = evaluate_zoo(gen, reference=tiny_zoo)
    assert ev["holdout"] == 2 and ev["reference_num_networks"] == 6
    assert {"novelty_ratio", "diversity_ratio", "heldout_ratio"} <= set(ev)
    with pytest.raises(DWFError, match="holdout=7 must leave at least 2"):
        fit_pipeline(tiny_zoo, default_flow_config(tiny_zoo, holdout=7), progress=False)


def test_function_novelty_sees_functions_not_weights(tiny_zoo):
    """Permuted copies, and copies whose first ReLU layer is rescaled (weights in x c, out / c), compute the
    zoo's own functions: function novelty 0, though rescaling moves them in weight space; noise is seen."""
    from dwf_hub.evaluation.frontier import Frontier

    canonical = canonicalize(tiny_zoo, progress=False).zoo
    arch, x, y = canonical.arch, *canonical.recipe.task.split("val")
    assert arch.layout[0].key == "layers.0.weight" and arch.layout[2].key == "layers.1.weight"
    frontier = Frontier(canonical, x, y, num_networks=8)
    w = frontier.scorer.train
    c = torch.rand(arch.layout[0].shape[0], generator=torch.Generator().manual_seed(0)) * 3 + 0.5  # > 0
    rescaled = []
    for row in _permuted(arch, w, seed=3):
        sd = {k: v.clone() for k, v in arch.unflatten(row).items()}
        sd["layers.0.weight"] *= c[:, None]
        sd["layers.0.bias"] *= c
        sd["layers.1.weight"] /= c
        rescaled.append(arch.flatten(sd))
    rescaled = torch.stack(rescaled)
    scores = frontier.score(rescaled, diversity=False)
    assert scores["function_novelty_ratio"] < 1e-3 and scores["novelty_ratio"] > 0.2
    noisy = frontier.score(
        w + 0.3 * w.std() * torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
    )
    assert noisy["function_novelty_ratio"] > 0.2


def test_failed_networks_are_counted_and_left_out_of_working_function_novelty(tiny_zoo):
    """A broken network computes a function far from every member: the plain function novelty counts it as new,
    ``working_function_novelty_ratio`` leaves it out and ``failed_share`` counts it."""
    from dwf_hub.evaluation.frontier import FAILED_MARGIN, Frontier
    from dwf_hub.scoring import score_many

    canonical = canonicalize(tiny_zoo, progress=False).zoo
    x, y = canonical.recipe.task.split("val")
    frontier = Frontier(canonical, x, y, num_networks=8)
    w = frontier.scorer.train
    broken = torch.zeros(5, w.shape[1])  # every logit 0: one class for every input
    worst = float(score_many(canonical.arch, w, x, y).min())
    assert float(score_many(canonical.arch, broken, x, y).max()) < worst - FAILED_MARGIN  # they do fail here
    assert frontier.score(w[:3], diversity=False)["failed_share"] == 0.0  # members never fail
    mixed = frontier.score(torch.cat([w[:3], broken]), diversity=False)
    assert mixed["failed_share"] == pytest.approx(5 / 8)
    assert mixed["working_function_novelty_ratio"] == pytest.approx(0.0, abs=1e-6)  # the copies
    assert mixed["function_novelty_ratio"] > 0.5  # the median network is a broken one
    assert frontier.score(broken, diversity=False)["working_function_novelty_ratio"] is None


@pytest.mark.parametrize(
    "family, kwargs",
    [("mlp", {"layer_sizes": [4, 16, 3]}), ("mlp", {"layer_sizes": [6, 8, 8, 3]}), ("vit", None)],
)
def test_nearest_skips_pairs_that_cannot_be_nearest_and_finds_the_same(family, kwargs, monkeypatch):
    """``nearest_invariant`` = row minima of ``invariant_distances`` (all pairs, a few candidates, a set against
    itself), while the bounds it prunes with stay below every aligned distance and spare some matching."""
    import dwf_hub.evaluation.novelty as novelty
    from dwf_hub.matching import matching_spec

    cls = get_arch_class(family)
    arch = cls(**kwargs) if kwargs else cls.tiny()
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(12, arch.num_params, generator=g)
    near = _permuted(arch, pool[:6] + 0.05 * torch.randn(6, arch.num_params, generator=g), 1)
    query = torch.cat([near, torch.randn(4, arch.num_params, generator=g)])  # 6 near-copies, 4 new networks
    full = invariant_distances(arch, query, pool)
    spec = matching_spec(arch, True)
    qi, pj = torch.meshgrid(torch.arange(len(query)), torch.arange(len(pool)), indexing="ij")
    bounds = novelty._distance_bounds(arch, spec, query, pool, qi.flatten(), pj.flatten()).view_as(full)
    assert (bounds <= full.double() * (1 + 1e-6) + 1e-6).all()
    assert torch.equal(novelty.nearest_invariant(arch, query, pool), nearest(full))
    assert torch.equal(
        novelty.nearest_invariant(arch, query, pool, candidates=3),
        nearest(invariant_distances(arch, query, pool, 3)),
    )
    assert torch.equal(
        novelty.nearest_invariant(arch, query, query, exclude_self=True),
        nearest(invariant_distances(arch, query, query), exclude_self=True),
    )
    if (
        family == "mlp" and len(kwargs["layer_sizes"]) == 3
    ):  # one permutation: the bound is tight enough to prune
        matched, original = [], novelty._aligned_distances
        monkeypatch.setattr(
            novelty, "_aligned_distances", lambda *a, **k: matched.append(len(a[4])) or original(*a, **k)
        )
        novelty.nearest_invariant(arch, query, pool)
        assert sum(matched) < len(query) * len(pool)
