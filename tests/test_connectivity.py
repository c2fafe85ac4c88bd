"""The fit-time linear-connectivity check: what midpoints of aligned members score next to the members."""

from __future__ import annotations

import logging

import pytest
import torch

from dwf_hub.errors import PipelineFormatError
from dwf_hub.evaluation.connectivity import measure_connectivity
from dwf_hub.matching import canonicalize
from dwf_hub.provenance import Connectivity
from dwf_hub.scoring import score_many
from dwf_hub.zoo.weight_zoo import WeightZoo


def _zoo(tiny_zoo, rows: list[torch.Tensor]) -> WeightZoo:
    """A zoo of ``rows`` marked canonical as ``tiny_zoo``'s alignment would mark it (its recipe, its data)."""
    info = canonicalize(tiny_zoo.subset([0, 1]), progress=False).zoo.info
    return WeightZoo.from_matrix(tiny_zoo.arch, torch.stack(rows), recipe=tiny_zoo.recipe, info=info)


def test_copies_are_connected(tiny_zoo):
    w = tiny_zoo.flat(0)
    found = measure_connectivity(_zoo(tiny_zoo, [w] * 4), pairs=5)
    x, y = tiny_zoo.recipe.task.split("val")
    assert found.members == pytest.approx(float(score_many(tiny_zoo.arch, w[None], x, y)[0]))
    assert found.midpoints == pytest.approx(found.members) and found.drop == pytest.approx(0.0, abs=1e-7)
    assert found.connected and "linearly connected after alignment" in found.describe()
    assert (found.split, found.pairs, found.metric) == ("val", 5, "accuracy")
    assert measure_connectivity(_zoo(tiny_zoo, [w] * 3), pairs=16).pairs == 3  # no more pairs than it has


def test_members_whose_midpoint_fails_are_not_connected(tiny_zoo):
    # a network and the same network with its output layer negated: their midpoint has a zero output layer,
    # so it predicts class 0 everywhere (argmax of equal logits)
    arch, w = tiny_zoo.arch, tiny_zoo.flat(0)
    sd = arch.unflatten(w.clone())
    last = arch.layout[-1].key.rsplit(".", 1)[0]
    sd[f"{last}.weight"], sd[f"{last}.bias"] = -sd[f"{last}.weight"], -sd[f"{last}.bias"]
    found = measure_connectivity(_zoo(tiny_zoo, [w, arch.flatten(sd)]), pairs=3)
    x, y = tiny_zoo.recipe.task.split("val")
    assert found.midpoints == pytest.approx(float((y == 0).float().mean()))
    assert found.members == pytest.approx(
        float(score_many(arch, torch.stack([w, arch.flatten(sd)]), x, y).mean())
    )
    assert not found.connected and found.drop > 0.05
    assert "not linearly connected" in found.describe()


def test_fit_records_connectivity_on_the_card(tiny_fit, tiny_zoo, tmp_path):
    found = tiny_fit.connectivity
    assert found is not None and found.split == "val" and found.pairs == 16
    x, y = tiny_zoo.recipe.task.split("val")
    fitted = score_many(tiny_zoo.arch, tiny_fit.training_zoo.to_matrix(), x, y)
    assert found.members == pytest.approx(float(fitted.mean()))
    assert "connectivity" in tiny_fit.timings
    tiny_fit.pipeline.save_pretrained(tmp_path / "flow")
    assert f"- linear connectivity: {found.describe()}" in (tmp_path / "flow" / "README.md").read_text()
    from dwf_hub import DeepWeightFlowPipeline

    assert DeepWeightFlowPipeline.from_pretrained(tmp_path / "flow").connectivity == found


def test_fit_without_the_check_and_its_warning(tiny_zoo, tmp_path, caplog):
    from dwf_hub.flow.fitting import default_flow_config, fit_pipeline

    off = fit_pipeline(
        tiny_zoo, default_flow_config(tiny_zoo, iterations=2, connectivity_pairs=0), progress=False
    )
    assert off.connectivity is None and "connectivity" not in off.pipeline.card_info
    off.pipeline.save_pretrained(tmp_path / "off")
    assert "linear connectivity" not in (tmp_path / "off" / "README.md").read_text()
    with caplog.at_level(logging.INFO, logger="dwf_hub"):
        on = fit_pipeline(tiny_zoo, default_flow_config(tiny_zoo, iterations=2), progress=False)
    lines = [r for r in caplog.records if r.getMessage().startswith("connectivity: ")]
    assert len(lines) == 1 and lines[0].getMessage() == f"connectivity: {on.connectivity.describe()}"
    assert lines[0].levelno == (logging.INFO if on.connectivity.connected else logging.WARNING)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], "'connectivity' must be a table"),
        (
            {"metric": "accuracy", "split": "val", "pairs": 16, "members": 0.9},
            "'connectivity' must be a table",
        ),
        (
            {"metric": "accuracy", "split": "val", "pairs": "16", "members": 0.9, "midpoints": 0.5},
            "pairs='16'",
        ),
        (
            {"metric": "accuracy", "split": "val", "pairs": 16, "members": True, "midpoints": 0.5},
            "members=True",
        ),
    ],
)
def test_a_bad_connectivity_record_is_refused(tiny_fit, tmp_path, value, message):
    # card.json is covered by the pipeline's manifest, so a bad record can only come from code or a newer writer
    from dwf_hub import DeepWeightFlowPipeline

    tiny_fit.pipeline.save_pretrained(tmp_path / "flow")
    pipe = DeepWeightFlowPipeline.from_pretrained(tmp_path / "flow")
    pipe.card_info["connectivity"] = value
    with pytest.raises(PipelineFormatError, match=message) as e:
        _ = pipe.connectivity
    assert "card.json" in str(e.value)


def test_record_round_trip():
    c = Connectivity("spearman", "val", 4, 0.8, 0.7)
    assert Connectivity.from_dict(c.to_dict(), "x") == c and c.connected is False
    assert "score 0.70 against 0.80 for the members (spearman, val split)" in c.describe()
    assert "lose spearman" in c.describe()
