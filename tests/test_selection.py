"""Fit-time selection of the flow's training length (``select = "auto"``): which snapshot is kept, that it is
the one the pipeline holds, and that scoring snapshots neither changes training nor is lost on resume."""

from __future__ import annotations

import torch

from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.flow.selection import FRACTIONS, choose
from dwf_hub.provenance import Floors, SnapshotScore


def _s(iteration, mean, novelty, fn=None, std=0.0, condition=""):
    return SnapshotScore(iteration, mean, std, 0.0, novelty, novelty if fn is None else fn, condition)


def _floors(floor, novelty=0.5):
    return {"": Floors(floor + 0.02, floor, novelty, novelty)}


def test_choose_keeps_the_most_accurate_new_and_working_snapshot():
    scores = [_s(1, 0.80, 1.2), _s(2, 0.96, 0.9), _s(3, 0.95, 0.6), _s(4, 0.97, 0.1)]
    # snapshot 1 fails the accuracy floor, 4 is a copy: of 2 and 3, the more accurate
    assert choose(scores, _floors(0.94)) == (2, "new and working")
    # function novelty counts too: 2's networks compute their members' functions
    scores[1] = _s(2, 0.96, 0.9, fn=0.2)
    assert choose(scores, _floors(0.94)) == (3, "new and working")


def test_choose_reads_differences_within_noise_as_ties_and_keeps_the_longer_training():
    scores = [_s(1, 0.960, 1.2, std=0.02), _s(2, 0.955, 0.9, std=0.02), _s(3, 0.90, 0.8, std=0.02)]
    # 0.5 pp apart with 32 networks of std 2 pp each: a tie, the later one is kept; 6 pp apart is not
    assert choose(scores, _floors(0.85)) == (2, "new and working")
    scores[1] = _s(2, 0.955, 0.9, std=0.0)
    scores[0] = _s(1, 0.960, 1.2, std=0.0)
    assert choose(scores, _floors(0.85)) == (1, "new and working")


def test_choose_says_when_every_length_memorizes_or_falls_short():
    copies = [_s(1, 0.95, 0.3), _s(2, 0.96, 0.2), _s(3, 0.97, 0.1)]
    assert choose(copies, _floors(0.94)) == (1, "memorizes")  # the most new of the working ones
    broken = [_s(1, 0.5, 1.0), _s(2, 0.7, 0.8), _s(3, 0.6, 0.2)]
    assert choose(broken, _floors(0.94)) == (2, "falls short")  # the most accurate


def test_choose_holds_every_condition_to_its_own_floors():
    floors = {"a": Floors(0.97, 0.95, 0.5, 0.5), "b": Floors(0.82, 0.80, 0.4, 0.4)}
    scores = [
        _s(1, 0.96, 0.9, condition="a"), _s(1, 0.79, 0.9, condition="b"),  # b below its floor
        _s(2, 0.96, 0.6, condition="a"), _s(2, 0.81, 0.45, condition="b"),  # both new and working
        _s(3, 0.97, 0.2, condition="a"), _s(3, 0.82, 0.9, condition="b"),  # a copies its zoo
    ]  # fmt: skip
    assert choose(scores, floors) == (2, "new and working")


def test_fit_keeps_the_chosen_snapshot_and_records_it(tiny_fit):
    selection, pipe = tiny_fit.selection, tiny_fit.pipeline
    iterations = default_flow_config(tiny_fit.training_zoo).training.iterations
    assert selection is not None and selection.scores[-1].iteration == iterations
    assert len(selection.scores) == len({max(1, round(iterations * f)) for f in FRACTIONS})
    assert selection.iteration in [s.iteration for s in selection.scores]
    assert (selection.iteration, selection.rule) == choose(selection.scores, selection.floors)
    assert pipe.card_info["selection"]["iteration"] == selection.iteration
    assert "kept the flow after" in selection.describe()


