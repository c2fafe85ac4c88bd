"""Does a better alignment make a better generator? Weight matching (Git Re-Basin, the pipeline's) vs activation
matching vs consensus weight matching, on the frontier benchmark's zoos.

    python benchmarks/research/bench_alignment.py [--zoos digits_mlp,digits_smallcnn] [--seeds 0,1] [--split val]
                                         [--out bench_out/frontier] [--cnn-out bench_out/frontier_cnn]

Activation matching (Ainsworth et al., "Git Re-Basin", section 3.1) pairs each hidden unit of a member with the
reference's unit whose post-ReLU activations on 512 training inputs correlate best (one assignment per hidden
layer; a layer's activations do not depend on how earlier layers are permuted). It is the usual fix when aligned
networks are not linearly connected, which is why the SmallCNN flow's blends fail. Consensus matching (Git
Re-Basin's MergeMany) starts from the pipeline's alignment to member 0, then re-aligns every member to the mean of
the other fitted members (held-out members to the mean of all of them), ``CONSENSUS_ROUNDS`` times: every pair of
members is then aligned through a common centre, not only each member to member 0. Per zoo (100 members, 80
fitted, 20 held out) and alignment: how linearly connected the aligned members are (midpoints of 100 random
pairs, plain and with hidden units recalibrated to the mean of the parents' statistics), then the recipe's default
flow fitted on the aligned members (``--seeds``) and the noise / interpolation baselines built from them, all
scored on ``--split`` by ``Frontier.score`` (permutation-invariant novelty, so the alignment used for fitting
does not change how novelty is measured). ``Δ`` columns: the flow minus each baseline's sweep at the flow's
weight / function novelty (``max``: the sweep never gets that novel). Prints markdown tables and saves ``alignment.png``
in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from _common import cached_zoo, margins, panels, pm, swept
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from dwf_hub.evaluation.frontier import Frontier
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.generation.unit_recalibration import recalibrate_units, unit_statistics
from dwf_hub.matching import canonicalize
from dwf_hub.matching.weight_matching import weight_matching_pairs
from dwf_hub.permutations import apply_permutation
from dwf_hub.scoring import score_many
from dwf_hub.zoo.recipes import load_recipe
from dwf_hub.zoo.weight_zoo import WeightZoo

ACTIVATION_INPUTS = 512
CONSENSUS_ROUNDS = 10  # the matching objective grows by < 1 % a round after ~8 rounds (digits MLP)


@torch.no_grad()
def hidden_activations(arch, w: Tensor, x: Tensor) -> list[Tensor]:
    """Per hidden layer (``arch.unit_layers``), the post-ReLU outputs of network ``w [D]`` on ``x [B, ...]`` as
    ``[units, B * positions]``, each unit centred and scaled to norm 1 (so products are correlations)."""
    model = arch.build()
    model.load_state_dict(arch.unflatten(w))
    modules, outs = dict(model.named_modules()), []
    hooks = [modules[n].register_forward_hook(lambda _m, _i, o: outs.append(o)) for n in arch.unit_layers]
    model(x)
    for h in hooks:
        h.remove()
    acts = [o.relu().transpose(0, 1).reshape(o.shape[1], -1) for o in outs]
    acts = [a - a.mean(1, keepdim=True) for a in acts]
    return [a / (a.norm(dim=1, keepdim=True) + 1e-8) for a in acts]


def activation_matching(zoo: WeightZoo, x: Tensor, reference: int = 0) -> Tensor:
    """``[N, D]``: every member permuted so its hidden units' activations on ``x`` correlate best with member
    ``reference``'s (one linear assignment per hidden layer)."""
    arch, w = zoo.arch, zoo.to_matrix()
    spec = arch.permutation_spec()
    perm_of = [spec.axes_to_perm[f"{n}.weight"][0] for n in arch.unit_layers]
    ref = hidden_activations(arch, w[reference], x)
    out = []
    for member in w:
        acts = hidden_activations(arch, member, x)
        perm = {p: torch.as_tensor(linear_sum_assignment((r @ a.T).numpy(), maximize=True)[1])
                for p, r, a in zip(perm_of, ref, acts, strict=True)}  # fmt: skip
        out.append(arch.flatten(apply_permutation(spec, perm, arch.unflatten(member))))
    return torch.stack(out)


def consensus_matching(zoo: WeightZoo, fitted: int, rounds: int = CONSENSUS_ROUNDS) -> Tensor:
    """``[N, D]``: every member weight-matched to the mean of the other first ``fitted`` (aligned) members,
    ``rounds`` times, starting from the alignment to member 0 (held-out members: to the mean of all ``fitted``)."""
    arch, spec = zoo.arch, zoo.arch.permutation_spec()
    w = canonicalize(zoo, progress=False).zoo.to_matrix()
    members = list(zoo)
    for _ in range(rounds):
        total = w[:fitted].sum(0)
        centres = [(total - w[i]) / (fitted - 1) if i < fitted else total / fitted for i in range(len(w))]
        found = weight_matching_pairs(spec, [arch.unflatten(c) for c in centres], members)
        w = torch.stack([arch.flatten({**sd, **r.aligned}) for sd, r in zip(members, found, strict=True)])
    return w


