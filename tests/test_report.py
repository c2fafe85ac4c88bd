"""Set-to-set metrics on hand-built cases with known answers, the shipped evaluate modules, the report."""

from __future__ import annotations

import json

import pytest
import torch

from dwf_hub.evaluation import metrics
from dwf_hub.scoring import spearman

LABELS = torch.tensor([0, 1, 2, 0, 1, 2])


def test_wrong_prediction_iou_known_answers():
    right = LABELS.clone()
    a = torch.tensor([1, 1, 2, 0, 1, 2])  # wrong on sample 0
    b = torch.tensor([0, 0, 2, 0, 1, 2])  # wrong on sample 1: disjoint from a
    c = torch.tensor([1, 0, 2, 0, 1, 2])  # wrong on 0 and 1
    iou = metrics.wrong_iou(torch.stack([a, b, c, right]), torch.stack([a, b, c, right]), LABELS)
    assert iou[0, 0] == 1 and iou[0, 1] == 0  # identical / disjoint error sets
    assert iou[0, 2] == pytest.approx(0.5) and iou[2, 1] == pytest.approx(0.5)
    assert iou[3, 3] == 1 and iou[3, 0] == 0  # two error-free networks are identical; vs one error: 0
    # the paper's mIoU leaves self-pairs out
    same = metrics.max_wrong_iou(torch.stack([a, b]), torch.stack([a, b]), LABELS, same=True)
    assert same.tolist() == [0.0, 0.0]
    assert metrics.max_wrong_iou(torch.stack([a, a]), torch.stack([a, a]), LABELS, same=True).tolist() == [
        1,
        1,
    ]


def test_weight_distances_known_answers():
    a = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert metrics.nearest_distances(a, a).tolist() == [0.0, 0.0]
    assert metrics.nearest_distances(a, a, exclude_self=True).tolist() == [5.0, 5.0]
    assert metrics.max_cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0], [-3.0, 0.0]])).item() == 0
    assert metrics.wasserstein(a, a) == 0 and metrics.jensen_shannon(a, a) == 0
    shifted = a + 10.0
    assert metrics.wasserstein(a, shifted) == pytest.approx(10.0)
    assert metrics.jensen_shannon(a, shifted) == pytest.approx(1.0)  # disjoint supports: the maximum
    assert metrics.canonical_novelty_ratio(a, a) == 0.0
    r = spearman(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), torch.tensor([10.0, 20.0, 30.0]))
    assert r.tolist() == pytest.approx([1.0, -1.0])


def test_shipped_evaluate_modules_load_offline_and_agree():
    w = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    ref = torch.randn(5, 10, generator=torch.Generator().manual_seed(1))
    dist = metrics.load_metric("weight_space_distance")
    out = dist.compute(predictions=w.tolist(), reference=ref.tolist())
    assert out["novelty_ratio"] == pytest.approx(metrics.canonical_novelty_ratio(w, ref), rel=1e-5)
    assert out["nn_l2_median"] == pytest.approx(float(metrics.nearest_distances(w, ref).median()), rel=1e-5)
    same = dist.compute(predictions=w.tolist())
    assert "novelty_ratio" not in same and same["wasserstein"] == 0
    preds = torch.stack([LABELS, LABELS, torch.tensor([1, 1, 2, 0, 1, 2])])
    iou = metrics.load_metric("wrong_prediction_iou").compute(
        predictions=preds.tolist(), labels=LABELS.tolist()
    )
    assert iou["miou"] == [1.0, 1.0, 0.0]
    task = metrics.load_metric("network_task_metric").compute(
        predictions=preds.tolist(), targets=LABELS.tolist()
    )
    assert task["per_network"] == pytest.approx([1.0, 1.0, 5 / 6])
    with pytest.raises(Exception, match="unknown metric 'nope'"):
        metrics.load_metric("nope")


