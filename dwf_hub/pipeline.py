"""DeepWeightFlowPipeline: sample flat weights with the flow, decode them, hand back ready models."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub.utils import are_progress_bars_disabled
from torch import Tensor, nn

from .codec import CodecCollection, WeightCodec
from .configs import CalibrationConfig, CallConfig
from .errors import DWFError, PipelineFormatError
from .flow.scheduler import FlowODEScheduler
from .flow.velocity import VelocityModel
from .generation.disk_jobs import tensor_bytes
from .generation.pipeline_folder import CARD_INFO_NAME, check_loaded, check_pipeline_dir
from .generation.postprocess import (
    DeepWeightFlowOutput,
    WeightPostprocessor,
    check_memory,
    check_output_type,
)
from .hub.repos import HubMixin
from .provenance import CanonicalizationRecord, Connectivity
from .zoo.recipes import Recipe, as_recipe

__all__ = ["DeepWeightFlowOutput", "DeepWeightFlowPipeline"]
logger = logging.getLogger(__name__)


class DeepWeightFlowPipeline(DiffusionPipeline, HubMixin):
    """``pipe(num_networks=N)`` -> ``N`` new networks of the architecture the flow was fitted on.

    Provenance is pipeline config (``model_index.json``, as diffusers stores pipeline-level values):
    ``recipe`` (the training zoo's, so generated networks can be evaluated and recalibrated),
    ``canonicalization`` (how that zoo was aligned to the codec's reference) and ``flow_config``. A conditional
    flow (``fit_conditional``) records ``conditions``: its ``labels``, each label's training ``zoos`` entry
    and ``recipes``; ``pipe(condition="digits")`` then picks what to generate.
    """

    repo_type = "model"
    # the Hub side is ours (download, check, then diffusers' loading; push with our card), not diffusers' mixin's
    from_pretrained = HubMixin.__dict__["from_pretrained"]
    push_to_hub = HubMixin.push_to_hub
    model_cpu_offload_seq = "velocity"
    _optional_components: ClassVar[list[str]] = ["condition_codecs"]

    def __init__(
        self,
        velocity: VelocityModel,
        codec: WeightCodec,
        scheduler: FlowODEScheduler,
        recipe: dict[str, Any] | None = None,
        canonicalization: dict[str, Any] | None = None,
        flow_config: dict[str, Any] | None = None,
        conditions: dict[str, Any] | None = None,
        condition_codecs: CodecCollection | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            velocity=velocity, codec=codec, scheduler=scheduler, condition_codecs=condition_codecs
        )
        self.register_to_config(
            recipe=recipe, canonicalization=canonicalization, flow_config=flow_config, conditions=conditions
        )
        self.postprocessor = WeightPostprocessor(codec.arch, as_recipe(recipe, "pipeline recipe"))
        codecs = [codec, *(condition_codecs.members if condition_codecs is not None else [])]
        self.by_condition = _conditions(codecs, conditions, velocity)
        self.card_info: dict[str, Any] = {}
        self.hub_repo_id: str | None = None  # the Hub repo it was loaded from (generated zoos link to it)
        # the ecosystem's switches (HF_HUB_DISABLE_PROGRESS_BARS, diffusers' disable_progress_bar; `-q` sets both)
        if are_progress_bars_disabled() or not diffusers_logging.is_progress_bar_enabled():
            self.set_progress_bar_config(disable=True)

    @property
    def arch(self):
        """The architecture generated (a multi-architecture conditional flow: the first condition's; see
        ``codec_of``)."""
        return self.codec.arch

    def to(self, *args: Any, **kwargs: Any) -> DeepWeightFlowPipeline:
        """diffusers' ``to`` (device and/or dtype), refusing a device that cannot hold or run the weights."""
        from .distributed import check_device

        device = kwargs.get("device", next((a for a in args if isinstance(a, (str, torch.device))), None))
        if device is not None:
            check_device(device)
        # diffusers warns on every dtype cast that modules "should be kept in float32: []", naming none: ours keep none
        quiet = diffusers_logging.get_logger("diffusers.models.modeling_utils")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            return super().to(*args, **kwargs)
        finally:
            quiet.setLevel(level)

    def codec_of(self, condition: str | None) -> WeightCodec:
        """The codec that decodes ``condition``'s networks: its own in a multi-architecture conditional flow
        (``condition_codecs``), else the pipeline's ``codec``."""
        if condition is None:
            return self.codec
        self.label_ids(condition, 1)  # an unknown label, or any label for an unconditional flow, is refused
        return self.by_condition[condition].codec

    def _codec_for(self, labels: Tensor | None) -> WeightCodec:
        """The one codec decoding every network of ``labels [N]``; a multi-architecture flow is refused a mix
        of conditions (their networks have different sizes)."""
        if labels is None or self.condition_codecs is None:
            return self.codec
        used = sorted(set(labels.tolist()))
        if len(used) > 1:
            names = [self.labels[i] for i in used]
            raise DWFError(
                f"conditions {names} have their own architectures: generate one condition per call"
            )
        return self.codec_of(self.labels[used[0]])

    @property
    def recipe(self) -> Recipe | None:
        return self.postprocessor.recipe

    @property
    def labels(self) -> list[str]:
        """A conditional flow's condition labels (``[]``: unconditional)."""
        return list(self.by_condition)

    @property
    def connectivity(self) -> Connectivity | None:
        """What midpoints of the aligned training members scored when the flow was fitted (``None``: not measured)."""
        data = self.card_info.get("connectivity")
        return None if data is None else Connectivity.from_dict(data, CARD_INFO_NAME)

    @property
    def selection(self):
        """Which snapshot of the flow's training was kept at fit time, and why (``provenance.Selection``; ``None``:
        not selected)."""
        from .provenance import Selection

        data = self.card_info.get("selection")
        return None if data is None else Selection.from_dict(data, CARD_INFO_NAME)

    @property
    def canonical(self) -> CanonicalizationRecord | None:
        """How the training zoo was canonicalized (``None``: it was not)."""
        return CanonicalizationRecord.from_dict(
            self.config.canonicalization, "pipeline config canonicalization"
        )

    @classmethod
    def _from_pretrained(
        cls, repo_id_or_path: str | os.PathLike, hub: dict[str, Any], **kwargs: Any
    ) -> DeepWeightFlowPipeline:
        from .hub.repos import download

        if kwargs.pop("trust_remote_code", False):
            raise PipelineFormatError(
                "trust_remote_code: DeepWeightFlowPipeline runs no code shipped with a pipeline"
            )
        from .artifacts import folder_identity

        path = download(repo_id_or_path, cls.repo_type, **hub)
        from_hub = not Path(repo_id_or_path).is_dir()
        for _ in range(3):  # a save swapping the folder while it is read: read it again, never a mixture
            identity = folder_identity(path)
            try:
                pipe = check_loaded(cls._load_checked_folder(path, kwargs), path)
            except PipelineFormatError:
                if folder_identity(path) == identity:
                    raise
                continue
            if folder_identity(path) == identity:
                pipe.hub_repo_id = str(repo_id_or_path) if from_hub else None
                return pipe
        raise PipelineFormatError(f"{path}: the pipeline folder keeps changing while it is loaded; try again")

    @classmethod
    def _load_checked_folder(cls, path: Path, kwargs: dict[str, Any]) -> DeepWeightFlowPipeline:
        """diffusers' own ``from_pretrained`` on ``path`` once ``check_pipeline_dir`` has accepted it."""
        check_pipeline_dir(path)
        try:
            return super().from_pretrained(path, use_safetensors=True, **dict(kwargs))
        except (ValueError, OSError, RuntimeError, TypeError, KeyError) as e:
            if isinstance(e, DWFError):
                raise
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise PipelineFormatError(f"{path}: cannot load the pipeline ({reason})") from e

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        base_zoo: str | None = None,
        evaluation: dict[str, Any] | None = None,
        repo_id: str | None = None,
        overwrite: bool = False,
        license: str | None = None,
        **kwargs: Any,
    ) -> None:
        """diffusers' ``save_pretrained``, plus the model card (``README.md``) and what it was made from
        (``card.json``: the base zoo's repo id and the evaluation of generated networks). Written whole
        or not at all (``artifacts.write_folder``): a folder that is not empty or a pipeline of ours is
        refused unless ``overwrite``."""
        from .artifacts import write_folder
        from .hub.cards import render_flow_card
        from .io import write_json, write_text

        if kwargs.get("safe_serialization") is False:
            raise PipelineFormatError("safe_serialization=False: pipelines are saved as safetensors only")
        hub = {
            k: kwargs.pop(k)
            for k in ("push_to_hub", "private", "token", "commit_message", "create_pr")
            if k in kwargs
        }
        info = {**self.card_info}
        given = (("base_zoo", base_zoo), ("evaluation", evaluation), ("license", license))
        info.update({k: v for k, v in given if v is not None})
        with write_folder(save_directory, "pipeline", overwrite) as stage:
            super().save_pretrained(stage, **kwargs)
            index = json.loads((stage / "model_index.json").read_text())
            index.pop(
                "_name_or_path", None
            )  # where it was loaded from: a local path is nobody else's business
            write_json(stage / "model_index.json", index)
            write_json(stage / CARD_INFO_NAME, info)
            card = render_flow_card(
                self,
                repo_id or "ORG/dwf-NAME",
                info.get("base_zoo"),
                info.get("evaluation"),
                info.get("license"),
            )
            write_text(stage / "README.md", card)
        self.card_info = info
        if hub.pop("push_to_hub", False):  # as diffusers does, but with our card already written
            from .hub.repos import upload

            if not repo_id:
                raise DWFError("push_to_hub=True needs repo_id='org/name'")
            upload(save_directory, repo_id, self.repo_type, **hub)

    def _save_pretrained(self, folder: Path, *, repo_id: str | None = None, **kwargs: Any) -> None:
        self.save_pretrained(folder, repo_id=repo_id, **kwargs)

    @torch.no_grad()
    def __call__(
        self,
        num_networks: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        solver: str | None = None,
        output_type: str = "model",
        return_dict: bool = True,
        calibration_data: Tensor | None = None,
        calibrate: bool = True,
        condition: str | list[str] | None = None,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        quality_check: bool | None = None,
        callback_on_step_end: Callable[..., dict[str, Tensor]] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> DeepWeightFlowOutput | tuple:
        """Integrate the flow from ``N`` Gaussian samples in one batched solver pass.

        ``num_inference_steps`` and ``solver`` default to the scheduler config. BatchNorm networks are recalibrated on
        ``calibration_data`` (inputs ``[B, ...]`` from the training split; default: the recipe's training split);
        ``calibrate=False`` opts out and returns the flow's raw running statistics.
        ``output_type="pt"`` always returns raw weights. ``generator``: one, or a list of ``N`` (network ``i``
        drawn from ``generator[i]``, as diffusers' pipelines take them). The flow runs in the pipeline's dtype
        (``pipe.to(torch.bfloat16)``, ``torch_dtype=``); weights come back as float32. A conditional flow needs
        ``condition``: one of ``pipe.labels`` for every network, or a list of ``N``; each network is post-processed
        with its condition's recipe. ``guidance_scale`` (default: the fitted sampling config's) applies
        classifier-free guidance ``v_none + s (v_label - v_none)``. ``temperature`` (default: the scheduler's,
        i.e. the fitted sampling config's) multiplies the source std the samples start from.
        ``quality_check`` (default: on when the pipeline holds a fit-time record, see ``pipe.quality_check``, and
        the networks are post-processed): a network scoring below the record's threshold on a slice of the
        training split is drawn again (up to 10 draws per network); ``out.num_drawn`` / ``out.rejected`` say
        how many. ``False``: the raw flow. ``callback_on_step_end(pipe, i, t, {"latents": x})`` (diffusers'
        hook) runs after every solver step ``i`` at time ``t``; the dict it returns may replace ``latents``.
        """
        check_output_type(output_type)
        CallConfig(num_networks=num_networks, num_inference_steps=num_inference_steps, solver=solver,
                   temperature=temperature, guidance_scale=guidance_scale, quality_check=quality_check)  # fmt: skip
        labels = self.label_ids(condition, num_networks)
        _check_generators(generator, num_networks)  # before a redraw picks a network's own generator
        codec = self._codec_for(labels)  # (a multi-architecture flow refuses a mix of conditions here)
        check_memory(num_networks, codec.arch.num_params + codec.latent_dim)
        callback = _step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        sampling = (num_inference_steps, solver, guidance_scale, temperature, calibration_data, calibrate,
                    callback)  # fmt: skip
        check = self._check_for(quality_check, output_type, calibrate, labels)
        if check is None:
            out = self._draw(num_networks, generator, labels, output_type, *sampling)
            return out if return_dict else out.to_tuple()
        from .generation.quality_check import draw_checked

        def draw(slots: list[int]) -> Tensor:
            gens = [generator[i] for i in slots] if isinstance(generator, list) else generator
            return self._draw(len(slots), gens, None, "state_dict", *sampling).weights

        passes = lambda w: check.passes(self.arch, w, self.recipe)  # noqa: E731
        weights, drawn, rejected = draw_checked(draw, passes, num_networks)
        out = self.postprocessor.postprocess(weights, output_type, calibrate=False)  # recalibrated already
        out.num_drawn, out.rejected = drawn, rejected
        return out if return_dict else out.to_tuple()

    def _draw(self, n, generator, labels, output_type, steps, solver, guidance, temperature, data, calibrate,
              callback=None):  # fmt: skip
        """``n`` networks from the flow, post-processed as ``__call__`` describes (no quality check)."""
        codec = self._codec_for(labels)
        x = self.sample_latents(n, generator, steps, solver, labels, guidance, temperature, callback)
        latents = x[:, : codec.latent_dim]
        weights, targets = codec.decode(latents).float().cpu(), codec.unit_targets(latents)
        if labels is None:
            return self.postprocessor.postprocess(weights, output_type, data, calibrate, targets)
        return self._postprocess_conditions(weights, labels, output_type, data, calibrate, targets)

    @property
    def quality_check(self):
        """The fit-time quality-check record (``QualityCheck``; ``None``: none, e.g. a conditional flow or a
        pipeline fitted before dwf_hub 0.3)."""
        from .generation.quality_check import QualityCheck

        data = self.card_info.get("quality_check")
        return None if data is None else QualityCheck.from_dict(data, CARD_INFO_NAME)

    def _check_for(self, asked: bool | None, output_type: str, calibrate: bool, labels: Tensor | None):
        """The quality check a call runs (``None``: none), refusing one that was asked for but cannot run."""
        check = self.quality_check
        usable = check is not None and labels is None and output_type != "pt" and calibrate and self.recipe
        if asked and not usable:
            raise DWFError(
                "quality_check=True: this pipeline has no quality-check record for these networks (conditional, "
                "fitted before dwf_hub 0.3, or output_type='pt' / calibrate=False)"
            )
        if not usable or asked is False:
            return None
        if asked is None:  # on by default, unless its training data cannot be had here: then said, not hidden
            from .generation.quality_check import training_slice

            try:
                training_slice(self.recipe, 1)
            except DWFError as e:
                logger.warning("quality check skipped: its training data is not available here (%s)", e)
                return None
        return check

    def label_ids(self, condition: str | list[str] | None, num_networks: int) -> Tensor | None:
        """``condition`` as label indices ``[N]`` (``None`` for an unconditional flow); unknown labels are
        refused, naming the known ones."""
        known = self.labels
        if not known:
            if condition is not None:
                raise DWFError(f"condition={condition!r}: this flow is unconditional (fitted on one zoo)")
            return None
        if condition is None:
            raise DWFError(f"this flow is conditional: give condition= one of {known}")
        names = [condition] * num_networks if isinstance(condition, str) else list(condition)
        if len(names) != num_networks:
            raise DWFError(
                f"{len(names)} conditions for {num_networks} networks: give one, or one per network"
            )
        unknown = sorted({str(n) for n in names} - set(known))
        if unknown:
            raise DWFError(f"unknown condition {unknown[0]!r}; this flow knows {known}")
        return torch.tensor([known.index(n) for n in names])

    def _postprocess_conditions(
        self, weights, labels, output_type, calibration_data, calibrate, targets=None
    ):
        """Each condition's networks post-processed with its own recipe (BatchNorm and unit-recalibration
        data; ``targets [N, S]``: the unit targets), in the input order."""
        n = len(weights)
        out = DeepWeightFlowOutput(weights=weights.clone(), state_dicts=[None] * n, networks=[None] * n)
        for i, post in enumerate(c.postprocessor for c in self.by_condition.values()):
            rows = (labels == i).nonzero().flatten().tolist()
            if rows:
                part = post.postprocess(
                    weights[rows],
                    output_type,
                    calibration_data,
                    calibrate,
                    None if targets is None else targets[rows],
                )
                out.weights[rows] = part.weights
                for name in ("state_dicts", "networks"):
                    for r, value in zip(rows, getattr(part, name) or [None] * len(rows), strict=True):
                        getattr(out, name)[r] = value
        out.state_dicts = out.state_dicts if output_type != "pt" else None
        out.networks = out.networks if output_type == "model" else None
        return out

    @torch.no_grad()
    def sample_latents(
        self,
        num_networks: int,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        solver: str | None = None,
        labels: Tensor | None = None,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        callback: Callable[[Any, int, Tensor, Tensor], Tensor] | None = None,
    ) -> Tensor:
        """The flow's samples ``[N, K]`` in the codec's latent space (``codec.decode`` gives weights);
        ``labels [N]`` (``label_ids``) for a conditional flow; ``callback(pipe, i, t, x) -> x`` after each step."""
        CallConfig(num_networks=num_networks, num_inference_steps=num_inference_steps, solver=solver,
                   temperature=temperature, guidance_scale=guidance_scale)  # fmt: skip
        _check_scheduler(self.scheduler)
        check_memory(num_networks, self.codec.latent_dim)
        device = self.velocity.device
        self.velocity.eval()
        self.scheduler.set_timesteps(num_inference_steps, device=device, solver=solver)
        _check_generators(generator, num_networks)
        shape = (num_networks, self.velocity.config.dim)  # the codec's latent size, or the conditions' own
        x = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32).to(
            self.velocity.dtype
        )
        x = x * self.scheduler.start_sigma(temperature)
        scale = self._guidance(labels, guidance_scale)
        labels = None if labels is None else labels.to(device)
        if labels is not None:
            x = x + self.velocity.label_sources[labels].to(x.dtype)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            v = self.velocity(x, t, labels)
            if scale != 1.0:
                v_none = self.velocity(x, t)
                v = v_none + scale * (v - v_none)
            x = self.scheduler.step(v, t, x).prev_sample
            if callback is not None:
                x = callback(self, i, t, x)
        return x if labels is None else self.velocity.to_latent(x, labels)

    def _guidance(self, labels: Tensor | None, guidance_scale: float | None) -> float:
        """The classifier-free guidance scale to use (1: none), checked against how the flow was trained."""
        flow = self.config.flow_config or {}
        scale = (
            guidance_scale
            if guidance_scale is not None
            else (flow.get("sampling") or {}).get("guidance_scale", 1.0)
        )
        CallConfig(guidance_scale=scale)
        if scale != 1.0 and (labels is None or not (flow.get("training") or {}).get("label_dropout", 0.0)):
            raise DWFError("guidance_scale != 1 needs a conditional flow trained with label_dropout > 0")
        return float(scale)

    def _postprocessor_of(self, condition: str | None) -> WeightPostprocessor:
        part = self.by_condition.get(condition) if condition else None
        return part.postprocessor if part else self.postprocessor

    @property
    def calibration_config(self) -> CalibrationConfig:
        """The fitted recipe's ``[calibration]`` table (defaults where it has none)."""
        return self.postprocessor.calibration

    def bundled_calibration_data(self) -> Tensor:
        """Calibration inputs ``[num_batches * batch_size, ...]`` as the fitted recipe's ``[calibration]``
        says: its dataset (default: the recipe's), training split."""
        return self.postprocessor.calibration_data()

    def canonicalize(
        self, model: nn.Module | dict[str, Tensor], max_iter: int | None = None, condition: str | None = None
    ) -> nn.Module | dict[str, Tensor]:
        """Align any network of this architecture to the bundled reference (same function, new order),
        with the settings the training zoo was canonicalized with; a multi-architecture conditional flow
        aligns to ``condition``'s reference."""
        from .matching import align_state_dict

        sd = model.state_dict() if isinstance(model, nn.Module) else model
        record, codec = self.canonical, self.codec_of(condition)
        aligned, _ = align_state_dict(
            codec.arch,
            codec.reference_state_dict(),
            sd,
            max_iter=max_iter or (record.max_iter if record else None),
            permute_residual=record.permute_residual if record else True,
        )
        return codec.arch.instantiate(aligned) if isinstance(model, nn.Module) else aligned

    def generate_zoo(self, num_networks: int, seed: int = 0, **kwargs: Any):
        """Generate networks as a ``WeightZoo`` (same format as a trained zoo)."""
        CallConfig(seed=seed)
        gen = torch.Generator().manual_seed(seed)
        out = self(num_networks=num_networks, generator=gen, output_type="state_dict", **kwargs)
        recalibrated = None if kwargs.get("calibrate", True) else False  # None: as the codec does
        return self.to_zoo(out, seed, kwargs.get("condition"), recalibrated)

    def generate_to_disk(
        self,
        path: str | os.PathLike,
        num_networks: int,
        seed: int = 0,
        networks_per_shard: int = 1000,
        overwrite: bool = False,
        progress: bool = True,
        **kwargs: Any,
    ) -> Path:
        """Generate ``num_networks`` into a packed zoo folder, ``networks_per_shard`` at a time: sampled,
        decoded, recalibrated and written chunk by chunk, so memory stays flat in ``num_networks`` (100,000
        Iris networks, or 100 BERT-Bases one shard each). Same seed and shard size: same networks.

        Resumable: each finished shard waits in ``.NAME.job`` beside ``path`` with the generator's state after
        it, and the same call after an interruption generates only the rest (the same networks as one
        uninterrupted run; other settings are refused unless ``overwrite``). Until the zoo is written that
        folder takes as much disk again."""
        from .generation.disk_jobs import generate_to_disk

        return generate_to_disk(
            self, path, num_networks, seed, networks_per_shard, overwrite, progress, **kwargs
        )

    def fingerprint(self) -> str:
        """SHA-256 of the pipeline's weights (velocity, codecs) and configuration: the same flow or not,
        wherever it was loaded from (diffusers' ``_name_or_path`` and other private keys are left out)."""
        config = {k: v for k, v in dict(self.config).items() if not k.startswith("_")}
        h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
        for name in ("velocity", "codec", "condition_codecs"):
            module = getattr(self, name, None)
            for key, t in (module.state_dict() if module is not None else {}).items():
                h.update(f"{name}.{key}:{tuple(t.shape)}:{t.dtype}".encode())
                h.update(tensor_bytes(t))
        return h.hexdigest()

    def to_zoo(
        self,
        output: DeepWeightFlowOutput,
        seed: int | None = None,
        condition: str | None = None,
        units_recalibrated: bool | None = None,
    ):
        """Wrap generated networks as a ``WeightZoo`` (records the generation seed when given, and whether the
        hidden units were recalibrated — by default, when the codec has unit targets and the output is not raw
        ``"pt"`` weights: pass ``False`` for outputs of ``calibrate=False``; a conditional flow's networks of
        one ``condition`` get that condition's recipe)."""
        from .zoo.weight_zoo import WeightZoo

        codec = self.codec_of(condition if isinstance(condition, str) else None)
        arch = codec.arch
        if units_recalibrated is None:
            units_recalibrated = codec.has_unit_targets and output.state_dicts is not None
        state_dicts = output.state_dicts or [arch.unflatten(w) for w in output.weights]
        records = [{"source": "generated", "seed": seed, "index": i} for i in range(len(state_dicts))]
        info = self._generated_info(seed, condition, units_recalibrated)
        if output.num_drawn is not None:
            counts = {"drawn": output.num_drawn, "rejected": output.rejected}
            info["quality_check"] = {**self.quality_check.to_dict(), "counts": counts}
        return WeightZoo(arch, state_dicts, records, recipe=self._recipe_of(condition), info=info)

    def _recipe_of(self, condition: str | list[str] | None) -> Recipe | None:
        part = self.by_condition.get(condition) if isinstance(condition, str) else None
        return part.postprocessor.recipe if part else self.recipe

    def _generated_info(
        self, seed: int | None, condition: str | list[str] | None = None, units_recalibrated: bool = False
    ) -> dict[str, Any]:
        """The provenance a generated zoo records: generator settings, seed, flow repo, holdout, canonical form,
        and ``unit_recalibration`` when the hidden units were reset (baselines are compared the same way)."""
        info = {"source": "generated", "generator": dict(self.scheduler.config), "seed": seed}
        if units_recalibrated:
            info["unit_recalibration"] = True
        if condition is not None:
            info["condition"] = condition
        if self.hub_repo_id:
            info["flow"] = self.hub_repo_id
        info["holdout"] = ((self.config.flow_config or {}).get("training") or {}).get("holdout", 0)
        if self.canonical:
            info["canonical"] = self.canonical.to_dict()
        return info


@dataclass(frozen=True)
class Condition:
    """What one label of a conditional flow generates: the codec that decodes its networks and the
    post-processor that builds them (its architecture and recipe)."""

    codec: WeightCodec
    postprocessor: WeightPostprocessor


def _conditions(
    codecs: list[WeightCodec], conditions: dict[str, Any] | None, velocity
) -> dict[str, Condition]:
    """``label -> Condition`` for a conditional flow (``{}``: unconditional); checked against the velocity
    model's label count and the codecs (one, or one per label)."""
    if not conditions:
        if len(codecs) > 1:
            raise PipelineFormatError("pipeline: condition_codecs given, but no conditions")
        return {}
    labels, recipes = conditions.get("labels"), conditions.get("recipes")
    if (
        not isinstance(labels, list)
        or not all(isinstance(x, str) for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise PipelineFormatError(f"pipeline conditions: 'labels' must be distinct strings, got {labels!r}")
    if not isinstance(recipes, list) or len(recipes) != len(labels):
        raise PipelineFormatError("pipeline conditions: one recipe (or null) per label")
    if velocity.config.get("num_labels", 0) != len(labels):
        raise PipelineFormatError(
            f"pipeline conditions: {len(labels)} labels, but the velocity model has {velocity.config.get('num_labels', 0)}"
        )
    if len(codecs) not in (1, len(labels)):
        raise PipelineFormatError(
            f"pipeline conditions: {len(labels)} labels, but {len(codecs)} codecs (one, or one per label)"
        )
    per_label = codecs * (len(labels) // len(codecs))  # one codec shared, or one each
    return {
        label: Condition(
            codec, WeightPostprocessor(codec.arch, as_recipe(r, f"recipe of condition {label!r}"))
        )
        for label, r, codec in zip(labels, recipes, per_label, strict=True)
    }


def _step_callback(
    hook: Any, inputs: list[str] | None
) -> Callable[[Any, int, Tensor, Tensor], Tensor] | None:
    """diffusers' ``callback_on_step_end(pipe, i, t, tensors) -> dict`` as ``(pipe, i, t, x) -> x``; the only
    tensor a weight flow has to offer is ``latents``."""
    names = ["latents"] if inputs is None else inputs
    if hook is None:
        return None
    if not callable(hook):
        raise DWFError(f"callback_on_step_end must be callable, got {hook!r}")
    if not isinstance(names, list) or not set(names) <= {"latents"}:
        raise DWFError(f"callback_on_step_end_tensor_inputs: only ['latents'] is available, got {inputs!r}")

    def call(pipe: Any, i: int, t: Tensor, x: Tensor) -> Tensor:
        returned = hook(pipe, i, t, {n: x for n in names}) or {}
        if not isinstance(returned, dict):
            raise DWFError(f"callback_on_step_end must return a dict, got {type(returned).__name__}")
        return returned.get("latents", x)

    return call


def _check_scheduler(scheduler: Any) -> None:
    """A swapped-in scheduler must integrate a weight flow the way ``FlowODEScheduler`` does."""
    needs = ("set_timesteps", "start_sigma", "step", "timesteps")
    missing = [n for n in needs if not hasattr(scheduler, n)]
    if not isinstance(scheduler, FlowODEScheduler) and missing:
        raise DWFError(
            f"scheduler: {type(scheduler).__name__} cannot integrate this flow (it lacks {', '.join(missing)}); a "
            "scheduler must provide set_timesteps(steps, device=, solver=), start_sigma(temperature), step(v, t, x) "
            "and timesteps over [0, 1] as dwf_hub.flow.scheduler.FlowODEScheduler does"
        )


def _check_generators(generator: Any, num_networks: int) -> None:
    """``generator``: ``None``, one ``torch.Generator``, or a list of one per network."""
    gens = generator if isinstance(generator, list) else [generator]
    if not all(g is None or isinstance(g, torch.Generator) for g in gens):
        raise DWFError(f"generator must be a torch.Generator (or a list of them), got {generator!r}")
    if isinstance(generator, list) and len(generator) != num_networks:
        raise DWFError(
            f"{len(generator)} generators for {num_networks} networks: give one, or one per network"
        )


def _register_with_diffusers() -> None:
    """``diffusers.DeepWeightFlowPipeline`` resolves to this class, and diffusers' generic loader hands our
    folders and repos to it (``diffusers_entry.teach``)."""
    import diffusers

    from .generation.diffusers_entry import teach

    if getattr(diffusers, DeepWeightFlowPipeline.__name__, None) is not DeepWeightFlowPipeline:
        setattr(diffusers, DeepWeightFlowPipeline.__name__, DeepWeightFlowPipeline)
    teach(lambda: DeepWeightFlowPipeline)


_register_with_diffusers()
