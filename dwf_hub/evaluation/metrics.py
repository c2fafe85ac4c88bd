"""Metrics between two sets of networks (the paper's Table 17): in weight space and in prediction space.

Weight-space inputs are flat weights ``[N, D]`` (canonical, so that permuted copies count as copies);
prediction-space inputs are predicted labels ``[N, B]`` on one test set with its labels ``[B]``.
``same=True`` means the two sets are the same networks: self-pairs are left out.
The ``evaluate`` modules in ``dwf_hub/evaluation/evaluate_modules/`` wrap these functions (``load_metric``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DWFError

MODULES = Path(__file__).parent / "evaluate_modules"


def summarize(values: Tensor, prefix: str = "") -> dict[str, float]:
    """Mean, population std, min, max (the paper's convention), keys prefixed with ``prefix``."""
    return {
        f"{prefix}mean": float(values.mean()),
        f"{prefix}std": float(values.std(unbiased=False)) if len(values) > 1 else 0.0,
        f"{prefix}min": float(values.min()),
        f"{prefix}max": float(values.max()),
    }


def nearest(distances: Tensor, exclude_self: bool = False) -> Tensor:
    """``[N]`` row minima of ``distances [N, M]`` (the diagonal left out when a set meets itself)."""
    if exclude_self:
        if len(distances) < 2:
            raise DWFError("need at least two networks to compare a set with itself")
        distances = distances.clone()
        distances.fill_diagonal_(float("inf"))
    return distances.min(1).values


def nearest_distances(query: Tensor, pool: Tensor, exclude_self: bool = False) -> Tensor:
    """``[M]`` L2 distance of each row of ``query [M, D]`` to its nearest row of ``pool [N, D]``."""
    return nearest(torch.cdist(query.double(), pool.double()), exclude_self).float()


def max_cosine(query: Tensor, pool: Tensor, same: bool = False) -> Tensor:
    """``[M]`` highest cosine similarity of each query network to a network of ``pool``."""
    a = torch.nn.functional.normalize(query.double(), dim=1)
    b = torch.nn.functional.normalize(pool.double(), dim=1)
    return -nearest(-(a @ b.T), same).float()  # the most similar: the nearest in negated similarity


def canonical_novelty_ratio(generated: Tensor, train: Tensor) -> float:
    """median nearest-train distance of generated networks / median nearest-other distance within train,
    in plain (canonical) weight space — the paper's Table 17 quantity. It depends on how each set was aligned;
    reports use the permutation-invariant ``dwf_hub.evaluation.novelty.NoveltyScorer`` instead.

    Near 0: generated networks are near-copies of training networks; about 1: they are as far from the
    training set as training networks are from each other.
    """
    return float(
        nearest_distances(generated, train).median() / nearest_distances(train, train, True).median()
    )


def wrong_iou(pred_a: Tensor, pred_b: Tensor, labels: Tensor) -> Tensor:
    """``[Na, Nb]`` intersection over union of the sets of test samples each network gets wrong.

    Two networks without a single error have identical (empty) error sets: IoU 1.
    """
    wa, wb = (pred_a != labels).double(), (pred_b != labels).double()  # [Na, B], [Nb, B]
    inter = wa @ wb.T
    union = wa.sum(1, keepdim=True) + wb.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter)).float()


def max_wrong_iou(pred_a: Tensor, pred_b: Tensor, labels: Tensor, same: bool = False) -> Tensor:
    """``[Na]`` the paper's mIoU per network: highest wrong-prediction IoU with a network of the other set."""
    return -nearest(-wrong_iou(pred_a, pred_b, labels), same)


def wasserstein(a: Tensor, b: Tensor) -> float:
    """Wasserstein-1 distance between the distributions of all weight values of two sets."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(a.flatten().double().numpy(), b.flatten().double().numpy()))


def jensen_shannon(a: Tensor, b: Tensor, bins: int = 200) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) between histograms of all weight values of two sets."""
    from scipy.spatial.distance import jensenshannon

    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    if hi <= lo:
        return 0.0
    ha = np.histogram(a.flatten().double().numpy(), bins=bins, range=(lo, hi))[0]
    hb = np.histogram(b.flatten().double().numpy(), bins=bins, range=(lo, hi))[0]
    return float(jensenshannon(ha, hb, base=2))


def weight_metrics(weights_a: Tensor, weights_b: Tensor, same: bool = False) -> dict[str, float]:
    """The weight-space set-to-set metrics from set A to set B (means over A's networks where per network)."""
    nn = nearest_distances(weights_a, weights_b, same)
    cos = max_cosine(weights_a, weights_b, same)
    return {
        "nn_l2_mean": float(nn.mean()),
        "nn_l2_median": float(nn.median()),
        "max_cosine_mean": float(cos.mean()),
        "wasserstein": wasserstein(weights_a, weights_b),
        "jensen_shannon": jensen_shannon(weights_a, weights_b),
    }


def set_metrics(
    weights_a: Tensor,
    preds_a: Tensor,
    weights_b: Tensor,
    preds_b: Tensor,
    labels: Tensor,
    same: bool = False,
) -> dict[str, float]:
    """Every set-to-set metric from set A to set B: ``weight_metrics`` and the wrong-prediction mIoU."""
    iou = max_wrong_iou(preds_a, preds_b, labels, same)
    return {"miou_mean": float(iou.mean()), "miou_std": float(iou.std(unbiased=False)),
            **weight_metrics(weights_a, weights_b, same)}  # fmt: skip


def load_metric(name: str):
    """One of the ``evaluate`` modules shipped in the package, loaded by path (works offline):
    ``weight_space_distance``, ``wrong_prediction_iou``, ``network_task_metric``."""
    import evaluate

    path = MODULES / name
    if not (path / f"{name}.py").is_file():
        known = sorted(p.name for p in MODULES.iterdir() if (p / f"{p.name}.py").is_file())
        raise DWFError(f"unknown metric {name!r}; shipped: {', '.join(known)}")
    return evaluate.load(str(path))
