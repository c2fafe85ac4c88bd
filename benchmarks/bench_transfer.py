"""Transfer from generated networks, offline (paper Section 5.2 / Appendix J protocol): for each family, train
the source zoo (digits 0-4), fit its flow with the recipe's defaults (10 members held out), then fine-tune K
generated, K pretrained and K random networks few-shot on digits 5-9 with a new head, for 0 / 1 / 5 epochs.

    python benchmarks/bench_transfer.py [--num-models 50] [--out bench_out/transfer]

Prints each table (mean ± std target test accuracy over K) and saves benchmarks/figures/transfer_<family>.png.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from dwf_hub.evaluation.transfer import load_transfer_recipe, run_transfer
from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.zoo.training import train_zoo

FIGURES = Path(__file__).parent / "figures"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--num-models", type=int, default=50)
    p.add_argument("--out", default="bench_out/transfer")
    p.add_argument("--families", default="mlp,smallcnn")
    a = p.parse_args()
    for family in a.families.split(","):
        recipe = load_transfer_recipe(f"digits04_to_59_{family}")
        root = Path(a.out) / family
        t0 = time.perf_counter()
        zoo = train_zoo(recipe.source, a.num_models, root / "zoo", progress=False)
        fit = fit_pipeline(zoo, default_flow_config(zoo, holdout=10), progress=False)
        t1 = time.perf_counter()
        run_transfer(recipe, root / "transfer", pipeline=fit.pipeline, zoo=zoo, progress=False)
        t2 = time.perf_counter()
        zoo_acc = sum(r["test_accuracy"] for r in zoo.records) / len(zoo)
        print(f"\n## {recipe.name}: source {recipe.source} ({a.num_models} networks, test accuracy "
              f"{100 * zoo_acc:.2f} %), K = {recipe.transfer.num_networks}, {recipe.transfer.shots} shots per class")  # fmt: skip
        print((root / "transfer" / "table.md").read_text())
        print(f"source zoo + flow {t1 - t0:.0f} s, transfer {t2 - t1:.0f} s")
        FIGURES.mkdir(exist_ok=True)
        shutil.copyfile(root / "transfer" / "transfer.png", FIGURES / f"transfer_{family}.png")


if __name__ == "__main__":
    main()
