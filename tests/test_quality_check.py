"""The pipeline's quality check: networks below the fit-time threshold on a training-split slice are drawn
again, and the output says how many; never on validation or test data; off on request."""

from __future__ import annotations

import json

import pytest
import torch

from dwf_hub.cli import main
from dwf_hub.errors import DWFError
from dwf_hub.generation.quality_check import QualityCheck, draw_checked, training_slice
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.scoring import score_many
from dwf_hub.zoo.weight_zoo import WeightZoo


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_threshold_is_the_worst_fitted_member_minus_the_margin_on_training_data(tiny_fit):
    check = tiny_fit.pipeline.quality_check
    x, y = training_slice(tiny_fit.training_zoo.recipe, check.num_samples)
    worst = float(score_many(tiny_fit.training_zoo.arch, tiny_fit.training_zoo.to_matrix(), x, y).min())
    assert check.worst_member == pytest.approx(worst) and check.threshold == pytest.approx(worst - 0.10)


def test_every_returned_network_passes_and_the_counts_are_reported(tiny_fit):
    pipe = tiny_fit.pipeline
    out = pipe(num_networks=12, generator=gen(), output_type="state_dict")
    scores = score_many(pipe.arch, out.weights, *training_slice(pipe.recipe, pipe.quality_check.num_samples))
    assert bool((scores >= pipe.quality_check.threshold).all())
    assert out.num_drawn >= 12 and out.rejected == out.num_drawn - 12
    assert out.acceptance_rate == pytest.approx(12 / out.num_drawn)
    again = pipe(num_networks=12, generator=gen(), output_type="state_dict")
    assert torch.equal(again.weights, out.weights)  # same seed, same networks, check included
    raw = pipe(num_networks=12, generator=gen(), output_type="state_dict", quality_check=False)
    assert raw.num_drawn is None and raw.acceptance_rate is None
    zoo = pipe.to_zoo(out, seed=0)
    assert zoo.info["quality_check"]["counts"] == {"drawn": out.num_drawn, "rejected": out.rejected}


def test_a_flow_that_rarely_passes_is_refused_not_padded(tiny_fit):
    pipe = tiny_fit.pipeline
    saved = dict(pipe.card_info)
    try:
        pipe.card_info["quality_check"] = {**saved["quality_check"], "threshold": 2.0}  # nothing can pass
        with pytest.raises(DWFError, match="only 0 of 3 networks passed after 30 draws"):
            pipe(num_networks=3, generator=gen())
        assert pipe(num_networks=3, generator=gen(), quality_check=False).num_drawn is None
    finally:
        pipe.card_info = saved


def test_redraws_continue_each_slot_until_it_passes():
    stream = iter([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])  # slot values as drawn, in order
    draw = lambda slots: torch.tensor([[next(stream)] for _ in slots])  # noqa: E731
    weights, drawn, rejected = draw_checked(draw, lambda w: w[:, 0] > 0.5, 4)
    assert weights[:, 0].tolist() == [1.0, 1.0, 1.0, 1.0] and (drawn, rejected) == (6, 2)


def test_the_check_never_reads_validation_or_test_data(tiny_fit, monkeypatch):
    recipe = tiny_fit.pipeline.recipe
    asked, split = [], type(recipe).split
    monkeypatch.setattr(type(recipe), "split", lambda self, s: asked.append(s) or split(self, s))
    tiny_fit.pipeline(num_networks=4, generator=gen())
    assert asked and set(asked) == {"train"}


def test_the_record_travels_with_the_pipeline_and_bad_ones_are_refused(tiny_fit, tmp_path):
    tiny_fit.pipeline.save_pretrained(tmp_path / "pipe")
    loaded = DeepWeightFlowPipeline.from_pretrained(tmp_path / "pipe")
    assert loaded.quality_check == tiny_fit.pipeline.quality_check
    with pytest.raises(DWFError, match="quality_check=True"):
        loaded(num_networks=2, generator=gen(), output_type="pt", quality_check=True)
    with pytest.raises(DWFError, match="pipeline call: quality_check='yes' has type str"):
        loaded(num_networks=2, generator=gen(), quality_check="yes")
    with pytest.raises(DWFError, match="not a quality-check record"):
        QualityCheck.from_dict({"threshold": "high"}, "card.json")


def test_generate_reports_the_check_and_can_turn_it_off(tiny_fit, tmp_path, capsys):
    tiny_fit.pipeline.save_pretrained(tmp_path / "pipe")
    for extra in ([], ["--networks-per-shard", "3"]):
        out = tmp_path / f"gen{len(extra)}"
        assert (
            main(["-q", "generate", str(tmp_path / "pipe"), "--num-networks", "5", "--out", str(out), *extra])
            == 0
        )
        line = capsys.readouterr().out
        assert "quality check:" in line and "acceptance" in line
        counts = json.loads((out / "zoo.json").read_text())["info"]["quality_check"]["counts"]
        assert counts["drawn"] - counts["rejected"] == 5 and len(WeightZoo.load(out)) == 5
    argv = ["-q", "generate", str(tmp_path / "pipe"), "--num-networks", "5", "--out", str(tmp_path / "raw")]
    assert main([*argv, "--no-quality-check"]) == 0
    assert "(no quality check)" in capsys.readouterr().out
