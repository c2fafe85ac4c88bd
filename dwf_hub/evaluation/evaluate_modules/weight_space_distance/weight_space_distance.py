"""Distances between two sets of networks in (canonical) weight space (DeepWeightFlow, Table 17)."""

import datasets
import evaluate
import torch

from dwf_hub.evaluation import metrics

_DESCRIPTION = """Nearest-neighbour L2 distance, highest cosine similarity, Wasserstein and Jensen-Shannon distance
between the weight distributions, and the novelty ratio, from the networks in `predictions` (one flat weight
vector per row) to the networks in `reference` (a list of flat weight vectors; default: `predictions` itself,
self-pairs left out)."""
_KWARGS = """
Args:
    predictions: flat weights, one network per row.
    reference: flat weights of the other set (e.g. the training zoo); omit to compare a set with itself.
Returns:
    nn_l2_mean, nn_l2_median, max_cosine_mean, wasserstein, jensen_shannon, and novelty_ratio (with a reference).
"""


class WeightSpaceDistance(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="DeepWeightFlow (2025)",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32"))}),
        )

    def _compute(self, predictions, reference=None):
        a = torch.tensor(predictions, dtype=torch.float32)
        same = reference is None
        b = a if same else torch.tensor(reference, dtype=torch.float32)
        nn = metrics.nearest_distances(a, b, same)
        out = {
            "nn_l2_mean": float(nn.mean()),
            "nn_l2_median": float(nn.median()),
            "max_cosine_mean": float(metrics.max_cosine(a, b, same).mean()),
            "wasserstein": metrics.wasserstein(a, b),
            "jensen_shannon": metrics.jensen_shannon(a, b),
        }
        if not same:
            out["novelty_ratio"] = metrics.canonical_novelty_ratio(a, b)
        return out
