"""How long the flow trains, chosen on the zoo itself (``[flow] select = "auto"``, the default).

A flow trained long on a small zoo hands back near-copies of its members (digits SmallCNN, 40 members: novelty
0.09 after the recipe's 8,000 iterations), and the length that avoids it depends on the zoo's size and recipe,
which a user's ``[flow]`` table cannot know. So the flow is scored at ``FRACTIONS`` of its one training run
(the schedule unchanged): ``NETWORKS`` networks drawn from each snapshot, post-processed as the pipeline does,
are scored on the first ``NUM_SAMPLES`` inputs of the recipe's *validation* split (never test) and against the
fitted members (weight and function novelty: ``frontier.Frontier``'s quick scores). Kept:

1. of the snapshots whose networks are **new** (weight and function novelty at least ``MIN_NOVELTY`` of what
   held-out members score — of 1, the ratios' definition, when none are held out) and **working** (mean metric
   at least the fitted members' mean minus ``TOLERANCE``), the latest one as accurate as the best within noise;
2. else the most new of the working ones (the flow memorizes at every length: logged as a warning);
3. else the most accurate (it falls short at every length: logged as a warning).

A conditional flow is held to every zoo's floors at once (each condition's networks scored against its own
members). Snapshots and their scores are written to the fit's checkpoint folder, so an interrupted fit resumes
with them.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DWFError
from ..provenance import NETWORKS, TOLERANCE, Floors, Selection, SnapshotScore
from ..zoo.weight_zoo import WeightZoo

logger = logging.getLogger(__name__)

# scored points of the training run, as fractions of it: geometric, since the length a zoo allows scales with its
# size (digits SmallCNN, 40 members: novelty 0.67 after 1,000 of 8,000 iterations, 0.40 after 2,000, 0.09 at the end)
FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1.0)
NUM_SAMPLES = 512  # validation inputs they are scored on
MIN_NOVELTY = 0.5  # of the held-out members' weight and function novelty (issue 34's floor)
MAX_BYTES = 2 << 30  # the fitted members are scored in memory; larger zoos are not selected on
SNAPSHOT_KEY = "dwf_snapshot"  # safetensors header key of a saved snapshot: fingerprint and score


def choose(scores: list[SnapshotScore], floors: dict[str, Floors]) -> tuple[int, str]:
    """``(iteration, rule)`` of the snapshot kept among ``scores`` (the module's three rules, each condition held to
    its ``floors``; among new and working snapshots, those within noise of the most accurate one — by the mean
    over conditions — are ties, and the latest of them is kept)."""
    by_iteration: dict[int, list[SnapshotScore]] = {}
    for s in scores:
        by_iteration.setdefault(s.iteration, []).append(s)

    def working(it: int) -> float:
        return min(floors[s.condition].slack(s) for s in by_iteration[it])

    def newness(it: int) -> float:
        return min(floors[s.condition].newness(s) for s in by_iteration[it])

    def accuracy(it: int) -> tuple[float, float]:  # mean, and its standard error
        group = by_iteration[it]
        mean = sum(s.mean for s in group) / len(group)
        return mean, math.sqrt(sum(s.std**2 for s in group) / len(group) / (NETWORKS * len(group)))

    ok = [it for it in by_iteration if working(it) >= 0]
    new = [it for it in ok if newness(it) >= 1]
    if new:
        best = max(new, key=lambda it: accuracy(it)[0])
        (m, e) = accuracy(best)
        return max(
            it for it in new if m - accuracy(it)[0] <= 1.96 * math.hypot(e, accuracy(it)[1])
        ), "new and working"
    if ok:
        return max(ok, key=lambda it: (newness(it), it)), "memorizes"
    return max(by_iteration, key=lambda it: (working(it), it)), "falls short"


def applies(zoos: list[WeightZoo]) -> str | None:
    """Why snapshots cannot be selected on the fitted members ``zoos`` (one per condition; ``None``: they can)."""
    for training in zoos:
        if training.recipe is None:
            return "a zoo has no recipe (no validation data)"
        if len(training) < 3:
            return f"{len(training)} fitted members (novelty needs at least 3)"
    if sum(4 * len(z) * z.arch.num_params for z in zoos) > MAX_BYTES:
        return "the fitted members do not fit in memory for scoring"
    return None


@dataclass
class _Target:
    """One zoo the flow is selected on: its condition (``""``: unconditional), scorer and floors."""

    condition: str
    frontier: Any
    floors: Floors


def _target(condition: str, training: WeightZoo, heldout: WeightZoo | None) -> _Target:
    """The fitted members' scorer on the first ``NUM_SAMPLES`` validation inputs, and the floors: the members'
    mean minus ``TOLERANCE``, ``MIN_NOVELTY`` of the held-out members' novelty (of 1 without them)."""
    from ..evaluation.frontier import Frontier
    from ..scoring import score_many

    x, y = training.recipe.split("val")
    frontier = Frontier(training, x[:NUM_SAMPLES], y[:NUM_SAMPLES])
    members = float(score_many(training.arch, frontier.scorer.train, frontier.x, frontier.y).mean())
    novelty = function_novelty = 1.0
    if heldout is not None and len(heldout) >= 2:
        held = frontier.score(heldout.to_matrix(), quick=True, diversity=False)
        novelty, function_novelty = held["novelty_ratio"], held["function_novelty_ratio"] or 1.0
    floors = Floors(members, members - TOLERANCE, MIN_NOVELTY * novelty, MIN_NOVELTY * function_novelty)
    return _Target(condition, frontier, floors)


