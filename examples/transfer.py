"""Fine-tune generated, pretrained and random networks on a target task, on one process or several:

    python examples/transfer.py digits04_to_59_mlp --pipeline flow --zoo zoo --out transfer
    torchrun --standalone --nproc_per_node 2 examples/transfer.py digits04_to_59_mlp --pipeline flow --zoo zoo --out transfer

The (method, budget) cells are split between the processes; the table is the same as on one process. The
arguments are those of ``dwf-hub finetune`` (which this script runs).
"""

from __future__ import annotations

import sys

from dwf_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["-q", "finetune", *sys.argv[1:]]))
