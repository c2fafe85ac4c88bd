"""Fine-tune generated, pretrained and random networks on a target task, on one process or several:

    python examples/transfer.py digits04_to_59_mlp --pipeline flow --zoo zoo --out transfer
    accelerate launch --num_processes 2 --cpu examples/transfer.py digits04_to_59_mlp --pipeline flow --zoo zoo --out transfer

The (method, budget) cells are split between the processes; the table is the same as on one process.
"""

from __future__ import annotations

import argparse
import sys

from dwf_hub.errors import DWFError
from dwf_hub.pipeline import DeepWeightFlowPipeline
from dwf_hub.transfer import load_transfer_recipe, run_transfer
from dwf_hub.zoo import open_zoo


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="transfer recipe name or .toml path")
    p.add_argument("--pipeline", default=None)
    p.add_argument("--zoo", default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    try:
        pipe = DeepWeightFlowPipeline.from_pretrained(a.pipeline) if a.pipeline else None
        zoo = open_zoo(a.zoo) if a.zoo else None
        run_transfer(load_transfer_recipe(a.recipe), a.out, pipeline=pipe, zoo=zoo, progress=False)
    except DWFError as e:
        print(f"transfer: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
