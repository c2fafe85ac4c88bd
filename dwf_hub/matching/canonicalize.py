"""Canonicalize a zoo: align every member to one reference network (functionally identical members)."""

from __future__ import annotations

from dataclasses import dataclass

from huggingface_hub.utils import tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS
from torch import Tensor

from ..archs import ArchSpec
from ..distributed import process_state
from ..errors import DWFError
from ..permutations import PermutationSpec
from ..provenance import CanonicalizationRecord
from ..zoo.weight_zoo import WeightZoo
from .weight_matching import MatchResult, weight_matching, weight_matching_many

DEFAULT_ITERATIONS = {"git_re_basin": 100, "transfusion": 10}  # the paper's settings


def matching_spec(arch: ArchSpec, permute_residual: bool = True) -> PermutationSpec:
    """The spec canonicalization uses: the architecture's, optionally with the residual stream fixed."""
    spec = arch.permutation_spec()
    return spec if permute_residual else spec.without_residual()


def method_of(spec: PermutationSpec) -> str:
    """``transfusion`` when the spec has attention heads, else ``git_re_basin``."""
    return "transfusion" if spec.head_groups else "git_re_basin"


MAX_ITERATIONS = 100_000


def iterations(arch: ArchSpec, max_iter: int | None, permute_residual: bool = True) -> int:
    """``max_iter`` checked (an integer in [1, MAX_ITERATIONS]), or the paper's default for ``arch``:
    100 sweeps (Git Re-Basin) or 10 (TransFusion)."""
    if max_iter is None:
        return DEFAULT_ITERATIONS[method_of(matching_spec(arch, permute_residual))]
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or not 1 <= max_iter <= MAX_ITERATIONS:
        raise DWFError(f"max_iter must be an integer in [1, {MAX_ITERATIONS}], got {max_iter!r}")
    return max_iter


@dataclass
class CanonicalizationResult:
    zoo: WeightZoo
    """The aligned zoo; ``zoo.info["canonical"]`` holds its ``CanonicalizationRecord``."""
    perms: list[dict[str, Tensor]]
    """Per member, the permutation applied to it."""
    objectives: list[float]
    """Per member, ``<reference, aligned member>`` summed over permuted keys."""


def align_state_dict(
    arch: ArchSpec,
    reference: dict[str, Tensor],
    state_dict: dict[str, Tensor],
    max_iter: int | None = None,
    seed: int = 0,
    permute_residual: bool = True,
) -> tuple[dict[str, Tensor], MatchResult]:
    """Permute ``state_dict`` to match ``reference``; the result computes the same function."""
    arch.validate(state_dict)
    spec = matching_spec(arch, permute_residual)
    max_iter = iterations(arch, max_iter, permute_residual)
    result = weight_matching(spec, reference, state_dict, max_iter=max_iter, seed=seed)
    return {**state_dict, **result.aligned}, result


def canonicalize(
    zoo: WeightZoo,
    reference: int = 0,
    max_iter: int | None = None,
    seed: int = 0,
    progress: bool = True,
    chunk_params: int = 1 << 27,
    workers: int | None = None,
    permute_residual: bool = True,
) -> CanonicalizationResult:
    """Align every member to member ``reference`` (which stays as is): Git Re-Basin weight matching,
    TransFusion for architectures with attention heads.

    ``max_iter``: sweeps over the permutations (default: 100 for Git Re-Basin, 10 for TransFusion, as
    in the paper). ``permute_residual=False`` keeps a transformer's residual stream fixed (as the
    authors' code does). Members are matched together in chunks of about ``chunk_params`` weights
    (512 MB of float32), by ``workers`` threads (see ``weight_matching_many``).
    """
    if not 0 <= reference < len(zoo):
        raise DWFError(f"reference index {reference} is out of range for a zoo of {len(zoo)} networks")
    max_iter = iterations(zoo.arch, max_iter, permute_residual)
    spec = matching_spec(zoo.arch, permute_residual)
    method = method_of(spec)
    ref = zoo.state_dict(reference)
    state = process_state()  # under accelerate launch / torchrun: each rank matches its share of the chunks
    chunk = max(1, min(chunk_params // zoo.arch.num_params, -(-len(zoo) // state.num_processes)))
    starts = list(range(0, len(zoo), chunk))
    done: list[tuple[int, dict[str, Tensor], dict[str, Tensor], float]] = []
    with (
        tqdm(total=len(zoo), desc="canonicalizing", disable=not progress, leave=False) as bar,
        state.split_between_processes(starts) as mine,
    ):
        for start in mine:
            batch = [zoo.state_dict(i) for i in range(start, min(start + chunk, len(zoo)))]
            for i, sd in enumerate(batch, start):  # NaN/Inf are checked on the stacked weights
                zoo.arch.validate(sd, source=f"zoo member {i}", check_finite=False)
            results = weight_matching_many(spec, ref, batch, max_iter, seed, workers)
            done += [
                (i, {**sd, **r.aligned}, r.perm, r.objective)
                for i, (sd, r) in enumerate(zip(batch, results), start)
            ]
            bar.update(len(batch))
    if state.num_processes > 1:  # every rank gets every member (in-memory exchange, no files)
        from accelerate.utils import gather_object

        done = gather_object(done)
    done.sort(key=lambda item: item[0])
    members, perms, objectives = [d[1] for d in done], [d[2] for d in done], [d[3] for d in done]
    record = CanonicalizationRecord(method, reference, max_iter, seed, permute_residual)
    info = {**zoo.info, "canonical": record.to_dict()}
    records = [{**r, "matching_objective": o} for r, o in zip(zoo.records, objectives)]
    canonical = WeightZoo(zoo.arch, members, records, recipe=zoo.recipe, info=info)
    return CanonicalizationResult(canonical, perms, objectives)