class SnapshotSelector:
    """Scores the flow at ``iterations`` during training (``__call__``) and keeps the snapshot ``choose`` picks.

    ``make_pipeline(velocity)``: a pipeline around a velocity model, progress bars off (for drawing networks as
    users get them);
    ``zoos``: per condition (``""`` for an unconditional flow), the fitted members (canonical) and the held-out
    ones (or ``None``; their novelty sets the floors); ``folder``: where snapshots are saved (resumed when their
    ``fingerprint`` matches)."""

    def __init__(
        self,
        make_pipeline: Callable[[nn.Module], Any],
        zoos: dict[str, tuple[WeightZoo, WeightZoo | None]],
        total: int,
        seed: int,
        fingerprint: str,
        folder: Path | None = None,
    ) -> None:
        self.targets = [_target(c, *parts) for c, parts in zoos.items()]
        self.make_pipeline, self.seed, self.fingerprint = make_pipeline, seed, fingerprint
        self.iterations = sorted({max(1, round(total * f)) for f in FRACTIONS})
        self.folder = folder
        self.states: dict[int, dict[str, Tensor]] = {}
        self.scores: dict[int, list[SnapshotScore]] = {}
        if folder is not None:
            self._resume(folder)

    def __call__(self, iteration: int, model: nn.Module) -> None:
        """Score (and keep) the velocity ``model`` after ``iteration`` steps; other iterations are ignored."""
        if iteration not in self.iterations:
            return
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        with torch.random.fork_rng(devices=[]):  # training's random stream is left as it was
            scores = self._score(iteration, model)
        self.states[iteration], self.scores[iteration] = state, scores
        logger.info("flow after %d iterations: %s", iteration, scores)
        from ..distributed import process_state

        if self.folder is not None and process_state().is_main_process:  # every process scores; one writes
            from ..io import save_tensors

            self.folder.mkdir(parents=True, exist_ok=True)
            meta = {"fingerprint": self.fingerprint, "scores": [asdict(s) for s in scores]}
            path = self.folder / f"snapshot_{iteration:09d}.safetensors"
            save_tensors(path, state, {SNAPSHOT_KEY: json.dumps(meta)})

    def _score(self, iteration: int, model: nn.Module) -> list[SnapshotScore]:
        pipe = self.make_pipeline(copy.deepcopy(model).cpu().eval())
        scores = []
        for t in self.targets:
            gen = torch.Generator().manual_seed(self.seed)
            out = pipe(NETWORKS, generator=gen, output_type="state_dict", quality_check=False,
                       condition=t.condition or None)  # fmt: skip
            s = t.frontier.score(out.weights, quick=True, diversity=False)
            scores.append(SnapshotScore(iteration, s["mean"], s["std"], s["failed_share"], s["novelty_ratio"],
                                        s["function_novelty_ratio"], t.condition))  # fmt: skip
        return scores

    def _resume(self, folder: Path) -> None:
        from ..io import load_tensors, read_header

        for path in sorted(folder.glob("snapshot_*.safetensors")):
            try:
                meta = json.loads(read_header(path).metadata[SNAPSHOT_KEY])
                scores = [SnapshotScore(**s) for s in meta["scores"]]
                iteration = scores[0].iteration
            except (KeyError, TypeError, ValueError, IndexError, DWFError, AttributeError) as e:
                # written whole (atomically) or not at all, so not ours: never replaced by a snapshot of ours
                raise DWFError(
                    f"{path}: not a dwf_hub flow snapshot; remove it or choose another folder"
                ) from e
            if meta.get("fingerprint") == self.fingerprint and iteration in self.iterations:
                self.states[iteration], self.scores[iteration] = load_tensors(path), scores

    def select(self) -> tuple[dict[str, Tensor], Selection]:
        """The kept snapshot's velocity state and the record of the choice."""
        missing = [i for i in self.iterations if i not in self.scores]
        if missing:
            raise DWFError(f"flow selection: snapshots after {missing} iterations were not scored")
        scores = [s for i in self.iterations for s in self.scores[i]]
        floors = {t.condition: t.floors for t in self.targets}
        iteration, rule = choose(scores, floors)
        record = Selection(iteration, rule, floors, scores)
        (logger.info if rule == "new and working" else logger.warning)(
            "flow selection: %s", record.describe()
        )
        return self.states[iteration], record
