"""Task metric of every network of a set: accuracy (classification) or Spearman correlation (regression)."""

import datasets
import evaluate
import torch

from dwf_hub.scoring import spearman

_DESCRIPTION = """Per-network task metric: `predictions` holds one network's outputs on the test set per row;
`targets` the test set's labels (classification: accuracy) or values (regression: Spearman correlation)."""
_KWARGS = """
Args:
    predictions: one network per row (predicted labels, or predicted values for regression).
    targets: test labels or values.
    task: "classification" (default) or "regression".
Returns:
    mean, std, min, max, and per_network.
"""


class NetworkTaskMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="DeepWeightFlow (2025)",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64"))}),
        )

    def _compute(self, predictions, targets, task="classification"):
        pred, target = torch.tensor(predictions), torch.tensor(targets, dtype=torch.float64)
        if task == "classification":
            values = (pred == target).double().mean(1)
        elif task == "regression":
            values = spearman(pred, target)
        else:
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        return {
            "mean": float(values.mean()),
            "std": float(values.std(unbiased=False)),
            "min": float(values.min()),
            "max": float(values.max()),
            "per_network": values.tolist(),
        }
