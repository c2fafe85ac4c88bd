"""Flat weights -> ready networks: unflatten, build, recalibrate BatchNorm. Shared by every generator
(the flow pipeline and the zoo baselines), so all of them hand back networks the same way."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput
from torch import Tensor, nn

from ..archs import ArchSpec
from ..configs import CalibrationConfig
from ..errors import DWFError
from ..io import check_finite_rows
from ..zoo.recipes import Recipe

OUTPUT_TYPES = ("model", "state_dict", "pt")


@dataclass
class DeepWeightFlowOutput(BaseOutput):
    """``networks``: models in eval mode (``output_type="model"``); ``state_dicts``: one per network
    (``"model"`` and ``"state_dict"``); ``weights``: flat weights ``[N, D]`` (always)."""

    weights: Tensor
    state_dicts: list[dict[str, Tensor]] | None = None
    networks: list[nn.Module] | None = None

    # Set by the pipeline's quality check (plain attributes: ``to_tuple()`` keeps its three fields).
    num_drawn: int | None = None  # networks drawn to return these (None: no quality check ran)
    rejected: int | None = None  # of those, how many failed the check and were drawn again

    @property
    def acceptance_rate(self) -> float | None:
        """Share of drawn networks that passed the quality check (``None``: no check ran)."""
        return None if not self.num_drawn else (self.num_drawn - (self.rejected or 0)) / self.num_drawn


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise DWFError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")


def check_memory(num_networks: int, floats_per_network: int) -> None:
    """Refuse a request whose float32 outputs (about three copies) would not fit in available memory."""
    from ..resources import require_memory

    need = 3 * 4 * num_networks * floats_per_network
    require_memory(need, f"num_networks={num_networks}", "generate in smaller batches")


def recipe_calibration_data(arch: ArchSpec, recipe: Recipe | None) -> Tensor:
    """Calibration inputs ``[num_batches * batch_size, ...]`` as the recipe's ``[calibration]`` says: its
    dataset (default: the recipe's), training split."""
    if recipe is None:
        raise DWFError(
            f"{arch.name} networks have BatchNorm and need recalibration, but no training data is recorded "
            "for them: pass calibration_data=<training-split inputs> or calibrate=False"
        )
    from ..zoo.data import load_task

    cal = recipe.calibration
    x, _ = load_task(cal.data or recipe.data).split(cal.split)
    return x[: cal.num_batches * cal.batch_size]


@dataclass
class WeightPostprocessor:
    """Flat weights -> what a generator hands back, as diffusers' image processors turn latents into
    images outside the sampling loop: unflatten, build, recalibrate BatchNorm on the recipe's data."""

    arch: ArchSpec
    recipe: Recipe | None = None

    @property
    def calibration(self) -> CalibrationConfig:
        """The recipe's ``[calibration]`` table (defaults without a recipe)."""
        return self.recipe.calibration if self.recipe else CalibrationConfig()

    def calibration_data(self) -> Tensor:
        return recipe_calibration_data(self.arch, self.recipe)

    def postprocess(
        self,
        weights: Tensor,
        output_type: str = "model",
        calibration_data: Tensor | None = None,
        calibrate: bool = True,
        unit_targets: Tensor | None = None,
    ) -> DeepWeightFlowOutput:
        return postprocess(
            self.arch, weights, output_type, self.recipe, calibration_data, calibrate, unit_targets
        )


def postprocess(
    arch: ArchSpec,
    weights: Tensor,
    output_type: str = "model",
    recipe: Recipe | None = None,
    calibration_data: Tensor | None = None,
    calibrate: bool = True,
    unit_targets: Tensor | None = None,
) -> DeepWeightFlowOutput:
    """``weights [N, D]`` -> output of ``output_type``; BatchNorm networks are recalibrated on
    ``calibration_data`` or the recipe's training split (``weights``, state dicts and modules agree); with
    ``unit_targets [N, S]``, hidden units (MLPs, SmallCNNs) are reset to those pre-activation statistics on the same
    data first (``unit_recalibration``). Each network owns its tensors (saving one writes only its own
    weights). ``output_type="pt"`` and ``calibrate=False`` return the weights as generated."""
    from .calibration import check_calibration_data

    check_output_type(output_type)
    check_finite_rows(weights, "generated networks after the flow's samples", DWFError)
    if calibration_data is not None:
        check_calibration_data(arch, calibration_data)
    if unit_targets is not None and calibrate and output_type != "pt":
        from .unit_recalibration import recalibrate_units

        data = calibration_data if calibration_data is not None else recipe_calibration_data(arch, recipe)
        weights = recalibrate_units(arch, weights, unit_targets, data)
        check_finite_rows(weights, "generated networks after unit recalibration", DWFError)
    own = lambda w: {k: v.clone() for k, v in arch.unflatten(w).items()}  # noqa: E731
    state_dicts = [own(w) for w in weights] if output_type != "pt" else None
    calibrating = state_dicts is not None and arch.needs_calibration and calibrate
    networks = None
    if output_type == "model" or calibrating:
        networks = [arch.instantiate(sd) for sd in state_dicts]
    if calibrating:
        from .calibration import recalibrate_batchnorm

        data = calibration_data if calibration_data is not None else recipe_calibration_data(arch, recipe)
        check_calibration_data(arch, data)
        batch_size = (recipe.calibration if recipe else CalibrationConfig()).batch_size
        for net in networks:
            recalibrate_batchnorm(net, data, batch_size=batch_size)
        weights = torch.stack([arch.flatten(sd) for sd in state_dicts])
        check_finite_rows(weights, "generated networks after BatchNorm recalibration", DWFError)
    if output_type != "model":
        networks = None
    return DeepWeightFlowOutput(weights=weights, state_dicts=state_dicts, networks=networks)