def test_report_flags_memorized_copies(tiny_zoo, tmp_path):
    from dwf_hub.evaluation.report import build_report
    from dwf_hub.matching import canonicalize
    from dwf_hub.zoo.weight_zoo import WeightZoo

    canonical = canonicalize(tiny_zoo, progress=False).zoo
    copies = WeightZoo.from_matrix(tiny_zoo.arch, canonical.to_matrix() + 1e-4, recipe=tiny_zoo.recipe)
    s = build_report(copies, canonical, tmp_path / "copies", noise=(0.01,))
    assert s["memorized"] and s["verdict"].startswith("**Generated networks look memorized**")
    assert s["novelty_ratio"]["generated"] < 0.01
    assert s["table17"]["gen→orig"]["miou_mean"] > 0.99
    assert set(s["table17"]) == {
        "orig→orig", "orig→gen", "gen→orig", "gen→gen", "noise σ=0.01→orig",
        *(f"{kind} ({how})→orig" for kind in ("noise", "interpolation", "mean_noise", "gaussian")
          for how in ("matched", "function-matched")),
        *(f"{kind} (diversity-matched)→orig" for kind in ("mean_noise", "gaussian")),
    }  # fmt: skip
    # Near-copies: both baselines are matched down to the same tiny novelty, in weights and in functions.
    assert (
        s["function_novelty_ratio"]["generated"] < 0.05 and "In function space, the generator" in s["verdict"]
    )
    verdict = s["verdict"]
    assert verdict.index("In function space") < verdict.index("In weight space") < verdict.index("Overall")
    for kind in ("noise", "interpolation"):
        assert s["beats"][kind] == (s["baselines"][kind]["beats"] and s["baselines_function"][kind]["beats"])
        b = s["baselines"][kind]
        assert b["reached"] and abs(b["novelty_ratio"] - s["novelty_ratio"]["generated"]) < 0.05
        assert set(b) >= {"accuracy_mean", "novelty_ratio", "function_novelty_ratio", "knob", "beats"}
        assert b["generated_diversity_ratio"] == s["diversity_ratio"]["generated"]
        lo, hi = s["novelty_interval"][f"{kind} (matched)"]
        assert lo <= b["novelty_ratio"] <= hi
        assert b["diversity_ratio"] == s["diversity_ratio"][f"{kind} (matched)"] > 0
        f = s["baselines_function"][kind]
        assert (
            f["reached"]
            and abs(f["function_novelty_ratio"] - s["function_novelty_ratio"]["generated"]) < 0.05
        )
    # the zoo mean + noise and the Gaussian are never as close to the zoo as copies: not beaten, compared only
    # if they dominate
    for kind in ("mean_noise", "gaussian"):
        for rows in (s["baselines"], s["baselines_function"]):
            m = rows[kind]
            assert m["too_novel"] and not m["beats"] and m["comparable"] == (m["difference"] <= 0)
        assert (kind in s["beats"]) == any(
            r[kind]["comparable"] for r in (s["baselines"], s["baselines_function"])
        )
    for name in (
        "report.md",
        "summary.json",
        "accuracy_hist.png",
        "nn_distance_hist.png",
        "accuracy_vs_novelty.png",
    ):
        assert (tmp_path / "copies" / name).stat().st_size > 0
    assert not (
        tmp_path / "copies" / "accuracy_vs_miou.png"
    ).exists()  # 30 test samples: too few for the scatter
    report = (tmp_path / "copies" / "report.md").read_text()
    assert all(
        f"]({f})" in report for f in ("accuracy_hist.png", "nn_distance_hist.png", "accuracy_vs_novelty.png")
    )
    assert (tmp_path / "copies" / "accuracy_hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "copies" / "summary.json").read_text())["memorized"] is True
    fresh = WeightZoo.from_matrix(
        tiny_zoo.arch, torch.randn(8, tiny_zoo.arch.num_params), recipe=tiny_zoo.recipe
    )
    s2 = build_report(fresh, canonical, tmp_path / "fresh")
    assert not s2["memorized"] and "memorized" not in s2["verdict"]
    # random networks fail: the verdict says so, with the working ones' function novelty beside the plain one
    assert s["failed_share"]["generated"] == 0 and "of the generated networks fail" not in s["verdict"]
    assert s2["failed_share"]["generated"] >= 0.5 and "of the generated networks fail" in s2["verdict"]
    assert "| failed networks |" in (tmp_path / "fresh" / "report.md").read_text()


def test_cli_evaluate_writes_the_report(tiny_zoo, tiny_fit, tmp_path, capsys):
    from dwf_hub.cli import main

    tiny_zoo.save(tmp_path / "zoo")
    tiny_fit.pipeline.generate_zoo(8, seed=0).save(tmp_path / "gen")
    argv = ["-q", "evaluate", str(tmp_path / "gen"), "--reference", str(tmp_path / "zoo")]
    assert main([*argv, "--noise", "0.001,0.01", "--out", str(tmp_path / "rep"), "--no-baselines"]) == 0
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert set(summary["accuracy"]) == {"zoo", "generated", "noise σ=0.001", "noise σ=0.01"}
    assert summary["baselines"] == {} and summary["holdout"] == 0
    assert f"failed {100 * summary['failed_share']['generated']:.0f} %" in capsys.readouterr().out
    report = (tmp_path / "rep" / "report.md").read_text()
    lo, hi = summary["novelty_interval"]["generated"]
    assert (
        "Evaluation report" in report
        and f"{summary['novelty_ratio']['generated']:.3f} ({lo:.2f}–{hi:.2f})" in report
    )
    assert main(["-q", "evaluate", str(tmp_path / "gen"), "--out", str(tmp_path / "x")]) == 2
    assert "--reference" in capsys.readouterr().err
    assert main([*argv, "--noise", "0.1,abc", "--out", str(tmp_path / "y")]) == 2
    assert "--noise: 'abc' is not a number" in capsys.readouterr().err


def test_vectorized_predictions_match_a_loop(tiny_zoo):
    from dwf_hub.scoring import predict_many

    x = tiny_zoo.recipe.task.x_test
    batched = predict_many(tiny_zoo.arch, tiny_zoo.to_matrix(), x)
    with torch.no_grad():
        looped = torch.stack([tiny_zoo.model(i)(x).argmax(-1) for i in range(len(tiny_zoo))])
    assert torch.equal(batched, looped)


def test_overall_verdict_needs_both_spaces():
    from dwf_hub.evaluation.verdict import beats_overall, verdict

    def row(beats: bool) -> dict:
        return {"beats": beats, "reached": True, "knob": {"sigma": 0.1}, "mean": 0.9, "baseline_mean": 0.8,
                "novelty_ratio": 0.7, "function_novelty_ratio": 2.0}  # fmt: skip

    weight = {"noise": row(True), "interpolation": row(True)}
    function = {"noise": row(True), "interpolation": row(False)}  # wins in weights only: not a win
    assert beats_overall(weight, function) == {"noise": True, "interpolation": False}
    assert beats_overall(weight, {}) == {"noise": True, "interpolation": True}  # no function novelty measured
    text = verdict(0.7, None, weight, "accuracy", function)
    assert text.index("In function space") < text.index("In weight space")
    assert text.endswith(
        "Overall (both spaces): significantly ahead of noise (1 of the 2 baselines it can be compared with)."
    )
    lost = verdict(0.7, None, {"noise": row(False)}, "accuracy", {"noise": row(True)})
    assert lost.endswith("ahead of none (0 of the 1 baselines it can be compared with).")
    apart = {**row(False), "too_novel": True, "comparable": False}  # more novel, less accurate: no verdict
    mixed = verdict(0.7, None, {**weight, "mean_noise": apart}, "accuracy", {**function, "mean_noise": apart})
    assert "cannot be compared with** the mean_noise baseline (more novel at every setting" in mixed
    assert beats_overall({"mean_noise": apart}, {"mean_noise": apart}) == {}
    # a baseline that wins on accuracy with a narrower set is said to; a wider or beaten one is not
    narrow = {**row(False), "diversity_ratio": 0.1, "generated_diversity_ratio": 0.4}
    said = verdict(0.7, None, {"mean_noise": narrow}, "accuracy")
    assert (
        "90.00 vs 80.00, but the baseline's networks are less diverse than the generated ones (diversity 0.10 vs 0.40)."
        in said
    )
    for quiet in (
        {**narrow, "diversity_ratio": 0.5},
        {**narrow, "beats": True},
        {**narrow, "comparable": False},
    ):
        assert "less diverse" not in verdict(0.7, None, {"mean_noise": quiet}, "accuracy")


def test_diversity_matched_baselines_say_who_dominates():
    from dwf_hub.evaluation.verdict import diversity_outcome, verdict

    def row(gen: float, base: float, novelty: float) -> dict:
        return {"knob": {"scale": 0.7}, "reached": True, "mean": gen, "baseline_mean": base,
                "difference": gen - base, "significant": True, "novelty_ratio": novelty,
                "generated_novelty_ratio": 0.8, "diversity_ratio": 0.4}  # fmt: skip

    assert diversity_outcome(row(0.9, 0.86, 0.94)) == "generator more accurate"  # a trade-off
    assert diversity_outcome(row(0.9, 0.86, 0.7)) == "generator dominates"
    assert diversity_outcome(row(0.85, 0.86, 0.94)) == "baseline dominates"
    assert diversity_outcome(row(0.85, 0.86, 0.7)) == "baseline more accurate"
    text = verdict(0.8, None, diversity_baselines={"gaussian": row(0.9, 0.86, 0.94)})
    assert (
        "At the generated networks' diversity (the gaussian baseline at scale 0.7: diversity 0.40), the generator "
        "is more accurate (90.00 vs 86.00), the baseline more novel (novelty 0.94 vs 0.80)." in text
    )
    assert "it dominates" in verdict(0.8, None, diversity_baselines={"gaussian": row(0.85, 0.86, 0.94)})


def test_report_matches_the_baselines_that_cannot_copy_the_zoo_on_diversity(tiny_zoo, tmp_path):
    from dwf_hub.evaluation.report import build_report
    from dwf_hub.evaluation.verdict import diversity_outcome
    from dwf_hub.matching import canonicalize
    from dwf_hub.zoo.weight_zoo import WeightZoo

    canonical = canonicalize(tiny_zoo, progress=False).zoo
    w = canonical.to_matrix()
    g = torch.Generator().manual_seed(0)
    blends = torch.softmax(torch.randn(8, len(w), generator=g), 1) @ w  # varied sets near the zoo's centre
    s = build_report(
        WeightZoo.from_matrix(tiny_zoo.arch, blends, recipe=tiny_zoo.recipe), canonical, tmp_path
    )
    rows = s["baselines_diversity"]
    assert set(rows) == {"mean_noise", "gaussian"}  # noise and interpolation can copy the zoo
    generated = s["diversity_ratio"]["generated"]
    for kind, b in rows.items():
        assert b["diversity_ratio"] == s["diversity_ratio"][f"{kind} (diversity-matched)"]
        assert abs(b["diversity_ratio"] - generated) < 0.25 * generated or not b["reached"], b
        assert b["generated_novelty_ratio"] == s["novelty_ratio"]["generated"]
        assert b["outcome"] == diversity_outcome(b)
    assert "| gaussian | diversity |" in (tmp_path / "report.md").read_text()  # its row of the verdict table


def test_report_shows_one_progress_step_per_scored_set(tiny_zoo, tiny_fit, tmp_path, monkeypatch, capsys):
    """A report scores dozens of sets (minutes for conv nets on a CPU): its bar counts each, and ``-q`` hides it."""
    from dwf_hub.cli import main
    from dwf_hub.evaluation import report
    from dwf_hub.evaluation.frontier import Frontier
    from dwf_hub.evaluation.report import _scoring_bar, build_report

    counted, score, bars = [], Frontier.score, []
    monkeypatch.setattr(Frontier, "score", lambda self, *a, **k: counted.append(1) or score(self, *a, **k))
    monkeypatch.setattr(report, "_scoring_bar", lambda *a: bars.append(_scoring_bar(*a)) or bars[-1])
    generated = tiny_fit.pipeline.generate_zoo(8, seed=0)
    summary = build_report(
        generated, tiny_zoo, tmp_path / "rep", noise=(0.01,), holdout=3, progress=True, sweep_networks=4
    )
    # one step per set; a matched setting refined with more draws (Frontier.matched) adds its steps to the total
    assert len(counted) == bars[0].total >= _scoring_bar(1 + 2 + 1, True, False).total
    assert (
        summary["sweep_networks"] == 4
        and "drew 4 networks per setting" in (tmp_path / "rep/report.md").read_text()
    )
    assert "scoring sets" in capsys.readouterr().err
    tiny_zoo.save(tmp_path / "zoo")
    generated.save(tmp_path / "gen")
    argv = ["evaluate", str(tmp_path / "gen"), "--reference", str(tmp_path / "zoo"), "--no-baselines"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "scoring sets" in capsys.readouterr().err
    assert main(["-q", *argv, "--out", str(tmp_path / "b")]) == 0
    assert "scoring sets" not in capsys.readouterr().err


def test_a_checked_generated_set_meets_baselines_given_the_same_check(
    tiny_zoo, tiny_fit, tmp_path, monkeypatch
):
    from dwf_hub.evaluation.frontier import Frontier
    from dwf_hub.evaluation.report import build_report
    from dwf_hub.generation.quality_check import NUM_SAMPLES, training_slice
    from dwf_hub.scoring import score_many

    drawn, original = {}, Frontier.baseline_weights
    monkeypatch.setattr(
        Frontier,
        "baseline_weights",
        lambda self, kind, knob, n=None: drawn.setdefault(
            (kind, *knob.items()), original(self, kind, knob, n)
        ),
    )
    checked = tiny_fit.pipeline.generate_zoo(8, seed=0)  # through the quality check, as users get them
    record = checked.info["quality_check"]
    s = build_report(checked, tiny_zoo, tmp_path / "rep", sweep_networks=4)
    rows = s["baselines_checked"]["rows"]
    assert {r.split(" at ")[0] for r in rows} == set(s["baselines"]) and len(rows) == 2 * len(s["baselines"])
    x, y = training_slice(tiny_zoo.recipe, NUM_SAMPLES)
    for name, r in rows.items():
        kind = name.split(" at ")[0]
        w = drawn[(kind, *r["knob"].items())]
        ok = score_many(tiny_zoo.arch, w, x, y) >= record["threshold"]
        assert r["acceptance"] == float(ok.float().mean())
        assert (r["mean"] is None) == (not ok.any())
    assert s["baselines_checked"]["generated_drawn"] == record["counts"]["drawn"]
    assert "given the same check" in (tmp_path / "rep" / "report.md").read_text()
    raw = tiny_fit.pipeline.generate_zoo(8, seed=0, quality_check=False)
    assert build_report(raw, tiny_zoo, tmp_path / "raw", baselines=False)["baselines_checked"] is None


def test_the_report_opens_with_three_lines_a_reader_can_trust():
    from dwf_hub.evaluation.verdict import headline

    def row(mean, verdict):
        return {
            "baseline_mean": mean,
            "difference": 0.9 - mean,
            "verdict": verdict,
            "beats": verdict == "ahead",
        }

    summary = {
        "metric": "accuracy",
        "accuracy": {"generated": {"mean": 0.9}, "held-out zoo members": {"mean": 0.95}},
        "novelty_ratio": {"generated": 0.8, "held-out zoo members": 1.0},
        "function_novelty_ratio": {"generated": 3.0, "held-out zoo members": 1.0},
        "failed_share": {"generated": 0.02},
        "baselines_function": {"noise": row(0.85, "ahead"), "interpolation": row(0.92, "behind")},
        "beats": {"noise": True, "interpolation": False},
    }
    first, best, verdicts = headline(summary)
    assert "90.00 % at novelty 0.800, function novelty 3.00, 2 % failed" in first
    assert (
        "held-out members** (what new networks score): 95.00 % at novelty 1.000, function novelty 1.00"
        in first
    )
    assert best == (
        "- **Best baseline** at the same function novelty: interpolation, 92.00 %; the generator is **behind** (-2.00)."
    )
    summary["baselines_function"]["interpolation"] = row(0.9, "tie")
    assert headline(summary)[1].endswith("the generator is **tied with it** (+0.00).")
    assert verdicts == "- **Significantly ahead of** (both spaces): noise; not: interpolation."


def test_one_verdict_table_holds_every_comparison():
    from dwf_hub.evaluation.report_markdown import _verdict_table

    def row(verdict, **kw):
        return {"knob": {"sigma": 0.1}, "reached": True, "accuracy_mean": 0.8, "accuracy_std": 0.05,
                "difference": 0.1, "significant": verdict != "tie", "verdict": verdict,
                "beats": verdict == "ahead", **kw}  # fmt: skip

    summary = {"accuracy": {"generated": {"mean": 0.9, "std": 0.05}}, "num_generated": 100, "sweep_networks": 25,
               "baselines_function": {"noise": row("tie")}, "baselines": {"noise": row("ahead")},
               "baselines_diversity": {"gaussian": row("ahead", outcome="generator dominates")}}  # fmt: skip
    lines = _verdict_table(summary, 100.0, " (%)")
    rows = [ln for ln in lines if ln.startswith("| noise") or ln.startswith("| gaussian")]
    assert [r.split(" | ")[1] for r in rows] == ["function novelty", "weight novelty", "diversity"]
    assert rows[0].endswith("| no | tie |") and rows[1].endswith("| yes | ahead |")
    assert "80.00 ± 1.96" in rows[0] and "90.00 ± 0.98" in rows[0]  # 25 networks a setting vs 100 generated
    assert rows[2].endswith("| generator dominates |")