def midpoints(arch, w: Tensor, x_cal: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Scores of the midpoints of 100 random pairs of ``w [M, D]``: plain, and recalibrated to the mean of the
    parents' hidden-unit statistics."""
    g = torch.Generator().manual_seed(0)
    pairs = torch.stack([torch.randperm(len(w), generator=g)[:2] for _ in range(100)])
    mid = 0.5 * (w[pairs[:, 0]] + w[pairs[:, 1]])
    stats = unit_statistics(arch, w, x_cal)
    repaired = recalibrate_units(arch, mid, 0.5 * (stats[pairs[:, 0]] + stats[pairs[:, 1]]), x_cal)
    return score_many(arch, mid, x, y), score_many(arch, repaired, x, y)


def run_alignment(name: str, aligned: WeightZoo, recipe: str, x_train: Tensor, x: Tensor, y: Tensor, seeds):
    """Midpoints, baseline sweeps and the default flow (one per seed) on one alignment of the zoo."""
    seen, heldout = aligned.split_holdout(20)
    plain, repaired = midpoints(aligned.arch, seen.to_matrix(), x_train[:1024], x, y)
    frontier = Frontier(seen, x, y, heldout, recalibrate_units=True)
    sweeps = swept(frontier)
    flows = []
    for seed in seeds:
        pipe = fit_pipeline(seen, load_recipe(recipe).flow_config(seed=seed), progress=False).pipeline
        w = pipe(
            num_networks=100,
            generator=torch.Generator().manual_seed(seed),
            output_type="state_dict",
            quality_check=False,
        )
        r = {"seed": seed, **frontier.score(w.weights)}
        cells = margins(r, sweeps)
        print(f"| {name} | {100 * plain.mean():.2f} | {100 * repaired.mean():.2f} | flow, seed {seed} | {pm(r)} "
              f"| {100 * r['min']:.1f} | {r['novelty_ratio']:.3f} | {r['diversity_ratio']:.3f} "
              f"| {r['heldout_ratio']:.2f} | {r['function_novelty_ratio']:.2f} | {cells[0]} | {cells[1]} |")  # fmt: skip
        flows.append(r)
    for s in sweeps["interpolation"][:5]:
        print(f"| {name} | | | interpolation {s['knob']['alpha']:.1f} | {pm(s)} | {100 * s['min']:.1f} "
              f"| {s['novelty_ratio']:.3f} | | | {s['function_novelty_ratio']:.2f} | | |")  # fmt: skip
    return {"midpoints": float(plain.mean()), "midpoints_recalibrated": float(repaired.mean()),
            "flows": flows, "sweeps": sweeps}  # fmt: skip


def run_zoo(recipe: str, root: Path, a: argparse.Namespace) -> dict:
    zoo = cached_zoo(recipe, root)
    task = zoo.recipe.task
    x, y = task.split(a.split)
    x_train = task.split("train")[0]
    weight = canonicalize(zoo, progress=False).zoo
    alignments = {
        "weight matching": weight,
        "activation matching": WeightZoo.from_matrix(
            zoo.arch,
            activation_matching(zoo, x_train[:ACTIVATION_INPUTS]),
            recipe=zoo.recipe,
            info=weight.info,
        ),
        "consensus matching": WeightZoo.from_matrix(
            zoo.arch, consensus_matching(zoo, len(zoo) - 20), recipe=zoo.recipe, info=weight.info
        ),
    }
    print(f"\n## {recipe} ({a.split} split; 80 fitted, 20 held out)")
    print("| alignment | midpoints (%) | midpoints, recalibrated (%) | set | acc (%) | min | novelty | diversity "
          "| held-out | fn novelty | Δ vs noise (weight / fn) | Δ vs interp. (weight / fn) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    out = {name: run_alignment(name, aligned, recipe, x_train, x, y, a.seeds)
           for name, aligned in alignments.items()}  # fmt: skip
    # the sceptic's strongest baselines: built on the better-connected members
    for stronger in ("activation matching", "consensus matching"):
        for r in out["weight matching"]["flows"]:
            cells = margins(r, out[stronger]["sweeps"])
            print(f"| weight-matched flow vs {stronger.split()[0]}-matched baselines | | | flow, seed {r['seed']} "
                  f"| {pm(r)} | | | | | | {cells[0]} | {cells[1]} |")  # fmt: skip
    return out


def plot(results: dict[str, dict], path: Path) -> None:
    fig, axes = panels(len(results), 6, 4)
    for ax, (recipe, res) in zip(axes, results.items(), strict=True):
        for colour, (name, r) in zip(("C0", "C1", "C2"), res.items(), strict=True):
            for kind, style in (("noise", ":"), ("interpolation", "--")):
                pts = sorted((s["novelty_ratio"], 100 * s["mean"]) for s in r["sweeps"][kind])
                ax.plot(
                    *zip(*pts), style, marker="o", ms=3, color=colour, alpha=0.6, label=f"{kind} ({name})"
                )
            ax.scatter([f["novelty_ratio"] for f in r["flows"]], [100 * f["mean"] for f in r["flows"]],
                       marker="*", s=120, color=colour, edgecolor="black", zorder=4, label=f"flow ({name})")  # fmt: skip
        ax.set(title=recipe, xlabel="novelty ratio (permutation-invariant)", ylabel="accuracy (%)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoos", default="digits_mlp,digits_smallcnn")
    p.add_argument("--seeds", default="0,1", type=lambda s: [int(v) for v in s.split(",")])
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--out", default="bench_out/frontier", type=Path)
    p.add_argument("--cnn-out", default="bench_out/frontier_cnn", type=Path)
    a = p.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    results = {z: run_zoo(z, a.cnn_out if "cnn" in z else a.out, a) for z in a.zoos.split(",")}
    plot(results, a.out / "alignment.png")
    print(f"\nsaved {a.out / 'alignment.png'}")


if __name__ == "__main__":
    main()