def test_snapshots_do_not_change_training_and_off_keeps_the_end(tiny_zoo, tmp_path):
    cfg = default_flow_config(tiny_zoo)
    off = fit_pipeline(tiny_zoo, cfg.replace(select="off"), progress=False)
    assert off.selection is None
    auto = fit_pipeline(
        tiny_zoo, cfg.replace(select="auto"), checkpoint_dir=tmp_path / "ckpt", progress=False
    )
    saved = sorted((tmp_path / "ckpt" / "snapshots").glob("snapshot_*.safetensors"))
    assert len(saved) == len(auto.selection.scores)
    from dwf_hub.io import load_tensors

    last = load_tensors(saved[-1])  # the end of training, scored along the way: what training alone gives
    for key, value in off.pipeline.velocity.state_dict().items():
        assert torch.equal(last[key], value), key
    kept = load_tensors(saved[auto.selection.scores.index(auto.selection.kept[0])])
    for key, value in auto.pipeline.velocity.state_dict().items():
        assert torch.equal(kept[key], value), key


def test_a_resumed_fit_reuses_its_snapshots(tiny_zoo, tmp_path, monkeypatch):
    from dwf_hub.flow.selection import SnapshotSelector

    cfg = default_flow_config(tiny_zoo)
    first = fit_pipeline(tiny_zoo, cfg, checkpoint_dir=tmp_path / "ckpt", progress=False)
    scored: list[int] = []
    original = SnapshotSelector._score
    monkeypatch.setattr(
        SnapshotSelector, "_score", lambda self, i, *a: scored.append(i) or original(self, i, *a)
    )
    again = fit_pipeline(tiny_zoo, cfg, checkpoint_dir=tmp_path / "ckpt", progress=False)
    # training resumes from its last checkpoint; only snapshots after it are scored again, to the same values
    last_checkpoint = cfg.training.iterations - cfg.training.iterations % cfg.training.checkpoint_every
    if last_checkpoint == cfg.training.iterations:
        last_checkpoint -= cfg.training.checkpoint_every
    assert scored and min(scored) > last_checkpoint
    assert again.selection == first.selection


def test_the_selection_is_saved_with_the_pipeline_and_on_its_card(tiny_fit, pipe_dir):
    import pytest

    from dwf_hub import DeepWeightFlowPipeline
    from dwf_hub.errors import PipelineFormatError
    from dwf_hub.provenance import Selection

    loaded = DeepWeightFlowPipeline.from_pretrained(pipe_dir)
    assert loaded.selection == tiny_fit.selection
    assert f"kept the flow after {tiny_fit.selection.iteration} of" in (pipe_dir / "README.md").read_text()
    broken = {**tiny_fit.selection.to_dict(), "iteration": 10**6}  # not one of the scored snapshots
    with pytest.raises(PipelineFormatError, match="card.json: 'selection'"):
        Selection.from_dict(broken, "card.json")


def test_the_flow_budget_grows_with_the_fitted_members(tiny_zoo):
    from dwf_hub.flow.fitting import budget_for

    cfg = default_flow_config(tiny_zoo).replace(iterations=60, iterations_per_member=10)
    assert budget_for(cfg, 8).training.iterations == 80 and budget_for(cfg, 5).training.iterations == 60
    fit = fit_pipeline(tiny_zoo, cfg.replace(select="off", holdout=2), progress=False)  # 6 fitted: 60 stays
    assert fit.pipeline.config.flow_config["training"]["iterations"] == 60
    fit = fit_pipeline(tiny_zoo, cfg.replace(iterations_per_member=20), progress=False)  # 8 fitted: 160
    assert fit.pipeline.config.flow_config["training"]["iterations"] == 160
    assert fit.selection.scores[-1].iteration == 160


def test_a_snapshot_file_that_is_not_ours_is_refused_not_replaced(tiny_zoo, tmp_path):
    import pytest

    from dwf_hub.errors import DWFError
    from dwf_hub.io import save_tensors

    foreign = tmp_path / "ckpt" / "snapshots" / "snapshot_000000060.safetensors"
    save_tensors(foreign, {"x": torch.ones(2)}, {"owner": "someone else"})
    before = foreign.read_bytes()
    with pytest.raises(DWFError, match="not a dwf_hub flow snapshot"):
        fit_pipeline(
            tiny_zoo, default_flow_config(tiny_zoo), checkpoint_dir=tmp_path / "ckpt", progress=False
        )
    assert foreign.read_bytes() == before
