"""Max IoU of wrong predictions between networks (the paper's mIoU, DeepWeightFlow Figure 2 / Table 17)."""

import datasets
import evaluate
import torch

from dwf_hub.evaluation import metrics

_DESCRIPTION = """For each network of `predictions` (its predicted labels on a test set, one network per row), the
highest intersection-over-union between the set of test samples it gets wrong and that of a network of
`reference_predictions` (default: the same networks, self-pairs left out). Identical error sets give 1,
disjoint ones 0; two error-free networks count as identical."""
_KWARGS = """
Args:
    predictions: predicted labels, one network per row.
    labels: the true labels of the test set.
    reference_predictions: predicted labels of the other set; omit to compare a set with itself.
Returns:
    miou_mean, miou_std, and miou (per network).
"""


class WrongPredictionIou(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="DeepWeightFlow (2025)",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64"))}),
        )

    def _compute(self, predictions, labels, reference_predictions=None):
        a = torch.tensor(predictions)
        same = reference_predictions is None
        b = a if same else torch.tensor(reference_predictions)
        iou = metrics.max_wrong_iou(a, b, torch.tensor(labels), same)
        return {
            "miou_mean": float(iou.mean()),
            "miou_std": float(iou.std(unbiased=False)),
            "miou": iou.tolist(),
        }
